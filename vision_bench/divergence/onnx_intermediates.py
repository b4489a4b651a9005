"""The exported variants' pass of --divergence (and ExportedVariant, such a variant as that pass hooks
it): each leaf call's output is a value of the ONNX export (divergence.onnx_mapping), read from the
variant's runtime as an extra output of its graph (divergence.runtime_values: ONNX Runtime on the fp32
export or its QDQ INT8 copy, OpenVINO on its conversion), a group of values under a byte budget at a
time, and compared with the spilled reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict

import numpy as np

from ..common import first_tensor
from ..records.divergence import ErrorFigures, LayerRecord, OnnxBlock, OnnxRise, OnnxRuns, OnnxSummary, OnnxUnmapped
from .layer_passes import HookedVariant
from .onnx_mapping import (
    LeafFacts,
    OnnxMapping,
    Target,
    leaf_facts,
    map_leaf_outputs,
    nearest_mapped_inputs,
    value_types,
)
from .runtime_values import OnnxRuntimeValues

DEFAULT_BUDGET_BYTES = 512 << 20


# -- fetching the values --------------------------------------------------------------------------
def next_group(todo: list[str], sizes: dict[str, int], budget: int) -> list[str]:
    """The values at the front of `todo` that one run fetches: at least one, at most `budget` bytes, an
    unknown size counted as the largest seen so far; no size known at all: 4 values."""
    group: list[str] = []
    total = 0
    for v in todo:
        size = sizes.get(v) or max(sizes.values(), default=0)
        if group and (total + size > budget or not size and len(group) == 4):
            break
        group.append(v)
        total += size
    return group


def count_run(report: OnnxRuns, arrays: list) -> None:
    """Add one run and the bytes it fetched to `report`."""
    fetched = sum(a.nbytes for a in arrays)
    report.runs += 1
    report.fetched_bytes += fetched
    report.largest_run_bytes = max(report.largest_run_bytes, fetched)


def intermediate_values(
    model,
    targets: list[Target],
    feeds: dict,
    budget: int = DEFAULT_BUDGET_BYTES,
    device=None,
    typed: dict | None = None,
    report: OnnxRuns | None = None,
):
    """fetched_values() of an ONNX model (onnx.ModelProto) run by ONNX Runtime on `feeds`: CPU, or CUDA
    (session_providers); `typed`: value_types() when the caller has them."""
    return fetched_values(OnnxRuntimeValues(model, feeds, device, typed), targets, budget, report)


def fetched_values(runtime, targets: list[Target], budget: int = DEFAULT_BUDGET_BYTES, report: OnnxRuns | None = None):
    """Yield (module path, call, numpy array, level) per target, in the targets' order, read by `runtime`
    (runtime_values: its values become graph outputs a group at a time, one run per group, a group
    holding at most `budget` bytes: sizes from the graph at the fed shapes, an unknown one counted as
    the largest seen so far (known or fetched); nothing known: the first run fetches 4 values).
    `report` gets the runs and bytes (an OnnxRuns, filled in)."""
    values = list(dict.fromkeys(t.value for t in targets))
    sizes = runtime.sizes(values)
    by_value = defaultdict(list)
    for t in targets:
        by_value[t.value].append(t)
    report = report if report is not None else OnnxRuns()
    report.runs, report.budget_bytes, report.estimated_bytes = 0, budget, sum(sizes.values())
    report.provider = runtime.provider
    report.unknown_sizes, report.fetched_bytes, report.largest_run_bytes = len(values) - len(sizes), 0, 0
    todo, arrays = values, None
    try:
        while todo:
            group = next_group(todo, sizes, budget)
            todo = todo[len(group) :]
            arrays = runtime.fetch(group)
            sizes.update({v: a.nbytes for v, a in zip(group, arrays)})
            count_run(report, arrays)
            for v, array in zip(group, arrays):
                for t in by_value[v]:
                    yield t.name, t.call, array, t.level
            arrays = array = None
    finally:
        runtime.close()


def in_runtime(mapping: OnnxMapping, runtime) -> None:
    """The mapping's targets renamed to the values `runtime` reads for them (a QDQ graph's dequantised
    value); a target whose value the runtime's graph lacks becomes unmapped, with the runtime's reason."""
    read = runtime.resolve([t.value for t in mapping.targets])
    for t in mapping.targets:
        if t.value not in read:
            mapping.unmapped.append(OnnxUnmapped(t.name, t.call, runtime.missing))
    mapping.targets = [dataclasses.replace(t, value=read[t.value]) for t in mapping.targets if t.value in read]


# -- the variant pass of --divergence -------------------------------------------------------------
def network_leaf_facts(bench, records: list[LayerRecord]) -> LeafFacts:
    """leaf_facts() of bench.network() when it is a torch network, else the records' names as the
    leaves, without aliases or types."""
    import torch

    network = bench.network()
    if isinstance(network, torch.nn.Module):
        return leaf_facts(network)
    return LeafFacts(list(dict.fromkeys(r.name for r in records)))


def compare_fetched_values(runtime, mapping: OnnxMapping, store, by_key: dict, budget: int, runs: OnnxRuns) -> dict:
    """The error figures of each fetched value against its spilled reference, by (name, call); a leaf
    record gets its value's as `propagated`. A record without a reference, or without a shape in the
    reference pass, is skipped; a value of another shape gets a shape mismatch."""
    import torch

    from .error_figures import error_figures

    figures_of: dict = {}
    for name, call, array, level in fetched_values(runtime, mapping.targets, budget, runs):
        record = by_key.get((name, call))
        reference, shape = store.get((name, call)) if record is not None and record.shape is not None else (None, None)
        if reference is None:
            continue
        figures_of[(name, call)] = figures = (
            ErrorFigures(shape_mismatch=True, variant_shape=list(array.shape))
            if list(array.shape) != shape
            else error_figures(torch.from_numpy(array), reference)
        )
        if level == "leaf" and record is not None:
            record.propagated = figures
    return figures_of


def give_blocks_their_figures(fallbacks: list[OnnxBlock], figures_of: dict, by_key: dict) -> None:
    """Each record of a block fallback: the figures of the block's value (against its last leaf call's
    reference) as `propagated`, with level "block", `block` and `block_reference`."""
    for fallback in fallbacks:
        block_figures = figures_of.get(tuple(fallback.reference))
        for key in map(tuple, fallback.records):
            if key in by_key and block_figures is not None:
                record = by_key[key]
                record.propagated, record.level = block_figures, "block"
                record.block, record.block_reference = fallback.block, fallback.reference


def note_mapping_on_records(mapping: OnnxMapping, by_key: dict) -> None:
    """Each record the mapping found no value for gets why (`onnx_unmapped`); each with a target's
    note gets that note (`onnx_note`)."""
    for missing in mapping.unmapped:
        if (missing.name, missing.call) in by_key:
            by_key[(missing.name, missing.call)].onnx_unmapped = missing.reason
    for target in mapping.targets:
        if target.note and (target.name, target.call) in by_key:
            by_key[(target.name, target.call)].onnx_note = target.note


def onnx_variant_pass(
    bench,
    onnx_path,
    input_array,
    input_name: str | None,
    store,
    records: list[LayerRecord],
    budget: int = DEFAULT_BUDGET_BYTES,
    facts: LeafFacts | None = None,
    open_values=None,
    floor: float = 0.0,
) -> OnnxSummary:
    """VariantPass and the hooked pass, for an exported variant: a record whose call has a value in the
    graph gets `propagated` (that value against the spilled reference); the records of a block
    fallback get the figures of the block's value against its last leaf call's reference, with
    level="block", `block` and `block_reference`; a record without a value gets `onnx_unmapped` (why).
    `facts`: leaf_facts() of the torch network taken before the variant replaced it (ultralytics run by
    ONNX Runtime has no torch network left); else bench.network()'s, or the records' names without
    aliases. `input_array`: the network's input in the reference pass, fed as `input_name` (None: the
    graph's first input: `images` for ultralytics, `pixel_values` here). `open_values(feeds)`: what
    reads the values in the variant (runtime_values; None: ONNX Runtime on `onnx_path` itself). Returns
    the mapping's report with the runs, the records compared, the seconds and the largest rise
    (`floor`: the tolerance)."""
    import time

    import onnx
    import torch

    if facts is None:
        facts = network_leaf_facts(bench, records)
    if isinstance(input_array, torch.Tensor):
        input_array = input_array.detach().cpu().numpy()
    start = time.perf_counter()
    model = onnx.load(str(onnx_path))
    feeds = {input_name or model.graph.input[0].name: np.ascontiguousarray(input_array)}
    typed = value_types(model, feeds)
    mapping = map_leaf_outputs(
        model,
        facts.leaves,
        aliases=facts.aliases,
        types=facts.types,
        order=[(r.name, r.call) for r in records],
        typed=typed,
    )
    upstream = leaf_inputs(model, mapping)
    if open_values is None:
        runtime = OnnxRuntimeValues(model, feeds, bench.device, typed)
    else:
        del model  # the export itself is not run: freed before the variant's file is read
        runtime = open_values(feeds)
    in_runtime(mapping, runtime)
    by_key = {(r.name, r.call): r for r in records}
    runs = OnnxRuns()
    figures_of = compare_fetched_values(runtime, mapping, store, by_key, budget, runs)
    give_blocks_their_figures(mapping.fallbacks, figures_of, by_key)
    note_mapping_on_records(mapping, by_key)
    report = mapping.report()
    report.runs, report.compared, report.seconds = runs, len(figures_of), time.perf_counter() - start
    report.largest_rise = largest_rise(upstream, by_key, floor)
    return report


def leaf_inputs(model, mapping: OnnxMapping) -> dict:
    """{(name, call) of a leaf-level target: those of the targets nearest upstream of it in the graph}."""
    leaves = {t.value: (t.name, t.call) for t in mapping.targets if t.level == "leaf"}
    return {leaves[v]: [leaves[u] for u in us] for v, us in nearest_mapped_inputs(model, set(leaves)).items()}


def largest_rise(upstream: dict, by_key: dict, floor: float) -> OnnxRise | None:
    """The record whose propagated error rises most over the largest of its nearest mapped inputs' (at
    least `floor`, the tolerance: a rise from nothing to the variant's own rounding is no rise), among
    the records over `floor` (None: none is). With INT8 every layer's rounding builds up and the first
    record over the tolerance is an early one; a layer that breaks on its own is a step in that
    build-up (benchmarks/int8_divergence.py)."""

    def error(key) -> float:
        record = by_key.get(key)
        return record.inherited if record is not None and record.inherited is not None else 0.0

    rises = {  # only a record over the floor: a step below the tolerance names nothing
        key: error(key) / max([floor, 1e-12] + [error(u) for u in inputs])
        for key, inputs in upstream.items()
        if error(key) > floor
    }
    if not rises:
        return None
    key = max(rises, key=lambda k: rises[k])
    return OnnxRise(key[0], key[1], rises[key], error(key))


# -- an exported variant as the divergence passes hook it ------------------------------------------
class ExportedVariant(HookedVariant):
    """A variant that runs the network's ONNX export (as it is, quantised, or converted by OpenVINO),
    with the values that end each module read as extra outputs (above): propagated errors only, since
    a leaf cannot be run alone in the graph; fed the network's input as the reference pass saw it.
    `files(bench, images, pictures)`: {name: (the ONNX export the mapping reads, the file the variant
    runs)} for `images` (the one compared), from the variant's caches (an INT8 variant calibrates on
    `pictures`, the run's images, which measure_divergence sets here, as its variants pass did); `open_values(path, feeds, device)`: what
    reads values of the file it runs (None: ONNX Runtime on the export itself)."""

    shadow_mode = False

    def __init__(self, name: str, tolerance: float, files, open_values=None):
        super().__init__(name, tolerance)
        self.files, self.open_values = files, open_values
        self.pictures: list = []  # the run's images; none set: the image compared
        self.budget = DEFAULT_BUDGET_BYTES  # bytes of values one run fetches
        self.inputs: list = []

    def watch(self, bench):
        """A pre-hook on the network's input module keeping its first tensor argument (keyword or not)."""

        @contextlib.contextmanager
        def watching():
            def keep(module, args, kwargs):
                if not self.inputs:
                    tensor, _ = first_tensor((list(args), kwargs))
                    if tensor is not None:
                        self.inputs.append(tensor.detach().to("cpu", copy=True).numpy())

            handle = bench.input_module().register_forward_pre_hook(keep, with_kwargs=True)
            try:
                yield
            finally:
                handle.remove()

        return watching()

    def compare(self, bench, image, store, records: list[LayerRecord]) -> tuple[float, dict]:
        if not self.inputs:
            raise RuntimeError("the reference pass never reached the network's input module")
        facts = leaf_facts(bench.network())
        files = self.files(bench, [image], self.pictures or [image])
        shape = "x".join(map(str, self.inputs[0].shape))
        source, runs = files.get(shape) or next(iter(files.values()))
        opener = None
        if self.open_values is not None:
            opener = lambda feeds: self.open_values(runs, feeds, bench.device)  # noqa: E731
        summary = onnx_variant_pass(
            bench, source, self.inputs[0], None, store, records, self.budget, facts, opener, self.tolerance
        )
        return summary.seconds or 0.0, dict(
            onnx=summary, file=str(runs), level="block" if summary.block else "leaf", level_note=summary.level_note
        )
