"""Shared fixtures. Every test runs on the CPU with random weights and no network."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "unified_benchmark.py"
sys.path.insert(0, str(ROOT))  # one copy of the tool, importable by name here and in its worker processes
pytest_plugins = ["strict_skips"]  # VISION_BENCH_STRICT_SKIPS=1 (CI): a skip not on its allowed list fails the run

# The libraries must never try the network during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def ub():
    """The tool imported as a module (for unit tests)."""
    import unified_benchmark

    return unified_benchmark


@pytest.fixture(scope="session")
def sample_image(tmp_path_factory) -> Path:
    """A small photo-like image: the bundled bus.jpg scaled down (models resize anyway)."""
    from ultralytics.utils import ASSETS

    out = tmp_path_factory.mktemp("images") / "bus_small.jpg"
    with Image.open(Path(ASSETS) / "bus.jpg") as im:
        im.convert("RGB").resize((270, 360)).save(out, quality=90)
    return out


def run_cli(*args, cwd=None, timeout=900, env=None):
    """Run the tool as a user would; returns the CompletedProcess (text output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_run(output_dir: Path) -> dict:
    """The JSON, CSV and Markdown of the single run written under output_dir."""
    results = Path(output_dir) / "results"
    jsons = sorted(results.glob("benchmark_results_*.json"))
    assert len(jsons) == 1, f"expected one results JSON, found {jsons}"
    run_id = jsons[0].name[len("benchmark_results_") : -len(".json")]
    return {
        "run_id": run_id,
        "json": json.loads(jsons[0].read_text()),
        "csv_path": results / f"benchmark_summary_{run_id}.csv",
        "md_path": results / f"benchmark_report_{run_id}.md",
        "results_dir": results,
    }


def summarized(record: dict, discard_flagged: bool = False) -> dict:
    """A hand-built result's headline statistics (summarize_runs on its record), as its JSON."""
    from vision_bench.measure.timed_runs import summarize_runs
    from vision_bench.records.codec import to_json
    from vision_bench.records.model_result import with_records

    result = with_records(record)
    summarize_runs(result, discard_flagged=discard_flagged)
    return to_json(result)
