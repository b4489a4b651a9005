"""The profiler trace (--trace) of yolo11n-detect and depth-anything-v2-small on this machine, from
one run of the tool as a user runs it (random weights, CPU): each trace's size, its number of
events and of module ranges against the dissection's record count (every leaf call that ran is one
range), the per-block shares from the trace against the hook-based breakdown, and the profiled
pass's overhead against the timed median.

    python benchmarks/trace_summary.py [--runs 3] [--threads N] [--output-dir DIR] [--results benchmark_results_<run>.json]

With --results, the figures of an earlier run are printed and nothing runs.
Targets (issue 22): leaf ranges == dissection records; per-block shares within 10 percentage points.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import TOOL, bus_path, load_note

MODELS = "yolo11n-detect,depth-anything-v2-small"
TARGET_PP = 10.0


def run_tool(out: Path, runs: int, threads: int | None) -> tuple[Path, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [
        sys.executable,
        str(TOOL),
        "--weights",
        "random",
        "--models",
        MODELS,
        "--device",
        "cpu",
        "--runs",
        str(runs),
        "--trace",
        "--no-dissect",
        "--images",
        str(bus_path()),
        "--output-dir",
        str(out),
    ] + (["--threads", str(threads)] if threads else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the tool failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return next((out / "results").glob("benchmark_results_*.json")), wall


def range_counts(trace_file: Path) -> tuple[int, dict]:
    """Events in the file itself, and its ranges (user annotations) by name."""
    events = json.loads(gzip.decompress(trace_file.read_bytes()))["traceEvents"]
    names: dict[str, int] = {}
    for e in events:
        if e.get("cat") == "user_annotation":
            names[e["name"]] = names.get(e["name"], 0) + 1
    return len(events), names


def print_model(m: dict, results_dir: Path) -> bool:
    t, records = m["trace"], (m.get("dissection") or {}).get("records")
    events, names = range_counts(results_dir / t["file"])
    print(f"\n{m['model']}: {t['file']}")
    print(f"  file {t['bytes'] / 1024**2:.2f} MB gzipped; {events:,} events (summary says {t['events']:,})")
    print(
        f"  module ranges {t['module_ranges']:,}, of them leaf calls {t['leaf_ranges']:,}; dissection records "
        f"{records}: {'equal' if t['leaf_ranges'] == records else 'DIFFERENT'}"
    )
    print("  phase ranges: " + ", ".join(f"{p} {names.get(p, 0)}" for p in ("preprocess", "forward", "postprocess")))
    print(
        f"  traced pass {t['pass_wall_s'] * 1000:.1f} ms wall against the timed end-to-end median "
        f"{t['timed_median_s'] * 1000:.1f} ms: {t['overhead_ratio']:.2f}x"
    )
    print(f"  {'block':<44} {'trace':>7} {'hooks':>7} {'diff pp':>8}")
    for b in t["blocks"]:
        hooks = "n/a" if b.get("hook_share") is None else f"{b['hook_share'] * 100:.1f}%"
        diff = "n/a" if b.get("difference_pp") is None else f"{b['difference_pp']:+.1f}"
        print(f"  {b['block'][:44]:<44} {b['share'] * 100:>6.1f}% {hooks:>7} {diff:>8}")
    worst = t.get("max_difference_pp")
    ok = worst is not None and worst <= TARGET_PP and t["leaf_ranges"] == records
    print(f"  largest difference {worst:.1f} pp (target <= {TARGET_PP:.0f} pp): {'met' if ok else 'NOT met'}")
    print(
        "  top CPU operators by self time: "
        + ", ".join(f"{op['name']} {op['self_ms']:.1f} ms" for op in t["top_cpu_operators"][:5])
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, help="an earlier run's results JSON: print its figures, run nothing")
    parser.add_argument("--threads", type=int, help="torch threads (1 is the least disturbed on a shared machine)")
    parser.add_argument("--output-dir", type=Path, help="keep the run's files there (default: a temporary folder)")
    args = parser.parse_args()
    print(f"[{load_note()}]")
    with tempfile.TemporaryDirectory(prefix="trace_summary_") as tmp:
        if args.results:
            path, wall = args.results, None
        else:
            path, wall = run_tool(args.output_dir or Path(tmp), args.runs, args.threads)
        data = json.loads(path.read_text())
        if wall is not None:
            print(
                f"run of {MODELS} with --trace: {wall:.0f} s wall; trace phase "
                f"{data['phase_totals'].get('trace', 0):.1f} s summed over the models"
            )
        met = [print_model(m, path.parent) for m in data["models"] if m.get("trace")]
    return 0 if met and all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
