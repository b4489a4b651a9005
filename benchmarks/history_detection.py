"""How well --history's change-point method finds a step, and how often it finds one that is not
there, over many seeds (the issue's target: a 10% step in 30 runs found within one run in at least
95% of 200 histories, a false alarm in at most 5% of 200 without a step, every seed).

    python benchmarks/history_detection.py [--seeds 10] [--first-seed 0] [--histories 200] [--step 0.10]
                                           [--alpha A] [--pooled] [--per-image N]

Each history is drawn by vision_bench.history.synthetic (run medians resampled from a real
yolo11n-detect run's timed runs, per image; --pooled: all together, the model used before) and searched
with the test at --alpha (the method's own level by default). Prints each seed's rates, then their mean, min and max."""

from __future__ import annotations

import argparse
import os
import time

from bench_common import ROOT  # noqa: F401  (puts the package on the path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--histories", type=int, default=200)
    parser.add_argument("--step", type=float, default=0.10)
    parser.add_argument("--alpha", type=float, default=None, help="the test's level (default: the method's)")
    parser.add_argument("--pooled", action="store_true", help="resample a run's times of all images together")
    parser.add_argument("--per-image", type=int, default=None, help="timed runs of each image a run (default 10)")
    args = parser.parse_args()
    from vision_bench.history.change_points import ALPHA
    from vision_bench.history.synthetic import detection_rates

    alpha = ALPHA if args.alpha is None else args.alpha

    model = "all images' times resampled together" if args.pooled else "each image's times resampled"
    print(f"load average {os.getloadavg()[0]:.2f}; {args.histories} histories a seed, a {args.step:.0%} step,")
    print(f"alpha {alpha:g}, {model}" + (f", {args.per_image} of each image a run" if args.per_image else ""))
    started = time.perf_counter()
    rates = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        one = detection_rates(seed, args.histories, args.step, alpha, args.pooled, args.per_image)
        rates.append(one)
        print(f"seed {seed:3d}: found within one run {one.found:6.1%}   false alarms {one.false_alarms:5.1%}")
    for name in ("found", "false_alarms"):
        values = [getattr(r, name) for r in rates]
        print(f"{name:13s} mean {sum(values) / len(values):6.1%}  min {min(values):6.1%}  max {max(values):6.1%}")
    print(f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
