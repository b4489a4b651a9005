"""What every module shares: tagged log lines, the errors and exit codes, strict and atomic
JSON/text writes, seeding, and walking a network's leaves and outputs."""

from __future__ import annotations

import json
import math
import os
import random
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .records.codec import encode, is_record

TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"  # run ids, file and folder names

# A command-line option as (flags, argparse keyword arguments): each capability declares its options
# beside its code, and cli.py adds them to its parser in groups.
Option = tuple[tuple[str, ...], dict]


def option(*flags: str, **kwargs) -> Option:
    return flags, kwargs


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def log(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", flush=True)


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2, before any model loads."""


class WeightsError(Exception):
    """Weights missing, corrupt or not downloadable: the message names the file and the fix."""


class VariantUnsupported(Exception):
    """A model or device cannot run a variant (--variants): its row says `unsupported` and why."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException so that model code's `except Exception` lets it by."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def format_bytes(num_bytes: float | None) -> str:
    if num_bytes is None:
        return "n/a"
    if abs(num_bytes) >= 1024**3:
        return f"{num_bytes / 1024**3:.2f} GB"
    return f"{num_bytes / 1024**2:.1f} MB"


EXCEPTION_LINE_CHARS = 1500


def exception_line(exc: BaseException) -> str:
    """An exception as one plain-ASCII line (libraries decorate theirs with emoji and newlines)."""
    text = " ".join(str(exc).split()).encode("ascii", "ignore").decode().strip().rstrip(".")
    if len(text) > EXCEPTION_LINE_CHARS:  # some libraries put whole tensors in their messages
        text = text[:EXCEPTION_LINE_CHARS] + " [...]"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def get_timestamp() -> str:
    return datetime.now().strftime(TIMESTAMP_FORMAT)


def process_start_time() -> datetime:
    """When this process started, to 10 ms: its start in clock ticks since boot (/proc/self/stat)
    against the seconds since boot (/proc/uptime), so that the interpreter's start-up and the imports
    before main() count in the wall time. Now, where /proc does not say."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return datetime.fromtimestamp(datetime.now().timestamp() - max(age, 0.0))
    except (OSError, ValueError, IndexError):
        return datetime.now()


def strict_json(value):
    """Replace NaN and Infinity by None, recursively: the JSON we write is strict. Records
    (dataclasses) are written through their codec."""
    if is_record(value):
        return strict_json(encode(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return strict_json(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(strict_json(data), indent=2, allow_nan=False) + "\n")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def first_tensor(value, where: str = "output"):
    """The first tensor inside a tensor, tuple, list, dict or library output object, and its path."""
    import torch

    if isinstance(value, torch.Tensor):
        return value, where
    if isinstance(value, dict) or hasattr(value, "items") and hasattr(value, "keys"):
        for key in value.keys():
            found, path = first_tensor(value[key], f"{where}[{key!r}]")
            if found is not None:
                return found, path
        return None, where
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            found, path = first_tensor(item, f"{where}[{i}]")
            if found is not None:
                return found, path
    return None, where


def leaf_modules(network) -> list[tuple[str, Any]]:
    return [
        (name or type(network).__name__, m) for name, m in network.named_modules() if next(m.children(), None) is None
    ]


def ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"
