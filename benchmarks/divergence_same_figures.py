"""Do two checkouts' divergence passes report the same figures? Each runs the passes (random weights,
bus.jpg, CPU) in its own process; compared: every leaf record's own (shadow) and propagated figures and
every container's own figures (the largest relative difference per figure), the notes and reasons, the
culprit and the top five records by own error.

    python benchmarks/divergence_same_figures.py OLD_CHECKOUT NEW_CHECKOUT \
        [--rows yolo11n-detect:torch-bf16,depth-anything-v2-small:torch-bf16]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

from bench_common import ROOT

FIGURES = ("relative_l2", "cosine", "max_abs", "normalised")


def child(root: str, model: str, variant_name: str) -> dict:
    sys.path.insert(0, root)  # the checkout measured (its vision_bench first)
    import torch
    from bench_common import bus_path, import_tool, load_bench

    from vision_bench.divergence.divergence_pass import hooked_variant
    from vision_bench.divergence.layer_passes import run_divergence
    from vision_bench.images import load_rgb
    from vision_bench.records.codec import to_json

    torch.set_grad_enabled(False)
    bench = load_bench(import_tool(), model, lambda line: None)
    return to_json(run_divergence(bench, hooked_variant(bench, variant_name), load_rgb(bus_path())))


def relative(a, b) -> float:
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def compare(old: dict, new: dict) -> list[str]:
    lines: list[str] = []
    worst: dict[str, tuple] = {}
    for kind in ("records", "ops_records"):
        pairs = list(zip(old.get(kind) or [], new.get(kind) or []))
        if len(old.get(kind) or []) != len(new.get(kind) or []):
            lines.append(f"{kind}: {len(old.get(kind) or [])} != {len(new.get(kind) or [])}")
        for a, b in pairs:
            for key in ("name", "call", "note", "zero_because", "shape"):
                if a.get(key) != b.get(key):
                    lines.append(f"{kind} {a.get('name')}#{a.get('call')}: {key} {a.get(key)!r} != {b.get(key)!r}")
            for mode in ("shadow", "propagated"):
                fa, fb = a.get(mode) or {}, b.get(mode) or {}
                for figure in FIGURES:
                    worst_key = f"{kind}.{mode}.{figure}"
                    difference = relative(fa.get(figure), fb.get(figure))
                    if difference > worst.get(worst_key, (-1.0,))[0]:
                        worst[worst_key] = (difference, a.get("name"), fa.get(figure), fb.get(figure))
    for key, (difference, name, a, b) in sorted(worst.items()):
        lines.append(f"max relative difference {key}: {difference:.3g} (at {name}: {a} vs {b})")
    culprit = [(c or {}).get("name") for c in (old.get("first_divergent"), new.get("first_divergent"))]
    top = [[(r["name"], r["call"], r["kind"]) for r in side.get("top_own") or []] for side in (old, new)]
    lines.append(f"culprit: {culprit[0]} vs {culprit[1]}: {'same' if culprit[0] == culprit[1] else 'DIFFERENT'}")
    lines.append(f"top five: {'same' if top[0] == top[1] else 'DIFFERENT'} ({top[1]})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rows", default="yolo11n-detect:torch-bf16,depth-anything-v2-small:torch-bf16")
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    for row in args.rows.split(","):
        model, variant = row.split(":")
        sides = []
        for root in (args.old, args.new):
            done = subprocess.run(
                [sys.executable, __file__, args.old, args.new, "--child", root, model, variant],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if done.returncode:
                sys.exit(f"{root} {model} {variant} failed:\n{done.stderr[-3000:]}")
            sides.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{model} {variant}:")
        for line in compare(*sides):
            print(f"  {line}")


if __name__ == "__main__":
    main()
