"""--divergence through the OpenVINO and INT8 variants on one model (random weights, bus.jpg):

    python benchmarks/int8_divergence.py [--model yolo11n-detect] [--variants onnxruntime-int8,openvino,...]
        [--plantings 20] [--scale 1.5] [--seed 0] [--no-memory]

1. Cost: each variant's divergence pass (its values fetched under the byte budget) in forwards of the
   variant (the pass's seconds over the median of 5 warm pipeline runs of the prepared variant).
2. Cross-check (onnxruntime-int8): ONNX Runtime's own qdq_loss_debug on the same quantised file and
   input (its float activations from the ONNX export): where both measure the same tensor, our relative
   L2 against 10^(-SQNR/20) of theirs (xmodel_err), the ratio's range, and the overlap of the ten worst.
3. Memory (each in a process of its own, peak resident set): the variant's own forward (prepared, one
   pipeline run) and its divergence pass, beside the spill queue and the resident store of the reference.
4. Planted culprit (onnxruntime-int8): in a copy of the quantised file only, the scale of the
   DequantizeLinear after one mapped activation, drawn at random over the mapped leaf calls, times
   --scale; is the planted record named first (the culprit: the first record over the tolerance), and
   is it the largest rise (the record whose propagated error rises most over its inputs')?
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import ROOT, bus_path, import_tool, load_bench

VARIANTS = "onnxruntime-int8,openvino,openvino-bf16,openvino-int8"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fresh(model: str):
    bench = load_bench(import_tool(), model, lambda text: None)
    bench.models_dir = bench.models_dir.resolve()  # ultralytics exports in a scratch directory of its own
    return bench


def picture():
    from vision_bench.images import load_rgb

    return load_rgb(bus_path())


def divergence(bench, variant: str, image, hooked=None):
    """The divergence entry of `variant` (or of the hooked variant given) on `image`, and its hooked variant."""
    from vision_bench.divergence.divergence_pass import hooked_variant
    from vision_bench.divergence.layer_passes import run_divergence

    hooked = hooked or hooked_variant(bench, variant, [image])
    return run_divergence(bench, hooked, image), hooked


def forward_median(model: str, variant: str, image, runs: int = 5) -> float:
    from vision_bench.variants.registry import prepare_variant

    bench = fresh(model)
    prepare_variant(bench, variant, [(bus_path(), image)])
    bench.run_pipeline(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        bench.run_pipeline(image)
        times.append(time.perf_counter() - start)
    bench.release()
    return statistics.median(times)


def theirs(float_path: Path, qdq_path: Path, feeds: dict, scratch: Path) -> tuple[dict, dict]:
    """qdq_loss_debug's errors per activation as relative L2s (10^(-SQNR/20)): xmodel_err (the quantised
    model's dequantised value against the float model's) and qdq_err (the value against itself before
    its QuantizeLinear: the rounding of that tensor alone)."""
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    class Once(CalibrationDataReader):
        def __init__(self):
            self.pending = iter([feeds])

        def get_next(self):
            return next(self.pending, None)

    activations = {}
    for kind, path in (("float", float_path), ("qdq", qdq_path)):
        augmented = scratch / f"augmented-{kind}.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented))
        activations[kind] = collect_activations(str(augmented), Once())
    errors = compute_activation_error(create_activation_matching(activations["qdq"], activations["float"]))
    relative = {
        kind: {n: 10 ** (-e[kind] / 20) for n, e in errors.items() if kind in e} for kind in ("xmodel_err", "qdq_err")
    }
    return relative["xmodel_err"], relative["qdq_err"]


def ours_by_tensor(bench, entry, float_path: Path, feeds: dict) -> dict[str, tuple[str, float]]:
    """{tensor of the float export: (record, our relative L2)} for the records mapped at leaf level (the
    mapping made again, as the pass made it)."""
    import onnx

    from vision_bench.divergence.onnx_mapping import leaf_facts, map_leaf_outputs, value_types

    model = onnx.load(str(float_path))
    facts = leaf_facts(bench.network())
    order = [(r.name, r.call) for r in entry.records]
    mapping = map_leaf_outputs(
        model, facts.leaves, aliases=facts.aliases, types=facts.types, order=order, typed=value_types(model, feeds)
    )
    by_key = {(r.name, r.call): r for r in entry.records}
    ours = {}
    for t in mapping.targets:
        record = by_key.get((t.name, t.call))
        if t.level == "leaf" and record is not None and record.inherited is not None:
            ours[t.value] = (f"{t.name}#{t.call}", record.inherited)
    return ours


def cross_check(model: str, image, scratch: Path) -> dict:
    """Our propagated errors through onnxruntime-int8 against qdq_loss_debug's on the same file and input."""
    bench = fresh(model)
    entry, hooked = divergence(bench, "onnxruntime-int8", image)
    files = hooked.files(bench, [image], [image])
    float_path, qdq_path = next(iter(files.values()))
    import onnx

    feeds = {onnx.load(str(float_path), load_external_data=False).graph.input[0].name: hooked.inputs[0]}
    ours = ours_by_tensor(bench, entry, float_path, feeds)
    reference, rounding = theirs(float_path, qdq_path, feeds, scratch)
    own = sorted(rounding.values())
    say(
        f"INT8's own rounding per tensor (qdq_err as a relative L2): median {statistics.median(own):.4f}, 90th percentile {own[len(own) * 9 // 10]:.4f}, max {own[-1]:.4f}"
    )
    both = sorted(set(ours) & set(reference))
    # qdq_loss_debug floors a zero difference at the float epsilon (an SQNR of ~380 dB): both say "exact"
    exact = [t for t in both if ours[t][1] == 0 and reference[t] < 1e-12]
    ratios = [ours[t][1] / reference[t] for t in both if t not in exact and reference[t] > 0]
    worst_ours = set(sorted(both, key=lambda t: -ours[t][1])[:10])
    worst_theirs = set(sorted(both, key=lambda t: -reference[t])[:10])
    within = sum(abs(r - 1) <= 0.1 for r in ratios)
    say(
        f"cross-check: {len(both)} tensors measured by both ({len(ours)} ours, {len(reference)} qdq_loss_debug); "
        f"{len(exact)} exact in both (ours 0, theirs at its epsilon floor)"
    )
    say(
        f"  ratio ours / 10^(-SQNR/20): min {min(ratios):.4f}, median {statistics.median(ratios):.4f}, max {max(ratios):.4f}; {within}/{len(ratios)} within 10%"
    )
    say(f"  ten worst: {len(worst_ours & worst_theirs)}/10 in common")
    for t in both:
        if t not in exact and abs(ours[t][1] / reference[t] - 1) > 0.1 or t in worst_ours ^ worst_theirs:
            say(f"    {ours[t][0]} ({t}): ours {ours[t][1]:.4g}, theirs {reference[t]:.4g}")
    bench.release()
    return dict(
        both=len(both),
        exact=len(exact),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
        within=within,
        overlap=len(worst_ours & worst_theirs),
    )


def cost(model: str, variants: list[str], image) -> None:
    """Each variant's divergence pass in forwards of the variant."""
    for variant in variants:
        bench = fresh(model)
        entry, _ = divergence(bench, variant, image)
        bench.release()
        forward = forward_median(model, variant, image)
        runs = entry.onnx.runs
        first = entry.first_divergent
        say(
            f"{variant}: variant pass {entry.passes.variant_s:.2f} s = {entry.passes.variant_s / forward:.1f} forwards "
            f"of {forward * 1000:.1f} ms ({runs.runs} run(s), {runs.fetched_bytes / 2**20:.0f} MiB fetched, largest "
            f"{runs.largest_run_bytes / 2**20:.0f} MiB); reference pass {entry.passes.reference_s:.2f} s; "
            f"{entry.compared} of {len(entry.records)} records compared ({entry.onnx.unmapped} unmapped: "
            f"{entry.onnx.unmapped_reasons}); first over {entry.tolerance:.4f}: "
            f"{first.name if first else None} ({first.inherited if first else 0:.4f}); {entry.over_tolerance} over"
        )


def peak_in_process(model: str, variant: str, what: str) -> int:
    """The peak resident set (bytes) of a process that runs the variant's forward or its divergence pass."""
    out = subprocess.run(
        [sys.executable, __file__, "--model", model, "--peak-of", what, "--variants", variant],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return int(out.stdout.strip().splitlines()[-1])


def peak_of(model: str, variant: str, what: str, image) -> None:
    """Print the peak resident set of the variant's forward (prepared from its cached files, one pipeline
    run) or of its divergence pass, in a window opened after the model loaded (as the tool measures)."""
    import torch

    from vision_bench.measure.memory import MemoryTracker

    bench = fresh(model)
    tracker = MemoryTracker(torch.device("cpu"))
    tracker.reset_peak()
    if what == "forward":
        from vision_bench.variants.registry import prepare_variant

        prepare_variant(bench, variant, [(bus_path(), image)])
        bench.run_pipeline(image)
    else:
        divergence(bench, variant, image)
    print(tracker.peak_reading().cpu_peak_rss_bytes)


def memory(model: str, variants: list[str]) -> None:
    from vision_bench.divergence.onnx_intermediates import DEFAULT_BUDGET_BYTES
    from vision_bench.divergence.reference_store import RESIDENT_BYTES, SPILL_QUEUE_BYTES

    mib = 2**20
    say(
        f"memory: spill queue {SPILL_QUEUE_BYTES / mib:.0f} MiB, resident store {RESIDENT_BYTES / mib:.0f} MiB, fetch budget {DEFAULT_BUDGET_BYTES / mib:.0f} MiB"
    )
    for variant in variants:
        forward = peak_in_process(model, variant, "forward")
        passes = peak_in_process(model, variant, "divergence")
        bound = forward + SPILL_QUEUE_BYTES
        say(
            f"  {variant}: forward peak {forward / mib:.0f} MiB, divergence peak {passes / mib:.0f} MiB = "
            f"{passes / bound:.2f}x (forward peak + spill queue = {bound / mib:.0f} MiB)"
        )


def rounding(qdq_path: Path, feeds: dict, values: list[str]) -> list[float]:
    """INT8's own rounding of each quantised value: its relative L2 change through QuantizeLinear ->
    DequantizeLinear, in the quantised model run on `feeds` (sorted)."""
    import numpy as np
    import onnx

    from vision_bench.divergence.runtime_values import OnnxRuntimeValues

    runtime = OnnxRuntimeValues(onnx.load(str(qdq_path)), feeds)
    pairs = [(v, runtime.after[v]) for v in values if v in runtime.after]
    changes = []
    for start in range(0, len(pairs), 16):
        arrays = runtime.fetch([name for pair in pairs[start : start + 16] for name in pair])
        for before, after in zip(arrays[::2], arrays[1::2]):
            changes.append(float(np.linalg.norm(after - before)) / max(float(np.linalg.norm(before)), 1e-30))
    runtime.close()
    return sorted(changes)


def planted_copy(qdq_path: Path, value: str, factor: float, target: Path) -> None:
    """A copy of the QDQ file whose DequantizeLinear after `value` multiplies by its scale x `factor`: a
    scale of its own (the QuantizeLinear before it shares the original), so that only the value the next
    layers read changes, by a relative L2 of |factor - 1|."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from vision_bench.divergence.runtime_values import dequantised

    model = onnx.load(str(qdq_path))
    after = dequantised(model)[value]
    [node] = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == after]
    scales = {t.name: t for t in model.graph.initializer}
    scale = numpy_helper.to_array(scales[node.input[1]]) * np.float32(factor)
    model.graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32), f"{node.input[1]}_planted"))
    node.input[1] = f"{node.input[1]}_planted"
    onnx.save(model, str(target))


def plant(model: str, image, plantings: int, factor: float, seed: int, scratch: Path) -> None:
    """The planted-culprit benchmark: is the record whose dequantised value was scaled named first?"""
    import onnx

    from vision_bench.divergence.onnx_intermediates import ExportedVariant
    from vision_bench.variants.onnxruntime_int8 import open_quantised

    bench = fresh(model)
    baseline, hooked = divergence(bench, "onnxruntime-int8", image)
    float_path, qdq_path = next(iter(hooked.files(bench, [image], [image]).values()))
    feeds = {onnx.load(str(float_path), load_external_data=False).graph.input[0].name: hooked.inputs[0]}
    ours = ours_by_tensor(bench, baseline, float_path, feeds)
    bench.release()
    from vision_bench.divergence.runtime_values import dequantised

    quantised = dequantised(onnx.load(str(qdq_path)))
    candidates = [v for v in ours if v in quantised]
    errors = sorted(e for _, e in ours.values())
    own = rounding(qdq_path, feeds, candidates)
    say(
        f"INT8's own rounding per quantised tensor (relative L2 through Q -> DQ): median {statistics.median(own):.4f}, "
        f"90th percentile {own[len(own) * 9 // 10]:.4f}, max {own[-1]:.4f}"
    )
    say(
        f"plant: INT8's own propagated errors over {len(ours)} mapped leaf calls: median {statistics.median(errors):.4f}, "
        f"max {errors[-1]:.4f}; tolerance {baseline.tolerance:.4f}; first over it: "
        f"{baseline.first_divergent.name if baseline.first_divergent else None}; the plant scales by {factor} "
        f"(a relative change of {abs(factor - 1):.2f} at the planted tensor); {len(candidates)} candidates; "
        f"largest rise without a plant: {baseline.onnx.largest_rise}"
    )
    generator = random.Random(seed)
    hits = rises = 0
    for k in range(plantings):
        value = generator.choice(candidates)
        name = ours[value][0]
        target = scratch / f"planted-{k}.onnx"
        planted_copy(qdq_path, value, factor, target)
        bench = fresh(model)
        variant = ExportedVariant(
            "onnxruntime-int8+plant",
            baseline.tolerance,
            lambda *a, planted=target: {"p": (float_path, planted)},
            open_quantised,
        )
        entry, _ = divergence(bench, "", image, hooked=variant)
        named = entry.first_divergent
        named_key = f"{named.name}#{named.call}" if named else None
        hits += named_key == name
        rise = entry.onnx.largest_rise
        risen = f"{rise.name}#{rise.call}" if rise else None
        rises += risen == name
        bench.release()
        say(
            f"  {k + 1:2d}: planted {name}, named first {named_key} ({named.inherited if named else 0:.4f}): "
            f"{'hit' if named_key == name else 'miss'}; largest rise {risen} ({rise.rise if rise else 0:.1f}x): "
            f"{'hit' if risen == name else 'miss'}"
        )
        target.unlink()
    say(f"planted culprit named first (the tool's culprit): {hits}/{plantings} = {hits / plantings:.0%}")
    say(
        f"planted culprit with the largest rise over its inputs (the report's largest rise): {rises}/{plantings} = {rises / plantings:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolo11n-detect")
    parser.add_argument("--variants", default=VARIANTS)
    parser.add_argument("--plantings", type=int, default=20)
    parser.add_argument("--scale", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="cost,cross-check,memory,plant")
    parser.add_argument("--peak-of", choices=["forward", "divergence"])
    args = parser.parse_args()
    image = picture()
    variants = args.variants.split(",")
    if args.peak_of:
        return peak_of(args.model, variants[0], args.peak_of, image)
    scratch = Path(__import__("tempfile").mkdtemp(prefix="int8-divergence-"))
    load = open("/proc/loadavg").read().split()[:3]
    say(f"{args.model}, random weights, bus.jpg; load average {' '.join(load)}")
    steps = args.only.split(",")
    if "cost" in steps:
        cost(args.model, variants, image)
    if "cross-check" in steps:
        print(json.dumps(cross_check(args.model, image, scratch)))
    if "memory" in steps:
        memory(args.model, variants)
    if "plant" in steps:
        plant(args.model, image, args.plantings, args.scale, args.seed, scratch)


if __name__ == "__main__":
    main()
