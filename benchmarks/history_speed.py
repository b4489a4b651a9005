"""How long --history takes over 200 results files: read and validated, analysed, and drawn
(the Markdown, HTML and JSON reports with one SVG chart per series). The issue's target: under 10 s.

    python benchmarks/history_speed.py REAL_RESULTS.json [--files 200] [--models-per-file 1 8]

The files are copies of a real results file: each its own run id and start, each model's timed runs
scaled (2% noise a run, a 10% step at run 150, so that there is a change point to find and draw);
with --models-per-file K > 1 each model appears K times under other CLI names, as a file of a run of
K models would hold (its size grows with K). Prints the load, the files' size, and the seconds of
each stage (median of --repeats), then one run of the command line itself (its import included)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, TOOL


def make_files(real: Path, folder: Path, files: int, models_per_file: int) -> int:
    """`files` copies of `real` in `folder`; returns their total size in bytes."""
    import numpy as np

    template = json.loads(real.read_text())
    rng = np.random.default_rng(0)
    models = []
    for k in range(models_per_file):
        for model in template["models"]:
            renamed = copy.deepcopy(model)
            if k:
                renamed["cli_name"] = f"{model['cli_name']}-{k}"
                renamed["model"] = f"{model['model']}{k}"
            models.append(renamed)
    total = 0
    for i in range(files):
        data = dict(template)
        factor = (1.10 if i >= files * 3 // 4 else 1.0) * float(np.exp(rng.normal(0, 0.02)))
        data["models"] = [
            m | {"runs": [r | {"total_s": r["total_s"] * factor} for r in m.get("runs", [])]} for m in models
        ]
        data["run_id"] = f"20260101_{i:06d}"
        data["started"] = f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00"
        path = folder / f"benchmark_results_{i:04d}.json"
        path.write_text(json.dumps(data))
        total += path.stat().st_size
    return total


def stage_seconds(folder: Path, out: Path) -> dict[str, float]:
    """Seconds to read and analyse, and to write the reports, in this process."""
    from vision_bench.history.analysis import build_history
    from vision_bench.history.report import write_history

    start = time.perf_counter()
    history = build_history([folder], "start")
    read = time.perf_counter()
    write_history(history, out / "results")
    done = time.perf_counter()
    return {"read and analyse": read - start, "write reports": done - read, "total": done - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path, help="a real results file (benchmark_results_<run>.json)")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--models-per-file", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    import statistics

    for k in args.models_per_file:
        with tempfile.TemporaryDirectory() as scratch:
            folder, out = Path(scratch) / "runs", Path(scratch) / "out"
            folder.mkdir()
            size = make_files(args.real, folder, args.files, k)
            timings = [stage_seconds(folder, out) for _ in range(args.repeats)]
            totals = ", ".join(f"{t['total']:.2f}" for t in timings)
            medians = {name: statistics.median(t[name] for t in timings) for name in timings[0]}
            print(
                f"{args.files} files x {k} model(s), {size / 1e6:.1f} MB: "
                + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in medians.items())
                + f" (median of {args.repeats}; totals {totals})"
            )
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(TOOL), "--history", str(folder), "--output-dir", str(out)],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - start
            print(
                f"  command line (import included): {wall:.2f} s, exit {proc.returncode}; {proc.stdout.splitlines()[0]}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
