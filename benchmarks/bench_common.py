"""What the benchmark scripts share: the tool imported from its file, the bundled bus.jpg, and a
model built with random weights the way the tool builds it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "unified_benchmark.py"
SEED = 42
if str(ROOT) not in sys.path:  # the tool and its package, importable by name (worker pickling needs that)
    sys.path.insert(0, str(ROOT))


def import_tool():
    """unified_benchmark.py as a module: the registry and the user's settings."""
    import unified_benchmark

    return unified_benchmark


def bus_path() -> Path:
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


def load_bench(ub, cli_name: str, progress):
    """A loaded model of the tool's registry, random weights, on the CPU, seeded like the tool."""
    import torch

    from vision_bench.common import seed_everything

    seed_everything(SEED)
    bench = ub.MODELS_BY_CLI_NAME[cli_name](torch.device("cpu"), weights="random")
    start = time.perf_counter()
    bench.load()
    progress(f"{cli_name}: loaded ({bench.weights_source}) in {time.perf_counter() - start:.1f}s")
    return bench


def load_note() -> str:
    """How busy the machine was: figures from a loaded machine are not worth comparing."""
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
