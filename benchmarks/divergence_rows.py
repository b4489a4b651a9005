"""The divergence passes' cost in forward passes, old code against new, alternating in one run.

    python benchmarks/divergence_rows.py [--roots /path/to/old/checkout,/path/to/this/checkout] [--rounds 3]

Each measurement is a fresh process on one checkout (`--roots`; default: this checkout only) that loads
the model (random weights, CPU, bus.jpg), times fp32 forwards (pipeline calls), runs the divergence passes
(divergence.run_divergence, which leaves the model in the variant), then times the variant's forwards.
Counted as issue 31 counts it: the reference pass against the fp32 forward median, the shadow calls and
the variant pass against the variant's forward median. Prints one line per measurement, then per row and
checkout the median over the rounds, for the four rows: yolo11n-detect and depth-anything-v2-small, each
in torch-bf16 and torch-channels-last. The machine's load is printed: figures from a busy machine are
indicative only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench_common import ROOT, load_note

ROWS = (
    ("yolo11n-detect", "torch-bf16"),
    ("yolo11n-detect", "torch-channels-last"),
    ("depth-anything-v2-small", "torch-bf16"),
    ("depth-anything-v2-small", "torch-channels-last"),
)


def child(root: str, model: str, variant_name: str, forwards: int) -> dict:
    sys.path.insert(0, root)  # the checkout measured (its vision_bench first)
    import torch
    from bench_common import bus_path, import_tool, load_bench

    from vision_bench.divergence.divergence_pass import hooked_variant
    from vision_bench.divergence.layer_passes import run_divergence
    from vision_bench.images import load_rgb

    torch.set_grad_enabled(False)
    image = load_rgb(bus_path())
    bench = load_bench(import_tool(), model, lambda line: None)

    def median_forward() -> float:
        bench.run_pipeline(image)  # warm
        seconds = []
        for _ in range(forwards):
            start = time.perf_counter()
            bench.run_pipeline(image)
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    fp32 = median_forward()
    passes = run_divergence(bench, hooked_variant(bench, variant_name), image).passes
    variant = median_forward()  # run_divergence left the model in the variant
    worth = {
        "reference": (passes.reference_s or 0.0) / fp32,
        "shadow": (passes.shadow_s or 0.0) / variant,
        "variant": (passes.variant_s or 0.0) / variant,
    }
    return {"fp32_s": fp32, "variant_s": variant, "worth": worth, "total": sum(worth.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roots", default=str(ROOT), help="checkouts to measure, comma-separated, alternated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default="", help="row numbers to run (1-4, comma-separated); default all")
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, model, variant = args.child
        print(json.dumps(child(root, model, variant, 5 if "yolo" in model else 3)))
        return
    roots = args.roots.split(",")
    rows = [ROWS[int(i) - 1] for i in args.rows.split(",")] if args.rows else list(ROWS)
    print(f"start: {load_note()}", flush=True)
    totals: dict = {}
    for round_ in range(args.rounds):
        for model, variant in rows:
            for root in roots:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", root, model, variant],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                if done.returncode:
                    sys.exit(f"{root} {model} {variant} failed:\n{done.stderr[-3000:]}")
                f = json.loads(done.stdout.strip().splitlines()[-1])
                totals.setdefault((model, variant, root), []).append(f["total"])
                parts = ", ".join(f"{k} {v:.2f}" for k, v in f["worth"].items())
                print(
                    f"round {round_ + 1} {model} {variant} [{root}]: fp32 {f['fp32_s'] * 1e3:.0f} ms, variant "
                    f"{f['variant_s'] * 1e3:.0f} ms; forwards' worth {parts}; total {f['total']:.2f}",
                    flush=True,
                )
    print(f"end: {load_note()}")
    for model, variant in rows:
        cells = [
            f"{root}: {statistics.median(totals[(model, variant, root)]):.2f} "
            f"({', '.join(f'{t:.1f}' for t in totals[(model, variant, root)])})"
            for root in roots
        ]
        print(f"{model} {variant}: median forwards' worth " + "; ".join(cells))


if __name__ == "__main__":
    main()
