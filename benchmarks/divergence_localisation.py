"""Does --divergence name the layer that broke? Plant a fault in one module at a random depth, run the
divergence passes, and check that the planted module is the first divergent layer.

    python benchmarks/divergence_localisation.py [--models yolo11n-detect,depth-anything-v2-small]
        [--plantings 24] [--bases fp32,bf16] [--seed 0]

A fault is planted in a LayerNorm, a Linear or a Conv2d (whichever the model has), chosen at random over
the model's leaf calls. It acts in the variant only, in both the variant pass and the shadow calls:
- `weights`: the module computes with its weight perturbed by PCT% (each element times 1 + PCT% x N(0, 1));
- `fp16-eps` (LayerNorm only, fp32 base): the module computes in float16 with epsilon 1e-12.
Bases: `fp32` (the fault is the only change; the tolerance is the float32 one, 1e-4; faults of 1%) and
`bf16` (autocast to bfloat16 plus the fault; the tolerance is bfloat16's, 2 eps = 0.0156, against which
bfloat16's own rounding gives about 0.003 a layer; faults of 5%: a 1% fault changes a layer by about
0.01, under that tolerance, and is not a divergence at bfloat16's resolution).
A planting whose fault alone changes its module's output by no more than the tolerance (measured outside
the tool, fault_effect) is drawn again, and the table counts those.

Prints a table per model and base: plantings, how often the planted module was named first by its own
error (shadow mode) and by the propagated error, its own error, and the largest own error elsewhere.
Target: >= 95% named first over >= 20 plantings per model.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from bench_common import bus_path, import_tool, load_bench

PLANTABLE = ("LayerNorm", "Linear", "Conv2d")
MAX_DRAWS = 50


def leaf_calls(bench, image) -> list[tuple[str, str]]:
    """(name, type) of every leaf module with a weight, once each, in execution order."""
    from vision_bench.divergence.layer_passes import hooked_pass

    seen: dict[str, str] = {}

    def hook(name, module_type):
        def after(module, args, output):
            if module_type in PLANTABLE and getattr(module, "weight", None) is not None:
                seen.setdefault(name, module_type)

        return after

    hooked_pass(bench.network(), hook, lambda: bench.run_pipeline(image))
    return list(seen.items())


def weight_fault(pct: float, generator):
    """A fault that computes with the weight perturbed by pct% (element-wise relative noise)."""
    import torch

    cache = {}

    def faulty(module, *args, **kwargs):
        if id(module) not in cache:
            noise = torch.randn(module.weight.shape, generator=generator).to(module.weight.device)
            cache[id(module)] = module.weight.data * (1 + pct / 100 * noise)
        saved, module.weight.data = module.weight.data, cache[id(module)]
        try:
            return type(module).forward(module, *args, **kwargs)
        finally:
            module.weight.data = saved

    return faulty


def fp16_layer_norm(module, x, *args, **kwargs):
    import torch

    with torch.autocast(x.device.type, enabled=False):
        out = torch.nn.functional.layer_norm(
            x.half(),
            module.normalized_shape,
            module.weight.half(),
            module.bias.half() if module.bias is not None else None,
            1e-12,
        )
    return out.to(x.dtype)


def fault_effect(bench, image, name: str, fault) -> float:
    """The fault alone, measured outside the tool: the relative L2 change of the module's output, fp32, on
    the input it gets in a plain pass. A fault below the tolerance cannot be told from the variant's own
    rounding, and one on a module whose input has vanished (random YOLO heads: inputs of 1e-11 under a
    bias of -8.8) changes nothing at all."""
    from vision_bench.divergence.error_figures import error_figures

    module = bench.network().get_submodule(name)
    changes: list[float] = []

    def compare(mod, args, kwargs, output):
        if not changes:
            changes.append(error_figures(fault(mod, *args, **kwargs), output).relative_l2)

    handle = module.register_forward_hook(compare, with_kwargs=True)
    try:
        bench.run_pipeline(image)
    finally:
        handle.remove()
    return changes[0]


def run_planting(bench_factory, image, base: str, name: str, fault, tolerances: dict) -> dict:
    import torch

    from vision_bench.divergence.layer_passes import AutocastVariant, HookedVariant, run_divergence

    bench = bench_factory()
    overrides = {name: fault}
    variant: HookedVariant
    if base == "bf16":
        variant = AutocastVariant("torch-bf16", torch.bfloat16, tolerances["bfloat16"], overrides=overrides)
    else:
        variant = HookedVariant("torch-fp32+fault", tolerances["float32"], overrides=overrides)
    start = time.perf_counter()
    out = run_divergence(bench, variant, image)
    seconds = time.perf_counter() - start
    planted = [r for r in out.records if r.name == name]
    others = [r.own or 0.0 for r in out.records if r.name != name]
    named = out.first_divergent.name if out.first_divergent else None
    bench.release()
    return {
        "own_first": named == name,
        "propagated_first": (out.first_propagated.name if out.first_propagated else None) == name,
        "named": named,
        "own": max(r.own or 0.0 for r in planted),
        "others_max": max(others, default=0.0),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="yolo11n-detect,depth-anything-v2-small")
    parser.add_argument("--plantings", type=int, default=24)
    parser.add_argument("--bases", default="fp32,bf16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    from vision_bench.images import load_rgb

    ub = import_tool()
    image = load_rgb(bus_path())
    rows = []
    for model in args.models.split(","):
        probe = load_bench(ub, model, print)
        calls = leaf_calls(probe, image)
        tolerances = probe.DIVERGENCE_TOLERANCE
        probe.release()
        types = sorted({t for _, t in calls})
        print(
            f"{model}: {len(calls)} plantable modules ({', '.join(f'{t} {sum(1 for _, x in calls if x == t)}' for t in types)})"
        )
        for base in args.bases.split(","):
            faults: list[tuple[str, float | None]] = [("weights 5%", 5.0)] if base == "bf16" else [("weights 1%", 1.0)]
            if "LayerNorm" in types and base == "fp32":  # its effect (about 3e-4) is under bfloat16's tolerance
                faults.append(("fp16-eps (LayerNorm)", None))
            for label, pct in faults:
                rng = random.Random(f"{args.seed}-{model}-{base}-{label}")
                generator = torch.Generator().manual_seed(args.seed)
                pool = calls if pct is not None else [c for c in calls if c[1] == "LayerNorm"]
                if pct is not None:  # a type first, then a depth: each type gets its share of the plantings
                    by_type = {t: [c for c in pool if c[1] == t] for t in types}
                results, redrawn = [], []
                tolerance = tolerances["bfloat16" if base == "bf16" else "float32"]
                checker = load_bench(ub, model, lambda _: None)
                for i in range(args.plantings):
                    for _ in range(MAX_DRAWS):
                        name, module_type = (
                            rng.choice(by_type[types[i % len(types)]]) if pct is not None else rng.choice(pool)
                        )
                        fault = weight_fault(pct, generator) if pct is not None else fp16_layer_norm
                        effect = fault_effect(checker, image, name, fault)
                        if effect > tolerance:
                            break
                        redrawn.append(f"{name} ({effect:.2g})")
                    else:
                        sys.exit(
                            f"{model} {base} {label}: no module among {MAX_DRAWS} draws where the fault's effect "
                            f"passes {tolerance:g}"
                        )
                    result = run_planting(
                        lambda model=model: load_bench(ub, model, lambda _: None), image, base, name, fault, tolerances
                    )
                    results.append(result)
                    print(
                        f"  {base} {label} #{i + 1}: {module_type} {name}: named {result['named']} "
                        f"({'ok' if result['own_first'] else 'MISSED'}), own {result['own']:.3g}, "
                        f"largest elsewhere {result['others_max']:.3g}, {result['seconds']:.1f} s",
                        flush=True,
                    )
                checker.release()
                if redrawn:
                    print(
                        f"  drawn again, the fault's own effect under the tolerance {tolerance:g}: {', '.join(redrawn)}"
                    )
                n = len(results)
                rows.append(
                    [
                        model,
                        base,
                        label,
                        n,
                        len(redrawn),
                        f"{sum(r['own_first'] for r in results) / n * 100:.0f}%",
                        f"{sum(r['propagated_first'] for r in results) / n * 100:.0f}%",
                        f"{statistics.median(r['own'] for r in results):.3g}",
                        f"{max(r['others_max'] for r in results):.3g}",
                        f"{statistics.median(r['seconds'] for r in results):.1f}",
                    ]
                )
    headers = [
        "model",
        "base",
        "fault",
        "plantings",
        "drawn again (no effect)",
        "named first (own error)",
        "named first (propagated)",
        "planted own error (median)",
        "largest own error elsewhere",
        "s a planting",
    ]
    print("\n| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print("\nTarget: the planted module named first in >= 95% of >= 20 plantings per model.")


if __name__ == "__main__":
    main()
