#!/usr/bin/env python3
"""Unified vision model benchmark: speed, memory, FLOPs and a layer-by-layer dissection.

Benchmarks eight models one after another on every image in test_data/ and writes a JSON,
a CSV and a Markdown report under results/, plus one folder of layer dissections per model
under viz/<run id>/.

    python unified_benchmark.py                       # all eight models, pretrained weights
    python unified_benchmark.py --weights random      # same architectures, no download
    python unified_benchmark.py --help                # every option

Sections, top to bottom: constants, helpers, measuring machinery (timing, memory, FLOPs,
dissection, time breakdown), model classes, the runner, the reports, compare and merge (results
read back), the command line.
To add a model, write a ModelBenchmark subclass (see README.md) and add it to MODEL_CLASSES.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import ctypes
import faulthandler
import gc
import io
import json
import math
import os
import platform
import queue
import random
import signal
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path

# The libraries must not try the network when the user said there is none; set before import.
if os.environ.get("HF_HUB_OFFLINE") == "1":
    os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np
from PIL import Image, ImageOps

# =========================================================================================
# Constants
# =========================================================================================
NUM_INFERENCE_RUNS = 5              # timed runs per image
NUM_WARMUP_ROUNDS = 1               # rounds over all images after the cold start, before timing
RANDOM_SEED = 42                    # seeds python, numpy and torch before every model
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"  # run ids, file and folder names

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_IMAGE_DIR = SCRIPT_DIR / "test_data"
DEFAULT_MODELS_DIR = SCRIPT_DIR / "models"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

DISSECT_PNG_CHANNELS = 16           # channels drawn in a layer's PNG grid
DISSECT_NPY_CHANNELS = 8            # channels saved raw in a layer's NPY
DISSECT_QUEUE_SIZE = 8              # activations waiting for the writers; bounds host memory
DISSECT_QUEUE_BYTES = 256 << 20     # and their bytes: one larger activation may still pass alone
DISSECT_WRITER_THREADS = 2
DISSECT_SPARE_THREADS = 0           # torch threads given up to the writers (measured: giving one up was slower)
STATS_BLOCK_ELEMENTS = 4096         # float32 partial sums this long, then summed in float64
DISSECT_TILE_MIN, DISSECT_TILE_MAX = 64, 256   # pixels per channel tile in a PNG
DISSECT_VECTOR_PIXELS = 256 * 256   # maps up to this size are colour-mapped all channels at once
MAX_LEADING_TOKENS = 8              # class + register tokens before a ViT's patch grid
PROGRESS_INTERVAL_SEC = 5.0         # a line this often while a long pass runs; shorter passes print none
UNSTABLE_CI_WIDTH = 0.20            # 95% interval of a median wider than this share of it: noisy timing
MIN_RUNS_FOR_CI = 6                 # fewer runs than this have no distribution-free 95% interval
COLD_START_FACTOR = 3.0             # cold start this many times the warm median is a finding
SHAPE_WARMUP_FACTOR = 1.3           # first run on a new image this much slower than its repeats

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


# =========================================================================================
# Helpers: logging, errors, files, images, system
# =========================================================================================
def log(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", flush=True)


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2, before any model loads."""


class WeightsError(Exception):
    """Weights missing, corrupt or not downloadable: the message names the file and the fix."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException so that model code's `except Exception` lets it by."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def format_bytes(num_bytes: float | None) -> str:
    if num_bytes is None:
        return "n/a"
    if abs(num_bytes) >= 1024 ** 3:
        return f"{num_bytes / 1024 ** 3:.2f} GB"
    return f"{num_bytes / 1024 ** 2:.1f} MB"


def exception_line(exc: BaseException) -> str:
    """An exception as one plain-ASCII line (libraries decorate theirs with emoji and newlines)."""
    text = " ".join(str(exc).split()).encode("ascii", "ignore").decode().strip().rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def get_timestamp() -> str:
    return datetime.now().strftime(TIMESTAMP_FORMAT)


def strict_json(value):
    """Replace NaN and Infinity by None, recursively: the JSON we write is strict."""
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


def configure_threads(requested: int | None) -> int:
    """Pin torch's CPU thread count for the whole run and keep ultralytics from changing it.

    Importing ultralytics sets OMP_NUM_THREADS=1 when it is unset (torch then starts with one
    thread), and its CPU device selection calls torch.set_num_threads(cores - 1) on the first
    predict; either would silently slow every model that runs after a YOLO model."""
    import torch  # before ultralytics, so that its OMP_NUM_THREADS default does not apply
    threads = requested or torch.get_num_threads()
    torch.set_num_threads(threads)
    from ultralytics.utils import torch_utils
    torch_utils.NUM_THREADS = threads
    return threads


def load_rgb(path: Path) -> Image.Image:
    """Open any image as 8-bit RGB: EXIF rotation applied, 16-bit scaled, alpha dropped."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(im, dtype=np.float64)
            top = 65535.0 if im.mode.startswith("I;16") else max(float(np.nanmax(arr)), 1.0)
            im = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return im.convert("RGB")


def check_image(path: Path) -> str | None:
    """Return why an image cannot be used, or None when it decodes completely."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            im.load()  # a full decode: verify() alone misses truncated JPEG data
        return None
    except Exception as exc:  # Pillow raises many types for bad files
        return f"{type(exc).__name__}: {exc}"


def bundled_sample_images() -> list[Path]:
    import importlib.util  # find the files without importing ultralytics into the parent process
    spec = importlib.util.find_spec("ultralytics")
    assets = Path(spec.origin).parent / "assets" if spec and spec.origin else None
    return [p for p in (assets / "bus.jpg", assets / "zidane.jpg") if p.exists()] if assets else []


def discover_images(user_paths: list[str] | None) -> tuple[list[Path], str]:
    """Images to benchmark, and where they came from. Falls back only for the default folder."""
    if user_paths:
        candidates: list[Path] = []
        for raw in user_paths:
            p = Path(raw).expanduser()
            if not p.exists():
                raise UsageError(f"--images: '{raw}' does not exist; give an image file or a folder of .jpg/.jpeg/.png images")
            if p.is_dir():
                found = sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES)
                if not found:
                    raise UsageError(f"--images: folder '{raw}' holds no .jpg/.jpeg/.png files")
                candidates.extend(found)
            else:
                candidates.append(p)
        source = "--images"
    else:
        folder = DEFAULT_IMAGE_DIR
        candidates = sorted(c for c in folder.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES) \
            if folder.is_dir() else []
        source = str(folder)

    usable = []
    for path in candidates:
        problem = check_image(path)
        if problem:
            log("WARNING", f"Skipping image {path}: {problem}")
        else:
            usable.append(path)

    if not usable:
        if user_paths:
            raise UsageError("--images: no readable image among the files given (see the warnings above)")
        usable = bundled_sample_images()
        if not usable:
            raise UsageError(f"no usable image in {DEFAULT_IMAGE_DIR} and no bundled sample images; add images there")
        log("INFO", f"No usable image in {DEFAULT_IMAGE_DIR}; using the sample photos bundled with ultralytics "
                    f"({', '.join(p.name for p in usable)})")
        source = "ultralytics bundled samples"
    return usable, source


def system_info(device) -> dict:
    import torch
    from importlib.metadata import version  # not the packages themselves: the parent needs no import
    info = {
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "ultralytics": version("ultralytics"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        **numeric_settings(device),
    }
    return info


def numeric_settings(device) -> dict:
    """What decides the arithmetic on a GPU. On this torch, convolutions run in TF32 on Ampere
    and newer by default while matmuls run in full fp32. The allow_tf32 flags are read (the
    effective setting, no deprecation warning on torch 2.14); the newer fp32_precision
    attributes say "none" when a setting is inherited."""
    import torch
    cudnn = torch.backends.cudnn
    return {
        "default_dtype": str(torch.get_default_dtype()).replace("torch.", ""),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": cudnn.allow_tf32,
        "cudnn_benchmark": cudnn.benchmark,
        "cudnn_deterministic": cudnn.deterministic,
        "cudnn_version": cudnn.version() if cudnn.is_available() else None,
        "cuda_driver_version": cuda_driver_version() if device.type == "cuda" else None,
    }


def cuda_driver_version() -> str | None:
    """The NVIDIA driver version through NVML (nvidia-ml-py comes with ultralytics); None when
    NVML is missing or fails."""
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no NVML library, no driver, or an old binding: the report says "n/a"
        return None


# =========================================================================================
# Measuring machinery: timing statistics, memory, FLOPs
# =========================================================================================
CI_METHOD = "distribution-free 95% interval of the median from order statistics (binomial ranks)"


def median_interval(values) -> tuple[float, float, float] | None:
    """A 95% confidence interval of the median that assumes nothing about the distribution:
    order statistics x(k) and x(n+1-k), with k the largest rank such that a Binomial(n, 1/2)
    falls below k with probability at most 2.5%. Returns (low, high, exact coverage), or None
    when there are too few values (n < 6: even [min, max] covers less than 95%)."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    n = a.size
    below, k = 0.0, 0
    for j in range(n + 1):
        p = math.comb(n, j) / 2.0 ** n
        if below + p > 0.025:
            break
        below += p
        k = j + 1
    if k == 0:
        return None
    return float(a[k - 1]), float(a[n - k]), 1.0 - 2.0 * below


def latency_stats(seconds: list[float]) -> dict:
    """Statistics of a list of run times in seconds; every field None when the list is empty."""
    keys = ("n", "median", "ci95_low", "ci95_high", "ci_coverage", "p10", "p90", "mean", "std", "min", "max", "cov")
    if not seconds:
        return dict.fromkeys(keys) | {"n": 0}
    a = np.asarray(seconds, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    low, high, coverage = median_interval(a) or (None, None, None)
    return {
        "n": int(a.size), "median": float(np.median(a)), "ci95_low": low, "ci95_high": high,
        "ci_coverage": coverage, "p10": float(np.percentile(a, 10)),
        "p90": float(np.percentile(a, 90)), "mean": mean, "std": std,
        "min": float(a.min()), "max": float(a.max()), "cov": std / mean if mean > 0 else None,
    }


def format_interval(stats: dict) -> str:
    """'[low, high] ms' for a median's 95% interval, or why there is none."""
    if stats.get("ci95_low") is None:
        return f"[no 95% interval: {stats.get('n') or 0} runs, need {MIN_RUNS_FOR_CI}]"
    return f"[{stats['ci95_low'] * 1000:.1f}, {stats['ci95_high'] * 1000:.1f}]"


class MemoryTracker:
    """Process memory on CPU (resident set, with a true peak) and allocator figures on CUDA."""

    def __init__(self, device):
        import psutil
        self.device = device
        self.process = psutil.Process()
        self._sampler: threading.Thread | None = None
        self._sampling = False
        self._sampled_peak = 0
        self._hwm_exact = False

    def rss(self) -> int:
        return self.process.memory_info().rss

    def cuda_allocated(self) -> int | None:
        import torch
        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else None

    @staticmethod
    def _read_hwm(pid: int | str = "self") -> int | None:
        """The kernel's high-water mark of a process's resident set (also read by the parent
        for a worker: all that is left of it if the OOM killer ends it)."""
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def reset_peak(self) -> None:
        """Start a new peak window. Linux resets the kernel's high-water mark (exact);
        elsewhere a thread samples the resident set every 5 ms. Safe before a model loads
        (call it first, so that a model failing in load() reports its own peak), and again
        at any later point to start a new window."""
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.stop_sampling()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm_exact = self._read_hwm() is not None
        except OSError:
            self._hwm_exact = False
        if not self._hwm_exact:
            self._sampled_peak = self.rss()
            self._sampling = True
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        while self._sampling:
            self._sampled_peak = max(self._sampled_peak, self.rss())
            time.sleep(0.005)

    def stop_sampling(self) -> None:
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    def peak(self) -> dict:
        import torch
        if self._hwm_exact:
            cpu_peak = self._read_hwm()
        else:
            self.stop_sampling()
            cpu_peak = max(self._sampled_peak, self.rss())
        out = {"cpu_peak_rss_bytes": cpu_peak}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)
        return out

    def safe_peak(self) -> dict:
        """peak() for an error path: after a device-side assert or an illegal memory access
        every CUDA call raises again, which must not replace the first error. The CPU figure
        is kept; the CUDA error is returned as text."""
        try:
            return self.peak()
        except Exception as exc:
            cpu_peak = self._read_hwm() if self._hwm_exact else max(self._sampled_peak, self.rss())
            return {"cpu_peak_rss_bytes": cpu_peak, "cuda_error": exception_line(exc)}


def safe_cuda_cleanup(device) -> str | None:
    """Return cached CUDA blocks to the driver; the error as one line instead of raising
    (a sticky CUDA error would otherwise hide the error that caused it). None on success
    and on the CPU."""
    if device.type != "cuda":
        return None
    import torch
    try:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        return None
    except Exception as exc:
        return exception_line(exc)


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


def leaf_modules(network) -> list[tuple[str, object]]:
    return [(name or type(network).__name__, m) for name, m in network.named_modules()
            if next(m.children(), None) is None]


# =========================================================================================
# Measuring machinery: progress lines of long passes
# =========================================================================================
class pass_progress:
    """Progress lines while one long pass runs, so that no pass is silent for minutes.

    A background thread prints a `[tag]` line every PROGRESS_INTERVAL_SEC while the pass runs
    (a pass that ends sooner prints nothing). With a network, forward pre-hooks on its leaf
    modules say how far the pass is: leaf modules run so far of the total, the top-level block
    and the last leaf module started (a hook fires only when a module starts, so the line says
    how long ago: a long module, or work between modules, shows as a growing age). Without a network (timed runs, drawing a
    picture) the line says only the elapsed time, and nothing is hooked. `detail` adds text,
    e.g. the dissection's record count.

        with pass_progress(bench.network(), "DepthPro FLOPs pass", blocks=bench.top_level_blocks()):
            bench.run_pipeline(image)
    """

    def __init__(self, network, label: str, tag: str = "PROGRESS", blocks=(), detail=None):
        self.network = network
        self.label = label
        self.tag = tag
        self.blocks = blocks
        self.detail = detail
        self.total = 0
        self.seen: set[int] = set()
        self.calls = 0
        self.current = None               # (name, start time) of the last leaf module started
        self.block = None                 # label of the last top-level block started
        self._handles = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self.started = time.perf_counter()
        if self.network is not None:
            leaves = leaf_modules(self.network)
            self.total = len(leaves)
            self._handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in leaves]
            self._handles += [block.register_forward_pre_hook(self._block_hook(label)) for label, block in self.blocks]
        self._thread = threading.Thread(target=self._tick, daemon=True, name=f"progress {self.label}")
        self._thread.start()
        return self

    def _hook(self, name: str):
        def pre(module, args):
            self.calls += 1
            self.seen.add(id(module))
            self.current = (name, time.perf_counter())
        return pre

    def _block_hook(self, label: str):
        def pre(module, args):
            self.block = label
        return pre

    def _tick(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL_SEC):
            log(self.tag, self.line())

    def line(self) -> str:
        now = time.perf_counter()
        text = f"{self.label}: {now - self.started:.0f}s so far"
        if self.network is not None:
            text += f", {len(self.seen)}/{self.total} leaf modules run ({self.calls} calls)"
            if self.block is not None:
                text += f", in {self.block}"
            if self.current is not None:
                name, since = self.current
                text += f", last module started: {name} ({now - since:.0f}s ago)"
        if self.detail is not None:
            text += f", {self.detail()}"
        return text

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for h in self._handles:
            h.remove()
        self._handles = []
        return False


# =========================================================================================
# Measuring machinery: layer dissection (one forward pass, every call of every leaf module)
# =========================================================================================
def token_grid(num_tokens: int, input_hw: tuple[int, int] | None):
    """(leading tokens, h, w) when num_tokens is a patch grid of the input's aspect ratio
    after a few class/register tokens, else None."""
    if not input_hw:
        return None
    target = math.log(input_hw[0] / input_hw[1])
    for lead in range(0, MAX_LEADING_TOKENS + 1):
        m = num_tokens - lead
        if m < 16:
            return None
        best = None
        for h in range(2, int(math.isqrt(m)) + 1):
            if m % h:
                continue
            for hh, ww in ((h, m // h), (m // h, h)):
                err = abs(math.log(hh / ww) - target)
                if best is None or err < best[0]:
                    best = (err, hh, ww)
        if best is not None and best[0] < 0.1:
            return lead, best[1], best[2]
    return None


def float64_sum(x):
    """Sum of x with float64 accumulation and no full-size temporary: float32 partial sums over
    the dimensions innermost in memory (at least STATS_BLOCK_ELEMENTS elements each), then the
    partials in float64. `x.sum(dtype=torch.float64)` would first copy x to float64 on the CPU."""
    import torch
    inner, size = [], 1
    for d in sorted(range(x.dim()), key=lambda d: x.stride(d)):
        if size >= STATS_BLOCK_ELEMENTS:
            break
        inner.append(d)
        size *= x.shape[d]
    partials = x.sum(dim=inner) if inner else x
    return partials.sum(dtype=torch.float64)


def tensor_stats(t) -> dict:
    """min, max, mean, std, zero fraction, NaN and Inf counts, computed where the tensor lives
    with a single transfer of five numbers to the host in the common all-finite case; the
    masked path runs only when NaN or Inf is present.

    Memory: every reduction reads the tensor in place, whatever its strides (channels_last
    and permuted outputs are common), and uses all of torch's threads. The extra memory is the
    partial sums, 1/STATS_BLOCK_ELEMENTS of the tensor; float16/bfloat16 add a float32 copy
    (2x the tensor's bytes), and the NaN/Inf path masks and copies (up to 1.75x)."""
    import torch
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    if x.dtype != torch.float32 and x.dtype != torch.float64:
        x = x.float()
    n = x.numel()
    if n == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "zero_fraction": None,
                "nan_count": 0, "inf_count": 0}
    # Fast path. amin/amax propagate NaN and show Inf, so a finite min and max mean all finite.
    # Not torch.aminmax: on a non-contiguous tensor it reduces a contiguous copy. torch.var over
    # all dimensions is a parallel two-pass reduction with float64 accumulators and no copy.
    lo, hi = torch.amin(x), torch.amax(x)
    total = float64_sum(x)
    var = torch.var(x, correction=0)
    zeros = n - torch.count_nonzero(x)
    lo_, hi_, total_, var_, zeros_ = torch.stack(
        [lo.double(), hi.double(), total, var.double(), zeros.double()]).tolist()
    if math.isfinite(lo_) and math.isfinite(hi_):
        return {"min": lo_, "max": hi_, "mean": total_ / n, "std": math.sqrt(max(var_, 0.0)),
                "zero_fraction": zeros_ / n, "nan_count": 0, "inf_count": 0}
    finite = torch.isfinite(x)
    finite_count = int(finite.sum())
    nan_count = int(torch.isnan(x).sum()) if finite_count < n else 0
    values = x if finite_count == n else x[finite]
    zeros = (x == 0).sum()
    if values.numel():
        lo, hi = torch.aminmax(values)
        std, mean = torch.std_mean(values, correction=0)
        lo, hi, mean, std, zeros = torch.stack([lo, hi, mean, std, zeros.to(values.dtype)]).tolist()
    else:
        lo = hi = mean = std = None
        zeros = int(zeros)
    return {"min": lo, "max": hi, "mean": mean, "std": std, "zero_fraction": zeros / n,
            "nan_count": nan_count, "inf_count": n - finite_count - nan_count}


def feature_planes(t, input_hw):
    """(C, H, W) view of batch element 0 of a feature map or a patch-token sequence, the
    first DISSECT_PNG_CHANNELS channels only, and a note when tokens were reshaped."""
    if t.dim() == 4:
        return t[0, :DISSECT_PNG_CHANNELS], None
    if t.dim() == 3:
        grid = token_grid(t.shape[1], input_hw)
        if grid:
            lead, h, w = grid
            planes = t[0, lead:, :DISSECT_PNG_CHANNELS].transpose(0, 1).reshape(-1, h, w)
            return planes, f"tokens reshaped to {h}x{w} grid after {lead} leading token(s)"
    return None, None


_COLORMAP_LUT = None


def colormap_lut() -> np.ndarray:
    """viridis as a 256x3 uint8 table: one lookup per pixel, no matplotlib figure per layer."""
    global _COLORMAP_LUT
    if _COLORMAP_LUT is None:
        from matplotlib import colormaps
        _COLORMAP_LUT = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _COLORMAP_LUT


def colour_indices(ch: np.ndarray) -> np.ndarray:
    """One channel normalised to its own finite min..max as colormap indices 0..255 (NaN/Inf: 0)."""
    lo, hi = float(ch.min()), float(ch.max())
    if math.isfinite(lo) and math.isfinite(hi):          # no NaN/Inf: no mask, no np.where
        norm = (ch - lo) / (hi - lo) if hi > lo else np.zeros_like(ch)
    else:
        finite = np.isfinite(ch)
        lo, hi = (float(ch[finite].min()), float(ch[finite].max())) if finite.any() else (0.0, 0.0)
        norm = np.where(finite, (ch - lo) / (hi - lo), 0.0) if hi > lo else np.zeros_like(ch)
    return (norm * 255).astype(np.uint8)


def colour_indices_all(planes: np.ndarray) -> np.ndarray:
    """colour_indices of every channel at once, same arithmetic (float32, the span rounded from
    float64 as a Python float would be); channels with NaN or Inf take the per-channel path."""
    lo, hi = planes.min(axis=(1, 2)), planes.max(axis=(1, 2))
    finite = np.isfinite(lo) & np.isfinite(hi)
    span = hi.astype(np.float64) - lo.astype(np.float64)
    denominator = np.where(finite & (span > 0), span, 1.0).astype(planes.dtype)
    with np.errstate(invalid="ignore"):
        norm = (planes - np.where(finite, lo, 0).astype(planes.dtype)[:, None, None]) / denominator[:, None, None]
        out = (norm * 255).astype(np.uint8)
    for i in np.flatnonzero(~finite):
        out[i] = colour_indices(planes[i])
    return out


def render_feature_grid(planes: np.ndarray, path: Path) -> None:
    """A grid of channels, each normalised on its own, saved as PNG by OpenCV (no row filter)."""
    import cv2
    lut = colormap_lut()
    c, h, w = planes.shape
    scale = max(1, math.ceil(DISSECT_TILE_MIN / max(h, w)))
    th, tw = h * scale, w * scale
    if max(th, tw) > DISSECT_TILE_MAX:
        f = DISSECT_TILE_MAX / max(th, tw)
        th, tw = max(1, round(th * f)), max(1, round(tw * f))
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    pad = 2
    canvas = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    # Small maps (most ViT and detector layers) are colour-mapped all channels at once: a
    # Python loop of numpy calls per channel cost more than the arithmetic. Large maps stay one
    # channel at a time, so the writer's working memory stays a few copies of one channel.
    tiles = colour_indices_all(planes) if h * w <= DISSECT_VECTOR_PIXELS else None
    if tiles is not None:
        tiles = np.take(lut, tiles, axis=0)
        if scale > 1 and (th, tw) == (h * scale, w * scale):   # same pixels as PIL's NEAREST
            tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(c):
        rgb = tiles[i] if tiles is not None else np.take(lut, colour_indices(planes[i]), axis=0)
        if rgb.shape[:2] != (th, tw):
            rgb = np.asarray(Image.fromarray(rgb).resize((tw, th), Image.NEAREST if scale > 1 else Image.BOX))
        r, q = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + q * (tw + pad)
        canvas[y:y + th, x:x + tw] = rgb
    # OpenCV without PNG row filters: same pixels, ~2.5x faster to encode than Pillow's adaptive
    # filtering, and smaller files on noisy feature maps. Still an 8-bit RGB PNG.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV 4.10+
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buf = cv2.imencode(".png", canvas[..., ::-1], params)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


class LayerDissector:
    """Hooks every leaf module, runs one forward pass, and records every call.

    Hooks compute statistics where the activation lives and hand a small host copy (the
    first channels of batch element 0) to a bounded queue; writer threads render the PNG and
    save the NPY. Host memory stays bounded by the queue, and the pass waits only when the
    queue is full. Hooks are removed and writers stopped even when the pass fails.
    """

    def __init__(self, out_dir: Path, input_hw=None, write_files: bool = True):
        self.out_dir = out_dir
        self.input_hw = input_hw
        self.write_files = write_files
        self.records: list[dict] = []
        self.call_counts: dict[str, int] = {}
        self.queue: queue.Queue = queue.Queue(maxsize=DISSECT_QUEUE_SIZE)
        self.writer_errors: list[str] = []
        self.width = 3
        # Bytes of host copies queued or being written: the hook waits while a new copy would
        # pass DISSECT_QUEUE_BYTES, so a network with 150 MB planes cannot queue 8 of them.
        self._pending_bytes = 0
        self._pending = threading.Condition()

    # -- writer threads --------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            nbytes = item[0].nbytes
            try:
                planes, png_path, npy_path = item
                np.save(npy_path, planes[:DISSECT_NPY_CHANNELS])
                render_feature_grid(planes, png_path)
            except Exception as exc:  # keep serving the queue; report at the end
                self.writer_errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                # Drop the array before waiting for the next one: a reference held across
                # queue.get() would keep one more activation copy alive per writer thread.
                item = planes = None
                self._release(nbytes)
                self.queue.task_done()

    def _reserve(self, nbytes: int) -> None:
        with self._pending:
            self._pending.wait_for(lambda: self._pending_bytes == 0
                                   or self._pending_bytes + nbytes <= DISSECT_QUEUE_BYTES)
            self._pending_bytes += nbytes

    def _release(self, nbytes: int) -> None:
        with self._pending:
            self._pending_bytes -= nbytes
            self._pending.notify_all()

    def _file_stem(self, index: int) -> str:
        return f"layer_{index:0{self.width}d}"

    # -- the hook --------------------------------------------------------------------------
    def _make_hook(self, name: str, module_type: str):
        def hook(module, args, output):
            import torch
            index = len(self.records)
            call = self.call_counts.get(name, 0) + 1
            self.call_counts[name] = call
            record = {"index": index, "name": name, "call": call, "type": module_type}
            self.records.append(record)
            tensor, source = first_tensor(output)
            if tensor is None:
                record["note"] = "no tensor in the output; no statistics"
                return
            if source != "output":
                record["source"] = source
            record["shape"] = list(tensor.shape)
            record["dtype"] = str(tensor.dtype).replace("torch.", "")
            record.update(tensor_stats(tensor))
            record["files"] = []
            if self.write_files and (tensor.is_floating_point() or tensor.dtype == torch.bool):
                planes, note = feature_planes(tensor, self.input_hw)
                if planes is not None and planes.numel():
                    if note:
                        record["reshaped"] = note
                    self._reserve(planes.numel() * 4)
                    host = planes.detach().to("cpu", torch.float32, copy=True).numpy()
                    stem = self._file_stem(index)
                    record["files"] = [f"{stem}.png", f"{stem}.npy"]
                    self.queue.put((host, self.out_dir / f"{stem}.png", self.out_dir / f"{stem}.npy"))
        return hook

    def _final_line(self) -> None:
        last = self.records[-1] if self.records else None
        where = f" {last['name']} (call {last['call']})" if last else ""
        log(f"DISSECT {len(self.records)}", f"calls recorded ({self.num_leaves} leaf modules hooked), last{where}")

    # -- the pass --------------------------------------------------------------------------
    def run(self, network, forward_call, label: str = "dissection", blocks=()) -> dict:
        """Hook `network`'s leaves, call `forward_call()` once, return the summary.
        `label` and `blocks` name the pass and its top-level blocks in the progress lines."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        leaves = leaf_modules(network)
        self.num_leaves = len(leaves)
        self.width = max(3, len(str(max(self.num_leaves - 1, 1))))
        writers = [threading.Thread(target=self._writer, daemon=True) for _ in range(DISSECT_WRITER_THREADS)]
        for t in writers:
            t.start()
        handles = [m.register_forward_hook(self._make_hook(name, type(m).__name__)) for name, m in leaves]
        import torch
        started = time.perf_counter()
        completed = False
        threads = torch.get_num_threads()
        if self.write_files and threads > 1 and DISSECT_SPARE_THREADS:
            torch.set_num_threads(max(1, threads - DISSECT_SPARE_THREADS))   # cores left to the writers
        progress = pass_progress(network, label, tag="DISSECT", blocks=blocks,
                                 detail=lambda: f"{len(self.records)} records, {self.queue.qsize()} waiting for the writers")
        try:
            with progress:
                forward_call()
                completed = True
        finally:
            torch.set_num_threads(threads)
            for h in handles:
                h.remove()
            with pass_progress(None, f"{label}, writing the last files", tag="DISSECT", detail=progress.detail):
                if completed:
                    self.queue.join()          # every file written before we count them
                else:
                    self._drop_pending()       # fail or interrupt fast: unwritten files are dropped
                for _ in writers:
                    self.queue.put(None)
                for t in writers:
                    t.join(timeout=30)
        self._renumber_if_needed()
        seconds = time.perf_counter() - started
        pngs = sum(1 for r in self.records if r.get("files"))
        self._final_line()
        return {"records": len(self.records), "leaf_modules": self.num_leaves, "png_files": pngs,
                "npy_files": pngs, "seconds": seconds, "writer_errors": self.writer_errors}

    def _drop_pending(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._release(item[0].nbytes)
            self.queue.task_done()

    def _renumber_if_needed(self) -> None:
        """Zero-pad to the width the record count needs; more calls than leaves can widen it."""
        needed = max(3, len(str(max(len(self.records) - 1, 1))))
        if needed == self.width:
            return
        old_width, self.width = self.width, needed
        for r in self.records:
            if not r.get("files"):
                continue
            old_stem = f"layer_{r['index']:0{old_width}d}"
            new_stem = self._file_stem(r["index"])
            for suffix in (".png", ".npy"):
                src = self.out_dir / f"{old_stem}{suffix}"
                if src.exists():
                    os.replace(src, self.out_dir / f"{new_stem}{suffix}")
            r["files"] = [f"{new_stem}.png", f"{new_stem}.npy"]

    def metadata(self, **extra) -> dict:
        return {**extra, "num_records": len(self.records),
                "records": {f"{r['index']:0{self.width}d}": r for r in self.records}}


# =========================================================================================
# Measuring machinery: where the forward time goes (timing hooks, one extra pass)
# =========================================================================================
class HostClock:
    """Host wall clock: on the CPU a module's work is done when its forward returns."""

    def mark(self) -> float:
        return time.perf_counter()

    def finish(self) -> None:
        pass

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1000


class CudaEventClock:
    """CUDA events recorded on the device's stream: a mark queues no synchronisation, so the
    host keeps launching ahead of the GPU and each interval is the GPU's own time between two
    points of the stream. One synchronisation after the pass, then the intervals are read."""

    def __init__(self, device):
        import torch
        self.torch, self.device = torch, device

    def mark(self):
        event = self.torch.cuda.Event(enable_timing=True)
        event.record(self.torch.cuda.current_stream(self.device))
        return event

    def finish(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start, end) -> float:
        return start.elapsed_time(end)


def clock_for(device):
    return CudaEventClock(device) if device.type == "cuda" else HostClock()


class TimeBreakdown:
    """Times each top-level block and each leaf module of one pass with pre/post hooks.

    The hooks only take marks from the clock; intervals are read after the pass (on CUDA,
    after its single synchronisation), so a module called several times adds up its calls."""

    def __init__(self, device, clock=None):
        self.device = device
        self.clock = clock or clock_for(device)
        self.block_ms: dict[str, float] = {}
        self.leaf_ms: dict[str, float] = {}
        self.leaf_calls: dict[str, int] = {}
        self.leaf_types: dict[str, str] = {}
        self._starts: dict[tuple[int, str], list] = {}   # a module can be a block and a leaf
        self._intervals: list[tuple[str, dict, dict | None, object, object]] = []

    def _hooks(self, key: str, totals: dict, counts: dict | None):
        def pre(module, args):
            self._starts.setdefault((id(module), key), []).append(self.clock.mark())

        def post(module, args, output):
            end = self.clock.mark()
            self._intervals.append((key, totals, counts, self._starts[(id(module), key)].pop(), end))
        return pre, post

    def _read_intervals(self) -> None:
        self.clock.finish()
        for key, totals, counts, start, end in self._intervals:
            totals[key] = totals.get(key, 0.0) + self.clock.elapsed_ms(start, end)
            if counts is not None:
                counts[key] = counts.get(key, 0) + 1
        self._intervals.clear()

    def run(self, blocks, leaves, call) -> dict:
        handles = []
        try:
            for label, module in blocks:
                pre, post = self._hooks(label, self.block_ms, None)
                handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
            for name, module in leaves:
                self.leaf_types[name] = type(module).__name__
                pre, post = self._hooks(name, self.leaf_ms, self.leaf_calls)
                handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
            _, phases = call()
        finally:
            for h in handles:
                h.remove()
        self._read_intervals()
        forward_ms = phases["forward"] * 1000
        blocks_total = sum(self.block_ms.values())
        # Shares of the measured forward phase; the remainder is time between blocks.
        denominator = max(forward_ms, blocks_total) or 1.0
        rows = [{"block": label, "ms": ms, "share": ms / denominator} for label, ms in self.block_ms.items()]
        rows.append({"block": "(outside top-level blocks)", "ms": max(denominator - blocks_total, 0.0),
                     "share": max(denominator - blocks_total, 0.0) / denominator})
        top = sorted(self.leaf_ms.items(), key=lambda kv: -kv[1])[:10]
        return {"forward_ms": forward_ms, "blocks": rows,
                "top_leaves": [{"name": n, "type": self.leaf_types[n], "ms": ms, "calls": self.leaf_calls[n],
                                "share": ms / denominator} for n, ms in top]}


# =========================================================================================
# Model classes
# =========================================================================================
class ModelBenchmark(ABC):
    """Everything shared by the models: timing, memory, FLOPs, dissection, cleanup.

    A subclass sets the class constants and implements how to load (pretrained or random),
    preprocess, run the network and postprocess, and which nn.Module is the network.
    """

    MODEL_NAME = "Model"          # folder and report name
    CLI_NAME = "model"            # name for --models
    DESCRIPTION = ""              # one line for --list-models
    TASK = ""                     # depth, detect, segment, pose, sam
    INPUT_SIZE = None             # nominal input size; the report shows the real input shape
    LIBRARY = ""
    TIME_BLOCKS: tuple = ()       # module paths for "where the time goes"; empty: the first level that branches

    def __init__(self, device, weights: str = "pretrained", models_dir: Path = DEFAULT_MODELS_DIR,
                 sam_prompt: str | None = None):
        self.device = device
        self.weights = weights
        self.models_dir = Path(models_dir)
        self.sam_prompt = sam_prompt
        self.weights_source = None
        self.input_shape = None

    # -- what a subclass provides ----------------------------------------------------------
    @abstractmethod
    def load_pretrained(self) -> str:
        """Load released weights; return where they came from."""

    @abstractmethod
    def load_random(self) -> str:
        """Build the released architecture with random weights, offline; return a description."""

    @abstractmethod
    def network(self):
        """The nn.Module that runs: hooked for dissection, counted for parameters."""

    def preprocess(self, image: Image.Image):
        raise NotImplementedError

    def forward(self, inputs):
        raise NotImplementedError

    def postprocess(self, outputs, image: Image.Image):
        raise NotImplementedError

    def input_module(self):
        """The module whose first tensor argument is the network's real input."""
        return self.network()

    def summarize_prediction(self, prediction) -> dict:
        return {}

    def render_prediction(self, image: Image.Image, prediction, path: Path) -> None:
        """Picture of what the model produced on `image` (report section 'What each model saw')."""

    def run_config(self) -> dict:
        return {}

    # -- shared machinery ------------------------------------------------------------------
    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def load(self) -> str:
        import torch
        torch.set_grad_enabled(False)
        self.weights_source = self.load_pretrained() if self.weights == "pretrained" else self.load_random()
        return self.weights_source

    def run_pipeline(self, image: Image.Image):
        """One image through preprocess, forward and postprocess; returns (prediction, phase seconds)."""
        import torch
        t0 = time.perf_counter()
        inputs = self.preprocess(image)
        self.sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            outputs = self.forward(inputs)
        self.sync()
        t2 = time.perf_counter()
        prediction = self.postprocess(outputs, image)
        self.sync()
        t3 = time.perf_counter()
        return prediction, {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": t3 - t2}

    def timed_run(self, image: Image.Image):
        """End-to-end time of one pipeline call, as a pipeline pays it, plus its phases."""
        self.sync()
        start = time.perf_counter()
        prediction, phases = self.run_pipeline(image)
        self.sync()
        return prediction, time.perf_counter() - start, phases

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.network().parameters())

    def compute_dtype(self) -> str | None:
        """The dtype the network computes in: that of its first floating-point parameter."""
        for p in self.network().parameters():
            if p.is_floating_point():
                return str(p.dtype).replace("torch.", "")
        return None

    def progress(self, what: str, through_network: bool = True, detail=None) -> pass_progress:
        """Progress lines of one long pass of this model (see pass_progress); through_network
        hooks the leaves to say how far the pass is, so never on a timed run."""
        if not through_network:
            return pass_progress(None, f"{self.MODEL_NAME} {what}", detail=detail)
        return pass_progress(self.network(), f"{self.MODEL_NAME} {what}", blocks=self.top_level_blocks(),
                             detail=detail)

    def count_flops_and_input(self, image: Image.Image) -> tuple[int, list[int] | None]:
        """FLOPs of one pipeline call (torch's counter: 2 per multiply-add; only the network's
        matmuls, convolutions and attention count) and the shape of the tensor the network received."""
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode
        seen = {}

        def capture(module, args, kwargs):
            if "shape" not in seen:
                tensor, _ = first_tensor((list(args), kwargs))
                if tensor is not None:
                    seen["shape"] = list(tensor.shape)

        handle = self.input_module().register_forward_pre_hook(capture, with_kwargs=True)
        try:
            # The math attention backend, so that the count does not depend on the kernel the
            # device picks: torch's counter has no formula for the CPU flash kernel (attention
            # would count zero there, 36% of Depth Anything V2 Small). A public API, unlike a
            # formula registered for a private op; the extra memory of the N x N scores is
            # paid by this one counting pass only, never by the timed runs.
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, \
                    self.progress("FLOPs pass"):
                self.run_pipeline(image)
        finally:
            handle.remove()
        self.input_shape = seen.get("shape")
        return int(counter.get_total_flops()), self.input_shape

    def dissect_layers(self, image: Image.Image, out_dir: Path, write_files: bool = True) -> dict:
        """Every call of every leaf module in one pass of the same pipeline the timed runs use."""
        hw = tuple(self.input_shape[-2:]) if self.input_shape and len(self.input_shape) == 4 else None
        dissector = LayerDissector(out_dir, input_hw=hw, write_files=write_files)
        log("DISSECT", f"Hooking {len(leaf_modules(self.network()))} leaf modules, one forward pass")
        summary = dissector.run(self.network(), lambda: self.run_pipeline(image),
                                label=f"{self.MODEL_NAME} dissection", blocks=self.top_level_blocks())
        atomic_write_json(out_dir / "layers_metadata.json", dissector.metadata(
            model=self.MODEL_NAME, weights=self.weights_source, input_shape=self.input_shape, **summary))
        summary["records_list"] = dissector.records
        return summary

    def top_level_blocks(self) -> list[tuple[str, object]]:
        """TIME_BLOCKS if set, else the network's first level with more than one child
        (descending through single-child wrappers)."""
        if self.TIME_BLOCKS:
            network = self.network()
            return [(f"{path} ({type(network.get_submodule(path)).__name__})", network.get_submodule(path))
                    for path in self.TIME_BLOCKS]
        prefix, module = "", self.network()
        while True:
            children = list(module.named_children())
            if len(children) != 1:
                break
            prefix, module = f"{prefix}{children[0][0]}.", children[0][1]
        return [(f"{prefix}{name} ({type(child).__name__})", child) for name, child in children] \
            or [(type(module).__name__, module)]

    def profile_time(self, image: Image.Image) -> dict:
        with self.progress("profiled pass (where the time goes)"):
            return TimeBreakdown(self.device).run(self.top_level_blocks(), leaf_modules(self.network()),
                                                  lambda: self.run_pipeline(image))

    def release(self) -> None:
        """Drop every reference to the model so that gc can free it."""
        for attr in list(vars(self)):
            if attr not in ("device", "weights", "models_dir", "sam_prompt", "weights_source", "input_shape"):
                setattr(self, attr, None)


# -- Hugging Face depth models ------------------------------------------------------------
class HFDepthBenchmark(ModelBenchmark):
    """A transformers depth-estimation model with its image processor."""

    TASK = "depth"
    LIBRARY = "transformers"
    HF_REPO = ""                 # hub id of the released checkpoint
    PRETRAINED_KWARGS: dict = {}

    @classmethod
    def model_class(cls):
        raise NotImplementedError

    @classmethod
    def random_config(cls):
        raise NotImplementedError

    @classmethod
    def random_processor(cls):
        raise NotImplementedError

    @classmethod
    def build_random_network(cls):
        return cls.model_class()(cls.random_config())

    def local_folder(self) -> Path:
        """A save_pretrained folder in models/ wins over the hub (machines without a hub)."""
        return self.models_dir / self.HF_REPO.split("/")[-1]

    def _from_pretrained(self, source: str, local_only: bool) -> None:
        from transformers import AutoImageProcessor
        self.processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        # transformers 5 loads in the checkpoint's dtype by default ("auto"), and DepthPro does
        # not cast its inputs to it: state float32, the dtype every model here is measured in.
        import torch
        self.model = self.model_class().from_pretrained(source, local_files_only=local_only, dtype=torch.float32,
                                                        **self.PRETRAINED_KWARGS)

    def load_pretrained(self) -> str:
        folder = self.local_folder()
        source = str(folder) if folder.is_dir() else self.HF_REPO
        fix = (f"Fix: put a save_pretrained() folder at {folder}, or run with --weights random")
        try:  # the local folder or the Hugging Face cache: no network at all
            self._from_pretrained(source, local_only=True)
            where = "local folder" if folder.is_dir() else "Hugging Face cache"
        except (OSError, ValueError) as exc:
            if folder.is_dir():
                raise WeightsError(f"could not load the model folder {folder}: {exception_line(exc)}. Fix: re-save "
                                   "it with save_pretrained(), or remove it to use the hub, or run with --weights random"
                                   ) from exc
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise WeightsError(f"'{self.HF_REPO}' is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                                   f"the download. {fix}") from exc
            self._check_hub_reachable(fix)
            try:  # downloads into the cache, with the library's progress bars
                self._from_pretrained(self.HF_REPO, local_only=False)
            except (OSError, ValueError) as exc2:
                raise WeightsError(f"could not download '{self.HF_REPO}': {exception_line(exc2)}. {fix}") from exc2
            where = "downloaded from the Hugging Face hub"
        self.model.to(self.device).eval()
        return f"pretrained ({source}, {where})"

    def _check_hub_reachable(self, fix: str) -> None:
        """One bounded request, so that a machine without network fails in seconds rather than
        after the libraries' minute or more of retries."""
        from huggingface_hub import model_info
        try:
            model_info(self.HF_REPO, timeout=15)
        except Exception as exc:
            raise WeightsError(f"'{self.HF_REPO}' is not cached and the hub cannot be reached "
                               f"({exception_line(exc)}). {fix}") from exc

    def load_random(self) -> str:
        self.processor = self.random_processor()
        self.model = self.build_random_network().to(self.device).eval()
        return f"random (released {self.HF_REPO} architecture, seed-initialised)"

    def network(self):
        return self.model

    def preprocess(self, image):
        return self.processor(images=image, return_tensors="pt").to(self.device)

    def forward(self, inputs):
        return self.model(**inputs)

    def postprocess(self, outputs, image):
        return self.processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])[0]

    def summarize_prediction(self, prediction) -> dict:
        depth = prediction["predicted_depth"].float()
        out = {"depth_" + k: v for k, v in zip(
            ("min", "max", "mean", "median", "std"),
            [float(depth.min()), float(depth.max()), float(depth.mean()), float(depth.median()), float(depth.std())])}
        if prediction.get("field_of_view") is not None:
            out["field_of_view_deg"] = float(prediction["field_of_view"])
        return out

    def render_prediction(self, image, prediction, path):
        import matplotlib.pyplot as plt
        summary = self.summarize_prediction(prediction)
        depth = prediction["predicted_depth"].float().cpu().numpy()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
        axes[0].imshow(image)
        axes[0].set_title("input")
        shown = axes[1].imshow(depth, cmap="Spectral_r")
        axes[1].set_title("predicted depth (" + ("metres" if "field_of_view_deg" in summary else "relative") + ")")
        for ax in axes:
            ax.axis("off")
        fig.colorbar(shown, ax=axes[1], shrink=0.85)
        text = "  ".join(f"{k.replace('depth_', '')}={v:.4g}" for k, v in summary.items())
        fig.suptitle(f"{self.MODEL_NAME}: {text}", fontsize=9)
        fig.savefig(path, dpi=80)
        plt.close(fig)


class DepthProBenchmark(HFDepthBenchmark):
    MODEL_NAME = "DepthPro"
    CLI_NAME = "depthpro"
    DESCRIPTION = "Apple DepthPro: metric depth and field of view, three DINOv2-L encoders (transformers)"
    HF_REPO = "apple/DepthPro-hf"
    INPUT_SIZE = 1536             # the processor resizes every image to 1536x1536
    PRETRAINED_KWARGS = {"use_fov_model": True}
    TIME_BLOCKS = ("depth_pro.encoder.patch_encoder", "depth_pro.encoder.image_encoder", "depth_pro.neck",
                   "fusion_stage", "head", "fov_model")

    @classmethod
    def model_class(cls):
        from transformers import DepthProForDepthEstimation
        return DepthProForDepthEstimation

    @classmethod
    def random_config(cls):
        from transformers import DepthProConfig, Dinov2Config
        encoder = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16, image_size=384)
        return DepthProConfig(
            patch_model_config=Dinov2Config(**encoder), image_model_config=Dinov2Config(**encoder),
            fov_model_config=Dinov2Config(**encoder), fusion_hidden_size=256, intermediate_hook_ids=[11, 5],
            intermediate_feature_dims=[256, 256], scaled_images_ratios=[0.25, 0.5, 1],
            scaled_images_overlap_ratios=[0.0, 0.5, 0.25], scaled_images_feature_dims=[1024, 1024, 512],
            use_fov_model=True)

    @classmethod
    def random_processor(cls):
        from transformers import DepthProImageProcessor
        return DepthProImageProcessor(size={"height": 1536, "width": 1536}, do_rescale=True, rescale_factor=1 / 255,
                                      do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)


class DepthAnythingV2Benchmark(HFDepthBenchmark):
    """Depth Anything V2 (relative depth): DINOv2 backbone and DPT head, from transformers."""

    INPUT_SIZE = 518              # shorter side, aspect ratio kept, multiple of 14
    HIDDEN_SIZE = LAYERS = HEADS = FUSION_SIZE = 0
    OUT_INDICES: list = []
    NECK_SIZES: list = []

    @classmethod
    def model_class(cls):
        from transformers import DepthAnythingForDepthEstimation
        return DepthAnythingForDepthEstimation

    @classmethod
    def random_config(cls):
        from transformers import DepthAnythingConfig, Dinov2Config
        backbone = Dinov2Config(
            hidden_size=cls.HIDDEN_SIZE, num_hidden_layers=cls.LAYERS, num_attention_heads=cls.HEADS,
            patch_size=14, image_size=518, out_features=[f"stage{i}" for i in cls.OUT_INDICES],
            apply_layernorm=True, reshape_hidden_states=False)
        return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=cls.HIDDEN_SIZE,
                                   fusion_hidden_size=cls.FUSION_SIZE, neck_hidden_sizes=cls.NECK_SIZES,
                                   depth_estimation_type="relative")

    @classmethod
    def random_processor(cls):
        from transformers import DPTImageProcessor
        return DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                 resample=Image.BICUBIC, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                 image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False)


class DepthAnythingV2SmallBenchmark(DepthAnythingV2Benchmark):
    MODEL_NAME = "DepthAnythingV2Small"
    CLI_NAME = "depth-anything-v2-small"
    DESCRIPTION = "Depth Anything V2 Small: relative depth, ViT-S/14 (transformers)"
    HF_REPO = "depth-anything/Depth-Anything-V2-Small-hf"
    HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 384, 12, 6, [3, 6, 9, 12]
    FUSION_SIZE, NECK_SIZES = 64, [48, 96, 192, 384]


class DepthAnythingV2BaseBenchmark(DepthAnythingV2Benchmark):
    MODEL_NAME = "DepthAnythingV2Base"
    CLI_NAME = "depth-anything-v2-base"
    DESCRIPTION = "Depth Anything V2 Base: relative depth, ViT-B/14 (transformers)"
    HF_REPO = "depth-anything/Depth-Anything-V2-Base-hf"
    HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 768, 12, 12, [3, 6, 9, 12]
    FUSION_SIZE, NECK_SIZES = 128, [96, 192, 384, 768]


class DepthAnythingV2LargeBenchmark(DepthAnythingV2Benchmark):
    MODEL_NAME = "DepthAnythingV2Large"
    CLI_NAME = "depth-anything-v2-large"
    DESCRIPTION = "Depth Anything V2 Large: relative depth, ViT-L/14 (transformers)"
    HF_REPO = "depth-anything/Depth-Anything-V2-Large-hf"
    HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 1024, 24, 16, [5, 12, 18, 24]
    FUSION_SIZE, NECK_SIZES = 256, [256, 512, 1024, 1024]


# -- Ultralytics models -------------------------------------------------------------------
class UltralyticsBenchmark(ModelBenchmark):
    """An ultralytics model driven through its own predict(), which reports the phases."""

    LIBRARY = "ultralytics"
    WEIGHTS_FILE = ""             # file in models/; ultralytics downloads it there if missing
    INPUT_SIZE = 640

    def weights_path(self) -> Path:
        return self.models_dir / self.WEIGHTS_FILE

    def load_pretrained(self) -> str:
        path = self.weights_path()
        if not path.exists() and os.environ.get("YOLO_OFFLINE") == "1":
            raise WeightsError(f"weight file {path} is missing and YOLO_OFFLINE=1 forbids the download. "
                               f"Fix: put {self.WEIGHTS_FILE} there, or run with --weights random")
        if not path.exists():
            log("LOAD", f"{path} not found; ultralytics will download it")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.ul_model = self.ultralytics_class()(str(path))
        except Exception as exc:
            broken = path.exists()
            fix = (f"delete {path} to re-download it, or run with --weights random" if broken else
                   f"put {self.WEIGHTS_FILE} at {path}, or run with --weights random")
            what = "could not be read (truncated or corrupt?)" if broken else "is missing and could not be downloaded"
            raise WeightsError(f"weight file {path} {what}: {exception_line(exc)}. Fix: {fix}") from exc
        return f"pretrained ({path})"

    @staticmethod
    def ultralytics_class():
        from ultralytics import YOLO
        return YOLO

    def load(self) -> str:
        source = super().load()
        self.prepare_predictor()
        return source

    def prepare_predictor(self) -> None:
        """Set ultralytics' predictor up in the load phase, as its first predict() would: deep
        copy, fuse and upload the weights (SAM: upload), and on a GPU AutoBackend's warm-up
        forward and NMS. Left to the first predict(), all of it would fall in the cold start of
        the ultralytics models only, while the transformers models upload in load()."""
        blank = Image.new("RGB", (self.INPUT_SIZE, self.INPUT_SIZE))
        # predict(stream=True) builds the predictor exactly as the timed predict() calls will
        # (same arguments, so they reuse it) and returns a generator: never iterated, no image runs.
        pending = self.ul_model.predict(blank, stream=True, verbose=False, device=str(self.device),
                                        **self.predict_kwargs(blank))
        pending.close()
        predictor = self.ul_model.predictor
        if not predictor.done_warmup:  # the library warms up on its first image; a dummy of the nominal size here
            predictor.model.warmup(imgsz=(1, 3, self.INPUT_SIZE, self.INPUT_SIZE))
            predictor.done_warmup = True

    def predict_kwargs(self, image) -> dict:
        return {"imgsz": self.INPUT_SIZE}

    def run_pipeline(self, image):
        results = self.ul_model.predict(image, verbose=False, device=str(self.device), **self.predict_kwargs(image))
        speed = results[0].speed  # milliseconds, measured by ultralytics with CUDA synchronisation
        return results[0], {"preprocess": speed["preprocess"] / 1000, "forward": speed["inference"] / 1000,
                            "postprocess": speed["postprocess"] / 1000}

    def summarize_prediction(self, prediction) -> dict:
        out = {}
        if prediction.boxes is not None:
            out["detections"] = len(prediction.boxes)
            if len(prediction.boxes):
                names = prediction.names
                classes = [names[int(c)] for c in prediction.boxes.cls.tolist()]
                out["classes"] = {c: classes.count(c) for c in sorted(set(classes))}
        if prediction.masks is not None:
            out["masks"] = len(prediction.masks)
        if prediction.keypoints is not None:
            out["people_with_keypoints"] = len(prediction.keypoints)
        return out

    def render_prediction(self, image, prediction, path):
        # pil=False draws labels with OpenCV: no font file, so nothing is fetched from the network.
        plotted = prediction.plot(pil=False)
        Image.fromarray(plotted[..., ::-1]).save(path)


class YOLOBenchmark(UltralyticsBenchmark):
    ARCH_YAML = ""                # the yaml shipped with ultralytics: the random architecture

    @classmethod
    def build_random_network(cls):
        from ultralytics import YOLO
        return YOLO(cls.ARCH_YAML, verbose=False).model.fuse()

    def load_random(self) -> str:
        from ultralytics import YOLO
        self.ul_model = YOLO(self.ARCH_YAML, verbose=False)
        return f"random ({self.ARCH_YAML} from ultralytics, seed-initialised)"

    def network(self):
        # The predictor (set up in load()) runs a fused copy of the model: hook and count that one.
        predictor = getattr(self.ul_model, "predictor", None)
        return predictor.model.model if predictor is not None and predictor.model is not None else self.ul_model.model


class YOLO11nDetectBenchmark(YOLOBenchmark):
    MODEL_NAME = "YOLO11nDetect"
    CLI_NAME = "yolo11n-detect"
    DESCRIPTION = "YOLO11n object detection, 80 COCO classes (ultralytics)"
    TASK = "detect"
    WEIGHTS_FILE, ARCH_YAML = "yolo11n.pt", "yolo11n.yaml"


class YOLO11nSegmentBenchmark(YOLOBenchmark):
    MODEL_NAME = "YOLO11nSegment"
    CLI_NAME = "yolo11n-segment"
    DESCRIPTION = "YOLO11n instance segmentation (ultralytics)"
    TASK = "segment"
    WEIGHTS_FILE, ARCH_YAML = "yolo11n-seg.pt", "yolo11n-seg.yaml"


class YOLO11nPoseBenchmark(YOLOBenchmark):
    MODEL_NAME = "YOLO11nPose"
    CLI_NAME = "yolo11n-pose"
    DESCRIPTION = "YOLO11n human pose, 17 keypoints (ultralytics)"
    TASK = "pose"
    WEIGHTS_FILE, ARCH_YAML = "yolo11n-pose.pt", "yolo11n-pose.yaml"


class MobileSAMBenchmark(UltralyticsBenchmark):
    MODEL_NAME = "MobileSAM"
    CLI_NAME = "mobilesam"
    DESCRIPTION = "MobileSAM promptable segmentation, TinyViT encoder (ultralytics SAM)"
    TASK = "sam"
    WEIGHTS_FILE = "mobile_sam.pt"
    INPUT_SIZE = 1024
    # "everything": a grid of point prompts over the whole image (minutes on a CPU);
    # "box": one box prompt, the usual interactive use (seconds). --sam-prompt overrides.
    SAM_PROMPT = "everything"
    BOX_FRACTION = (0.25, 0.25, 0.75, 0.75)   # the box prompt, as fractions of width and height

    @staticmethod
    def ultralytics_class():
        from ultralytics import SAM
        return SAM

    @classmethod
    def build_random_network(cls):
        from ultralytics.models.sam.build import build_mobile_sam
        return build_mobile_sam(None)

    def load_random(self) -> str:
        from ultralytics import SAM
        builder = self.build_random_network

        class RandomMobileSAM(SAM):
            def _load(self, weights, task=None):
                self.model = builder()

        self.ul_model = RandomMobileSAM(self.WEIGHTS_FILE)  # the name only selects MobileSAM; nothing is read
        return "random (ultralytics build_mobile_sam, seed-initialised)"

    def prompt(self) -> str:
        return self.sam_prompt or self.SAM_PROMPT

    def network(self):
        return self.ul_model.model

    def input_module(self):
        return self.ul_model.model.image_encoder

    def predict_kwargs(self, image) -> dict:
        if self.prompt() != "box":
            return {"imgsz": self.INPUT_SIZE}
        x0, y0, x1, y1 = self.BOX_FRACTION
        return {"imgsz": self.INPUT_SIZE,
                "bboxes": [[x0 * image.width, y0 * image.height, x1 * image.width, y1 * image.height]]}

    def render_prediction(self, image, prediction, path):
        super().render_prediction(image, prediction, path)
        if self.prompt() == "box":
            from PIL import ImageDraw
            with Image.open(path) as drawn:
                drawn = drawn.convert("RGB")
            box = self.predict_kwargs(image)["bboxes"][0]
            ImageDraw.Draw(drawn).rectangle(box, outline=(255, 255, 255), width=max(2, image.width // 200))
            drawn.save(path)

    def run_config(self) -> dict:
        config = {"sam_prompt": self.prompt()}
        if self.prompt() == "box":
            config["box_fraction_xyxy"] = list(self.BOX_FRACTION)
        return config


MODEL_CLASSES: list[type[ModelBenchmark]] = [
    DepthProBenchmark,
    DepthAnythingV2SmallBenchmark,
    DepthAnythingV2BaseBenchmark,
    DepthAnythingV2LargeBenchmark,
    YOLO11nDetectBenchmark,
    YOLO11nSegmentBenchmark,
    YOLO11nPoseBenchmark,
    MobileSAMBenchmark,
]
MODELS_BY_CLI_NAME = {cls.CLI_NAME: cls for cls in MODEL_CLASSES}


# =========================================================================================
# Runner: one model's pass (load, timed runs, FLOPs, output, time breakdown, dissection)
# =========================================================================================
class RunContext:
    """What every model's pass needs: the settings, the paths, and the results so far."""

    def __init__(self, args, device, images, image_source, run_id, paths, started: datetime | None = None):
        self.args = args
        self.device = device
        self.images = images
        self.image_source = image_source
        self.run_id = run_id
        self.results_dir, self.viz_dir, self.assets_dir = paths
        self.started = started or datetime.now()   # main() passes its own start: start-up is overhead too
        self.results: list[dict] = []
        self.status = "running"
        self.system = system_info(device)

    def __getstate__(self):
        # A worker gets the settings and paths, not the other models' results (nor --devices' stop event).
        return {**vars(self), "results": [], "stop_event": None}


def new_result(cls, ctx) -> dict:
    return {"model": cls.MODEL_NAME, "cli_name": cls.CLI_NAME, "task": cls.TASK, "library": cls.LIBRARY,
            "status": "running", "phase": "setup", "weights": ctx.args.weights, "weights_source": None,
            "nominal_input_size": cls.INPUT_SIZE, "runs": [], "phase_seconds": {}}


class PhaseTimer:
    """Names the phase a model is in (a failure reports it) and adds up its wall time."""

    def __init__(self, result: dict, publish):
        self.result = result
        self.publish = publish

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.result["phase"] = name
        self.publish(self.result)
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.result.setdefault("phase_seconds", {})
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def benchmark_model(cls, ctx: RunContext, result: dict, publish=lambda result: None) -> None:
    """Load, time, measure, dissect and clean up one model, filling `result` as it goes so that
    whatever was measured survives a failure in a later phase. A failure is recorded in `result`
    (status 'failed', error) after the cleanup; only interrupts propagate. `publish` receives
    the record at every phase (a worker sends it to the parent)."""
    phase = PhaseTimer(result, publish)
    if ctx.device.type == "cuda":
        result["memory"] = {"cuda_context_bytes": cuda_context_bytes(ctx.device)}
    tracker = MemoryTracker(ctx.device)
    tracker.reset_peak()  # a model that fails while loading reports its own peak, not an earlier one's
    memory = result.setdefault("memory", {})
    memory["cpu_rss_before_load_bytes"] = tracker.rss()
    if ctx.device.type == "cuda":
        memory["cuda_allocated_before_load_bytes"] = tracker.cuda_allocated()
    log("MEMORY", f"Before load: {format_bytes(memory['cpu_rss_before_load_bytes'])} resident")

    seed_everything(ctx.args.seed)
    bench = cls(ctx.device, weights=ctx.args.weights, models_dir=ctx.args.models_dir, sam_prompt=ctx.args.sam_prompt)
    result["config"] = bench.run_config()
    result["allocator"] = getattr(ctx.args, "allocator", None)
    try:
        measure_model(bench, ctx, result, tracker, phase)
        result["status"] = "complete"
    except Exception as exc:
        record_failure(result, exc, tracker)
        # Leaving this block drops the exception and its frames, which hold the inputs and
        # outputs of the failing call: the cleanup below must not see them alive.
    finally:
        tracker.stop_sampling()
        result["phase_reached"] = result["phase"]
        with phase("cleanup"):
            log("CLEANUP", "Releasing the model and clearing caches...")
            bench.release()
            del bench
            release_error = free_cached_memory(ctx.device)
        if release_error:
            memory["cleanup_error"] = release_error
    memory["cpu_rss_after_cleanup_bytes"] = tracker.rss()
    if ctx.device.type == "cuda" and not release_error:
        memory["cuda_allocated_after_cleanup_bytes"] = tracker.cuda_allocated()
    log("MEMORY", f"After cleanup: {format_bytes(memory['cpu_rss_after_cleanup_bytes'])} resident")
    result["phase"] = None
    publish(result)


def measure_model(bench, ctx: RunContext, result: dict, tracker, phase) -> None:
    """The measured phases. Everything they hold (images, predictions) is local here, so it is
    gone when this returns or raises, before the cleanup reads the memory figures."""
    import torch
    args, memory = ctx.args, result["memory"]
    with phase("load"):
        log("LOAD", f"Loading {bench.MODEL_NAME} ({args.weights} weights) to {ctx.device}...")
        start = time.perf_counter()
        with bench.progress("load", through_network=False):
            result["weights_source"] = bench.load()
        bench.sync()
        result["load_seconds"] = time.perf_counter() - start
    result["dtype"] = bench.compute_dtype()
    memory["peak_during_load"] = tracker.peak()
    memory["cpu_rss_after_load_bytes"] = tracker.rss()
    if ctx.device.type == "cuda":
        memory["cuda_allocated_after_load_bytes"] = tracker.cuda_allocated()
    log("LOAD", f"Loaded in {result['load_seconds']:.2f}s: {result['weights_source']}")
    log("MEMORY", f"After load: {format_bytes(memory['cpu_rss_after_load_bytes'])} resident "
                  f"(+{format_bytes(memory['cpu_rss_after_load_bytes'] - memory['cpu_rss_before_load_bytes'])})"
        + (f", CUDA allocated {format_bytes(memory['cuda_allocated_after_load_bytes'])}"
           if ctx.device.type == "cuda" else ""))

    tracker.reset_peak()
    total = 1 + (args.warmup + args.runs) * len(ctx.images)
    first_image = load_rgb(ctx.images[0])

    def run(path, image, kind):
        prediction, seconds, phases = bench.timed_run(image)
        result["runs"].append({"image": path.name, "image_size": [image.width, image.height], "kind": kind,
                               "cold": kind == "cold", "total_s": seconds,
                               **{f"{k}_s": v for k, v in phases.items()}})
        log(f"INFER {len(result['runs'])}/{total}",
            f"{path.name} | {seconds * 1000:.1f} ms end to end, forward {phases['forward'] * 1000:.1f} ms"
            + {"cold": " (cold start)", "warmup": " (warm-up)", "timed": ""}[kind])
        return prediction

    # One progress reporter a phase, not a run: no thread is started between two timed runs.
    def runs_done():
        return f"run {len(result['runs']) + 1} of {total}"

    with phase("cold_start"), bench.progress("cold start", through_network=False, detail=runs_done):
        first_prediction = run(ctx.images[0], first_image, "cold")
    for kind, repeats in (("warmup", args.warmup), ("timed", args.runs)):
        with phase(kind), bench.progress(f"{kind} runs", through_network=False, detail=runs_done):
            for path in ctx.images:
                image = first_image if path == ctx.images[0] else load_rgb(path)
                for _ in range(repeats):
                    run(path, image, kind)
    memory.update(tracker.peak())
    result["torch_threads"] = torch.get_num_threads()
    summarize_latency(result)
    set_headline_memory(result, ctx.device)
    e2e = result["latency_end_to_end"]
    log("STATS", f"Cold start {result['cold_start']['total_s'] * 1000:.1f} ms; timed end to end over "
                 f"{e2e['n']} runs: median {e2e['median'] * 1000:.1f} ms {format_interval(e2e)}, "
                 f"p90 {e2e['p90'] * 1000:.1f} ms, {result['fps']:.2f} FPS")
    log("MEMORY", f"Peak while running: {format_bytes(memory['peak_bytes'])} ({memory['peak_kind']})")

    with phase("flops"):
        result["parameters"] = bench.count_parameters()
        flops, shape = bench.count_flops_and_input(first_image)
        result["flops"], result["gflops"], result["input_shape"] = flops, flops / 1e9, shape
    log("STATS", f"{result['parameters']:,} parameters, {result['gflops']:.2f} GFLOPs at input {shape}")

    with phase("output"):
        result["prediction_summary"] = bench.summarize_prediction(first_prediction)
        picture = ctx.assets_dir / f"{bench.MODEL_NAME}_output.png"
        with bench.progress("output picture", through_network=False):
            bench.render_prediction(first_image, first_prediction, picture)
        if picture.exists():
            result["output_image"] = str(picture.relative_to(ctx.results_dir))
    del first_prediction

    with phase("time_breakdown"):
        result["time_breakdown"] = bench.profile_time(first_image)

    with phase("dissection"):
        folder = ctx.viz_dir / bench.MODEL_NAME
        log("DISSECT", f"Starting layer dissection on {ctx.images[0].name}"
            + ("" if args.dissect else " (statistics only: --no-dissect writes no files)"))
        summary = bench.dissect_layers(first_image, folder, write_files=args.dissect)
        records = summary.pop("records_list")
        result["dissection"] = {**summary, "folder": str(folder), **dissection_digest(records)}
    log("DISSECT", f"{summary['records']} records from {summary['leaf_modules']} leaf modules, "
                   f"{summary['png_files']} PNG and {summary['npy_files']} NPY files in {summary['seconds']:.1f}s "
                   f"-> {folder}")
    if summary["writer_errors"]:
        log("WARNING", f"{len(summary['writer_errors'])} layer files failed to write: {summary['writer_errors'][0]}")


def cuda_context_bytes(device) -> int | None:
    """Device memory the CUDA context itself takes (kernels, cuBLAS/cuDNN handles are extra):
    used memory on the device (NVML, which creates no context) before and after creating it. In
    a fresh worker this is the first CUDA call; None when NVML is unavailable or the context
    already exists."""
    import torch
    try:
        if torch.cuda.is_initialized():
            return None
        before = torch.cuda.device_memory_used(device)
        torch.cuda.init()
        torch.zeros(1, device=device)  # the context is created lazily, on the first allocation
        torch.cuda.synchronize(device)
        return torch.cuda.device_memory_used(device) - before
    except Exception:
        return None


def record_failure(result: dict, exc: Exception, tracker) -> None:
    """The error, its phase and the memory figures at that moment, as plain data (no reference
    to the exception survives)."""
    phase = result["phase"]
    result["status"] = "failed"
    result["error"] = {"type": type(exc).__name__, "message": str(exc), "phase": phase}
    result["memory"]["at_failure"] = tracker.safe_peak()
    log("ERROR", f"{result['model']} failed during {phase}: {exception_line(exc)}")
    if not isinstance(exc, (WeightsError, UsageError)):
        result["error"]["traceback"] = traceback.format_exc()
        traceback.print_exc()


def free_cached_memory(device) -> str | None:
    """gc, then the CUDA caching allocator's free blocks back to the driver (an error as text)."""
    gc.collect()
    return safe_cuda_cleanup(device)


def summarize_latency(result: dict) -> None:
    """Headline statistics from the timed runs only; the cold start and warm-up runs stay in
    result['runs'], marked, and in the per-image table."""
    runs = result["runs"]
    result["cold_start"] = runs[0]
    timed = [r for r in runs if r["kind"] == "timed"]
    result["latency_end_to_end"] = latency_stats([r["total_s"] for r in timed])
    result["latency_forward"] = latency_stats([r["forward_s"] for r in timed])
    result["latency_phases_median"] = {p: (float(np.median([r[f"{p}_s"] for r in timed])) if timed else None)
                                       for p in ("preprocess", "forward", "postprocess")}
    median = result["latency_end_to_end"]["median"]
    result["fps"] = 1.0 / median if median else None
    # Per image: the first run it got (cold start or first warm-up: a new input shape builds new
    # kernels on CPU and GPU alike), its warm-up runs, and the statistics of its timed runs.
    per_image = {}
    for name in dict.fromkeys(r["image"] for r in runs):
        mine = [r for r in runs if r["image"] == name]
        mine_timed = [r for r in mine if r in timed]
        per_image[name] = {"image_size": mine[0]["image_size"], "first_run_s": mine[0]["total_s"],
                           "first_is_cold_start": mine[0]["cold"],
                           "warmup_s": [r["total_s"] for r in mine if r.get("kind") == "warmup"],
                           "steady": latency_stats([r["total_s"] for r in mine_timed])}
    result["latency_per_image"] = per_image


def set_headline_memory(result: dict, device) -> None:
    memory = result["memory"]
    if device.type == "cuda":
        memory["peak_bytes"], memory["peak_kind"] = memory["cuda_peak_allocated_bytes"], "CUDA peak allocated"
    else:
        memory["peak_bytes"], memory["peak_kind"] = memory["cpu_peak_rss_bytes"], "CPU peak resident set (process)"
    # The model's own share: its peak over what its process held just before it loaded.
    baseline = memory.get("cuda_allocated_before_load_bytes", memory["cpu_rss_before_load_bytes"])
    memory["peak_over_baseline_bytes"] = memory["peak_bytes"] - baseline


def dissection_digest(records: list[dict]) -> dict:
    """What the report shows of a dissection: counts by type, the extremes, a profile across depth."""
    types: dict[str, int] = {}
    for r in records:
        types[r["type"]] = types.get(r["type"], 0) + 1
    with_stats = [r for r in records if r.get("min") is not None]

    def brief(r, key, value):
        return {"index": r["index"], "name": r["name"], "call": r["call"], "type": r["type"], key: value,
                "files": r.get("files", [])}

    widest = sorted(with_stats, key=lambda r: -(r["max"] - r["min"]))[:5]
    zeros = sorted(with_stats, key=lambda r: -r["zero_fraction"])[:5]
    return {
        "type_counts": dict(sorted(types.items(), key=lambda kv: -kv[1])),
        "widest_range": [brief(r, "range", [r["min"], r["max"]]) for r in widest],
        "most_zeros": [brief(r, "zero_fraction", r["zero_fraction"]) for r in zeros],
        "nan_records": sum(1 for r in records if r.get("nan_count")),
        "inf_records": sum(1 for r in records if r.get("inf_count")),
        "profile": {"index": [r["index"] for r in with_stats], "std": [r["std"] for r in with_stats],
                    "absmax": [max(abs(r["min"]), abs(r["max"])) for r in with_stats]},
    }


# =========================================================================================
# Worker processes: one fresh process per model, forked from a server that imported the libraries
# =========================================================================================
# Imported once by the fork server, so a worker starts in a fraction of a second. Nothing here
# may touch CUDA or run a parallel torch op: a forked child cannot use either.
WORKER_PRELOAD = ["torch", "torchvision", "cv2", "matplotlib.pyplot", "transformers", "ultralytics",
                  "ultralytics.models.sam", "transformers.models.depth_anything.modeling_depth_anything",
                  "transformers.models.depth_pro.modeling_depth_pro", "transformers.models.dpt.image_processing_dpt",
                  "transformers.models.depth_pro.image_processing_depth_pro"]
WORKER_LOG_TAIL_LINES = 25          # lines of a dead worker's output kept in the error record
WORKER_STOP_GRACE_SEC = 5.0         # SIGTERM, then this long, then SIGKILL
WORKER_POLL_SEC = 0.2


def keep_freed_memory() -> dict | None:
    """Make glibc keep freed memory instead of returning it to the kernel after every run.

    Measured (yolo11n, CPU): a young process pays thousands of page faults per run, memory its
    allocator gave back after the previous run and maps again, while a process in which a model
    already ran pays none; that made whichever model ran first in a process about 1.5x slower
    through all its runs. Fixed thresholds (M_MMAP_THRESHOLD 32 MiB, the most glibc allows;
    M_TRIM_THRESHOLD 1 GiB) give every worker the steady state at once. Larger blocks are still
    mapped per allocation, as in any process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    m_trim_threshold, m_mmap_threshold = -1, -3
    settings = {"mmap_threshold_bytes": 32 << 20, "trim_threshold_bytes": 1 << 30}
    ok = mallopt(m_mmap_threshold, settings["mmap_threshold_bytes"]) and \
        mallopt(m_trim_threshold, settings["trim_threshold_bytes"])
    return settings if ok else None


def start_worker_server() -> None:
    """Start the fork server now, so that it imports the libraries while the run gets ready."""
    import multiprocessing
    from multiprocessing import forkserver
    if str(SCRIPT_DIR) not in sys.path:  # the worker imports this module by name
        sys.path.insert(0, str(SCRIPT_DIR))
    multiprocessing.get_context("forkserver").set_forkserver_preload(WORKER_PRELOAD)
    forkserver.ensure_running()


def worker_main(cls, ctx: RunContext, conn, log_path: str) -> None:
    """Runs in the worker process: one model, its output into log_path (the parent relays it),
    its result record to the parent at every phase."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # native libraries' output and crash reports land in the log too
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    conn.send(("started", time.time()))
    ctx.args.allocator = keep_freed_memory()
    configure_threads(ctx.args.threads)
    result = new_result(cls, ctx)
    benchmark_model(cls, ctx, result, publish=lambda r: conn.send(("update", r)))
    conn.send(("done", result))
    conn.close()


class LogRelay:
    """Copies a worker's new output lines to this process's stdout, keeping the last ones."""

    def __init__(self, path: Path, prefix: str = ""):
        self.path = path
        self.prefix = prefix  # with --devices, several workers print at once: each line names its model
        self.offset = 0
        self.partial = ""
        self.tail: collections.deque = collections.deque(maxlen=WORKER_LOG_TAIL_LINES)

    def pump(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        lines = (self.partial + data.decode("utf-8", "replace")).split("\n")
        self.partial = "" if final else lines.pop()
        for line in lines:
            if line or not final:
                print(self.prefix + line)
                self.tail.append(line)
        sys.stdout.flush()


def stop_worker(process, finished: bool) -> None:
    """Let a worker that sent its result exit by itself; stop any other (SIGTERM, then SIGKILL)."""
    if finished:
        process.join(WORKER_STOP_GRACE_SEC)
    if process.is_alive():
        process.terminate()
        process.join(WORKER_STOP_GRACE_SEC)
    if process.is_alive():
        process.kill()
    process.join()


def run_in_worker(cls, ctx: RunContext, result: dict) -> None:
    """Run one model in a fresh worker process and fill `result` from its reports. A worker that
    dies (any signal, the OOM killer, an exit without a result) or overruns --model-timeout gives
    a failed record with what it had measured, the phase it was in and its last output lines."""
    import multiprocessing
    mp = multiprocessing.get_context("forkserver")
    log_path = ctx.assets_dir / f"{cls.MODEL_NAME}_worker.log"
    receive, send = mp.Pipe(duplex=False)
    process = mp.Process(target=worker_main, args=(cls, ctx, send, str(log_path)), name=f"worker-{cls.CLI_NAME}",
                         daemon=True)
    started = time.time()
    process.start()
    send.close()
    worker = {"pid": process.pid, "exit_code": None, "signal": None, "log": str(log_path.relative_to(ctx.results_dir))}
    result["worker"] = worker
    relay = LogRelay(log_path, prefix=getattr(ctx, "log_prefix", ""))
    stop = getattr(ctx, "stop_event", None)  # set by the main thread when --devices runs this in a thread
    deadline = None  # --model-timeout counts from the worker's start, not the fork server's imports
    finished = timed_out = False
    last_hwm = None
    try:
        while not finished:
            relay.pump()
            if stop is not None and stop.is_set():
                raise RunInterrupted(stop.signum)
            last_hwm = MemoryTracker._read_hwm(process.pid) or last_hwm
            if receive.poll(WORKER_POLL_SEC):
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    break  # the worker is gone without a last word
                if kind == "started":
                    result["phase_seconds"]["worker_start"] = payload - started
                    if ctx.args.model_timeout:
                        deadline = time.time() + ctx.args.model_timeout
                else:
                    payload["phase_seconds"] = {**payload.get("phase_seconds", {}),
                                                "worker_start": result["phase_seconds"].get("worker_start")}
                    result.clear()
                    result.update(payload, worker=worker)
                    finished = kind == "done"
            elif not process.is_alive() and not receive.poll():
                break
            if deadline and time.time() > deadline and not finished:
                timed_out = True
                break
    finally:  # also on an interrupt: no worker outlives the run
        stop_worker(process, finished)
        relay.pump(final=True)
        receive.close()
        if not finished:
            result["phase_reached"] = result.get("phase") or "setup"
    worker["exit_code"] = process.exitcode
    if process.exitcode is not None and process.exitcode < 0:
        worker["signal"] = signal.Signals(-process.exitcode).name
    if finished:
        return
    phase = result["phase_reached"]
    memory = result.setdefault("memory", {})
    memory.setdefault("at_failure", {"cpu_peak_rss_bytes": last_hwm, "source": "worker VmHWM, read by the parent"})
    if timed_out:
        result["status"] = "timeout"
        message = f"killed after --model-timeout {ctx.args.model_timeout:g} s, during {phase}"
        error_type = "Timeout"
    else:
        result["status"] = "failed"
        error_type = "WorkerDied"
        if worker["signal"]:
            message = f"the worker process was killed by {worker['signal']} during {phase}" + (
                " (the kernel's OOM killer sends SIGKILL when memory runs out)" if worker["signal"] == "SIGKILL" else "")
        else:
            message = f"the worker process exited with code {process.exitcode} during {phase} without a result"
    result["error"] = {"type": error_type, "message": message, "phase": phase, "output_tail": list(relay.tail)}
    log("ERROR", f"{cls.MODEL_NAME}: {message}. Its output: {log_path}")


# =========================================================================================
# Runner: all models in order
# =========================================================================================
def run_all(classes, ctx: RunContext) -> int:
    """Run the models in order, each in its own worker process unless --isolation none. Fail
    fast unless --keep-going; results are written after every model, so a failure or an
    interrupt (wherever it lands) loses nothing measured."""
    if getattr(ctx.args, "devices", None):
        return run_on_devices(classes, ctx)
    exit_code = EXIT_OK
    try:
        for position, cls in enumerate(classes, 1):
            print("=" * 80)
            print(f"[{position}/{len(classes)}] {cls.MODEL_NAME}")
            print("=" * 80, flush=True)
            result = new_result(cls, ctx)
            ctx.results.append(result)
            if ctx.args.isolation == "process":
                run_in_worker(cls, ctx, result)
            else:
                benchmark_model(cls, ctx, result)
            if result["status"] == "complete":
                log("COMPLETE", f"{cls.MODEL_NAME} finished")
            else:
                exit_code = EXIT_FAILED
                if not ctx.args.keep_going:
                    log("ERROR", "Stopping (fail fast). Use --keep-going to continue with the next model.")
                    ctx.status = "incomplete"
                    mark_not_run(classes[position:], ctx)
                    break
            with signals_deferred():
                write_reports(ctx)
        else:
            ctx.status = "complete" if exit_code == EXIT_OK else "incomplete"
    except (RunInterrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
        ctx.status = "interrupted"
        current = next((r for r in ctx.results if r["status"] == "running"), None)
        if current is not None:
            current["status"] = "interrupted"
        where = f"during {current['model']} ({current.get('phase_reached') or current['phase']})" if current \
            else "between models"
        log("ERROR", f"Interrupted by {signal.Signals(signum).name} {where}; writing the results of finished models")
        done = {r["cli_name"] for r in ctx.results}
        mark_not_run([c for c in classes if c.CLI_NAME not in done], ctx)
        exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
    with signals_deferred(deliver=False):  # the run is ending anyway: a second Ctrl-C must not cut the write
        write_reports(ctx)
    return exit_code


def run_on_devices(classes, ctx: RunContext) -> int:
    """--devices: one thread per device, each taking the next model from a shared queue and running
    it in a worker on its device, so no device ever holds two models. Reports are written after
    every model, in the order of --models whatever order the models finish in."""
    import copy
    todo: queue.Queue = queue.Queue()
    for cls in classes:
        todo.put(cls)
    records: dict = {}  # class -> its result, once started
    lock = threading.Lock()
    stop = threading.Event()
    stop.signum = signal.SIGINT
    failed = threading.Event()

    def ordered() -> list[dict]:
        return [records[c] for c in classes if c in records]

    def write_now() -> None:
        with lock:  # a running model's record is copied: its thread replaces it at every phase
            ctx.results = [r if r["status"] != "running" else dict(r) for r in ordered()]
            write_reports(ctx)

    def serve(device, slot: int) -> None:
        try:
            serve_models(device, slot)
        finally:
            finished[slot].set()

    def serve_models(device, slot: int) -> None:
        dctx = copy.copy(ctx)
        dctx.device = device
        dctx.system = system_info(device) if device != ctx.device else ctx.system
        dctx.stop_event = stop
        while not stop.is_set() and not (failed.is_set() and not ctx.args.keep_going):
            try:
                cls = todo.get_nowait()
            except queue.Empty:
                return
            dctx.log_prefix = f"[{device}#{slot} {cls.CLI_NAME}] "
            result = new_result(cls, dctx)
            with lock:
                records[cls] = result
            log("INFO", f"{cls.MODEL_NAME} starts on {device} (worker slot {slot})")
            try:
                run_in_worker(cls, dctx, result)
            except RunInterrupted:
                result["status"] = "interrupted"
            result["device"], result["device_slot"] = str(device), slot
            if dctx.system is not ctx.system:
                result["system"] = dctx.system
            if result["status"] == "complete":
                log("COMPLETE", f"{cls.MODEL_NAME} finished on {device}")
            elif result["status"] != "interrupted":
                failed.set()
                if not ctx.args.keep_going:
                    log("ERROR", "Stopping (fail fast): no new model starts; the others finish. "
                                 "Use --keep-going to continue.")
            write_now()

    log("INFO", f"Running on {len(ctx.args.devices)} device(s) at once: {', '.join(map(str, ctx.args.devices))}")
    threads = [threading.Thread(target=serve, args=(d, i), name=f"device-{d}-{i}", daemon=True)
               for i, d in enumerate(ctx.args.devices)]
    # Waiting is a sleep loop, not Thread.join: on Python 3.11 a signal's exception raised inside
    # join() can leave the thread marked as stopped while it still runs (seen here: the report was
    # written before the last worker's record was final).
    finished = [threading.Event() for _ in threads]

    def wait_for_all() -> None:
        while not all(e.is_set() for e in finished):
            time.sleep(0.2)

    exit_code = EXIT_OK
    try:
        for t in threads:
            t.start()
        wait_for_all()
    except (RunInterrupted, KeyboardInterrupt) as exc:
        stop.signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
        stop.set()
        log("ERROR", f"Interrupted by {signal.Signals(stop.signum).name}; stopping the workers and writing the "
                     "results of finished models")
        with signals_deferred(deliver=False):
            wait_for_all()
        exit_code = EXIT_SIGINT if stop.signum == signal.SIGINT else EXIT_SIGTERM
    results = ordered()
    if exit_code == EXIT_OK and any(r["status"] != "complete" for r in results):
        exit_code = EXIT_FAILED
    ctx.status = {EXIT_OK: "complete", EXIT_FAILED: "incomplete"}.get(exit_code, "interrupted")
    ctx.results = results
    mark_not_run([c for c in classes if c not in records], ctx)
    with signals_deferred(deliver=False):
        write_reports(ctx)
    return exit_code


def mark_not_run(classes, ctx: RunContext) -> None:
    for cls in classes:
        ctx.results.append(new_result(cls, ctx) | {"status": "not run", "phase": None})


_deferred_signals: list[int] | None = None


def raise_on_signal(signum, frame):
    if _deferred_signals is not None:
        _deferred_signals.append(signum)  # delivered when the report is on disk
        return
    raise RunInterrupted(signum)


class signals_deferred:
    """Hold SIGINT/SIGTERM while results are written, then deliver the first one."""

    def __init__(self, deliver: bool = True):
        self.deliver = deliver

    def __enter__(self):
        global _deferred_signals
        _deferred_signals = []

    def __exit__(self, *exc):
        global _deferred_signals
        pending, _deferred_signals = _deferred_signals, None
        if pending and self.deliver and exc[0] is None:
            raise RunInterrupted(pending[0])
        return False


# =========================================================================================
# Reports: JSON, CSV, Markdown and its charts
# =========================================================================================
CSV_COLUMNS = [
    "model", "cli_name", "status", "weights", "load_s", "cold_start_s", "e2e_median_s", "e2e_ci95_low_s",
    "e2e_ci95_high_s", "e2e_p90_s", "e2e_mean_s", "e2e_std_s", "e2e_cov", "forward_median_s", "fps", "peak_memory_mb", "peak_over_baseline_mb", "peak_memory_kind", "parameters",
    "gflops", "input_shape", "layers_dissected", "warm_runs", "warmup_runs", "sam_prompt",
]


def csv_row(r: dict) -> dict:
    e2e = r.get("latency_end_to_end") or {}
    mem = r.get("memory") or {}
    return {
        "model": r["model"], "cli_name": r["cli_name"], "status": r["status"], "weights": r["weights"],
        "load_s": r.get("load_seconds"), "cold_start_s": (r.get("cold_start") or {}).get("total_s"),
        "e2e_median_s": e2e.get("median"), "e2e_ci95_low_s": e2e.get("ci95_low"),
        "e2e_ci95_high_s": e2e.get("ci95_high"), "e2e_p90_s": e2e.get("p90"), "e2e_mean_s": e2e.get("mean"),
        "e2e_std_s": e2e.get("std"), "e2e_cov": e2e.get("cov"),
        "forward_median_s": (r.get("latency_forward") or {}).get("median"), "fps": r.get("fps"),
        "peak_memory_mb": mem["peak_bytes"] / 1024 ** 2 if mem.get("peak_bytes") else None,
        "peak_over_baseline_mb": mem["peak_over_baseline_bytes"] / 1024 ** 2 if mem.get("peak_bytes") else None,
        "peak_memory_kind": mem.get("peak_kind"), "parameters": r.get("parameters"), "gflops": r.get("gflops"),
        "input_shape": "x".join(map(str, r["input_shape"])) if r.get("input_shape") else None,
        "layers_dissected": (r.get("dissection") or {}).get("records"), "warm_runs": e2e.get("n"),
        "warmup_runs": sum(1 for run in r.get("runs", []) if run.get("kind") == "warmup"),
        "sam_prompt": (r.get("config") or {}).get("sam_prompt"),
    }


def report_paths(ctx: RunContext) -> dict:
    return {"json": ctx.results_dir / f"benchmark_results_{ctx.run_id}.json",
            "csv": ctx.results_dir / f"benchmark_summary_{ctx.run_id}.csv",
            "md": ctx.results_dir / f"benchmark_report_{ctx.run_id}.md",
            "html": ctx.results_dir / f"benchmark_report_{ctx.run_id}.html"}


RESULTS_SCHEMA = "unified-benchmark/2"
# The phases that measure something; the rest of the wall time is the tool's own overhead.
MEASURING_PHASES = ("load", "cold_start", "warmup", "timed", "flops", "time_breakdown", "dissection")


def phase_totals(results: list[dict], total_seconds: float) -> dict:
    """Wall seconds per phase summed over the models, and the overhead: wall time minus the
    measuring phases (worker start, output pictures, cleanup, reports, start-up)."""
    totals: dict[str, float] = {}
    for r in results:
        for name, seconds in (r.get("phase_seconds") or {}).items():
            if seconds is not None:
                totals[name] = totals.get(name, 0.0) + seconds
    measured = sum(totals.get(name, 0.0) for name in MEASURING_PHASES)
    return {**totals, "wall": total_seconds, "measuring": measured, "overhead": max(total_seconds - measured, 0.0)}


def write_reports(ctx: RunContext) -> dict:
    finished = datetime.now()
    data = {
        "schema": RESULTS_SCHEMA, "run_id": ctx.run_id, "status": ctx.status,
        "started": ctx.started.isoformat(timespec="seconds"), "written": finished.isoformat(timespec="seconds"),
        "total_seconds": (finished - ctx.started).total_seconds(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "config": {"runs_per_image": ctx.args.runs, "warmup_rounds": ctx.args.warmup, "isolation": ctx.args.isolation,
                   "model_timeout_s": ctx.args.model_timeout, "latency_interval": CI_METHOD, "seed": ctx.args.seed, "weights": ctx.args.weights,
                   "device": str(ctx.device), "torch_threads": ctx.args.threads, "dissect_files": ctx.args.dissect, "sam_prompt": ctx.args.sam_prompt,
                   "keep_going": ctx.args.keep_going, "models": [c.CLI_NAME for c in ctx.args.model_classes],
                   "image_source": ctx.image_source, "viz_dir": str(ctx.viz_dir)},
        "system": ctx.system, "images": [str(p) for p in ctx.images], "models": ctx.results,
    }
    data["phase_totals"] = phase_totals(ctx.results, data["total_seconds"])
    if getattr(ctx.args, "devices", None):
        data["config"]["devices"] = [str(d) for d in ctx.args.devices]
    return write_report_files(data, ctx)


def write_report_files(data: dict, ctx) -> dict:
    """The JSON, CSV and Markdown of `data`; ctx gives run_id, results_dir, viz_dir and assets_dir
    (a run's RunContext, or what --merge builds)."""
    paths = report_paths(ctx)
    atomic_write_json(paths["json"], data)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in data["models"]:
        if r["status"] != "not run":
            writer.writerow({k: ("" if v is None else v) for k, v in csv_row(r).items()})
    atomic_write_text(paths["csv"], buffer.getvalue())

    atomic_write_text(paths["md"], markdown_report(data, ctx))
    atomic_write_text(paths["html"], html_report(data, ctx))
    return paths


def plot_style():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def latency_chart(results: list[dict], path: Path) -> bool:
    timed = [r for r in results if r.get("cold_start")]
    if not timed:
        return False
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(timed) + 2), 3.8), constrained_layout=True)
    x = np.arange(len(timed))
    for i, r in enumerate(timed):
        e2e = r["latency_end_to_end"]
        if e2e["n"]:
            ax.errorbar(i, e2e["median"] * 1000, yerr=[[(e2e["median"] - e2e["p10"]) * 1000],
                                                       [(e2e["p90"] - e2e["median"]) * 1000]],
                        fmt="o", color="black", capsize=4, label="warm median (p10-p90)" if i == 0 else None)
        ax.plot(i, r["cold_start"]["total_s"] * 1000, marker="^", mfc="white", mec="black", ls="none",
                label="cold start (first run)" if i == 0 else None)
    ax.set_xticks(x, [r["model"] for r in timed], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end latency (ms, log scale)")
    ax.legend(loc="best")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


CHART_MARKERS = "osD^vP*Xh<>p"


def memory_chart(results: list[dict], path: Path) -> bool:
    points = [r for r in results if r.get("parameters") and (r.get("memory") or {}).get("peak_bytes")]
    if not points:
        return False
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for i, r in enumerate(points):
        ax.plot(r["parameters"] / 1e6, r["memory"]["peak_over_baseline_bytes"] / 1024 ** 2,
                CHART_MARKERS[i % len(CHART_MARKERS)], color="black", mfc="white" if i % 2 else "black", ms=7,
                ls="none", label=f"{r['model']} ({r.get('gflops') or 0:.1f} GFLOPs)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("peak memory over pre-load baseline (MB)")
    ax.set_title(f"Peak memory ({points[0]['memory']['peak_kind']}) against size", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def activation_profile_chart(result: dict, path: Path) -> bool:
    profile = (result.get("dissection") or {}).get("profile")
    if not profile or not profile["index"]:
        return False
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(7, 2.6), constrained_layout=True)
    floor = 1e-12  # log scale: a zero std (constant output) is drawn at the floor
    ax.plot(profile["index"], [max(v or 0, floor) for v in profile["absmax"]], color="black", lw=0.8, label="|max|")
    ax.plot(profile["index"], [max(v or 0, floor) for v in profile["std"]], color="gray", lw=0.8, ls="--", label="std")
    ax.set_yscale("log")
    ax.set_xlabel("record (execution order)")
    ax.set_ylabel("activation (log scale)")
    ax.set_title(f"{result['model']}: activation profile across depth")
    ax.legend(loc="best")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def findings(results: list[dict]) -> list[str]:
    """Observations computed from this run's numbers; none about outputs or activations."""
    done = [r for r in results if r["status"] == "complete"]
    warm = [r for r in done if r["latency_end_to_end"]["n"]]
    lines = []
    if len(warm) >= 2:
        fast = min(warm, key=lambda r: r["latency_end_to_end"]["median"])
        slow = max(warm, key=lambda r: r["latency_end_to_end"]["median"])
        ratio = slow["latency_end_to_end"]["median"] / fast["latency_end_to_end"]["median"]
        lines.append(f"Fastest: {fast['model']}, {ms(fast['latency_end_to_end']['median'])} ms median end to end "
                     f"({fast['fps']:.2f} FPS). Slowest: {slow['model']}, {ms(slow['latency_end_to_end']['median'])} ms "
                     f"({ratio:.1f}x the fastest).")
    if len(done) >= 2:
        mem = max(done, key=lambda r: r["memory"]["peak_bytes"])
        lines.append(f"Most memory: {mem['model']}, {format_bytes(mem['memory']['peak_bytes'])} "
                     f"({mem['memory']['peak_kind']}).")
        big = max(done, key=lambda r: r["parameters"])
        heavy = max(done, key=lambda r: r["gflops"])
        lines.append(f"Largest: {big['model']}, {big['parameters'] / 1e6:.1f} M parameters; most compute per image: "
                     f"{heavy['model']}, {heavy['gflops']:.1f} GFLOPs at input {heavy['input_shape']}.")
    for r in warm:
        e2e = r["latency_end_to_end"]
        # Noise is judged within one image (mixing input sizes widens any interval) from the
        # width of its median's 95% interval, not from the CoV of a handful of runs.
        for name, img in (r.get("latency_per_image") or {}).items():
            steady = img["steady"]
            if steady.get("ci95_low") is None:
                continue
            width = (steady["ci95_high"] - steady["ci95_low"]) / steady["median"]
            if width > UNSTABLE_CI_WIDTH:
                lines.append(f"Unstable timing: {r['model']} on {name}: median {ms(steady['median'])} ms, 95% interval "
                             f"{format_interval(steady)} ms, {width * 100:.0f}% of the median wide over {steady['n']} "
                             "timed runs; treat its figures with care or raise --runs.")
        cold = r["cold_start"]["total_s"]
        if cold > COLD_START_FACTOR * e2e["median"]:
            lines.append(f"Cold start: {r['model']} first run {ms(cold)} ms, {cold / e2e['median']:.1f}x its warm "
                         f"median ({ms(e2e['median'])} ms).")
        new_shape = [(name, img["first_run_s"] / img["steady"]["median"]) for name, img in
                     (r.get("latency_per_image") or {}).items()
                     if not img["first_is_cold_start"] and img["steady"]["n"]]
        slow = [(name, ratio) for name, ratio in new_shape if ratio > SHAPE_WARMUP_FACTOR]
        if slow:
            lines.append(f"New input shape: {r['model']}'s first run on "
                         + ", ".join(f"{name} took {ratio:.2f}x its timed median" for name, ratio in slow)
                         + "; varying input sizes cost a warm-up each (kernels are built per shape). The warm-up "
                           "rounds take this out of the timed runs.")
    return lines


def md_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


SYSTEM_IDENTITY = ("gpu", "cpu", "cpu_count", "os", "torch", "transformers", "ultralytics", "cuda_version",
                   "cuda_driver_version")  # a difference here makes two runs' figures not directly comparable
SETTINGS_IDENTITY = ("runs_per_image", "warmup_rounds", "weights", "isolation", "seed", "torch_threads")


def placement_lines(data: dict) -> list[str]:
    """Where each model ran, when that is not one device of one system: --devices runs and
    merged shards. A table mixing systems says so, since its rows are not comparable as they stand."""
    results = [r for r in data["models"] if r["status"] != "not run"]
    if not any(r.get("device") or r.get("system") or r.get("source_file") for r in results):
        return []
    systems = {json.dumps({k: (r.get("system") or data["system"]).get(k) for k in SYSTEM_IDENTITY}, sort_keys=True)
               for r in results}
    lines = []
    if data.get("merged_from"):
        lines += [f"Merged from {len(data['merged_from'])} result files: "
                  + ", ".join(f"`{m['file']}` ({m['status']})" for m in data["merged_from"]) + ".", ""]
    if len(systems) > 1:
        lines += ["> **Mixed systems.** These models ran on different systems (GPU, CPU or library versions "
                  "differ, see the table below); compare their figures with that in mind.", ""]
    differing = [k for k in SETTINGS_IDENTITY
                 if len({json.dumps((r.get("run_config") or data["config"]).get(k)) for r in results}) > 1]
    if differing:
        lines += ["> **Mixed settings.** The parts ran with different " + ", ".join(differing) + ": "
                  + "; ".join(f"{r['model']} " + ", ".join(f"{k}={(r.get('run_config') or data['config']).get(k)}"
                                                          for k in differing) for r in results) + ".", ""]
    rows = []
    for r in results:
        s = r.get("system") or data["system"]
        slot = f" (worker {r['device_slot']})" if r.get("device_slot") is not None else ""
        rows.append([r["model"], (r.get("device") or s.get("device")) + slot, s.get("gpu") or s.get("cpu"),
                     f"torch {s.get('torch')}", f"`{r.get('source_run_id') or data['run_id']}`"])
    return lines + ["Where each model ran:", "", md_table(["model", "device", "GPU or CPU", "torch", "run"], rows), ""]


def markdown_report(data: dict, ctx: RunContext) -> str:
    results = data["models"]
    assets = ctx.assets_dir
    rel = assets.name
    lines = ["# Vision model benchmark report", "", f"Run `{data['run_id']}`, started {data['started']}, "
             f"{data['total_seconds']:.0f} s so far. Command: `{data['command']}`", ""]
    random_models = [r["model"] for r in results if r["weights"] == "random" and r["status"] != "not run"]
    if random_models:
        lines += [f"> **Warning: random weights.** {', '.join(random_models)} ran with randomly initialised weights. "
                  "Timing, memory, FLOPs and the dissection mechanics are valid; the task outputs and the activation "
                  "statistics of these models are not meaningful.", ""]
    if data["status"] != "complete":
        unfinished = [f"{r['model']} ({r['status']})" for r in results if r["status"] != "complete"]
        lines += [f"> **Run {data['status']}.** Not complete: {', '.join(unfinished)}. The figures below are those of "
                  "the models that finished.", ""]

    s = data["system"]
    lines += ["## System", "", md_table(["property", "value"], [
        ["OS", s["os"]], ["Python", s["python"]], ["PyTorch", s["torch"]], ["transformers", s["transformers"]],
        ["ultralytics", s["ultralytics"]], ["CUDA", s["cuda_version"] if s["cuda_available"] else "not available"],
        ["GPU", s["gpu"] or "none"], ["CPU", f"{s['cpu']}, {s['cpu_count']} logical cores, torch threads {s['torch_threads']}"],
        ["device", s["device"]], ["numeric settings", numeric_settings_text(s)]]), ""]
    c = data["config"]
    lines += ["## Configuration", "", f"- Images ({len(data['images'])}, from {c['image_source']}): "
              + ", ".join(f"`{Path(p).name}`" for p in data["images"]),
              f"- Each model: one cold-start run, then {c.get('warmup_rounds', 0)} warm-up round(s) over all images, "
              f"then {c['runs_per_image']} timed run(s) per image; the latency statistics come from the timed runs "
              "only, each median with its 95% interval (" + c.get("latency_interval", CI_METHOD) + ")",
              "- Isolation: " + ("each model in a fresh worker process (forked from a server that imported the "
                                 "libraries), so no model's figures depend on the models before it"
                                 if c.get("isolation") == "process" else "all models in this one process")
              + "; freed memory kept by the allocator: "
              + (", ".join(sorted({f"{format_bytes(a['trim_threshold_bytes'])} trim, "
                                   f"{format_bytes(a['mmap_threshold_bytes'])} mmap threshold"
                                   for a in (r.get("allocator") for r in results) if a})) or "no (default glibc)"),
              f"- Seed {c['seed']}; weights: {c['weights']}; device {c['device']}; torch CPU threads {c['torch_threads']} "
              "(pinned for every model)",
              "- MobileSAM prompt: " + (", ".join(f"{r['model']}: {r['config'].get('sam_prompt')}"
                                                  for r in results if (r.get("config") or {}).get("sam_prompt"))
                                        or "(MobileSAM not run)"), ""]

    done = [r for r in results if r.get("cold_start")]
    kind = next((r["memory"]["peak_kind"] for r in done if r.get("memory", {}).get("peak_kind")), "peak memory")
    rows = []
    for r in done:
        e2e, mem = r["latency_end_to_end"], r["memory"]
        rows.append([r["model"], r["weights"], f"{r['load_seconds']:.2f}", ms(r["cold_start"]["total_s"]),
                     f"{ms(e2e['median'])} {format_interval(e2e)}", ms(e2e["p90"]), ms(r["latency_forward"]["median"]),
                     f"{e2e['cov'] * 100:.1f}%" if e2e["cov"] is not None else "n/a",
                     f"{r['fps']:.2f}" if r.get("fps") else "n/a",
                     f"{mem['peak_bytes'] / 1024 ** 2:.0f} (+{mem['peak_over_baseline_bytes'] / 1024 ** 2:.0f})"
                     if mem.get("peak_bytes") else "n/a",
                     f"{r['parameters']:,}" if r.get("parameters") else "n/a",
                     f"{r['gflops']:.2f}" if r.get("gflops") is not None else "n/a",
                     "x".join(map(str, r["input_shape"])) if r.get("input_shape") else "n/a",
                     (r.get("dissection") or {}).get("records", "n/a"), r["status"]])
    lines += ["## Summary", "", md_table(
        ["model", "weights", "load s", "cold start ms", "end-to-end median ms [95% CI]", "p90 ms", "forward median ms",
         "CoV", "FPS", f"peak memory MB ({kind})", "params", "GFLOPs", "input shape", "layers dissected", "status"],
        rows), "",
        "End to end = preprocess + forward + postprocess, what a pipeline pays per image; FPS = 1 / its median; "
        "timed runs only, the 95% interval of the median in brackets. "
        "GFLOPs count 2 per multiply-add (torch.utils.flop_counter) over the network's matmuls and convolutions. "
        "Peak memory is over the timed runs; in brackets, its increase over what the process held just before the "
        "model loaded (the model's own share). CPU memory is the resident set of the whole process.", ""]
    lines += placement_lines(data)

    # The summary charts change with every model but are drawn once, when the run ends: drawing
    # them after every model cost 0.3-0.6 s a model in the parent, the tool's own overhead.
    charts = []
    if data.get("status") == "running":
        lines += ["## Charts", "", "Drawn when the run ends.", ""]
    else:
        if latency_chart(results, assets / "latency.png"):
            charts.append(f"![Latency per model]({rel}/latency.png)")
        if memory_chart(results, assets / "memory_vs_params.png"):
            charts.append(f"![Peak memory against parameters]({rel}/memory_vs_params.png)")
    if charts:
        lines += ["## Charts", ""] + [f"{c}\n" for c in charts]

    found = findings(results)
    lines += ["## Findings", ""] + ([f"- {f}" for f in found] or ["- Too few finished models to compare."]) + [""]

    lines += run_time_section(data)

    failed = [r for r in results if r["status"] in ("failed", "interrupted", "timeout")]
    if failed:
        lines += ["## Failed or interrupted models", "", md_table(["model", "status", "phase", "error", "memory"], [
            [r["model"], r["status"], (r.get("error") or {}).get("phase") or r.get("phase_reached") or r.get("phase"),
             ((r.get("error") or {}).get("type", "") + ": " + (r.get("error") or {}).get("message", "")).strip(": ")
             .replace("|", "/").replace("\n", " "), failure_memory(r)] for r in failed]), ""]

    for r in done:
        lines += model_section(r, ctx, rel)
    lines += ["## Where the files are", "", f"- JSON (every run's time): `{report_paths(ctx)['json'].name}`",
              f"- CSV (one row a model): `{report_paths(ctx)['csv'].name}`",
              f"- HTML report with a layer explorer (open it in a browser): `{report_paths(ctx)['html'].name}`",
              f"- Layer folders: `{ctx.viz_dir}/<MODEL_NAME>/` (layer_NNN.png, layer_NNN.npy, layers_metadata.json)", ""]
    return "\n".join(lines)


PHASE_LABELS = {"worker_start": "worker start", "load": "load", "cold_start": "cold start", "warmup": "warm-up",
                "timed": "timed runs", "flops": "FLOPs pass", "output": "output picture",
                "time_breakdown": "profiled pass", "dissection": "dissection", "cleanup": "cleanup"}


def run_time_section(data: dict) -> list[str]:
    totals = data.get("phase_totals") or {}
    wall = totals.get("wall") or 0
    if not wall:
        return []
    rows = [[label, f"{totals[name]:.1f}", f"{totals[name] / wall * 100:.1f}%"]
            for name, label in PHASE_LABELS.items() if totals.get(name)]
    return ["## Where the run's time went", "", md_table(["phase (summed over models)", "s", "share of wall time"], rows),
            "", f"Wall time {wall:.1f} s; measuring (load, cold start, warm-up, timed runs, FLOPs, profiled pass, "
            f"dissection) {totals['measuring']:.1f} s; the tool's own overhead (everything else: worker start, "
            f"pictures, cleanup, reports, start-up) {totals['overhead']:.1f} s "
            f"({totals['overhead'] / wall * 100:.1f}%).", ""]


def numeric_settings_text(s: dict) -> str:
    """The system's numeric settings in one table cell; results written before they were
    recorded give "not recorded"."""
    if "matmul_allow_tf32" not in s:
        return "not recorded"

    def on_off(flag) -> str:
        return "n/a" if flag is None else ("on" if flag else "off")

    cudnn = s.get("cudnn_version")
    if isinstance(cudnn, int) and cudnn > 0:  # cuDNN 9 encodes 9.24.0 as 92400, cuDNN 8 encodes 8.9.2 as 8902
        major_unit = 10000 if cudnn >= 10000 else 1000
        cudnn_text = f"{cudnn // major_unit}.{cudnn % major_unit // 100}.{cudnn % 100}"
    else:
        cudnn_text = "n/a"
    return (f"default dtype {s.get('default_dtype')}; matmul TF32 {on_off(s.get('matmul_allow_tf32'))} "
            f"(float32 matmul precision {s.get('float32_matmul_precision')}); cuDNN TF32 "
            f"{on_off(s.get('cudnn_allow_tf32'))}; cudnn.benchmark {on_off(s.get('cudnn_benchmark'))}; "
            f"cudnn.deterministic {on_off(s.get('cudnn_deterministic'))}; cuDNN {cudnn_text}; "
            f"driver {s.get('cuda_driver_version') or 'n/a'}")


def failure_memory(r: dict) -> str:
    """Memory figures known when a model stopped: what a user needs to judge an OOM."""
    memory = r.get("memory") or {}
    at = memory.get("at_failure") or {}
    parts = [f"{label} {format_bytes(value)}" for label, value in (
        ("before load", memory.get("cuda_allocated_before_load_bytes", memory.get("cpu_rss_before_load_bytes"))),
        ("after load", memory.get("cuda_allocated_after_load_bytes", memory.get("cpu_rss_after_load_bytes"))),
        ("peak at failure", at.get("cuda_peak_allocated_bytes", at.get("cpu_peak_rss_bytes")))) if value]
    return ", ".join(parts) or "n/a"


def model_section(r: dict, ctx: RunContext, rel: str) -> list[str]:
    lines = [f"## {r['model']}", "", f"- Weights: {r['weights_source']}",
             f"- Input the network received: {r.get('input_shape')} (nominal size {r['nominal_input_size']}), "
             f"computed in {r.get('dtype') or 'n/a'}"]
    if (r.get("memory") or {}).get("cuda_context_bytes") is not None:
        lines.append(f"- CUDA context (apart from the model): {format_bytes(r['memory']['cuda_context_bytes'])}")
    if r.get("config"):
        lines.append("- Settings: " + ", ".join(f"{k}={v}" for k, v in r["config"].items()))
    phases = r.get("latency_phases_median") or {}
    if phases.get("forward") is not None:
        lines.append(f"- Timed medians: preprocess {ms(phases['preprocess'])} ms, forward {ms(phases['forward'])} ms "
                     f"{format_interval(r['latency_forward'])}, postprocess {ms(phases['postprocess'])} ms; "
                     f"cold start {ms(r['cold_start']['total_s'])} ms")
    lines.append("")
    per_image = r.get("latency_per_image") or {}
    if per_image:
        lines += [md_table(["image", "size", "cold start ms", "warm-up ms", "timed median ms [95% CI]", "p90 ms", "CoV",
                            "timed runs"], [
            [f"`{name}`", "x".join(map(str, img["image_size"])),
             ms(img["first_run_s"]) if img["first_is_cold_start"] else "",
             ", ".join(ms(s) for s in img.get("warmup_s", [])) or "none",
             f"{ms(img['steady']['median'])} {format_interval(img['steady'])}", ms(img["steady"]["p90"]),
             f"{img['steady']['cov'] * 100:.1f}%" if img["steady"]["cov"] is not None else "n/a",
             img["steady"]["n"]] for name, img in per_image.items()]), ""]
    if r.get("output_image"):
        summary = r.get("prediction_summary") or {}
        lines += ["### What it produced (first image)", "", f"![{r['model']} output]({r['output_image']})", ""]
        if summary:
            lines += ["- " + ", ".join(f"{k}: {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in summary.items()), ""]
        if r["weights"] == "random":
            lines += ["(Random weights: this output shows the pipeline works, not what the model can do.)", ""]
    tb = r.get("time_breakdown")
    if tb:
        lines += ["### Where the time goes", "", f"One profiled pass (not a timed run), forward {tb['forward_ms']:.1f} ms "
                  "with timing hooks on every module.", "",
                  md_table(["block", "ms", "share"], [[b["block"], f"{b['ms']:.1f}", f"{b['share'] * 100:.1f}%"]
                                                      for b in tb["blocks"]]), "", "Ten most expensive leaf modules:", "",
                  md_table(["module", "type", "calls", "ms", "share"], [
                      [f"`{t['name']}`", t["type"], t["calls"], f"{t['ms']:.1f}", f"{t['share'] * 100:.1f}%"]
                      for t in tb["top_leaves"]]), ""]
    d = r.get("dissection")
    if d:
        folder = Path(d["folder"])
        link = os.path.relpath(folder, ctx.results_dir)
        lines += ["### Inside the model", "", f"{d['records']} records (every call of {d['leaf_modules']} leaf modules) "
                  f"in one pass of {d['seconds']:.1f} s; {d['png_files']} PNG and {d['npy_files']} NPY files in "
                  f"[`{link}`]({link}/). NaN in {d['nan_records']} records, Inf in {d['inf_records']}.", "",
                  "Layer types: " + ", ".join(f"{t} {n}" for t, n in d["type_counts"].items()), ""]
        chart = ctx.assets_dir / f"{r['model']}_activations.png"
        if chart.exists() or activation_profile_chart(r, chart):  # a finished model's chart never changes
            lines += [f"![{r['model']} activation profile]({rel}/{chart.name})", ""]
        if r["weights"] == "random":
            lines += ["(Random weights: the activation statistics below describe the initialisation, not a trained model.)", ""]
        lines += ["Widest activation range:", "", md_table(["record", "module", "call", "type", "min", "max"], [
            [w["index"], f"`{w['name']}`", w["call"], w["type"], f"{w['range'][0]:.4g}", f"{w['range'][1]:.4g}"]
            for w in d["widest_range"]]), "", "Highest fraction of exact zeros:", "",
            md_table(["record", "module", "call", "type", "zeros"], [
                [z["index"], f"`{z['name']}`", z["call"], z["type"], f"{z['zero_fraction'] * 100:.1f}%"]
                for z in d["most_zeros"]]), ""]
    return lines


# =========================================================================================
# Reports: the HTML report and its layer explorer
# =========================================================================================
# One self-contained page: styles and script inline, pictures referenced relative to results/
# (report_<run>/..., ../viz/<run>/...), so results/ and viz/ can be moved or zipped together.
# Text reaches the page only through html.escape (Python) or textContent (script); the layer
# records travel as JSON in a script element with every "<" escaped, so no name can close it.
HTML_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>@@title@@</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1360px;margin:0 auto;padding:0 20px 40px}
nav{position:sticky;top:0;z-index:5;background:#1d232a;padding:6px 20px;font-size:13px}
nav a{color:#dfe6ee;margin-right:14px;text-decoration:none}nav a:hover{text-decoration:underline}
h1{font-size:24px;margin:18px 0 4px}h2{font-size:19px;margin:28px 0 8px;padding-top:8px;border-top:2px solid #d5dbe2}
h3{font-size:15px;margin:18px 0 6px}h2,h3,section,.explorer{scroll-margin-top:36px}
code{font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
.meta{color:#58636f}.warn{background:#fff4d6;border-left:4px solid #d99a00;padding:8px 12px;margin:10px 0}
.fail{background:#fde8e8;border-left:4px solid #c0392b;padding:8px 12px;margin:10px 0}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d5dbe2;padding:3px 7px;text-align:left;vertical-align:top}th{background:#eef1f4}
td[data-sort]{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e0e6ec}
th[aria-sort=ascending]::after{content:" \25B2"}th[aria-sort=descending]::after{content:" \25BC"}
.scroll{overflow-x:auto}.charts img,.output img{max-width:100%;border:1px solid #d5dbe2;background:#fff}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.pair{display:flex;flex-wrap:wrap;gap:0 24px}
pre{white-space:pre-wrap;background:#fff;border:1px solid #d5dbe2;padding:6px;max-height:240px;overflow:auto}
.explorer{background:#fff;border:1px solid #c9d1da;padding:10px;outline:none}.explorer:focus{border-color:#2a6fb0}
.ex-controls{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.ex-controls input{width:260px;padding:3px 6px}.ex-controls .meta{font-size:12px}
.ex-main{display:grid;grid-template-columns:minmax(0,2.2fr) minmax(0,1fr);gap:12px}
.ex-wrap{position:relative;max-height:400px;overflow:auto;border:1px solid #d5dbe2}
.ex-wrap table{margin:0;width:100%;font-size:12px}.ex-wrap thead th{position:sticky;top:0;z-index:1}
.ex-wrap tbody tr{cursor:pointer}.ex-wrap tbody tr:hover{background:#eef5fc}
.ex-wrap tbody tr.selected{background:#cfe3f7}
.ex-wrap td,.ex-wrap th{border-width:0 0 1px 0;white-space:nowrap;padding:2px 5px}
.ex-wrap td.name{white-space:normal;overflow-wrap:anywhere;min-width:120px}
.ex-detail h4{margin:0 0 6px;font-size:14px;word-break:break-all}
.ex-detail img{display:block;width:100%;height:260px;object-fit:contain;image-rendering:pixelated;
  border:1px solid #d5dbe2;background:#fafbfc}
.ex-facts{display:grid;grid-template-columns:auto 1fr auto 1fr;gap:2px 10px;font-size:12px;margin:6px 0}
.ex-facts dt{color:#58636f}.ex-facts dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.ex-facts .wide{grid-column:2 / 5}
.ex-profile{display:block;width:100%;height:auto;margin-bottom:8px}
.ex-profile .pt{cursor:pointer}.ex-profile .sel{stroke:#c0392b;fill:none;stroke-width:2}
</style></head>
<body>
@@body@@
<script type="application/json" id="explorer-data">@@data@@</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const SVGNS = "http://www.w3.org/2000/svg";
const missing = v => v === null || v === undefined;
const fmt = v => missing(v) ? "n/a" : typeof v === "number" ? String(Number(v.toPrecision(4))) : String(v);
const percent = (v, digits) => missing(v) ? null : (v * 100).toFixed(digits) + "%";
function el(tag, attrs, text, ns) {  // text only through textContent: names never become markup
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function compare(a, b, asc) {  // missing values last in both directions
  if (missing(a) || missing(b)) return missing(a) - missing(b);
  const c = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
  return asc ? c : -c;
}
function headerSort(th, onSort) {
  th.tabIndex = 0;
  const run = () => {
    const asc = th.getAttribute("aria-sort") !== "ascending";
    for (const other of th.parentNode.cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    onSort(th.cellIndex, asc);
  };
  th.addEventListener("click", run);
  th.addEventListener("keydown", e => { if (e.key === "Enter") run(); });
}
function cellKey(cell) {  // numbers carry data-sort (empty when missing); text sorts as shown
  const s = cell.dataset.sort;
  return s === undefined ? cell.textContent.trim().toLowerCase() : s === "" ? null : Number(s);
}
for (const table of document.querySelectorAll("table.sortable")) {
  const body = table.tBodies[0];
  for (const th of table.tHead.rows[0].cells) headerSort(th, (col, asc) => {
    const rows = Array.from(body.rows);
    rows.sort((a, b) => compare(cellKey(a.cells[col]), cellKey(b.cells[col]), asc));
    for (const r of rows) body.appendChild(r);
  });
}
// Explorer columns: label, text shown, and (when the text would sort wrongly) the sort value.
const COLUMNS = [["#", r => r.index], ["module", r => r.name], ["call", r => r.call], ["type", r => r.type],
  ["shape", r => r.shape && r.shape.join("x"), r => r.shape && r.shape.reduce((a, b) => a * b, 1)],
  ["min", r => r.min], ["max", r => r.max], ["mean", r => r.mean], ["std", r => r.std],
  ["zeros", r => percent(r.zero_fraction, 1), r => r.zero_fraction],
  ["NaN/Inf", r => missing(r.min) ? null : (r.nan_count || 0) + "/" + (r.inf_count || 0),
   r => (r.nan_count || 0) + (r.inf_count || 0)]];
class Explorer {
  constructor(root, spec) {
    Object.assign(this, {root, spec, records: spec.records, selected: -1});
    this.order = this.records.map((_, pos) => pos);
    const types = {};
    for (const r of this.records) types[r.type] = (types[r.type] || 0) + 1;
    const controls = root.appendChild(el("div", {class: "ex-controls"}));
    this.filter = controls.appendChild(el("input", {type: "search", placeholder: "filter by module name",
                                                    "aria-label": "filter by module name"}));
    this.typeSelect = controls.appendChild(el("select", {"aria-label": "layer type"}));
    this.typeSelect.appendChild(el("option", {value: ""}, "all types (" + this.records.length + ")"));
    for (const [t, n] of Object.entries(types).sort((a, b) => b[1] - a[1]))
      this.typeSelect.appendChild(el("option", {value: t}, t + " (" + n + ")"));
    this.count = controls.appendChild(el("span", {class: "meta"}));
    controls.appendChild(el("span", {class: "meta"},
                            "Click a row or a profile point; arrow keys step through the records shown."));
    this.drawProfile();
    const main = root.appendChild(el("div", {class: "ex-main"}));
    this.wrap = main.appendChild(el("div", {class: "ex-wrap"}));
    const table = this.wrap.appendChild(el("table"));
    const head = table.appendChild(el("thead")).appendChild(el("tr"));
    for (const [label] of COLUMNS) headerSort(head.appendChild(el("th", {}, label)), (col, asc) => this.sortBy(col, asc));
    this.body = table.appendChild(el("tbody"));
    this.rows = this.records.map((r, pos) => {  // every row once; filters hide, sorting moves them
      const tr = this.body.appendChild(el("tr", {"data-index": r.index}));
      for (const [, show] of COLUMNS) tr.appendChild(el("td", {}, fmt(show(r))));
      tr.cells[1].className = "name";   // long dotted names may wrap at their dots
      tr.cells[1].replaceChildren(...r.name.split(".").flatMap((part, i) => i ? [el("wbr"), "." + part] : [part]));
      tr.addEventListener("click", () => { this.select(pos); root.focus({preventScroll: true}); });
      return tr;
    });
    this.detail = main.appendChild(el("div", {class: "ex-detail"}));
    this.filter.addEventListener("input", () => this.applyFilter());
    this.typeSelect.addEventListener("change", () => this.applyFilter());
    root.addEventListener("keydown", e => this.onKey(e));
    this.applyFilter();
  }
  shown(pos) {
    const r = this.records[pos], text = this.filter.value.trim().toLowerCase(), type = this.typeSelect.value;
    return (!text || r.name.toLowerCase().includes(text)) && (!type || r.type === type);
  }
  applyFilter() {
    let n = 0;
    this.rows.forEach((tr, pos) => { tr.hidden = !this.shown(pos); n += !tr.hidden; });
    this.count.textContent = n + " of " + this.records.length + " records shown";
  }
  sortBy(col, asc) {
    const key = COLUMNS[col][2] || COLUMNS[col][1];
    this.order.sort((a, b) => compare(key(this.records[a]), key(this.records[b]), asc) || a - b);
    for (const pos of this.order) this.body.appendChild(this.rows[pos]);
  }
  onKey(e) {
    const step = {ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1}[e.key];
    if (!step || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    e.preventDefault();
    const visible = this.order.filter(pos => this.shown(pos)), at = visible.indexOf(this.selected);
    if (visible.length) this.select(at < 0 ? visible[0] : visible[Math.min(Math.max(at + step, 0), visible.length - 1)]);
  }
  select(pos, keepHash) {
    const r = this.records[pos];
    if (!r) return;
    if (this.selected >= 0) this.rows[this.selected].classList.remove("selected");
    this.selected = pos;
    const tr = this.rows[pos], wrap = this.wrap, head = wrap.querySelector("thead").offsetHeight;
    tr.classList.add("selected");
    if (tr.offsetTop - head < wrap.scrollTop) wrap.scrollTop = tr.offsetTop - head;  // only the table scrolls
    else if (tr.offsetTop + tr.offsetHeight > wrap.scrollTop + wrap.clientHeight)
      wrap.scrollTop = tr.offsetTop + tr.offsetHeight - wrap.clientHeight;
    const d = this.detail, files = r.files || [];
    d.replaceChildren(el("h4", {}, "#" + r.index + " " + r.name + " (call " + r.call + ") - " + r.type));
    if (files.length) d.appendChild(el("img", {src: this.spec.base + files[0], alt: "feature maps of record " + r.index}));
    else d.appendChild(el("p", {class: "meta"}, "No picture for this record ("
                                + (r.note || "not a floating-point feature map, or --no-dissect") + ")."));
    const reshaped = r.reshaped && (r.reshaped_shape ? r.reshaped_shape.join(" x ") + " (batch element 0): " : "") + r.reshaped;
    const facts = [["shape", r.shape && r.shape.join(" x ") + (r.dtype ? " " + r.dtype : ""), true],
      ["after token reshape", reshaped || "not reshaped", true], ["min", r.min], ["max", r.max], ["mean", r.mean],
      ["std", r.std], ["zeros", percent(r.zero_fraction, 2)], ["NaN / Inf", (r.nan_count || 0) + " / " + (r.inf_count || 0)],
      ["taken from", r.source, true], ["note", r.note, true]];
    const dl = d.appendChild(el("dl", {class: "ex-facts"}));
    for (const [k, v, wide] of facts) if (v !== undefined) {
      dl.appendChild(el("dt", {}, k));
      dl.appendChild(el("dd", wide ? {class: "wide"} : {}, fmt(v)));
    }
    const links = d.appendChild(el("p"));
    for (const f of files) links.append(el("a", {href: this.spec.base + f, class: "ex-file"}, f), " ");
    this.markProfile();
    if (!keepHash) {
      const hash = "#" + new URLSearchParams({model: this.spec.model, record: r.index}).toString();
      try { history.replaceState(null, "", hash); } catch (err) { location.replace(hash); }
    }
  }
  drawProfile() {
    const pts = this.records.map((r, pos) => ({pos, index: r.index, std: r.std,
                                               absmax: missing(r.min) ? null : Math.max(Math.abs(r.min), Math.abs(r.max))}))
      .filter(p => !missing(p.std) && !missing(p.absmax));
    if (!pts.length) return;
    const W = 1100, H = 190, L = 62, R = 14, T = 14, B = 34, grey = "#58636f";
    const positive = pts.flatMap(p => [p.std, p.absmax]).filter(v => v > 0);
    const lo = Math.floor(Math.log10(positive.length ? Math.min(...positive) : 1e-12));
    const hi = Math.max(Math.ceil(Math.log10(positive.length ? Math.max(...positive) : 1)), lo + 1);
    const last = Math.max(1, this.records[this.records.length - 1].index);
    const x = i => L + (W - L - R) * i / last;
    const y = v => T + (H - T - B) * (hi - Math.log10(Math.max(v, 10 ** lo))) / (hi - lo);  // zero at the floor
    const svg = this.root.appendChild(el("svg", {class: "ex-profile", viewBox: "0 0 " + W + " " + H, role: "img",
                                                 "aria-label": "activation profile"}, undefined, SVGNS));
    const add = (tag, attrs, text) => svg.appendChild(el(tag, attrs, text, SVGNS));
    const label = (px, py, text, anchor) => add("text", {x: px, y: py, "text-anchor": anchor, "font-size": 11, fill: grey}, text);
    for (let e = lo; e <= hi; e += Math.max(1, Math.ceil((hi - lo) / 8))) {
      add("line", {x1: L, x2: W - R, y1: y(10 ** e), y2: y(10 ** e), stroke: "#e3e7ec"});
      label(L - 6, y(10 ** e) + 4, "1e" + e, "end");
    }
    const xstep = Math.max(1, 10 ** Math.floor(Math.log10(last / 4)));
    for (let i = 0; i <= last; i += xstep * (last / xstep > 10 ? 2 : 1)) label(x(i), H - 16, String(i), "middle");
    label((L + W) / 2, H - 2, "record (execution order); log scale; solid black: |max|, dashed grey: std; "
          + "click a point to select its record", "middle");
    for (const [key, color, dash] of [["absmax", "#1d232a", ""], ["std", "#8a96a3", "4 3"]]) {
      add("polyline", {points: pts.map(p => x(p.index) + "," + y(p[key])).join(" "), fill: "none", stroke: color,
                       "stroke-dasharray": dash});
      for (const p of pts) add("circle", {cx: x(p.index), cy: y(p[key]), r: 2.4, fill: color, class: "pt",
                                          "data-pos": p.pos, "data-index": p.index})
        .appendChild(el("title", {}, "#" + p.index + " " + this.records[p.pos].name + " " + key + " " + fmt(p[key]), SVGNS));
    }
    this.marker = [add("line", {class: "sel", y1: T, y2: H - B}), add("circle", {class: "sel", r: 5}),
                   add("circle", {class: "sel", r: 5})];
    this.profile = {x, y, pts: new Map(pts.map(p => [p.pos, p]))};
    svg.addEventListener("click", e => {
      let pos = Number(e.target.dataset ? e.target.dataset.pos : NaN);
      if (Number.isNaN(pos)) {  // between points: the nearest record
        const at = new DOMPoint(e.clientX, e.clientY).matrixTransform(svg.getScreenCTM().inverse());
        pos = pts.reduce((best, p) => Math.abs(x(p.index) - at.x) < Math.abs(x(best.index) - at.x) ? p : best).pos;
      }
      this.select(pos);
      this.root.focus({preventScroll: true});
    });
  }
  markProfile() {
    if (!this.marker) return;
    const p = this.profile.pts.get(this.selected), [line, top, bottom] = this.marker;
    for (const m of this.marker) m.style.display = p ? "" : "none";
    if (!p) return;
    const px = this.profile.x(p.index);
    line.setAttribute("x1", px); line.setAttribute("x2", px);
    top.setAttribute("cx", px); top.setAttribute("cy", this.profile.y(p.absmax));
    bottom.setAttribute("cx", px); bottom.setAttribute("cy", this.profile.y(p.std));
  }
}
const explorers = {};
DATA.explorers.forEach((spec, i) => {
  const root = document.getElementById("explorer-" + i);
  if (!root || !spec.records.length) return;
  explorers[spec.model] = new Explorer(root, spec);
  explorers[spec.model].select(0, true);  // one picture per model loads, never all of them
});
function restoreFromHash() {  // #model=<name>&record=<index>, written by select()
  const params = new URLSearchParams(location.hash.slice(1)), ex = explorers[params.get("model")];
  if (!ex) return;
  const pos = ex.records.findIndex(r => String(r.index) === params.get("record"));
  if (pos >= 0) ex.select(pos, true);
  (ex.root.previousElementSibling || ex.root).scrollIntoView();   // its heading names the model
  ex.root.focus({preventScroll: true});
}
window.addEventListener("hashchange", restoreFromHash);
restoreFromHash();
</script>
</body></html>
"""

def html_text(value) -> str:
    import html
    return "n/a" if value is None else html.escape(str(value))


def html_url(path: str) -> str:
    """A relative path as a URL (forward slashes, percent-encoded), escaped for an attribute."""
    from urllib.parse import quote
    return html_text(quote(Path(path).as_posix()))


def html_num(value, show=lambda v: f"{v:.2f}") -> tuple:
    """A number cell: shown text and the value the summary table sorts by."""
    return ("n/a", None) if value is None else (show(value), value)


def html_ms_ci(stats: dict) -> str:
    """Median ms, with its 95% interval when the runner computed one."""
    text = ms(stats.get("median"))
    if stats.get("ci95_low") is not None and stats.get("ci95_high") is not None:
        text += f" [{ms(stats['ci95_low'])}-{ms(stats['ci95_high'])}]"
    return text


def html_table(headers: list, rows: list[list], sortable: bool = False) -> str:
    """A cell is a value shown as text, or a (text, sort value) pair from html_num."""
    def cell(c):
        if isinstance(c, tuple):
            return f'<td data-sort="{html_text("" if c[1] is None else c[1])}">{html_text(c[0])}</td>'
        return f"<td>{html_text(c)}</td>"
    head = "".join(f"<th>{html_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table{" class=sortable" if sortable else ""}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def html_explorer_records(dissection: dict) -> tuple[list[dict], str | None]:
    """Every record of the model's layers_metadata.json (the result JSON keeps only a digest),
    or why they are missing."""
    import re
    if not dissection.get("folder"):
        return [], "no dissection folder recorded"
    path = Path(dissection["folder"]) / "layers_metadata.json"
    try:
        records = json.loads(path.read_text(encoding="utf-8")).get("records") or {}
    except (OSError, ValueError) as exc:
        return [], f"layer records not readable ({type(exc).__name__}: {path})"
    out = []
    for r in sorted(records.values() if isinstance(records, dict) else records, key=lambda r: r.get("index", 0)):
        rec = dict(r)
        grid = re.search(r"(\d+)x(\d+) grid", r.get("reshaped") or "")
        if grid and len(r.get("shape") or []) == 3:   # (B, tokens, C) drawn as (C, h, w)
            rec["reshaped_shape"] = [r["shape"][2], int(grid[1]), int(grid[2])]
        out.append(rec)
    return out, None


def html_model_section(r: dict, position: int, ctx: RunContext, explorers: list[dict]) -> str:
    name = r.get("model", "?")
    out = [f'<section id="model-{position}"><h2>{html_text(name)}</h2><ul>',
           f"<li>Status: {html_text(r.get('status'))}; weights: {html_text(r.get('weights_source') or r.get('weights'))}</li>",
           f"<li>Input the network received: {html_text(r.get('input_shape'))} (nominal size "
           f"{html_text(r.get('nominal_input_size'))})</li>"]
    if r.get("config"):
        out.append("<li>Settings: " + html_text(", ".join(f"{k}={v}" for k, v in r["config"].items())) + "</li>")
    kinds = [run.get("kind") or ("cold" if run.get("cold") else "timed") for run in r.get("runs") or []]
    if kinds:
        out.append(f"<li>Runs: {kinds.count('cold')} cold start, {kinds.count('warmup')} warm-up (not in the "
                   f"statistics), {kinds.count('timed')} timed</li>")
    phases = r.get("latency_phases_median") or {}
    if phases.get("forward") is not None:
        out.append(f"<li>Timed medians: preprocess {ms(phases.get('preprocess'))} ms, forward {ms(phases['forward'])} ms, "
                   f"postprocess {ms(phases.get('postprocess'))} ms; cold start "
                   f"{ms((r.get('cold_start') or {}).get('total_s'))} ms</li>")
    if r.get("phase_seconds"):
        out.append("<li>Wall time by phase: " + html_text(", ".join(
            f"{k} {v:.1f} s" for k, v in r["phase_seconds"].items() if v is not None)) + "</li>")
    if r.get("worker"):
        out.append("<li>Worker process: " + html_text(", ".join(f"{k} {v}" for k, v in r["worker"].items())) + "</li>")
    out.append("</ul>")
    per_image = r.get("latency_per_image") or {}
    if per_image:
        out.append(html_table(["image", "size", "first run ms", "then: median ms [95% interval]", "p90 ms", "CoV",
                               "runs"], [
            [img_name, "x".join(map(str, img.get("image_size") or [])),
             ms(img.get("first_run_s")) + (" (cold start)" if img.get("first_is_cold_start") else ""),
             html_ms_ci(img.get("steady") or {}), ms((img.get("steady") or {}).get("p90")),
             html_num((img.get("steady") or {}).get("cov"), lambda v: f"{v * 100:.1f}%"),
             (img.get("steady") or {}).get("n", 0) + 1] for img_name, img in per_image.items()]))
    if r.get("output_image"):
        summary = r.get("prediction_summary") or {}
        out.append(f'<h3>What it produced (first image)</h3><div class="output"><img src="{html_url(r["output_image"])}" '
                   f'alt="{html_text(name)} output"></div>')
        if summary:
            out.append("<p>" + html_text(", ".join(f"{k}: {f'{v:.4g}' if isinstance(v, float) else v}"
                                                   for k, v in summary.items())) + "</p>")
        if r.get("weights") == "random":
            out.append('<p class="meta">Random weights: this output shows the pipeline works, not what the model can do.</p>')
    tb = r.get("time_breakdown")
    if tb:
        out.append(f"<h3>Where the time goes</h3><p>One profiled pass (not a timed run), forward "
                   f"{tb.get('forward_ms', 0):.1f} ms with timing hooks on every module.</p><div class=pair><div>")
        out.append(html_table(["block", "ms", "share"], [[b["block"], html_num(b["ms"], lambda v: f"{v:.1f}"),
                                                          html_num(b["share"], lambda v: f"{v * 100:.1f}%")]
                                                         for b in tb.get("blocks", [])]))
        out.append("</div><div>" + html_table(["most expensive leaf module", "type", "calls", "ms", "share"], [
            [t["name"], t["type"], t["calls"], html_num(t["ms"], lambda v: f"{v:.1f}"),
             html_num(t["share"], lambda v: f"{v * 100:.1f}%")] for t in tb.get("top_leaves", [])]) + "</div></div>")
    d = r.get("dissection")
    if d:
        link = os.path.relpath(d["folder"], ctx.results_dir) if d.get("folder") else ""
        out.append(f"<h3>Inside the model</h3><p>{html_text(d.get('records'))} records (every call of "
                   f"{html_text(d.get('leaf_modules'))} leaf modules) in one pass of {d.get('seconds') or 0:.1f} s; "
                   f"{html_text(d.get('png_files'))} PNG and {html_text(d.get('npy_files'))} NPY files in "
                   f'<a href="{html_url(link)}/">{html_text(link)}</a>. NaN in {html_text(d.get("nan_records"))} '
                   f"records, Inf in {html_text(d.get('inf_records'))}.</p><p>Layer types: "
                   + html_text(", ".join(f"{t} {n}" for t, n in (d.get("type_counts") or {}).items())) + "</p>")
        if r.get("weights") == "random":
            out.append('<p class="meta">Random weights: these statistics describe the initialisation, not a trained model.</p>')
        out.append("<div class=pair><div><h3>Widest activation range</h3>" + html_table(
            ["#", "module", "call", "type", "min", "max"], [[w["index"], w["name"], w["call"], w["type"],
                                                             f"{w['range'][0]:.4g}", f"{w['range'][1]:.4g}"]
                                                            for w in d.get("widest_range", [])])
                   + "</div><div><h3>Highest fraction of exact zeros</h3>" + html_table(
            ["#", "module", "call", "type", "zeros"], [[z["index"], z["name"], z["call"], z["type"],
                                                       f"{z['zero_fraction'] * 100:.1f}%"] for z in d.get("most_zeros", [])])
                   + "</div></div>")
        records, problem = html_explorer_records(d)
        out.append(f"<h3>Layer explorer: {html_text(name)}</h3>")
        if records:
            out.append(f'<div class="explorer" id="explorer-{len(explorers)}" tabindex="0"></div>'
                       "<noscript><p>The layer explorer needs JavaScript.</p></noscript>")
            explorers.append({"model": name, "base": (Path(link).as_posix() + "/") if link else "",
                              "records": records})
        else:
            out.append(f'<p class="meta">{html_text(problem or "no records")}</p>')
    return "".join(out) + "</section>"


def html_report(data: dict, ctx: RunContext) -> str:
    """The report as one offline HTML page, rewritten after every model like the others."""
    import re
    results = data.get("models") or []
    shown = [r for r in results if r.get("status") != "not run"]
    system, config = data.get("system") or {}, data.get("config") or {}
    body = ['<nav><a href="#summary">Summary</a><a href="#charts">Charts</a><a href="#findings">Findings</a>']
    sections = [r for r in shown if r.get("cold_start") and r.get("status") != "running"]   # something measured
    body += [f'<a href="#model-{i}">{html_text(r.get("model"))}</a>' for i, r in enumerate(sections)]
    body.append(f"</nav><main><h1>Vision model benchmark report</h1><p class=meta>Run <code>{html_text(data.get('run_id'))}"
                f"</code>, started {html_text(data.get('started'))}, {data.get('total_seconds') or 0:.0f} s so far, status "
                f"<b>{html_text(data.get('status'))}</b>. Command: <code>{html_text(data.get('command'))}</code></p>")
    random_models = [r.get("model") for r in shown if r.get("weights") == "random"]
    if random_models:
        body.append(f'<p class="warn"><b>Warning: random weights.</b> {html_text(", ".join(random_models))} ran with '
                    "randomly initialised weights. Timing, memory, FLOPs and the dissection mechanics are valid; the "
                    "task outputs and the activation statistics of these models are not meaningful.</p>")
    if data.get("status") != "complete":
        body.append(f'<p class="warn"><b>Run {html_text(data.get("status"))}.</b> Not complete: ' + html_text(", ".join(
            f"{r.get('model')} ({r.get('status')})" for r in results if r.get("status") != "complete"))
                    + ". The figures below are those of the models that finished; this page is rewritten after every model.</p>")

    body.append("<div class=pair><div><h2>System</h2>" + html_table(["property", "value"], [
        [k, system.get(k)] for k in ("os", "python", "torch", "transformers", "ultralytics", "cuda_version", "gpu",
                                      "cpu", "cpu_count", "torch_threads", "device") if k in system]) + "</div>")
    settings = [["images", ", ".join(Path(p).name for p in data.get("images") or [])]] + [
        [k, config.get(k)] for k in ("image_source", "runs_per_image", "warmup_rounds", "seed", "weights", "device",
                                     "torch_threads", "isolation", "dissect_files", "sam_prompt", "keep_going") if k in config]
    if data.get("phase_totals"):
        settings.append(["wall time by phase", ", ".join(f"{k} {v:.1f} s" for k, v in data["phase_totals"].items()
                                                         if v is not None)])
    body.append("<div><h2>Configuration</h2>" + html_table(["setting", "value"], settings) + "</div></div>")

    kind = next((r["memory"]["peak_kind"] for r in shown if (r.get("memory") or {}).get("peak_kind")), "peak memory")
    rows = []
    for r in shown:
        e2e, mem = r.get("latency_end_to_end") or {}, r.get("memory") or {}
        peak = mem.get("peak_bytes")
        rows.append([r.get("model"), r.get("weights"), r.get("status"), html_num(r.get("load_seconds")),
                     html_num((r.get("cold_start") or {}).get("total_s"), ms), (html_ms_ci(e2e), e2e.get("median")),
                     html_num(e2e.get("p90"), ms), html_num((r.get("latency_forward") or {}).get("median"), ms),
                     html_num(e2e.get("cov"), lambda v: f"{v * 100:.1f}%"), html_num(r.get("fps")),
                     (f"{peak / 1024 ** 2:.0f} (+{(mem.get('peak_over_baseline_bytes') or 0) / 1024 ** 2:.0f})", peak)
                     if peak else ("n/a", None), html_num(r.get("parameters"), lambda v: f"{v:,}"),
                     html_num(r.get("gflops")), "x".join(map(str, r.get("input_shape") or [])) or "n/a",
                     html_num((r.get("dissection") or {}).get("records"), str), html_num(e2e.get("n"), str)])
    body.append('<h2 id="summary">Summary</h2>' + html_table(
        ["model", "weights", "status", "load s", "cold start ms", "end-to-end median ms [95% interval]", "p90 ms",
         "forward median ms", "CoV", "FPS", f"peak memory MB ({kind})", "params", "GFLOPs", "input shape",
         "layers dissected", "timed runs"], rows, sortable=True)
                + "<p class=meta>Click a column to sort. End to end = preprocess + forward + postprocess; FPS = 1 / its "
                  "median. GFLOPs count 2 per multiply-add. Peak memory is over the timed runs; in brackets, its increase "
                  "over what the process held just before the model loaded.</p>")

    charts = [(f, alt) for f, alt in (("latency.png", "Latency per model"), ("memory_vs_params.png",
                                                                             "Peak memory against parameters"))
              if (ctx.assets_dir / f).exists()]
    body.append('<h2 id="charts">Charts</h2><div class="charts">' + "".join(
        f'<img src="{html_url(ctx.assets_dir.name + "/" + f)}" alt="{html_text(alt)}">' for f, alt in charts)
                + ("" if charts else "<p>No charts yet: they are drawn when the run ends.</p>") + "</div>")
    found = findings(results)
    body.append('<h2 id="findings">Findings</h2><ul>' + "".join(f"<li>{html_text(f)}</li>" for f in found)
                + ("" if found else "<li>Too few finished models to compare.</li>") + "</ul>")

    failed = [r for r in results if r.get("status") not in ("complete", "not run", "running")]
    if failed:
        body.append('<h2 id="failures">Failed or interrupted models</h2>')
        for r in failed:
            error = r.get("error") or {}
            tail = error.get("output_tail")
            body.append(f'<div class="fail"><b>{html_text(r.get("model"))}</b>: {html_text(r.get("status"))} in phase '
                        f"{html_text(error.get('phase') or r.get('phase_reached') or r.get('phase'))}. "
                        f"{html_text((error.get('type', '') + ': ' + error.get('message', '')).strip(': '))}<br>"
                        f"Memory: {html_text(failure_memory(r))}"
                        + (f"<details><summary>last output</summary><pre>{html_text(tail if isinstance(tail, str) else chr(10).join(tail))}"
                           "</pre></details>" if tail else "") + "</div>")

    explorers: list[dict] = []
    body += [html_model_section(r, i, ctx, explorers) for i, r in enumerate(sections)]
    paths = report_paths(ctx)
    body.append("<h2>Where the files are</h2><ul>" + "".join(
        f'<li>{html_text(label)}: <a href="{html_url(paths[key].name)}">{html_text(paths[key].name)}</a></li>'
        for key, label in (("json", "JSON (every run's time)"), ("csv", "CSV (one row a model)"),
                           ("md", "Markdown report")))
                + f"<li>Layer folders: {html_text(ctx.viz_dir)}/&lt;MODEL_NAME&gt;/</li></ul></main>")
    # Every "<" escaped as \u003c: the JSON cannot end its script element or open a comment in it.
    payload = json.dumps(strict_json({"explorers": explorers}), allow_nan=False).replace("<", "\\u003c")
    parts = {"title": html_text(f"Benchmark report {data.get('run_id', '')}"), "body": "\n".join(body), "data": payload}
    return re.sub(r"@@(\w+)@@", lambda m: parts[m.group(1)], HTML_PAGE)


# =========================================================================================
# Compare and merge: results read back
# =========================================================================================
SCHEMAS_READ = ("unified-benchmark/1", RESULTS_SCHEMA)  # the previous layout is still read
SIGNIFICANCE_LEVEL = 0.05
EXACT_TEST_MAX_SIDE = 7             # up to this many runs on a side, the U test's exact distribution
EXACT_TEST_MAX_SPLITS = 200_000     # the exact test enumerates this many ways to split the runs at most
SIGNIFICANCE_METHOD = (
    "two-sided Mann-Whitney U test on the timed runs' end-to-end times of both sides, 5% level "
    f"(exact permutation distribution of U when a side has {EXACT_TEST_MAX_SIDE} runs or fewer and the splits "
    f"of all runs into two sides number {EXACT_TEST_MAX_SPLITS:,} or fewer, "
    "normal approximation with tie and continuity corrections otherwise); no assumption about the distribution of times")
# What is compared at the top: (label, where to read it). Differences here explain differences below.
COMPARED_SETTINGS = [
    ("GPU", "system", "gpu"), ("CPU", "system", "cpu"), ("CPU cores", "system", "cpu_count"),
    ("NVIDIA driver", "system", "cuda_driver_version"), ("CUDA", "system", "cuda_version"),
    ("cuDNN", "system", "cudnn_version"), ("PyTorch", "system", "torch"), ("transformers", "system", "transformers"),
    ("ultralytics", "system", "ultralytics"), ("Python", "system", "python"), ("OS", "system", "os"),
    ("default dtype", "system", "default_dtype"), ("matmul TF32", "system", "matmul_allow_tf32"),
    ("cuDNN TF32", "system", "cudnn_allow_tf32"), ("device", "config", "device"),
    ("torch threads", "system", "torch_threads"), ("weights", "config", "weights"),
    ("timed runs per image", "config", "runs_per_image"), ("warm-up rounds", "config", "warmup_rounds"),
    ("isolation", "config", "isolation"), ("seed", "config", "seed"), ("MobileSAM prompt", "config", "sam_prompt"),
]


def read_results(path: Path, option: str) -> dict:
    """A results JSON of a schema this version reads, or a UsageError in one line."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{option}: {path}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option}: {path}: cannot read it ({exception_line(exc)})")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: {path}: not JSON ({exc.msg} at line {exc.lineno}); "
                         "expected a results/benchmark_results_<run>.json file")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema is None or not isinstance(data.get("models"), list):
        raise UsageError(f"{option}: {path}: not a benchmark results file (no 'schema' and 'models'); "
                         "expected a results/benchmark_results_<run>.json file")
    if schema not in SCHEMAS_READ:
        raise UsageError(f"{option}: {path}: schema {schema!r} is not one this version reads "
                         f"({', '.join(SCHEMAS_READ)}); use the version of the tool that wrote it")
    return data


def model_key(r: dict) -> str:
    """A model's identity across files: its CLI name, and its variant where results have variants."""
    return r["cli_name"] + (f" [{r['variant']}]" if r.get("variant") else "")


def timed_seconds(r: dict) -> list[float]:
    """End-to-end times of the runs in the headline statistics: kind 'timed' (schema 2), or every
    run but the cold start (schema 1, which had no warm-up)."""
    runs = r.get("runs") or []
    if any("kind" in run for run in runs):
        return [run["total_s"] for run in runs if run.get("kind") == "timed"]
    return [run["total_s"] for run in runs if not run.get("cold")]


def setting(data: dict, r: dict | None, where: str, key: str):
    """A model's system or run setting: its own where a merged file keeps one, else the file's."""
    own = (r or {}).get("system" if where == "system" else "run_config")
    return (own or data.get(where) or {}).get(key)


def mann_whitney_p(base: list[float], new: list[float]) -> float:
    """Two-sided p value of the Mann-Whitney U test (ties get average ranks)."""
    n1, n2 = len(base), len(new)
    if n1 == 0 or n2 == 0:
        return 1.0
    values = np.concatenate([np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):  # average ranks over runs of equal values
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    mean_u = n1 * n2 / 2.0
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    if min(n1, n2) > EXACT_TEST_MAX_SIDE or math.comb(n1 + n2, n1) > EXACT_TEST_MAX_SPLITS:
        _, counts = np.unique(values, return_counts=True)
        n = n1 + n2
        var = n1 * n2 / 12.0 * ((n + 1) - (counts ** 3 - counts).sum() / (n * (n - 1)))
        if var <= 0:
            return 1.0
        z = max(abs(u - mean_u) - 0.5, 0.0) / math.sqrt(var)  # with continuity correction
        return math.erfc(z / math.sqrt(2.0))
    # Exact: every way to split the pooled ranks into the two sides (ties included).
    import itertools
    splits = np.array(list(itertools.combinations(range(n1 + n2), n1)))
    us = ranks[splits].sum(axis=1) - n1 * (n1 + 1) / 2.0
    return float(np.mean(np.abs(us - mean_u) >= abs(u - mean_u) - 1e-9))


def compare_model(base: dict, new: dict) -> dict:
    """One model on both sides: latency verdict, memory, size and status."""
    a, b = timed_seconds(base), timed_seconds(new)
    sa, sb = latency_stats(a), latency_stats(b)
    ratio = sb["median"] / sa["median"] if sa["median"] and sb["median"] else None
    p = mann_whitney_p(a, b) if a and b else None
    if p is None:
        verdict = "not compared"
    elif p < SIGNIFICANCE_LEVEL and ratio is not None and ratio != 1:
        verdict = "slower" if ratio > 1 else "faster"
    else:
        verdict = "no significant change"
    peaks = [(r.get("memory") or {}).get("peak_bytes") for r in (base, new)]
    changed = [label for label, key in (("parameters", "parameters"), ("FLOPs", "flops"), ("input shape", "input_shape"))
               if base.get(key) is not None and new.get(key) is not None and base.get(key) != new.get(key)]
    return {"key": model_key(base), "model": base["model"], "base": sa, "new": sb, "ratio": ratio, "p": p,
            "verdict": verdict, "peak_bytes": peaks, "status": [base["status"], new["status"]],
            "parameters": [base.get("parameters"), new.get("parameters")], "gflops": [base.get("gflops"), new.get("gflops")],
            "dtype": [base.get("dtype"), new.get("dtype")], "different_model": changed}


def compare_pair(base: dict, new: dict) -> dict:
    """Everything one comparison shows: setting differences, warnings, the models side by side."""
    base_models = {model_key(r): r for r in base["models"] if r["status"] != "not run"}
    new_models = {model_key(r): r for r in new["models"] if r["status"] != "not run"}
    common = [k for k in base_models if k in new_models]
    differences = []
    for label, where, key in COMPARED_SETTINGS:
        values = [setting(data, None, where, key) for data in (base, new)]
        if values[0] != values[1]:
            differences.append([label, *("none" if v is None else v for v in values)])
    images = [sorted(Path(p).name for p in data.get("images", [])) for data in (base, new)]
    if images[0] != images[1]:
        differences.append(["images", ", ".join(images[0]), ", ".join(images[1])])
    warnings = []
    reported = {key for label, _, key in COMPARED_SETTINGS if label in {d[0] for d in differences}}
    for k in common:
        # Merged files and --devices runs keep a system per model: a model can move where its file did not.
        moved = [f"{key} {setting(base, base_models[k], 'system', key)} -> {setting(new, new_models[k], 'system', key)}"
                 for key in SYSTEM_IDENTITY if setting(base, base_models[k], "system", key)
                 != setting(new, new_models[k], "system", key) and key not in reported]
        devices = [base_models[k].get("device"), new_models[k].get("device")]
        if devices[0] != devices[1] and None not in devices:
            moved.append(f"device {devices[0]} -> {devices[1]}")
        if moved and any(base_models[k].get(x) or new_models[k].get(x) for x in ("system", "device")):
            warnings.append(f"{base_models[k]['model']} ran on a different system or device: {'; '.join(moved)}.")
        weights = [base_models[k].get("weights"), new_models[k].get("weights")]
        if weights[0] != weights[1]:
            warnings.append(f"{base_models[k]['model']}: {weights[0]} weights in base, {weights[1]} in new. Random "
                            "weights change what postprocessing does (e.g. how many boxes survive), so the "
                            "end-to-end times are not comparable.")
    return {"base": base, "new": new, "differences": differences, "warnings": warnings,
            "models": [compare_model(base_models[k], new_models[k]) for k in common],
            "base_only": [base_models[k]["model"] for k in base_models if k not in new_models],
            "new_only": [new_models[k]["model"] for k in new_models if k not in base_models]}


def slower_than(row: dict, pct: float) -> bool:
    return row["verdict"] == "slower" and (row["ratio"] - 1) * 100 > pct


def change_text(before, after, fmt) -> str:
    if before is None and after is None:
        return "n/a"
    if before == after:
        return fmt(after)
    numeric = isinstance(before, (int, float)) and isinstance(after, (int, float)) and before
    change = f" ({(after / before - 1) * 100:+.1f}%)" if numeric else ""
    return f"{fmt(before)} -> {fmt(after)}{change}"


def median_text(stats: dict) -> str:
    """A median in ms with its 95% interval, short enough for a table cell."""
    if stats.get("ci95_low") is None:
        return f"{ms(stats.get('median'))} (no interval: {stats.get('n') or 0} runs)"
    return f"{ms(stats['median'])} {format_interval(stats)}"


def comparison_blocks(pairs: list[dict], paths: list[Path], args) -> list[tuple]:
    """The comparison as a list of blocks, rendered as Markdown or HTML: ("h1"|"h2"|"h3"|"p"|"warn", text),
    ("table", headers, rows) or ("list", items). Text may hold `code` and **bold** spans."""
    mb = lambda b: "n/a" if b is None else f"{b / 1024 ** 2:.0f} MB"
    blocks = [("h1", "Benchmark comparison"), ("p", f"Base: `{paths[0]}` (run `{pairs[0]['base'].get('run_id')}`)."),
              ("p", f"Significance: {SIGNIFICANCE_METHOD}. A verdict says whether the two sets of timed runs differ by "
                    "more than their noise; the ratio says by how much. Medians in ms with their 95% interval in brackets "
                    f"(it needs {MIN_RUNS_FOR_CI} timed runs or more). With 3 runs on each side no difference can be "
                    "significant (the smallest possible p is 0.1); more runs let the test see smaller changes.")]
    if args.fail_if_slower is not None:
        blocks.append(("p", f"Gate: `--fail-if-slower {args.fail_if_slower:g}` fails on a model significantly slower "
                            f"than base by more than {args.fail_if_slower:g}%."))
    for pair, path in zip(pairs, paths[1:]):
        new = pair["new"]
        blocks += [("h2", f"New: run `{new.get('run_id')}`"), ("p", f"File `{path}`.")]
        blocks += [("warn", f"**Warning:** {w}") for w in pair["warnings"]]
        blocks.append(("h3", "What differs between the runs"))
        if pair["differences"]:
            blocks.append(("table", ["setting", "base", "new"], [[label, a, b] for label, a, b in pair["differences"]]))
        else:
            blocks.append(("p", "Nothing: same system, library versions, device, weights and settings ("
                                + ", ".join(label for label, _, _ in COMPARED_SETTINGS) + ", images)."))
        rows = pair["models"]
        verdicts = collections.Counter(r["verdict"] for r in rows)
        blocks.append(("p", f"{len(rows)} model(s) on both sides: " + (", ".join(f"{n} {v}" for v, n in verdicts.items()) or "none")
                            + "." + (f" On one side only: {len(pair['base_only']) + len(pair['new_only'])}."
                                     if pair["base_only"] or pair["new_only"] else "")))
        if rows:
            blocks += [("h3", "Latency (end to end, timed runs)"), ("table",
                ["model", "base median ms [95% CI]", "new median ms [95% CI]", "new / base", "runs", "p", "verdict"],
                [[r["model"], median_text(r["base"]), median_text(r["new"]),
                  "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}x", f"{r['base']['n']} / {r['new']['n']}",
                  "n/a" if r["p"] is None else f"{r['p']:.3g}",
                  f"**{r['verdict']}**" + (" (fails the gate)" if args.fail_if_slower is not None
                                           and slower_than(r, args.fail_if_slower) else "")] for r in rows]),
                ("h3", "Memory, size and status"), ("table",
                ["model", "peak memory", "parameters", "GFLOPs", "compute dtype", "status"],
                [[r["model"], change_text(*r["peak_bytes"], mb),
                  change_text(*r["parameters"], lambda v: "n/a" if v is None else f"{v:,}"),
                  change_text(*r["gflops"], lambda v: "n/a" if v is None else f"{v:.2f}"),
                  change_text(*r["dtype"], str), change_text(*r["status"], str)] for r in rows])]
            for r in rows:
                if r["different_model"]:
                    blocks.append(("warn", f"**Different model:** {r['model']}'s {', '.join(r['different_model'])} "
                                           "changed, so the two sides did not run the same network on the same input; "
                                           "its timings are not a like-for-like comparison."))
            changes = [f"Status change: {r['model']} {r['status'][0]} -> {r['status'][1]}."
                       for r in rows if r["status"][0] != r["status"][1]]
            blocks += [("list", changes)] if changes else []
        if pair["base_only"] or pair["new_only"]:
            blocks += [("h3", "Models on one side only"), ("list",
                       ([f"Base only: {', '.join(pair['base_only'])}"] if pair["base_only"] else [])
                       + ([f"New only: {', '.join(pair['new_only'])}"] if pair["new_only"] else []))]
    return blocks


def comparison_markdown(pairs: list[dict], paths: list[Path], args) -> str:
    lines = []
    for kind, *content in comparison_blocks(pairs, paths, args):
        if kind == "table":
            lines += [md_table(*content), ""]
        elif kind == "list":
            lines += [f"- {item}" for item in content[0]] + [""]
        else:
            prefix = {"h1": "# ", "h2": "## ", "h3": "### ", "p": "", "warn": "> "}[kind]
            lines += [prefix + content[0], ""]
    return "\n".join(lines) + "\n"


def comparison_html(pairs: list[dict], paths: list[Path], args) -> str:
    """The same blocks as comparison_markdown, in the HTML report's page and style."""
    import re

    def markup(escaped: str) -> str:   # runs on escaped text: only our own `code` and **bold** become tags
        escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)

    def inline(text) -> str:
        return markup(html_text(text))

    body = ["<main>"]
    for kind, *content in comparison_blocks(pairs, paths, args):
        if kind == "table":
            headers, rows = content
            table = html_table(headers, rows)
            body.append(re.sub(r"<td>(.*?)</td>", lambda m: f"<td>{markup(m.group(1))}</td>", table))
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in content[0]) + "</ul>")
        elif kind == "warn":
            body.append(f'<p class="warn">{inline(content[0])}</p>')
        else:
            body.append(f"<{kind}>{inline(content[0])}</{kind}>")
    body.append("</main>")
    parts = {"title": html_text(f"Benchmark comparison {paths[0].name}"), "body": "\n".join(body),
             "data": json.dumps({"explorers": []})}
    return re.sub(r"@@(\w+)@@", lambda m: parts[m.group(1)], HTML_PAGE)


COMPARISON_RENDERERS = {"md": comparison_markdown, "html": comparison_html}


def unique_output(results_dir: Path, stem: str) -> tuple[str, Path]:
    """A run id (timestamp, _2, _3...) whose output name is free."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = get_timestamp()
    for attempt in range(1, 1000):
        run_id = stamp if attempt == 1 else f"{stamp}_{attempt}"
        if not list(results_dir.glob(f"{stem}_{run_id}.*")):
            return run_id, results_dir / f"{stem}_{run_id}"
    raise UsageError(f"--output-dir: no free file name for {stem} in {results_dir}")


def compare_results(paths: list[Path], args) -> int:
    """--compare BASE NEW [MORE]: each later file against the first. Exit 1 when --fail-if-slower
    trips, else 0 (2 for unreadable files, raised as UsageError before anything is written)."""
    if len(paths) < 2:
        raise UsageError("--compare needs two or more result files: BASE.json NEW.json [MORE.json ...]")
    files = [read_results(p, "--compare") for p in paths]
    pairs = [compare_pair(files[0], new) for new in files[1:]]
    run_id, stem = unique_output(args.output_dir.expanduser() / "results", "comparison")
    written = []
    for suffix, render in COMPARISON_RENDERERS.items():
        target = stem.with_suffix(f".{suffix}")
        atomic_write_text(target, render(pairs, paths, args))
        written.append(target)
    gate_failed = []
    for pair, path in zip(pairs, paths[1:]):
        print(f"Base {files[0].get('run_id')} -> new {pair['new'].get('run_id')} ({path})")
        for label, a, b in pair["differences"]:
            print(f"  differs: {label}: {a} -> {b}")
        for w in pair["warnings"]:
            log("WARNING", w)
        print(f"  {'model':<24} {'base ms':>10} {'new ms':>10} {'new/base':>9} {'p':>8}  verdict")
        for r in pair["models"]:
            ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}x"
            p = "n/a" if r["p"] is None else f"{r['p']:.3g}"
            print(f"  {r['model']:<24} {ms(r['base']['median']):>10} {ms(r['new']['median']):>10} {ratio:>9} "
                  f"{p:>8}  {r['verdict']}" + ("" if r["status"][0] == r["status"][1]
                                              else f" (status {r['status'][0]} -> {r['status'][1]})")
                  + (" (different model: " + ", ".join(r["different_model"]) + ")" if r["different_model"] else ""))
            if args.fail_if_slower is not None and slower_than(r, args.fail_if_slower):
                gate_failed.append(f"{r['model']} {(r['ratio'] - 1) * 100:.1f}% slower in {pair['new'].get('run_id')}")
        for side, names in (("base", pair["base_only"]), ("new", pair["new_only"])):
            if names:
                print(f"  only in {side}: {', '.join(names)}")
    for target in written:
        print(f"Comparison: {target}")
    if gate_failed:
        log("ERROR", f"--fail-if-slower {args.fail_if_slower:g}: " + "; ".join(gate_failed))
        return EXIT_FAILED
    return EXIT_OK


def merge_results(paths: list[Path], args) -> int:
    """--merge A B ...: one set of reports from results run in parts (--models subsets on several
    devices or machines). Each model keeps its runs and statistics; where the parts' systems or
    settings differ, each model carries its own (keys 'system' and 'run_config')."""
    if len(paths) < 2:
        raise UsageError("--merge needs two or more result files")
    files = [read_results(p, "--merge") for p in paths]
    chosen: dict[str, tuple[dict, int]] = {}
    for index, data in enumerate(files):
        for r in data["models"]:
            key = model_key(r)
            if key in chosen and r["status"] != "not run" and chosen[key][0]["status"] != "not run":
                if args.prefer != "last":
                    raise UsageError(f"--merge: {r['model']} is in both {paths[chosen[key][1]]} and {paths[index]}; "
                                     "remove one file or pass --prefer last to keep the later file's")
                log("WARNING", f"--merge: {r['model']} from {paths[index]} replaces the one from {paths[chosen[key][1]]}")
            if key not in chosen or r["status"] != "not run":
                chosen[key] = (r, index)
    first = files[0]
    mixed = {where: any(d.get(where) != first.get(where) for d in files[1:]) for where in ("system", "config")}
    run_id, stem = unique_output(args.output_dir.expanduser() / "results", "benchmark_results")
    assets = stem.parent / f"report_{run_id}"
    assets.mkdir(exist_ok=True)
    import shutil
    models = []
    for r, index in chosen.values():
        r = dict(r, source_file=str(paths[index]), source_run_id=files[index].get("run_id"))
        if mixed["system"]:
            r["system"] = r.get("system") or files[index].get("system")
        if mixed["config"]:
            r["run_config"] = files[index].get("config")
        for key in ("output_image",):  # files the report links to, relative to their results folder
            if r.get(key):
                source = Path(paths[index]).parent / r[key]
                if source.exists():
                    shutil.copy2(source, assets / source.name)
                    r[key] = f"{assets.name}/{source.name}"
        models.append(r)
    statuses = {d.get("status") for d in files}
    data = {"schema": RESULTS_SCHEMA, "run_id": run_id, "status": "complete" if statuses == {"complete"} else "incomplete",
            "started": min(d.get("started", "") for d in files), "written": datetime.now().isoformat(timespec="seconds"),
            "total_seconds": sum(d.get("total_seconds") or 0.0 for d in files),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "config": {**first["config"], "models": [r["cli_name"] for r in models]}, "system": first["system"],
            "images": list(dict.fromkeys(p for d in files for p in d.get("images", []))), "models": models,
            "merged_from": [{"file": str(p), "run_id": d.get("run_id"), "status": d.get("status"),
                             "command": d.get("command")} for p, d in zip(paths, files)]}
    data["phase_totals"] = phase_totals(models, data["total_seconds"])
    ctx = argparse.Namespace(run_id=run_id, results_dir=stem.parent, assets_dir=assets,
                             viz_dir=Path(first["config"].get("viz_dir") or "viz"))
    written = write_report_files(data, ctx)
    log("INFO", f"Merged {len(models)} model(s) from {len(files)} file(s)"
        + ("; the parts ran on different systems, each model keeps its own" if mixed["system"] else ""))
    for p in written.values():
        print(f"  - {p}")
    return EXIT_OK


# =========================================================================================
# Command line
# =========================================================================================
class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def checked_number(cast, acceptable, what: str):
    """An argparse type: the text as `cast`, refused in one line unless `acceptable`."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
        if not acceptable(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    return parse


positive_int = checked_number(int, lambda v: v >= 1, "a whole number of 1 or more")
non_negative_int = checked_number(int, lambda v: v >= 0, "a whole number of 0 or more")
positive_seconds = checked_number(float, lambda v: math.isfinite(v) and v > 0, "a positive number of seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="unified_benchmark.py",
        description="Benchmark vision models one after another on every test image: latency (cold start and warm "
                    "statistics), memory, parameters, FLOPs, and a dissection of every layer call. Writes "
                    "results/benchmark_{results.json,summary.csv,report.md} and viz/<run id>/<model>/.",
        epilog="Without network: --weights random builds the released architectures with random weights. "
               "Exit codes: 0 done, 1 a model failed (--compare: a model slower than --fail-if-slower allows), 2 bad input, 130 interrupted (Ctrl-C), 143 terminated.")
    what = parser.add_argument_group("what to run")
    what.add_argument("--models", default=",".join(MODELS_BY_CLI_NAME),
                      help="comma-separated model names, in the order to run (default: all eight; see --list-models)")
    what.add_argument("--list-models", action="store_true", help="print the model names with a description and exit")
    what.add_argument("--images", nargs="+", metavar="PATH",
                      help=f"image files or folders (default: {DEFAULT_IMAGE_DIR.name}/; if it holds no usable image, "
                           "the sample photos bundled with ultralytics)")
    what.add_argument("--weights", choices=["pretrained", "random"], default="pretrained",
                      help="pretrained: released weights (downloaded if missing); random: same architecture, "
                           "random initialisation, no network (default: pretrained)")
    what.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                      help="folder of local weights: YOLO/SAM .pt files and save_pretrained folders named like the hub "
                           f"repos, e.g. Depth-Anything-V2-Small-hf (default: {DEFAULT_MODELS_DIR})")
    what.add_argument("--sam-prompt", choices=["everything", "box"], default=None,
                      help="MobileSAM workload: everything (grid of point prompts) or box (one box prompt) "
                           f"(default: {MobileSAMBenchmark.SAM_PROMPT}, the class constant)")
    how = parser.add_argument_group("how to measure")
    how.add_argument("--runs", type=positive_int, default=NUM_INFERENCE_RUNS,
                     help=f"timed runs per image, the only runs in the latency statistics (default: {NUM_INFERENCE_RUNS}); "
                          "each model first gets one cold-start run and the warm-up rounds")
    how.add_argument("--warmup", type=non_negative_int, default=NUM_WARMUP_ROUNDS,
                     help="warm-up rounds over all images after the cold start, kept in the JSON but not in the "
                          f"statistics, so every input shape is seen before timing (default: {NUM_WARMUP_ROUNDS})")
    how.add_argument("--isolation", choices=["process", "none"], default="process",
                     help="process: each model in a fresh worker process, so its figures do not depend on the models "
                          "before it and a crash takes only that model down; none: all in this process, for "
                          "debugging (default: process)")
    how.add_argument("--model-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                     help="kill a model's worker that runs longer than this and mark it 'timeout' (default: none; "
                          "needs --isolation process)")
    how.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: CUDA if available)")
    how.add_argument("--threads", type=positive_int, default=None,
                     help="torch CPU threads for every model (default: torch's choice, the physical cores)")
    how.add_argument("--seed", type=int, default=RANDOM_SEED, help=f"seed for every generator (default: {RANDOM_SEED})")
    how.add_argument("--no-dissect", dest="dissect", action="store_false",
                     help="record layer statistics but write no PNG/NPY files")
    how.add_argument("--keep-going", action="store_true",
                     help="on a model failure, record it and go on with the next model (default: stop at the first)")
    how.add_argument("--devices", default=None, metavar="DEV1,DEV2",
                     help="run models in parallel, one worker per device, never two models on one device "
                          "(e.g. cuda:0,cuda:1); one report says where each model ran (default: --device alone)")
    out = parser.add_argument_group("where to write")
    out.add_argument("--output-dir", type=Path, default=SCRIPT_DIR,
                     help="folder that receives results/ and viz/ (default: the script's folder)")
    back = parser.add_argument_group("read results back (no model runs)")
    back.add_argument("--compare", nargs="+", type=Path, metavar="JSON",
                      help="BASE.json NEW.json [MORE.json ...]: each later run against the first, with a significance "
                           "test per model; writes results/comparison_<run>.md and .html")
    back.add_argument("--fail-if-slower", type=float, default=None, metavar="PCT",
                      help="with --compare: exit 1 when a model is significantly slower than base by more than PCT%%")
    back.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                      help="A.json B.json ...: one set of reports from runs of model subsets (shards)")
    back.add_argument("--prefer", choices=["last"], default=None,
                      help="with --merge: a model in several files is taken from the last one (default: an error)")
    return parser


def parse_models(text: str) -> list[type[ModelBenchmark]]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    valid = ", ".join(MODELS_BY_CLI_NAME)
    if not names:
        raise UsageError(f"--models: the list is empty; valid names: {valid}")
    unknown = [n for n in names if n not in MODELS_BY_CLI_NAME]
    if unknown:
        raise UsageError(f"--models: unknown model {', '.join(repr(n) for n in unknown)}; valid names: {valid}")
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        log("WARNING", f"--models: duplicates removed; each model runs once: {', '.join(unique)}")
    return [MODELS_BY_CLI_NAME[n] for n in unique]


def resolve_device(text: str):
    import torch
    text = text.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            log("INFO", f"Using CUDA device: {torch.cuda.get_device_name(0)}")
            return torch.device("cuda:0")
        log("WARNING", "CUDA not available, falling back to CPU. Performance will be significantly slower.")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        # The format first, whether or not CUDA is here: only plain ASCII digits without a
        # leading zero (str.isdigit() accepts "٣", and torch rejects "01" later with a traceback).
        index_text = text.partition(":")[2] if ":" in text else "0"
        if not (index_text.isascii() and index_text.isdigit() and (index_text == "0" or index_text[0] != "0")):
            raise UsageError(f"--device {text!r}: expected cuda or cuda:N with N a GPU index written in "
                             "ASCII digits without leading zeros (cuda:0, cuda:1, ...)")
        index = int(index_text)
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine (torch {torch.__version__}); "
                             "use --device cpu or auto")
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {text}: this machine has {count} GPU(s), indices 0 to {count - 1}")
        return torch.device("cuda", index)
    raise UsageError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


def parse_devices(text: str) -> list:
    """--devices: each a --device value; a GPU may appear once (two models on one GPU would
    compete for it), the CPU several times (its workers share the cores: timings are meaningless)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--devices: the list is empty; e.g. --devices cuda:0,cuda:1")
    devices = []
    for name in names:
        if name.lower() == "auto":
            raise UsageError("--devices: name each device (cpu, cuda:N); auto is for --device")
        try:
            devices.append(resolve_device(name))
        except UsageError as exc:
            raise UsageError(str(exc).replace("--device ", "--devices: ", 1))
    gpus = [str(d) for d in devices if d.type == "cuda"]
    repeated = sorted({g for g in gpus if gpus.count(g) > 1})
    if repeated:
        raise UsageError(f"--devices: {', '.join(repeated)} listed twice; one model at a time per GPU")
    if sum(d.type == "cpu" for d in devices) > 1:
        log("WARNING", "--devices: several workers on the CPU share its cores; their timings are not meaningful")
    return devices


def prepare_output(output_dir: Path) -> tuple[str, tuple[Path, Path, Path]]:
    """Create results/ and a run folder that no other run shares (mkdir is atomic), and
    prove the folders are writable, all before any model loads."""
    output_dir = output_dir.expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir: {output_dir} is a file, not a folder; choose another path")
    results_dir, viz_root = output_dir / "results", output_dir / "viz"
    try:
        for folder in (results_dir, viz_root):
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"--output-dir: {folder} is a file where a folder is needed; move it or choose "
                                 "another --output-dir")
            folder.mkdir(parents=True, exist_ok=True)
        stamp = get_timestamp()
        for attempt in range(1, 1000):
            run_id = stamp if attempt == 1 else f"{stamp}_{attempt}"
            try:
                (viz_root / run_id).mkdir()
                break
            except FileExistsError:
                continue
        assets = results_dir / f"report_{run_id}"
        assets.mkdir(exist_ok=True)
        probe = results_dir / f".write_test_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except PermissionError as exc:
        raise UsageError(f"--output-dir: cannot write to {exc.filename or output_dir} (permission denied); "
                         "choose a writable --output-dir")
    except OSError as exc:
        raise UsageError(f"--output-dir: cannot create folders under {output_dir}: {exc.strerror or exc}")
    return run_id, (results_dir, viz_root / run_id, assets)


def list_models() -> None:
    width = max(len(n) for n in MODELS_BY_CLI_NAME)
    for name, cls in MODELS_BY_CLI_NAME.items():
        print(f"{name:<{width}}  {cls.DESCRIPTION}")


def main(argv: list[str] | None = None) -> int:
    invoked = datetime.now()
    try:
        args = build_parser().parse_args(argv)
        if args.list_models:
            list_models()
            return EXIT_OK
        if args.compare and args.merge:
            raise UsageError("--compare and --merge: one at a time")
        if args.fail_if_slower is not None and (not args.compare or not math.isfinite(args.fail_if_slower)
                                                or args.fail_if_slower < 0):
            raise UsageError("--fail-if-slower PCT needs --compare and a percentage of 0 or more")
        if args.prefer and not args.merge:
            raise UsageError("--prefer needs --merge")
        if args.compare:
            return compare_results(args.compare, args)
        if args.merge:
            return merge_results(args.merge, args)
        args.model_classes = parse_models(args.models)
        args.models_dir = args.models_dir.expanduser()
        if args.model_timeout and args.isolation == "none":
            raise UsageError("--model-timeout needs --isolation process: a model in this process cannot be stopped")
        if args.isolation == "process":
            # First: the server's imports (5-6 s, the largest part of the tool's overhead) then
            # overlap the rest of the start-up here, this process's own torch import included.
            start_worker_server()
            import torch  # the count torch would choose; the workers pin it (they import ultralytics)
            args.threads = args.threads or torch.get_num_threads()
            torch.set_num_threads(args.threads)  # so that the system section states the run's count
        else:
            args.threads = configure_threads(args.threads)
            args.allocator = keep_freed_memory()
        if args.devices:
            if args.isolation == "none":
                raise UsageError("--devices runs one worker process per device: it needs --isolation process")
            if args.device != "auto":
                raise UsageError("--device and --devices: give one or the other")
            args.devices = parse_devices(args.devices)
            device = args.devices[0]
        else:
            device = resolve_device(args.device)
        images, image_source = discover_images(args.images)
        run_id, paths = prepare_output(args.output_dir)  # last: nothing is created for a bad input
    except UsageError as exc:
        print(f"[ERROR] {exc} (see --help)", file=sys.stderr, flush=True)
        return EXIT_USAGE

    ctx = RunContext(args, device, images, image_source, run_id, paths, started=invoked)
    previous = {s: signal.signal(s, raise_on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        log("INFO", f"Run {run_id}: {len(args.model_classes)} model(s), {len(images)} image(s), 1 cold-start run, "
                    f"{args.warmup} warm-up round(s), {args.runs} timed run(s) per image, {args.weights} weights, "
                    f"device {', '.join(map(str, args.devices)) if args.devices else device}, seed {args.seed}, "
                    + ("one worker process per model" if args.isolation == "process" else "all in this process"))
        log("INFO", f"Images: {', '.join(p.name for p in images)}")
        code = run_all(args.model_classes, ctx)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    paths_written = report_paths(ctx)
    print("=" * 80)
    print(f"BENCHMARK {ctx.status.upper()}")
    print("=" * 80)
    for r in ctx.results:
        print(f"  {r['model']:<22} {r['status']}")
    print("Output files:")
    for p in paths_written.values():
        print(f"  - {p}")
    print(f"Layer folders: {ctx.viz_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
