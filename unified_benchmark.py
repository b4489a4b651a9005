#!/usr/bin/env python3
"""Unified vision model benchmark: speed, memory, FLOPs and a layer-by-layer dissection.

Benchmarks eight models one after another on every image in test_data/ and writes a JSON,
a CSV and a Markdown report under results/, plus one folder of layer dissections per model
under viz/<run id>/.

    python unified_benchmark.py                       # all eight models, pretrained weights
    python unified_benchmark.py --weights random      # same architectures, no download
    python unified_benchmark.py --help                # every option

Sections, top to bottom: constants, helpers, measuring machinery (timing, memory, FLOPs,
dissection, time breakdown), model classes, the runner, the reports, the command line.
To add a model, write a ModelBenchmark subclass (see README.md) and add it to MODEL_CLASSES.
"""
from __future__ import annotations

import argparse
import csv
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
RANDOM_SEED = 42                    # seeds python, numpy and torch before every model
CLEANUP_SLEEP_SEC = 2               # pause after freeing a model, so the next starts clean
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"  # run ids, file and folder names

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_IMAGE_DIR = SCRIPT_DIR / "test_data"
DEFAULT_MODELS_DIR = SCRIPT_DIR / "models"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

DISSECT_PNG_CHANNELS = 16           # channels drawn in a layer's PNG grid
DISSECT_NPY_CHANNELS = 8            # channels saved raw in a layer's NPY
DISSECT_QUEUE_SIZE = 8              # activations waiting for the writers; bounds host memory
DISSECT_WRITER_THREADS = 2
DISSECT_TILE_MIN, DISSECT_TILE_MAX = 64, 256   # pixels per channel tile in a PNG
MAX_LEADING_TOKENS = 8              # class + register tokens before a ViT's patch grid
PROGRESS_INTERVAL_SEC = 2.0
UNSTABLE_COV = 0.10                 # warm coefficient of variation that marks noisy timing
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
    from ultralytics.utils import ASSETS
    return [p for p in (Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg") if p.exists()]


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
    import transformers
    import ultralytics
    info = {
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "ultralytics": ultralytics.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    return info


# =========================================================================================
# Measuring machinery: timing statistics, memory, FLOPs
# =========================================================================================
def latency_stats(seconds: list[float]) -> dict:
    """Statistics of a list of run times in seconds; every field None when the list is empty."""
    keys = ("n", "median", "p10", "p90", "mean", "std", "min", "max", "cov")
    if not seconds:
        return dict.fromkeys(keys) | {"n": 0}
    a = np.asarray(seconds, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "n": int(a.size), "median": float(np.median(a)), "p10": float(np.percentile(a, 10)),
        "p90": float(np.percentile(a, 90)), "mean": mean, "std": std,
        "min": float(a.min()), "max": float(a.max()), "cov": std / mean if mean > 0 else None,
    }


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
    def _read_hwm() -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def reset_peak(self) -> None:
        """Start a new peak window. Linux resets the kernel's high-water mark (exact);
        elsewhere a thread samples the resident set every 5 ms."""
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


def tensor_stats(t) -> dict:
    """min, max, mean, std, zero fraction, NaN and Inf counts, computed where the tensor lives
    (float32 for low precision) with a single transfer of five numbers to the host in the
    common all-finite case; the masked path runs only when NaN or Inf is present."""
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
    # Fast path: aminmax propagates NaN and shows Inf, so finite min and max mean all finite.
    # Variance: float64 sum for the mean, then squared deviations in 256K-element chunks
    # (dot products, no full-size temporaries); count_nonzero instead of a (x == 0) mask.
    lo, hi = torch.aminmax(x)
    flat = x.reshape(-1)
    mean = flat.sum(dtype=torch.float64) / n
    shift = mean.to(x.dtype)
    ss = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk in flat.split(1 << 18):
        d = chunk - shift
        ss += torch.dot(d, d)
    zeros = n - torch.count_nonzero(x)
    lo_, hi_, mean_, ss_, shift_, zeros_ = torch.stack(
        [lo.double(), hi.double(), mean, ss, shift.double(), zeros.double()]).tolist()
    if math.isfinite(lo_) and math.isfinite(hi_):
        var = max(ss_ / n - (mean_ - shift_) ** 2, 0.0)
        return {"min": lo_, "max": hi_, "mean": mean_, "std": math.sqrt(var), "zero_fraction": zeros_ / n,
                "nan_count": 0, "inf_count": 0}
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
    for i in range(c):
        ch = planes[i]
        lo, hi = float(ch.min()), float(ch.max())
        if math.isfinite(lo) and math.isfinite(hi):          # no NaN/Inf: no mask, no np.where
            norm = (ch - lo) / (hi - lo) if hi > lo else np.zeros_like(ch)
        else:
            finite = np.isfinite(ch)
            lo, hi = (float(ch[finite].min()), float(ch[finite].max())) if finite.any() else (0.0, 0.0)
            norm = np.where(finite, (ch - lo) / (hi - lo), 0.0) if hi > lo else np.zeros_like(ch)
        rgb = np.take(lut, (norm * 255).astype(np.uint8), axis=0)
        if (th, tw) != (h, w):
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
        self._last_progress = 0.0

    # -- writer threads --------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                planes, png_path, npy_path = item
                np.save(npy_path, planes[:DISSECT_NPY_CHANNELS])
                render_feature_grid(planes, png_path)
            except Exception as exc:  # keep serving the queue; report at the end
                self.writer_errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self.queue.task_done()

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
                    host = planes.detach().to("cpu", torch.float32, copy=True).numpy()
                    stem = self._file_stem(index)
                    record["files"] = [f"{stem}.png", f"{stem}.npy"]
                    self.queue.put((host, self.out_dir / f"{stem}.png", self.out_dir / f"{stem}.npy"))
            self._progress()
        return hook

    def _progress(self, final: bool = False) -> None:
        now = time.perf_counter()
        if final or now - self._last_progress >= PROGRESS_INTERVAL_SEC:
            self._last_progress = now
            last = self.records[-1] if self.records else None
            where = f" {last['name']} (call {last['call']})" if last else ""
            log(f"DISSECT {len(self.records)}", f"calls recorded ({self.num_leaves} leaf modules hooked), at{where}")

    # -- the pass --------------------------------------------------------------------------
    def run(self, network, forward_call) -> dict:
        """Hook `network`'s leaves, call `forward_call()` once, return the summary."""
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
        if self.write_files and threads > 1:
            torch.set_num_threads(threads - 1)     # leave a core to the writer threads
        try:
            forward_call()
            completed = True
        finally:
            torch.set_num_threads(threads)
            for h in handles:
                h.remove()
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
        self._progress(final=True)
        return {"records": len(self.records), "leaf_modules": self.num_leaves, "png_files": pngs,
                "npy_files": pngs, "seconds": seconds, "writer_errors": self.writer_errors}

    def _drop_pending(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
                self.queue.task_done()
            except queue.Empty:
                return

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
class TimeBreakdown:
    """Times each top-level block and each leaf module of one pass with pre/post hooks."""

    def __init__(self, device):
        self.device = device
        self.block_ms: dict[str, float] = {}
        self.leaf_ms: dict[str, float] = {}
        self.leaf_calls: dict[str, int] = {}
        self.leaf_types: dict[str, str] = {}
        self._starts: dict[int, list[float]] = {}

    def _sync(self):
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def _hooks(self, key: str, totals: dict, counts: dict | None):
        def pre(module, args):
            self._sync()
            self._starts.setdefault(id(module), []).append(time.perf_counter())

        def post(module, args, output):
            self._sync()
            start = self._starts[id(module)].pop()
            totals[key] = totals.get(key, 0.0) + (time.perf_counter() - start) * 1000
            if counts is not None:
                counts[key] = counts.get(key, 0) + 1
        return pre, post

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

    def count_flops_and_input(self, image: Image.Image) -> tuple[int, list[int] | None]:
        """FLOPs of one pipeline call (torch's counter: 2 per multiply-add; only the network's
        matmuls and convolutions count) and the shape of the tensor the network received."""
        from torch.utils.flop_counter import FlopCounterMode
        seen = {}

        def capture(module, args, kwargs):
            if "shape" not in seen:
                tensor, _ = first_tensor((list(args), kwargs))
                if tensor is not None:
                    seen["shape"] = list(tensor.shape)

        handle = self.input_module().register_forward_pre_hook(capture, with_kwargs=True)
        try:
            with FlopCounterMode(display=False) as counter:
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
        summary = dissector.run(self.network(), lambda: self.run_pipeline(image))
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
        self.model = self.model_class().from_pretrained(source, local_files_only=local_only, **self.PRETRAINED_KWARGS)

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
        # predict() fuses a copy of the model: hook and count the one that really runs.
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
# Runner: one model's pass through the loop, then all models in order
# =========================================================================================
class RunContext:
    """What every model's pass needs: the settings, the paths, and the results so far."""

    def __init__(self, args, device, images, image_source, run_id, paths):
        self.args = args
        self.device = device
        self.images = images
        self.image_source = image_source
        self.run_id = run_id
        self.results_dir, self.viz_dir, self.assets_dir = paths
        self.started = datetime.now()
        self.results: list[dict] = []
        self.status = "running"
        self.system = system_info(device)


def new_result(cls, ctx) -> dict:
    return {"model": cls.MODEL_NAME, "cli_name": cls.CLI_NAME, "task": cls.TASK, "library": cls.LIBRARY,
            "status": "running", "phase": "setup", "weights": ctx.args.weights, "weights_source": None,
            "nominal_input_size": cls.INPUT_SIZE, "runs": []}


def benchmark_model(cls, ctx: RunContext, result: dict) -> None:
    """Load, time, measure, dissect and clean up one model, filling `result` as it goes so
    that whatever was measured survives a failure in a later phase."""
    import torch
    args = ctx.args
    tracker = MemoryTracker(ctx.device)
    memory = result["memory"] = {"cpu_rss_before_load_bytes": tracker.rss()}
    if ctx.device.type == "cuda":
        memory["cuda_allocated_before_load_bytes"] = tracker.cuda_allocated()
    log("MEMORY", f"Before load: {format_bytes(memory['cpu_rss_before_load_bytes'])} resident")

    seed_everything(args.seed)
    bench = cls(ctx.device, weights=args.weights, models_dir=args.models_dir, sam_prompt=args.sam_prompt)
    result["config"] = bench.run_config()
    try:
        result["phase"] = "load"
        log("LOAD", f"Loading {cls.MODEL_NAME} ({args.weights} weights) to {ctx.device}...")
        start = time.perf_counter()
        result["weights_source"] = bench.load()
        bench.sync()
        result["load_seconds"] = time.perf_counter() - start
        memory["cpu_rss_after_load_bytes"] = tracker.rss()
        if ctx.device.type == "cuda":
            memory["cuda_allocated_after_load_bytes"] = tracker.cuda_allocated()
        log("LOAD", f"Loaded in {result['load_seconds']:.2f}s: {result['weights_source']}")
        log("MEMORY", f"After load: {format_bytes(memory['cpu_rss_after_load_bytes'])} resident "
                      f"(+{format_bytes(memory['cpu_rss_after_load_bytes'] - memory['cpu_rss_before_load_bytes'])})"
            + (f", CUDA allocated {format_bytes(memory['cuda_allocated_after_load_bytes'])}"
               if ctx.device.type == "cuda" else ""))

        result["phase"] = "inference"
        total = len(ctx.images) * args.runs
        tracker.reset_peak()
        first_image = first_prediction = None
        for img_idx, path in enumerate(ctx.images):
            image = load_rgb(path)
            for run in range(args.runs):
                prediction, seconds, phases = bench.timed_run(image)
                if img_idx == 0:
                    first_image, first_prediction = image, prediction
                result["runs"].append({"image": path.name, "image_size": [image.width, image.height], "run": run + 1,
                                       "cold": not result["runs"], "total_s": seconds,
                                       **{f"{k}_s": v for k, v in phases.items()}})
                log(f"INFER {len(result['runs'])}/{total}",
                    f"{path.name} | {seconds * 1000:.1f} ms end to end, forward {phases['forward'] * 1000:.1f} ms"
                    + (" (cold start)" if len(result["runs"]) == 1 else ""))
        memory.update(tracker.peak())
        result["torch_threads"] = torch.get_num_threads()
        summarize_latency(result)
        set_headline_memory(result, ctx.device)
        e2e = result["latency_end_to_end"]
        log("STATS", f"Cold start {result['cold_start']['total_s'] * 1000:.1f} ms; warm end to end over "
                     f"{e2e['n']} runs: " + (f"median {e2e['median'] * 1000:.1f} ms, p90 {e2e['p90'] * 1000:.1f} ms, "
                                             f"CoV {e2e['cov'] * 100:.1f}%, {result['fps']:.2f} FPS"
                                             if e2e["n"] else "none (one run only)"))
        log("MEMORY", f"Peak while running: {format_bytes(memory['peak_bytes'])} ({memory['peak_kind']})")

        result["phase"] = "flops"
        result["parameters"] = bench.count_parameters()
        flops, shape = bench.count_flops_and_input(first_image)
        result["flops"], result["gflops"], result["input_shape"] = flops, flops / 1e9, shape
        log("STATS", f"{result['parameters']:,} parameters, {result['gflops']:.2f} GFLOPs at input {shape}")

        result["phase"] = "output"
        result["prediction_summary"] = bench.summarize_prediction(first_prediction)
        picture = ctx.assets_dir / f"{cls.MODEL_NAME}_output.png"
        bench.render_prediction(first_image, first_prediction, picture)
        if picture.exists():
            result["output_image"] = str(picture.relative_to(ctx.results_dir))

        result["phase"] = "time breakdown"
        result["time_breakdown"] = bench.profile_time(first_image)

        result["phase"] = "dissection"
        folder = ctx.viz_dir / cls.MODEL_NAME
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
    except Exception:  # out of memory above all: the figures say how close the model came
        memory["at_failure"] = tracker.peak()
        raise
    finally:
        tracker.stop_sampling()
        result["phase_reached"] = result["phase"]
        result["phase"] = "cleanup"
        log("CLEANUP", "Releasing the model and clearing caches...")
        bench.release()
        del bench
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    time.sleep(CLEANUP_SLEEP_SEC)
    memory["cpu_rss_after_cleanup_bytes"] = tracker.rss()
    if ctx.device.type == "cuda":
        memory["cuda_allocated_after_cleanup_bytes"] = tracker.cuda_allocated()
    log("MEMORY", f"After cleanup: {format_bytes(memory['cpu_rss_after_cleanup_bytes'])} resident")


def summarize_latency(result: dict) -> None:
    runs = result["runs"]
    result["cold_start"] = runs[0]
    warm = runs[1:]
    result["latency_end_to_end"] = latency_stats([r["total_s"] for r in warm])
    result["latency_forward"] = latency_stats([r["forward_s"] for r in warm])
    result["latency_phases_median"] = {p: (float(np.median([r[f"{p}_s"] for r in warm])) if warm else None)
                                       for p in ("preprocess", "forward", "postprocess")}
    median = result["latency_end_to_end"]["median"]
    result["fps"] = 1.0 / median if median else None
    # Per image: its first run (a new input shape builds new kernels on CPU and GPU alike),
    # then its steady runs; noise is judged within one image, not across input sizes.
    per_image = {}
    for name in dict.fromkeys(r["image"] for r in runs):
        mine = [r for r in runs if r["image"] == name]
        per_image[name] = {"image_size": mine[0]["image_size"], "first_run_s": mine[0]["total_s"],
                           "first_is_cold_start": mine[0]["cold"],
                           "steady": latency_stats([r["total_s"] for r in mine[1:]])}
    result["latency_per_image"] = per_image


def set_headline_memory(result: dict, device) -> None:
    memory = result["memory"]
    if device.type == "cuda":
        memory["peak_bytes"], memory["peak_kind"] = memory["cuda_peak_allocated_bytes"], "CUDA peak allocated"
    else:
        memory["peak_bytes"], memory["peak_kind"] = memory["cpu_peak_rss_bytes"], "CPU peak resident set (process)"
    # The process baseline drifts from model to model (libraries, allocator caches): the
    # model's own share is its peak over what the process held just before it loaded.
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


def run_all(classes, ctx: RunContext) -> int:
    """Run the models in order. Fail fast unless --keep-going; results are written after
    every model, so a failure or an interrupt (wherever it lands) loses nothing measured."""
    exit_code = EXIT_OK
    try:
        for position, cls in enumerate(classes, 1):
            print("=" * 80)
            print(f"[{position}/{len(classes)}] {cls.MODEL_NAME}")
            print("=" * 80, flush=True)
            result = new_result(cls, ctx)
            ctx.results.append(result)
            try:
                benchmark_model(cls, ctx, result)
                result["status"] = "complete"
                result["phase"] = None
                log("COMPLETE", f"{cls.MODEL_NAME} finished")
            except Exception as exc:
                phase = result.get("phase_reached") or result["phase"]
                result["status"] = "failed"
                result["error"] = {"type": type(exc).__name__, "message": str(exc), "phase": phase}
                log("ERROR", f"{cls.MODEL_NAME} failed during {phase}: {exception_line(exc)}")
                if not isinstance(exc, (WeightsError, UsageError)):
                    traceback.print_exc()
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
    "model", "cli_name", "status", "weights", "load_s", "cold_start_s", "e2e_median_s", "e2e_p90_s", "e2e_mean_s",
    "e2e_std_s", "e2e_cov", "forward_median_s", "fps", "peak_memory_mb", "peak_over_baseline_mb", "peak_memory_kind", "parameters",
    "gflops", "input_shape", "layers_dissected", "warm_runs", "sam_prompt",
]


def csv_row(r: dict) -> dict:
    e2e = r.get("latency_end_to_end") or {}
    mem = r.get("memory") or {}
    return {
        "model": r["model"], "cli_name": r["cli_name"], "status": r["status"], "weights": r["weights"],
        "load_s": r.get("load_seconds"), "cold_start_s": (r.get("cold_start") or {}).get("total_s"),
        "e2e_median_s": e2e.get("median"), "e2e_p90_s": e2e.get("p90"), "e2e_mean_s": e2e.get("mean"),
        "e2e_std_s": e2e.get("std"), "e2e_cov": e2e.get("cov"),
        "forward_median_s": (r.get("latency_forward") or {}).get("median"), "fps": r.get("fps"),
        "peak_memory_mb": mem["peak_bytes"] / 1024 ** 2 if mem.get("peak_bytes") else None,
        "peak_over_baseline_mb": mem["peak_over_baseline_bytes"] / 1024 ** 2 if mem.get("peak_bytes") else None,
        "peak_memory_kind": mem.get("peak_kind"), "parameters": r.get("parameters"), "gflops": r.get("gflops"),
        "input_shape": "x".join(map(str, r["input_shape"])) if r.get("input_shape") else None,
        "layers_dissected": (r.get("dissection") or {}).get("records"), "warm_runs": e2e.get("n"),
        "sam_prompt": (r.get("config") or {}).get("sam_prompt"),
    }


def report_paths(ctx: RunContext) -> dict:
    return {"json": ctx.results_dir / f"benchmark_results_{ctx.run_id}.json",
            "csv": ctx.results_dir / f"benchmark_summary_{ctx.run_id}.csv",
            "md": ctx.results_dir / f"benchmark_report_{ctx.run_id}.md",
            "html": ctx.results_dir / f"benchmark_report_{ctx.run_id}.html"}


def write_reports(ctx: RunContext) -> dict:
    paths = report_paths(ctx)
    finished = datetime.now()
    data = {
        "schema": "unified-benchmark/1", "run_id": ctx.run_id, "status": ctx.status,
        "started": ctx.started.isoformat(timespec="seconds"), "written": finished.isoformat(timespec="seconds"),
        "total_seconds": (finished - ctx.started).total_seconds(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "config": {"runs_per_image": ctx.args.runs, "seed": ctx.args.seed, "weights": ctx.args.weights,
                   "device": str(ctx.device), "torch_threads": ctx.args.threads, "dissect_files": ctx.args.dissect, "sam_prompt": ctx.args.sam_prompt,
                   "keep_going": ctx.args.keep_going, "models": [c.CLI_NAME for c in ctx.args.model_classes],
                   "image_source": ctx.image_source, "viz_dir": str(ctx.viz_dir)},
        "system": ctx.system, "images": [str(p) for p in ctx.images], "models": ctx.results,
    }
    atomic_write_json(paths["json"], data)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in ctx.results:
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
        for name, img in (r.get("latency_per_image") or {}).items():
            steady = img["steady"]
            if steady["n"] >= 2 and steady["cov"] is not None and steady["cov"] > UNSTABLE_COV:
                lines.append(f"Unstable timing: {r['model']} on {name}: CoV {steady['cov'] * 100:.1f}% over "
                             f"{steady['n']} repeated runs (min {ms(steady['min'])} ms, max {ms(steady['max'])} ms); "
                             "treat its figures with care or raise --runs.")
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
                         + ", ".join(f"{name} took {ratio:.2f}x its later runs" for name, ratio in slow)
                         + "; varying input sizes cost a warm-up each (kernels are built per shape).")
    return lines


def md_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown_report(data: dict, ctx: RunContext) -> str:
    results = data["models"]
    assets = ctx.assets_dir
    rel = assets.name
    lines = [f"# Vision model benchmark report", "", f"Run `{data['run_id']}`, started {data['started']}, "
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
        ["device", s["device"]]]), ""]
    c = data["config"]
    lines += ["## Configuration", "", f"- Images ({len(data['images'])}, from {c['image_source']}): "
              + ", ".join(f"`{Path(p).name}`" for p in data["images"]),
              f"- Runs per image: {c['runs_per_image']}; the first run of each model is its cold start, latency "
              "statistics come from the runs after it", f"- Seed {c['seed']}; weights: {c['weights']}; device {c['device']}; torch CPU threads {c['torch_threads']} "
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
                     ms(e2e["median"]), ms(e2e["p90"]), ms(r["latency_forward"]["median"]),
                     f"{e2e['cov'] * 100:.1f}%" if e2e["cov"] is not None else "n/a",
                     f"{r['fps']:.2f}" if r.get("fps") else "n/a",
                     f"{mem['peak_bytes'] / 1024 ** 2:.0f} (+{mem['peak_over_baseline_bytes'] / 1024 ** 2:.0f})"
                     if mem.get("peak_bytes") else "n/a",
                     f"{r['parameters']:,}" if r.get("parameters") else "n/a",
                     f"{r['gflops']:.2f}" if r.get("gflops") is not None else "n/a",
                     "x".join(map(str, r["input_shape"])) if r.get("input_shape") else "n/a",
                     (r.get("dissection") or {}).get("records", "n/a"), r["status"]])
    lines += ["## Summary", "", md_table(
        ["model", "weights", "load s", "cold start ms", "end-to-end median ms", "p90 ms", "forward median ms",
         "CoV", "FPS", f"peak memory MB ({kind})", "params", "GFLOPs", "input shape", "layers dissected", "status"],
        rows), "",
        "End to end = preprocess + forward + postprocess, what a pipeline pays per image; FPS = 1 / its median. "
        "GFLOPs count 2 per multiply-add (torch.utils.flop_counter) over the network's matmuls and convolutions. "
        "Peak memory is over the timed runs; in brackets, its increase over what the process held just before the "
        "model loaded (the model's own share). CPU memory is the resident set of the whole process.", ""]

    charts = []
    if latency_chart(results, assets / "latency.png"):
        charts.append(f"![Latency per model]({rel}/latency.png)")
    if memory_chart(results, assets / "memory_vs_params.png"):
        charts.append(f"![Peak memory against parameters]({rel}/memory_vs_params.png)")
    if charts:
        lines += ["## Charts", ""] + [f"{c}\n" for c in charts]

    found = findings(results)
    lines += ["## Findings", ""] + ([f"- {f}" for f in found] or ["- Too few finished models to compare."]) + [""]

    failed = [r for r in results if r["status"] in ("failed", "interrupted")]
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
             f"- Input the network received: {r.get('input_shape')} (nominal size {r['nominal_input_size']})"]
    if r.get("config"):
        lines.append("- Settings: " + ", ".join(f"{k}={v}" for k, v in r["config"].items()))
    phases = r.get("latency_phases_median") or {}
    if phases.get("forward") is not None:
        lines.append(f"- Warm medians: preprocess {ms(phases['preprocess'])} ms, forward {ms(phases['forward'])} ms, "
                     f"postprocess {ms(phases['postprocess'])} ms; cold start {ms(r['cold_start']['total_s'])} ms")
    lines.append("")
    per_image = r.get("latency_per_image") or {}
    if per_image:
        lines += [md_table(["image", "size", "first run ms", "then: median ms", "p90 ms", "CoV", "runs"], [
            [f"`{name}`", "x".join(map(str, img["image_size"])),
             ms(img["first_run_s"]) + (" (cold start)" if img["first_is_cold_start"] else ""),
             ms(img["steady"]["median"]), ms(img["steady"]["p90"]),
             f"{img['steady']['cov'] * 100:.1f}%" if img["steady"]["cov"] is not None else "n/a",
             img["steady"]["n"] + 1] for name, img in per_image.items()]), ""]
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
                + ("" if charts else "<p>No charts yet.</p>") + "</div>")
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
# Command line
# =========================================================================================
class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got '{text}'")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="unified_benchmark.py",
        description="Benchmark vision models one after another on every test image: latency (cold start and warm "
                    "statistics), memory, parameters, FLOPs, and a dissection of every layer call. Writes "
                    "results/benchmark_{results.json,summary.csv,report.md} and viz/<run id>/<model>/.",
        epilog="Without network: --weights random builds the released architectures with random weights. "
               "Exit codes: 0 done, 1 a model failed, 2 bad input, 130 interrupted (Ctrl-C), 143 terminated.")
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
                     help=f"timed runs per image; the model's first run is its cold start (default: {NUM_INFERENCE_RUNS})")
    how.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: CUDA if available)")
    how.add_argument("--threads", type=positive_int, default=None,
                     help="torch CPU threads for every model (default: torch's choice, the physical cores)")
    how.add_argument("--seed", type=int, default=RANDOM_SEED, help=f"seed for every generator (default: {RANDOM_SEED})")
    how.add_argument("--no-dissect", dest="dissect", action="store_false",
                     help="record layer statistics but write no PNG/NPY files")
    how.add_argument("--keep-going", action="store_true",
                     help="on a model failure, record it and go on with the next model (default: stop at the first)")
    out = parser.add_argument_group("where to write")
    out.add_argument("--output-dir", type=Path, default=SCRIPT_DIR,
                     help="folder that receives results/ and viz/ (default: the script's folder)")
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
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine (torch {torch.__version__}); "
                             "use --device cpu or auto")
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise UsageError(f"--device {text}: expected cuda:N with N a GPU index")
        count = torch.cuda.device_count()
        if int(index_text) >= count:
            raise UsageError(f"--device {text}: this machine has {count} GPU(s), indices 0 to {count - 1}")
        return torch.device(f"cuda:{index_text}")
    raise UsageError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


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
    try:
        args = build_parser().parse_args(argv)
        if args.list_models:
            list_models()
            return EXIT_OK
        args.model_classes = parse_models(args.models)
        args.models_dir = args.models_dir.expanduser()
        args.threads = configure_threads(args.threads)
        device = resolve_device(args.device)
        images, image_source = discover_images(args.images)
        run_id, paths = prepare_output(args.output_dir)  # last: nothing is created for a bad input
    except UsageError as exc:
        print(f"[ERROR] {exc} (see --help)", file=sys.stderr, flush=True)
        return EXIT_USAGE

    ctx = RunContext(args, device, images, image_source, run_id, paths)
    previous = {s: signal.signal(s, raise_on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        log("INFO", f"Run {run_id}: {len(args.model_classes)} model(s), {len(images)} image(s), {args.runs} run(s) "
                    f"per image, {args.weights} weights, device {device}, seed {args.seed}")
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
