#!/usr/bin/env python3
"""How much faster is the single-pass layer dissection than the original one-pass-per-layer method?

CPU, random weights, the tool's own code paths (unified_benchmark.py is imported, not edited):

  1. plain forward: median of --repeats run_pipeline() calls after one warm-up call;
  2. single-pass dissection: median of --dissect-repeats bench.dissect_layers() calls, each into
     a fresh temp folder (after count_flops_and_input(), as the tool's runner does);
  3. baseline (the original method, implemented only here): for every leaf module, hook that
     one module, run one full run_pipeline(), keep its output (last call wins), compute
     tensor_stats() and write the PNG + NPY synchronously, remove the hook;
  4. memory: peak resident set (VmHWM) of dissecting depth-anything-v2-large against one plain
     run_pipeline(), each measured in a fresh subprocess.

    python benchmarks/dissect_speed.py
    python benchmarks/dissect_speed.py --models yolo11n-detect --baseline-subset 20 --no-memory

Targets are printed with PASS/FAIL; the exit code is 0 unless something crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import ROOT, TOOL, bus_path, import_tool, load_bench, load_note

# Never touch the network; draw without a display. Set before the libraries are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

from vision_bench.common import atomic_write_json, first_tensor, leaf_modules
from vision_bench.images import load_rgb
from vision_bench.inspect.dissection import DISSECT_NPY_CHANNELS, feature_planes
from vision_bench.inspect.feature_png import colormap_lut, render_feature_grid
from vision_bench.inspect.layer_stats import tensor_stats
from vision_bench.measure.environment import configure_threads
from vision_bench.measure.memory import MemoryTracker

SPEED_MODELS = ["yolo11n-detect", "depth-anything-v2-small"]
MEMORY_MODEL = "depth-anything-v2-large"
SPEEDUP_TARGETS = {"yolo11n-detect": 10.0, "depth-anything-v2-small": 40.0}
RATIO_TARGETS = {"depth-anything-v2-small": 4.0}  # dissection / plain forward
MEMORY_TARGET_MB = 300.0  # DA-large dissection peak - plain peak
MB = 1024 * 1024


def progress(message: str) -> None:
    print(f"[dissect_speed] {message}", flush=True)


def input_hw(bench):
    shape = bench.input_shape
    return tuple(shape[-2:]) if shape and len(shape) == 4 else None


# -- 1. plain forward ----------------------------------------------------------------------
def time_plain(bench, image, repeats: int) -> dict:
    bench.run_pipeline(image)  # warm-up, also builds YOLO's predictor
    totals, forwards, cpu = [], [], []
    for i in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        _, phases = bench.run_pipeline(image)
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        forwards.append(phases["forward"])
        progress(f"  plain run {i + 1}/{repeats}: {totals[-1]:.3f}s (forward {phases['forward']:.3f}s)")
    return {
        "pipeline_s": statistics.median(totals),
        "forward_s": statistics.median(forwards),
        "cpu_s": statistics.median(cpu),
    }


# -- 2. single-pass dissection (the tool's) --------------------------------------------------
def time_dissection(bench, image, out_dir: Path, repeats: int) -> dict:
    bench.count_flops_and_input(image)  # input_shape, as the tool's runner does
    times, cpu = [], []
    for i in range(repeats):  # a fresh folder each time
        folder = out_dir / f"run{i + 1}"
        start, cpu_start = time.perf_counter(), time.process_time()
        summary = bench.dissect_layers(image, folder)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        progress(f"  dissection {i + 1}/{repeats}: {times[-1]:.3f}s")
    return {
        "seconds": statistics.median(times),
        "all_s": times,
        "cpu_s": statistics.median(cpu),
        "records": summary.records,
        "leaf_modules": summary.leaf_modules,
        "png": len(list(folder.glob("*.png"))),
        "npy": len(list(folder.glob("*.npy"))),
        "writer_errors": len(summary.writer_errors),
    }


# -- 3. the original method: one full pipeline per hooked leaf, files written synchronously ---
def subset_indices(n: int, subset: int) -> list[int]:
    if subset <= 0 or subset >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, subset).round().astype(int).tolist()))


def baseline_one_leaf(ub, bench, image, index: int, name: str, module, hw, out_dir: Path, width: int) -> dict:
    import torch

    captured: dict[str, Any] = {"calls": 0}

    def hook(mod, args, output):  # the last call wins, as originally
        captured["calls"] += 1
        captured["tensor"], captured["source"] = first_tensor(output)

    handle = module.register_forward_hook(hook)
    try:
        bench.run_pipeline(image)
    finally:
        handle.remove()
    record = {"index": index, "name": name, "type": type(module).__name__, "calls": captured["calls"]}
    tensor = captured.get("tensor")
    if tensor is None:
        record["note"] = (
            "not called in the pass" if not captured["calls"] else "no tensor in the output"
        ) + "; no statistics"
        return record
    record["shape"] = list(tensor.shape)
    record.update(tensor_stats(tensor))
    record["files"] = []
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        planes, note = feature_planes(tensor, hw)
        if planes is not None and planes.numel():
            host = planes.detach().to("cpu", torch.float32, copy=True).numpy()
            stem = f"layer_{index:0{width}d}"
            render_feature_grid(host, out_dir / f"{stem}.png")
            np.save(out_dir / f"{stem}.npy", host[:DISSECT_NPY_CHANNELS])
            record["files"] = [f"{stem}.png", f"{stem}.npy"]
    return record


def time_baseline(ub, bench, image, out_dir: Path, subset: int) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    leaves = leaf_modules(bench.network())
    hw, width = input_hw(bench), max(3, len(str(max(len(leaves) - 1, 1))))
    chosen = subset_indices(len(leaves), subset)
    records, start, last_report = [], time.perf_counter(), 0.0
    for k, i in enumerate(chosen):
        name, module = leaves[i]
        records.append(baseline_one_leaf(ub, bench, image, i, name, module, hw, out_dir, width))
        now = time.perf_counter()
        if now - last_report >= 10 or k + 1 == len(chosen):
            last_report = now
            progress(f"  baseline {k + 1}/{len(chosen)} leaves, {now - start:.1f}s so far (at {name})")
    seconds = time.perf_counter() - start
    atomic_write_json(out_dir / "layers_metadata.json", {"num_records": len(records), "records": records})
    measured = len(chosen)
    return {
        "measured_seconds": seconds,
        "measured_leaves": measured,
        "leaf_modules": len(leaves),
        "seconds": seconds * len(leaves) / measured,
        "extrapolated": measured < len(leaves),
        "records": len(records),
        "not_called": sum(1 for r in records if not r["calls"]),
        "png": len(list(out_dir.glob("*.png"))),
        "npy": len(list(out_dir.glob("*.npy"))),
    }


# -- 4. memory, one fresh subprocess per measurement ----------------------------------------
def memory_child(mode: str) -> None:
    """Run in a subprocess: load DA-large random, warm up, reset the peak, measure one call."""
    ub = import_tool()
    configure_threads(None)
    import torch

    image = load_rgb(bus_path())
    bench = load_bench(ub, MEMORY_MODEL, progress)
    tracker = MemoryTracker(torch.device("cpu"))
    bench.count_flops_and_input(image)  # same warm-up in both modes
    with tempfile.TemporaryDirectory(prefix="dissect_mem_") as tmp:
        release_free_heap()
        before = tracker.rss()
        tracker.reset_peak()
        start = time.perf_counter()
        if mode == "dissect":
            bench.dissect_layers(image, Path(tmp) / "layers")
        else:
            bench.run_pipeline(image)
        seconds = time.perf_counter() - start
        peak = tracker.peak_reading().cpu_peak_rss_bytes
        exact = getattr(tracker, "_hwm_exact", False)
    print(
        "MEMORY_RESULT "
        + json.dumps(
            {"mode": mode, "peak_bytes": peak, "rss_before_bytes": before, "seconds": seconds, "exact_hwm": exact}
        ),
        flush=True,
    )


def release_free_heap() -> None:
    """gc, then hand freed heap pages back to the OS (glibc), so that the resident set before the
    measured call is the live data in both children and their peaks are comparable."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_memory_child(mode: str) -> dict:
    progress(f"memory: fresh subprocess, {MEMORY_MODEL} random, mode={mode}")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-child", mode],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MEMORY_RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError(f"memory subprocess ({mode}) failed with exit code {proc.returncode}")
    result = json.loads(lines[-1].split(" ", 1)[1])
    progress(
        f"  {mode}: peak {result['peak_bytes'] / MB:.0f} MB (resident before {result['rss_before_bytes'] / MB:.0f}"
        f" MB, call {result['seconds']:.1f}s, exact VmHWM: {result['exact_hwm']})"
    )
    return result


# -- report ---------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_speed(name: str, plain: dict, dis: dict, base: dict) -> list[tuple[str, bool]]:
    ratio = dis["seconds"] / plain["pipeline_s"]
    speedup = base["seconds"] / dis["seconds"]
    base_records = base["leaf_modules"] if base["extrapolated"] else base["records"]
    print(f"\n== {name} ==")
    print(
        f"  plain run_pipeline median     {plain['pipeline_s']:9.3f} s   (forward only {plain['forward_s']:.3f} s, "
        f"process CPU {plain['cpu_s']:.2f} s)"
    )
    print(
        f"  single-pass dissection        {dis['seconds']:9.3f} s   (median of {len(dis['all_s'])}: "
        + ", ".join(f"{t:.2f}" for t in dis["all_s"])
        + f"; process CPU {dis['cpu_s']:.2f} s)"
    )
    print(
        f"  single-pass records           {dis['records']:9d}     ({dis['leaf_modules']} leaves, every call; "
        f"{dis['png']} PNG, {dis['npy']} NPY, {dis['writer_errors']} writer errors)"
    )
    print(f"  dissection / plain ratio      {ratio:9.2f} x")
    if base["extrapolated"]:
        print(
            f"  baseline (one pass per leaf)  {base['seconds']:9.3f} s   EXTRAPOLATED linearly from "
            f"{base['measured_leaves']} of {base['leaf_modules']} leaves ({base['measured_seconds']:.1f}s measured)"
        )
    else:
        print(
            f"  baseline (one pass per leaf)  {base['seconds']:9.3f} s   (all {base['leaf_modules']} leaves measured)"
        )
    print(
        f"  baseline records              {base['records']:9d}     ({base['png']} PNG, {base['npy']} NPY, "
        f"{base['not_called']} leaves never called"
        + (f", on the {base['measured_leaves']} measured leaves)" if base["extrapolated"] else ")")
    )
    print(f"  speedup baseline / dissection {speedup:9.1f} x")
    print(
        f"  speedup per record            {speedup * dis['records'] / base_records:9.1f} x   (info: the single pass "
        f"records every call, {dis['records']} vs {base_records}; not a target)"
    )
    checks = []
    if name in SPEEDUP_TARGETS:
        ok = speedup >= SPEEDUP_TARGETS[name]
        print(f"  target speedup >= {SPEEDUP_TARGETS[name]:.0f}x: {speedup:.1f}x  {verdict(ok)}")
        checks.append((f"{name} speedup >= {SPEEDUP_TARGETS[name]:.0f}x", ok))
    if name in RATIO_TARGETS:
        ok = ratio <= RATIO_TARGETS[name]
        print(f"  target dissection <= {RATIO_TARGETS[name]:.0f}x plain forward: {ratio:.2f}x  {verdict(ok)}")
        checks.append((f"{name} dissection <= {RATIO_TARGETS[name]:.0f}x forward", ok))
    return checks


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models",
        default=",".join(SPEED_MODELS),
        help="comma-separated CLI names for the speed comparison, '' for none (default: %(default)s)",
    )
    p.add_argument("--repeats", type=count, default=5, help="timed plain runs after one warm-up (default: 5)")
    p.add_argument(
        "--dissect-repeats", type=count, default=3, help="timed single-pass dissections, median reported (default: 3)"
    )
    p.add_argument(
        "--baseline-subset",
        type=int,
        default=0,
        metavar="N",
        help="run the baseline on N evenly spaced leaves and extrapolate linearly (default: 0 = all)",
    )
    p.add_argument(
        "--memory-repeats",
        type=count,
        default=3,
        help="fresh subprocesses per memory measurement, median reported (default: 3)",
    )
    p.add_argument("--no-memory", action="store_true", help=f"skip the {MEMORY_MODEL} memory comparison")
    p.add_argument("--memory-child", choices=["plain", "dissect"], help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    ub = import_tool()
    threads = configure_threads(None)
    progress(f"tool {TOOL}, torch threads {threads}, CPU, random weights, image bus.jpg; {load_note()}")
    image = load_rgb(bus_path())
    colormap_lut()  # import matplotlib now: neither method pays it
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in ub.MODELS_BY_CLI_NAME]
    if unknown:
        build_parser().error(f"unknown model(s): {', '.join(unknown)}")
    checks, blocks = [], []
    for name in names:
        bench = load_bench(ub, name, progress)
        with tempfile.TemporaryDirectory(prefix="dissect_speed_") as tmp:
            progress(f"{name}: plain forward, 1 warm-up + {args.repeats} timed")
            plain = time_plain(bench, image, args.repeats)
            progress(f"{name}: single-pass dissection")
            dis = time_dissection(bench, image, Path(tmp) / "single_pass", args.dissect_repeats)
            progress(f"{name}: dissection took {dis['seconds']:.2f}s; baseline (one pass per leaf)")
            base = time_baseline(ub, bench, image, Path(tmp) / "baseline", args.baseline_subset)
        blocks.append((name, plain, dis, base))
        progress(f"{name}: done; {load_note()}")
        bench.release()
        del bench
    print("\n" + "=" * 78 + f"\nRESULTS (CPU, {threads} torch threads, random weights, bus.jpg)\n" + "=" * 78)
    for block in blocks:
        checks += report_speed(*block)
    if not args.no_memory:
        runs: dict[str, list] = {"plain": [], "dissect": []}
        for _ in range(args.memory_repeats):  # alternate, so drift hits both alike
            for mode in runs:
                runs[mode].append(run_memory_child(mode))
        med = {
            mode: {k: statistics.median(r[k] for r in rs) for k in ("peak_bytes", "rss_before_bytes", "seconds")}
            for mode, rs in runs.items()
        }
        diff_mb = (med["dissect"]["peak_bytes"] - med["plain"]["peak_bytes"]) / MB
        ok = diff_mb < MEMORY_TARGET_MB
        print(
            f"\n== {MEMORY_MODEL} peak resident memory (fresh subprocess each, VmHWM reset before the call, "
            f"median of {args.memory_repeats}) =="
        )
        for label, mode in (("plain run_pipeline peak", "plain"), ("dissect_layers peak", "dissect")):
            m = med[mode]
            print(
                f"  {label:<29} {m['peak_bytes'] / MB:9.0f} MB   (runs: "
                + ", ".join(f"{r['peak_bytes'] / MB:.0f}" for r in runs[mode])
                + f"; {m['rss_before_bytes'] / MB:.0f} MB resident before the call, {m['seconds']:.1f}s)"
            )
        print(f"  difference                    {diff_mb:9.0f} MB   target < {MEMORY_TARGET_MB:.0f} MB  {verdict(ok)}")
        checks.append((f"{MEMORY_MODEL} dissection peak - plain peak < {MEMORY_TARGET_MB:.0f} MB", ok))
    print("\nTARGETS")
    for label, ok in checks:
        print(f"  {verdict(ok)}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
