#!/usr/bin/env python3
"""Does a model's figure depend on where it runs? (issue: numbers that do not depend on run order)

Runs yolo11n-detect and yolo11n-pose (random weights, CPU, --runs 6, --no-dissect, the two
bundled photos) in both orders, four ways:
  default      each model in its own worker process (what the tool does unless told otherwise)
  none         both in one process (--isolation none), the tool's allocator setting applied
  none-glibc   both in one process with glibc's default allocator behaviour (the old tool):
               shows the cause of the first-in-process penalty
and prints each model's timed forward median and memory increase side by side with the targets.
Every (mode, order) is run --repeats times, the orders interleaved, and the figures are the
medians over the repeats, with their range: two identical fresh processes on a shared 2-core
machine differ by more than 15% often enough that one run of each order cannot tell an order
effect from noise; the range shows how big that noise was in this run.
Then, unless --skip-five, the README's five-model run (--weights random --sam-prompt box --runs 3)
and the tool's own overhead from the phase times in its JSON.

    python benchmarks/order_effects.py            # about 12 minutes on 2 cores
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIR = ["yolo11n-detect", "yolo11n-pose"]
# --isolation none with the allocator setting switched off: the tool as it was before it kept freed memory.
# cli.main calls keep_freed_memory for --isolation none: patched where it is looked up.
GLIBC_DEFAULT = (
    "import sys; sys.path.insert(0, {root!r}); import unified_benchmark as ub; import vision_bench.cli; "
    "vision_bench.cli.keep_freed_memory = lambda: None; sys.exit(ub.main(sys.argv[1:]))"
)


def run_tool(args, out: Path, glibc_default=False) -> dict:
    cmd = [sys.executable] + (
        ["-c", GLIBC_DEFAULT.format(root=str(ROOT))] if glibc_default else [str(ROOT / "unified_benchmark.py")]
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd + [*args, "--output-dir", str(out)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the tool failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(next((out / "results").glob("benchmark_results_*.json")).read_text())


def figures(data) -> dict:
    return {
        m["cli_name"]: (m["latency_forward"]["median"] * 1000, m["memory"]["peak_over_baseline_bytes"] / 2**20)
        for m in data["models"]
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-five", action="store_true", help="skip the five-model overhead run")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="tool runs per mode and order (median taken)")
    parser.add_argument("--modes", default="default,none,none-glibc", help="comma list of default, none, none-glibc")
    options = parser.parse_args()
    modes = options.modes.split(",")
    common = ["--weights", "random", "--device", "cpu", "--runs", str(options.runs), "--no-dissect", "--models"]
    samples = {}  # (mode, model, position) -> [(forward ms, memory MB) per repeat]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(options.repeats):
            for mode in modes:
                for order in (PAIR, PAIR[::-1]):
                    extra = [] if mode == "default" else ["--isolation", "none"]
                    out = Path(tmp) / f"{mode}_{order[0]}_{repeat}"
                    print(f"repeat {repeat + 1}/{options.repeats}, {mode}: {','.join(order)}", flush=True)
                    data = run_tool(common + [",".join(order)] + extra, out, glibc_default=mode == "none-glibc")
                    for position, (name, values) in enumerate(figures(data).items(), 1):
                        samples.setdefault((mode, name, position), []).append(values)
        table = {key: tuple(statistics.median(v[i] for v in values) for i in (0, 1)) for key, values in samples.items()}
        spread = {key: (min(v[0] for v in values), max(v[0] for v in values)) for key, values in samples.items()}

        print(
            f"\nTimed forward median (ms), median over {options.repeats} repeats [range over the repeats], "
            "and memory increase over the model's own baseline (MB):"
        )
        print(f"{'model':<16} {'mode':<11} {'first':>20} {'second':>20} {'ratio':>6}   {'mem 1st':>8} {'mem 2nd':>8}")
        for name in PAIR:
            for mode in modes:
                (f1, m1), (f2, m2) = table[(mode, name, 1)], table[(mode, name, 2)]
                r1, r2 = (
                    f"{table[(mode, name, p)][0]:.1f} [{spread[(mode, name, p)][0]:.0f}-{spread[(mode, name, p)][1]:.0f}]"
                    for p in (1, 2)
                )
                print(f"{name:<16} {mode:<11} {r1:>20} {r2:>20} {f1 / f2:6.2f}   {m1:8.0f} {m2:8.0f}")

        print("\nTargets:")
        ok_all = True
        for name in PAIR:
            (f1, m1), (f2, m2) = table[("default", name, 1)], table[("default", name, 2)]
            checks = [
                (
                    f"{name}: default-mode forward medians in the two orders within 15%",
                    f"{f1:.1f} vs {f2:.1f} ms ({abs(f1 / f2 - 1) * 100:.1f}%)",
                    abs(f1 / f2 - 1) <= 0.15,
                ),
                (
                    f"{name}: default-mode memory increases within 50 MB or 25%",
                    f"{m1:.0f} vs {m2:.0f} MB",
                    abs(m1 - m2) <= 50 or abs(m1 / m2 - 1) <= 0.25,
                ),
            ]
            if "none" in modes:
                best = table[("none", name, 2)][0]  # second in one process: today's best case
                default_median = statistics.median(v[0] for p in (1, 2) for v in samples[("default", name, p)])
                checks.append(
                    (
                        f"{name}: default-mode median within 15% of 'second in one process'",
                        f"{default_median:.1f} vs {best:.1f} ms ({abs(default_median / best - 1) * 100:.1f}%)",
                        abs(default_median / best - 1) <= 0.15,
                    )
                )
            for label, value, ok in checks:
                ok_all &= ok
                print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value}")

        if not options.skip_five:
            print("\nrunning the README five-model run", flush=True)
            data = run_tool(
                [
                    "--weights",
                    "random",
                    "--sam-prompt",
                    "box",
                    "--runs",
                    "3",
                    "--models",
                    "yolo11n-detect,yolo11n-segment,yolo11n-pose,depth-anything-v2-small,mobilesam",
                ],
                Path(tmp) / "five",
            )
            totals = data["phase_totals"]
            share = totals["overhead"] / totals["wall"]
            print("Phase totals (s): " + ", ".join(f"{k} {v:.1f}" for k, v in totals.items()))
            ok = share < 0.15
            ok_all &= ok
            print(
                f"  {'PASS' if ok else 'FAIL'}  tool's own overhead under 15% of the wall time: "
                f"{totals['overhead']:.1f} of {totals['wall']:.1f} s ({share * 100:.1f}%)"
            )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
