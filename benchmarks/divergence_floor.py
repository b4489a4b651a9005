"""The floor of the divergence passes on one model and variant, in forward passes: what hooks that do
nothing cost, and the least work per record (one host copy of each reference output; one shadow call per
leaf that is not exact by construction; one comparison per record), each timed alone in one process.

    python benchmarks/divergence_floor.py [--model yolo11n-detect] [--variant torch-bf16] [--repeats 5]

Counted as issue 31 counts the passes: the reference side against the fp32 forward's median, the shadow
and variant sides against the variant forward's median. Medians over `--repeats`.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_common import bus_path, import_tool, load_bench, load_note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolo11n-detect")
    parser.add_argument("--variant", default="torch-bf16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    from vision_bench.common import first_tensor
    from vision_bench.divergence.divergence_pass import hooked_variant
    from vision_bench.divergence.error_figures import FigureBuffers, error_figures
    from vision_bench.divergence.layer_passes import hooked_pass
    from vision_bench.images import load_rgb

    torch.set_grad_enabled(False)
    image = load_rgb(bus_path())
    bench = load_bench(import_tool(), args.model, lambda line: None)
    variant = hooked_variant(bench, args.variant)
    calls: list = []  # (name, module, args, kwargs, output copy) of every leaf call, from one fp32 pass
    references: list = []

    def median(run) -> float:
        run()  # warm
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    def nothing(name, kind):
        return lambda module, call_args, kwargs, output: None

    def copying(name, kind):
        def hook(module, call_args, kwargs, output):
            tensor, _ = first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                torch.empty(tensor.shape, dtype=torch.float32).copy_(tensor)

        return hook

    def keeping(name, kind):
        def hook(module, call_args, kwargs, output):
            tensor, _ = first_tensor(output)
            if tensor is not None and tensor.is_floating_point():
                calls.append((name, module, call_args, kwargs))
                references.append(tensor.float().clone())

        return hook

    def run_hooked(make_hook):
        return lambda: hooked_pass(bench.network(), make_hook, lambda: bench.run_pipeline(image), with_kwargs=True)

    fp32 = median(lambda: bench.run_pipeline(image))
    row = {"fp32 hooks doing nothing": median(run_hooked(nothing)) / fp32}
    row["fp32 hooks copying each output to the host"] = median(run_hooked(copying)) / fp32
    run_hooked(keeping)()
    called = [c for c in calls if not variant.exact_without_shadow(c[0], c[1], c[2], c[3])]
    variant.apply(bench)
    variant_s = median(lambda: bench.run_pipeline(image))
    row["variant hooks doing nothing"] = median(run_hooked(nothing)) / variant_s

    def shadow_calls():
        for name, module, call_args, kwargs in called:
            variant.shadow(name, module, call_args, kwargs)

    row[f"shadow calls alone ({len(called)} of {len(calls)} leaf calls)"] = median(shadow_calls) / variant_s
    outputs = [r + 1e-3 for r in references]
    buffers = FigureBuffers()

    def comparisons():
        for output, reference in zip(outputs, references):
            error_figures(output.to(torch.bfloat16), reference, buffers)

    row[f"one comparison per record ({len(references)}, bf16 against fp32)"] = median(comparisons) / variant_s
    print(
        f"{args.model} {args.variant}: fp32 forward {fp32 * 1e3:.1f} ms, variant {variant_s * 1e3:.1f} ms; {load_note()}"
    )
    for what, forwards in row.items():
        print(f"  {what}: {forwards:.2f} forwards")
    compared = row[f"one comparison per record ({len(references)}, bf16 against fp32)"]
    floor = row["fp32 hooks copying each output to the host"] + row["variant hooks doing nothing"]
    floor += row[f"shadow calls alone ({len(called)} of {len(calls)} leaf calls)"]
    floor += compared * (1 + len(called) / len(references))  # the shadow calls' outputs are compared too
    print(f"  floor (a copying pass, a variant pass, the shadow calls, every comparison): {floor:.2f} forwards")


if __name__ == "__main__":
    main()
