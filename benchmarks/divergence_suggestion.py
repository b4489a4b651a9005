"""How many modules must stay in fp32 for a half-precision variant to pass parity? The tool's suggestion
tries the 1, 2, 3, 5, 8 worst modules by own error; this script goes on to every module, to show how
far from a small set a model is.

    python benchmarks/divergence_suggestion.py [--model depth-anything-v2-small] [--variant torch-bf16]
        [--sizes 8,16,32,64,128,all]

Runs the divergence passes once on the first bundled photo to rank the modules by own error, then, on a
fresh instance in the variant, keeps the k worst in fp32 for each k and checks parity on both bundled
photos (the tool's compare_outputs). Prints per k: the verdict, the depth relative error (mean and p99)
or the worst normalised error, and the share of the network's leaf calls kept in fp32.
"""

from __future__ import annotations

import argparse
import time

from bench_common import import_tool, load_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="depth-anything-v2-small")
    parser.add_argument("--variant", default="torch-bf16")
    parser.add_argument("--sizes", default="8,16,32,64,128,all")
    args = parser.parse_args()
    from vision_bench.divergence.divergence_pass import hooked_variant
    from vision_bench.divergence.layer_passes import fp32_forward, install_overrides, remove_overrides, run_divergence
    from vision_bench.images import bundled_sample_images, load_rgb
    from vision_bench.variants.output_parity import compare_outputs, parity_outputs
    from vision_bench.variants.registry import prepare_variant

    ub = import_tool()
    images = [(path, load_rgb(path)) for path in bundled_sample_images()]
    bench = load_bench(ub, args.model, print)
    reference = parity_outputs(bench, images)
    start = time.perf_counter()
    out = run_divergence(bench, hooked_variant(bench, args.variant), images[0][1])
    print(
        f"divergence passes: {time.perf_counter() - start:.0f} s; {len(out.records)} records, first divergent: "
        f"{out.first_divergent.name if out.first_divergent else None}; largest own error {out.top_own[0].own:.3g} "
        f"(tolerance {out.tolerance:g})"
    )
    bench.release()
    ranked = sorted((r for r in out.records if r.own is not None), key=lambda r: -(r.own or 0.0))
    names = list(dict.fromkeys(r.name for r in ranked))
    bench = load_bench(ub, args.model, print)
    prepare_variant(bench, args.variant, images)
    installed: list[str] = []
    rows = []
    for text in args.sizes.split(","):
        k = len(names) if text == "all" else min(int(text), len(names))
        remove_overrides(bench.network(), installed)
        installed = names[:k]
        install_overrides(bench.network(), dict.fromkeys(installed, fp32_forward))
        start = time.perf_counter()
        parity = compare_outputs(bench, args.variant, reference, parity_outputs(bench, images))
        worst = parity.worst
        calls = sum(1 for r in out.records if r.name in set(installed))
        figures = (
            f"depth rel. error mean {worst.depth_mean_relative_error:.4f}, p99 {worst.depth_p99_relative_error:.4f}"
            if worst.depth_p99_relative_error is not None
            else f"worst normalised error {worst.normalised_error:.3g}"
        )
        rows.append([k, f"{calls} of {len(out.records)}", parity.verdict, figures])
        print(
            f"{k} modules in fp32 ({calls} calls): {parity.verdict}, {figures}, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    print("\n| modules in fp32 (worst own error first) | leaf calls | parity | figures |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
