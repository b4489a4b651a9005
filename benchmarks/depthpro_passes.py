#!/usr/bin/env python3
"""DepthPro at its released size (issue 14): plain forward against dissection, their peak
memory, Depth Anything V2 Small's dissection ratio, and the longest silent gap of the tool.

CPU, random weights, bus.jpg, the tool's own code (unified_benchmark.py is imported, not edited):

  1. DepthPro in a fresh subprocess: load, --plain-repeats run_pipeline() calls (the fastest
     counts; the first is the cold start), then one dissect_layers() with files. The kernel's
     peak resident set (VmHWM) is reset before each call, so each has its own peak.
  2. depth-anything-v2-small in this process: 1 warm-up + 3 plain runs, 3 dissections with
     files, medians.
  3. The CLI as a user runs it: --models depthpro --weights random --runs 1 --images bus.jpg,
     every output line timestamped on arrival; the longest gap between lines (from the start
     of the process to its exit) is the longest silence.

    python benchmarks/depthpro_passes.py                 # about 15-25 minutes on 2 cores
    python benchmarks/depthpro_passes.py --no-cli        # skip step 3

Targets are printed next to the figures with PASS/FAIL; the exit code is 0 unless something
crashed.
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

from vision_bench.images import load_rgb
from vision_bench.inspect.feature_png import colormap_lut
from vision_bench.measure.environment import configure_threads
from vision_bench.measure.memory import MemoryTracker

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

MB = 1024 * 1024
RATIO_TARGET = 2.0  # dissection with files / plain forward
MEMORY_TARGET_MB = 500.0  # dissection peak - plain forward peak
SILENCE_TARGET_S = 10.0


def progress(message: str) -> None:
    print(f"[depthpro_passes] {message}", flush=True)


# -- 1. DepthPro, one fresh subprocess ------------------------------------------------------
def depthpro_child(plain_repeats: int) -> None:
    ub = import_tool()
    configure_threads(None)
    import torch

    image = load_rgb(bus_path())
    bench = load_bench(ub, "depthpro", progress)
    colormap_lut()
    bench.input_shape = [1, 3, 1536, 1536]  # what count_flops_and_input would find, without its pass
    tracker = MemoryTracker(torch.device("cpu"))
    out: dict[str, Any] = {"plain_s": [], "plain_peak_bytes": [], "exact_hwm": None}
    for i in range(plain_repeats):
        tracker.reset_peak()
        start = time.perf_counter()
        with bench.progress(f"plain run {i + 1}/{plain_repeats}", through_network=False):
            _, phases = bench.run_pipeline(image)
        out["plain_s"].append(time.perf_counter() - start)
        out["plain_peak_bytes"].append(tracker.peak_reading().cpu_peak_rss_bytes)
        progress(f"  plain run {i + 1}: {out['plain_s'][-1]:.1f}s, peak {out['plain_peak_bytes'][-1] / MB:.0f} MB")
    with tempfile.TemporaryDirectory(prefix="depthpro_passes_") as tmp:
        tracker.reset_peak()
        start = time.perf_counter()
        summary = bench.dissect_layers(image, Path(tmp) / "layers", write_files=True)
        out["dissect_s"] = time.perf_counter() - start
        out["dissect_peak_bytes"] = tracker.peak_reading().cpu_peak_rss_bytes
        out["records"], out["png"] = summary.records, summary.png_files
        out["files_mb"] = sum(p.stat().st_size for p in (Path(tmp) / "layers").iterdir()) / MB
    out["exact_hwm"] = tracker._hwm_exact
    print("DEPTHPRO_RESULT " + json.dumps(out), flush=True)


def run_depthpro(plain_repeats: int) -> dict:
    progress(
        f"DepthPro (full size, random weights): fresh subprocess, {plain_repeats} plain run(s) then "
        f"one dissection with files; {load_note()}"
    )
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--depthpro-child", str(plain_repeats)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("DEPTHPRO_RESULT "):
            result = json.loads(line.split(" ", 1)[1])
        else:
            sys.stdout.write("    " + line)
            sys.stdout.flush()
    if proc.wait() != 0 or result is None:
        raise RuntimeError(f"DepthPro subprocess failed with exit code {proc.returncode}")
    return result


# -- 2. Depth Anything V2 Small, in process --------------------------------------------------
def run_small(repeats: int) -> dict:
    ub = import_tool()
    configure_threads(None)
    image = load_rgb(bus_path())
    bench = load_bench(ub, "depth-anything-v2-small", progress)
    colormap_lut()
    bench.count_flops_and_input(image)
    bench.run_pipeline(image)
    plain, dissect = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        bench.run_pipeline(image)
        plain.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="depthpro_passes_small_") as tmp:
        for i in range(repeats):
            start = time.perf_counter()
            bench.dissect_layers(image, Path(tmp) / f"run{i}", write_files=True)
            dissect.append(time.perf_counter() - start)
    return {"plain_s": plain, "dissect_s": dissect}


# -- 3. the CLI, longest silence ---------------------------------------------------------------
def run_cli() -> dict:
    progress(f"CLI: --models depthpro --weights random --runs 1 --images bus.jpg; {load_note()}")
    with tempfile.TemporaryDirectory(prefix="depthpro_passes_cli_") as tmp:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                str(TOOL),
                "--models",
                "depthpro",
                "--weights",
                "random",
                "--runs",
                "1",
                "--images",
                str(bus_path()),
                "--output-dir",
                tmp,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        last, longest, where, lines = start, 0.0, "", 0
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            if now - last > longest:
                longest, where = now - last, line.strip()[:110]
            last = now
            lines += 1
            sys.stdout.write(f"    {now - start:7.1f}s | {line}")
            sys.stdout.flush()
        code = proc.wait()
        now = time.perf_counter()
        if now - last > longest:
            longest, where = now - last, "(until exit)"
    return {
        "exit_code": code,
        "seconds": now - start,
        "longest_silence_s": longest,
        "silence_before": where,
        "lines": lines,
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--plain-repeats", type=int, default=2, help="DepthPro plain runs; the fastest counts (default: 2)")
    p.add_argument(
        "--small-repeats", type=int, default=3, help="Depth Anything V2 Small runs of each kind (default: 3)"
    )
    p.add_argument("--no-cli", action="store_true", help="skip the full CLI run (longest silence)")
    p.add_argument("--no-depthpro", action="store_true", help="skip the DepthPro subprocess")
    p.add_argument("--depthpro-child", type=int, help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.depthpro_child:
        depthpro_child(args.depthpro_child)
        return 0
    started = time.perf_counter()
    small = run_small(args.small_repeats)
    dp = None if args.no_depthpro else run_depthpro(args.plain_repeats)
    cli = None if args.no_cli else run_cli()

    checks = []
    print(
        "\n" + "=" * 78 + f"\nRESULTS (CPU, random weights, bus.jpg; {load_note()}; "
        f"{time.perf_counter() - started:.0f}s in all)\n" + "=" * 78
    )
    print(f"{'figure':<52} {'measured':>12}   target")
    if dp is not None:
        plain = min(dp["plain_s"])
        plain_peak = min(dp["plain_peak_bytes"])
        ratio = dp["dissect_s"] / plain
        extra_mb = (dp["dissect_peak_bytes"] - plain_peak) / MB
        print(
            f"{'DepthPro plain forward (run_pipeline), s':<52} {plain:12.1f}   "
            f"(runs: {', '.join(f'{s:.1f}' for s in dp['plain_s'])}; fastest counts)"
        )
        print(
            f"{'DepthPro dissection with files, s':<52} {dp['dissect_s']:12.1f}   "
            f"({dp['records']} records, {dp['png']} PNG+NPY pairs, {dp['files_mb']:.0f} MB of files)"
        )
        print(
            f"{'DepthPro dissection / plain forward':<52} {ratio:11.2f}x   <= {RATIO_TARGET:.1f}x  "
            f"{verdict(ratio <= RATIO_TARGET)}"
        )
        print(
            f"{'DepthPro plain forward peak resident, MB':<52} {plain_peak / MB:12.0f}   "
            f"(runs: {', '.join(f'{b / MB:.0f}' for b in dp['plain_peak_bytes'])}; exact VmHWM: {dp['exact_hwm']})"
        )
        print(f"{'DepthPro dissection peak resident, MB':<52} {dp['dissect_peak_bytes'] / MB:12.0f}")
        print(
            f"{'DepthPro dissection peak - plain forward peak, MB':<52} {extra_mb:12.0f}   "
            f"< {MEMORY_TARGET_MB:.0f} MB  {verdict(extra_mb < MEMORY_TARGET_MB)}"
        )
        checks += [
            ("DepthPro dissection <= 2.0x plain forward", ratio <= RATIO_TARGET),
            ("DepthPro dissection peak - plain peak < 500 MB", extra_mb < MEMORY_TARGET_MB),
        ]
    s_plain, s_dis = statistics.median(small["plain_s"]), statistics.median(small["dissect_s"])
    s_ratio = s_dis / s_plain
    print(
        f"{'depth-anything-v2-small plain forward (median), s':<52} {s_plain:12.3f}   "
        f"(runs: {', '.join(f'{s:.2f}' for s in small['plain_s'])})"
    )
    print(
        f"{'depth-anything-v2-small dissection (median), s':<52} {s_dis:12.3f}   "
        f"(runs: {', '.join(f'{s:.2f}' for s in small['dissect_s'])})"
    )
    print(
        f"{'depth-anything-v2-small dissection / plain forward':<52} {s_ratio:11.2f}x   <= {RATIO_TARGET:.1f}x  "
        f"{verdict(s_ratio <= RATIO_TARGET)}"
    )
    checks.append(("depth-anything-v2-small dissection <= 2.0x plain forward", s_ratio <= RATIO_TARGET))
    if cli is not None:
        print(
            f"{'CLI depthpro run: wall time, s (exit code)':<52} {cli['seconds']:12.0f}   "
            f"(exit {cli['exit_code']}, {cli['lines']} lines)"
        )
        print(
            f"{'CLI depthpro run: longest silent gap, s':<52} {cli['longest_silence_s']:12.1f}   "
            f"<= {SILENCE_TARGET_S:.0f} s  {verdict(cli['longest_silence_s'] <= SILENCE_TARGET_S)}"
        )
        print(f"    the gap ended with: {cli['silence_before']}")
        checks.append(
            ("longest silent gap of a full-size DepthPro run <= 10 s", cli["longest_silence_s"] <= SILENCE_TARGET_S)
        )
    print("\nTARGETS")
    for label, ok in checks:
        print(f"  {verdict(ok)}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
