"""The model's own share of memory (USS growth in its worker) against an independent reading: this
script runs the tool and, from outside, polls /proc/<pid>/smaps_rollup of every process the tool
starts, then compares the worker's private memory as seen from outside with the tool's figures.

    python benchmarks/memory_own_share.py [--models yolo11n-detect] [--runs 5] [--interval-ms 5]

Prints, per model: the tool's USS before the load, at the peak, and their difference (its own
share), the same three read from outside (the baseline: the last sample before the worker's
resident set starts growing with the load; the peak: the largest sample up to the end of the timed
runs, which end the tool's peak window), and the resident-set growth the tool used to report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, TOOL

sys.path.insert(0, str(ROOT))
from vision_bench.measure.memory import private_memory
from vision_bench.records.measurement import PrivateMemory


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="yolo11n-detect")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="own_share_"))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TOOL),
            "--weights",
            "random",
            "--models",
            args.models,
            "--runs",
            str(args.runs),
            "--no-dissect",
            "--output-dir",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: dict[int, list[tuple[float, PrivateMemory]]] = {}
    while proc.poll() is None:
        for pid in descendants(proc.pid):
            reading = private_memory(pid)
            if reading:
                samples.setdefault(pid, []).append((time.monotonic(), reading))
        time.sleep(args.interval_ms / 1000)
    data = json.loads(next((out / "results").glob("benchmark_results_*.json")).read_text())
    print(f"{'model':<16} {'':>8} {'USS before MB':>14} {'USS peak MB':>12} {'own share MB':>13}  samples")
    for model in data["models"]:
        mem, pid = model["memory"], model["worker"]["pid"]
        series = samples.get(pid, [])
        mb = lambda b: b / 2**20
        print(
            f"{model['cli_name']:<16} {'tool':>8} {mb(mem['cpu_private_before_load_bytes']):>14.1f} "
            f"{mb(mem['cpu_private_peak_bytes']):>12.1f} {mb(mem['peak_over_baseline_bytes']):>13.1f}"
        )
        if not series:
            print(f"{'':<16} {'outside':>8} no samples of pid {pid}")
            continue
        rss = [r.rss for _, r in series]
        # The load starts where the resident set first exceeds the tool's before-load reading by 5 MB.
        start = next((i for i, v in enumerate(rss) if v > mem["cpu_rss_before_load_bytes"] + (5 << 20)), 0)
        baseline = series[max(start - 1, 0)][1].uss
        # The tool's window ends with the timed runs: the load, cold start, warm-up and timed phases
        # after the load started (later phases, FLOPs and output pictures, are not in its peak).
        seconds = sum(model["phase_seconds"][k] for k in ("load", "cold_start", "warmup", "timed"))
        end = series[start][0] + seconds
        peak = max(r.uss for t, r in series[start:] if t <= end)
        own = peak - baseline
        print(f"{'':<16} {'outside':>8} {mb(baseline):>14.1f} {mb(peak):>12.1f} {mb(own):>13.1f}  {len(series)}")
        print(
            f"{'':<16} own share: tool / outside = {mem['peak_over_baseline_bytes'] / own:.3f}; resident-set "
            f"growth (the old figure) {mb(mem['rss_over_baseline_bytes']):.1f} MB"
        )


if __name__ == "__main__":
    main()
