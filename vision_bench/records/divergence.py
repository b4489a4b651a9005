"""--divergence's records (`divergence[]` of a model's result, one entry per variant): where a variant
leaves the fp32 reference, every call of every leaf module compared, the culprit, the passes' cost and
the suggested set of modules kept in fp32.

Errors are relative L2 (||a-b|| / ||b||). "Own" error: the shadow call's (the layer run as the variant on
the reference's own input); "inherited": the propagated one (the whole network ran as the variant). An
infinite figure (values finite in the reference and not in the variant) is math.inf in memory and null
in the file, beside `non_finite`; the figures read it back as infinite either way.

A variant that was never compared (running, unsupported, failed before its passes) is a
DivergenceNotCompared: its file entry holds no culprit keys at all, where a compared one holds them,
null when there is no culprit. `read_divergence` tells the two apart when reading a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .codec import from_json, is_record, optional
from .measurement import LatencyStats
from .statuses import ParityVerdict, SuggestionStatus, VariantStatus
from .variants import ParityRecord, ParityWorst


@dataclass
class ErrorFigures:
    """A variant tensor against the reference's, in one mode (shadow or propagated)."""

    relative_l2: float | None = optional()  # ||a-b|| / ||b||; inf: a non-finite variant value
    cosine: float | None = optional()  # cos(a, b); NaN in memory (null in the file) beside non_finite
    max_abs: float | None = optional()  # max |a-b|, in the tensor's units
    normalised: float | None = optional()  # max |a-b| / max |b|
    non_finite: int | None = optional()  # values finite in the reference, not in the variant
    shape_mismatch: bool | None = optional()  # the variant's output has another shape: no figures
    variant_shape: list[int] | None = optional()  # that shape (the variant pass's records)

    def __post_init__(self):
        if self.non_finite:  # read back from a file: its nulls are the infinities and the NaN written
            self.relative_l2, self.max_abs, self.normalised = (
                math.inf if value is None else value for value in (self.relative_l2, self.max_abs, self.normalised)
            )
            self.cosine = math.nan if self.cosine is None else self.cosine

    def figure(self, metric: str = "relative_l2") -> float | None:
        """One figure: a float, math.inf (infinite, or another shape), or None when it is undefined."""
        value = getattr(self, metric)
        if metric == "cosine":
            return None if value is None or math.isnan(value) else value
        if self.shape_mismatch or value is None and self.non_finite:
            return math.inf
        return value

    @property
    def error(self) -> float | None:
        """The figure the verdicts read: relative L2, infinite for a non-finite value or another shape."""
        return self.figure("relative_l2")


def error_of(figures: ErrorFigures | None) -> float | None:
    return figures.error if figures is not None else None


@dataclass
class LayerRecord:
    """One call of one leaf module, matched between the passes by (name, call)."""

    index: int  # position in execution order, from 0
    name: str  # module path
    call: int  # 1 for the module's first call in the pass
    type: str  # the module's class name
    shape: list[int] | None = optional()  # the reference output's; absent: no floating-point output
    note: str | None = optional()  # why a figure is missing (in place, no shadow call, ...)
    shadow: ErrorFigures | None = optional()  # own error
    propagated: ErrorFigures | None = optional()  # inherited error
    level: str | None = optional()  # "block": onnxruntime compared the enclosing block's value
    block: str | None = optional()  # that block's module path
    block_reference: list | None = optional()  # [name, call] of the leaf call whose reference it is
    onnx_unmapped: str | None = optional()  # why the ONNX graph has no value for this call
    onnx_note: str | None = optional()  # how its ONNX value was found (a folded BatchNorm)
    zero_because: str | None = optional()  # why its own error is exactly 0 without a shadow call

    kind = "leaf"

    @property
    def position(self) -> int:
        return self.index

    @property
    def own(self) -> float | None:
        return error_of(self.shadow)

    @property
    def inherited(self) -> float | None:
        return error_of(self.propagated)


@dataclass
class OpsRecord:
    """One call of a container module's own operations (what its forward computes besides its children)."""

    name: str
    call: int
    type: str
    kind: str = "ops"
    after: int = 0  # index of the last leaf record before it returned
    note: str | None = optional()
    shadow: ErrorFigures | None = optional()  # its replay as the variant against its reference output
    zero_because: str | None = optional()  # why its own error is exactly 0 without a replay

    @property
    def position(self) -> int:
        return self.after

    @property
    def own(self) -> float | None:
        return error_of(self.shadow)

    inherited = None  # a container's own operations have no propagated figure


@dataclass
class Brief:
    """A record as the summary names it (the culprit, the top own errors)."""

    index: int  # the leaf record's index; for a container's operations, the leaf record before them
    name: str
    call: int
    type: str
    kind: str = "leaf"  # "leaf" or "ops"
    own: float | None = None
    inherited: float | None = None


@dataclass
class CulpritSummary:
    """What the records come to (an entry's fields of the same names)."""

    first_divergent: Brief | None = None
    culprit_by: str = "own"
    first_propagated: Brief | None = None
    top_own: list[Brief] = field(default_factory=list)
    over_tolerance: int = 0
    compared: int = 0


@dataclass
class Passes:
    """The passes' seconds: reference (fp32, without its shadow calls), shadow calls, variant pass, the
    spill's waiting, copying and writing; the reference's and the variant's timed end-to-end medians."""

    reference_s: float | None = optional()
    shadow_s: float | None = optional()
    variant_s: float | None = optional()
    spill_wait_s: float | None = optional()
    spill_copy_s: float | None = optional()
    spill_write_s: float | None = optional()  # CPU time of the writer thread, beside the pass
    reference_median_s: float | None = None
    variant_median_s: float | None = None
    forward_equivalents: float | None = optional()  # the passes' time in forward passes of the model

    def set_medians(self, reference_median_s: float | None, variant_median_s: float | None) -> None:
        """The timed medians, and the passes in forward passes: the reference pass against the reference's
        median, the variant pass and the shadow calls against the variant's."""
        self.reference_median_s, self.variant_median_s = reference_median_s, variant_median_s
        if reference_median_s and variant_median_s:
            self.forward_equivalents = (self.reference_s or 0.0) / reference_median_s + (
                (self.variant_s or 0.0) + (self.shadow_s or 0.0)
            ) / variant_median_s

    @property
    def total_s(self) -> float:
        return sum(s or 0 for s in (self.reference_s, self.shadow_s, self.variant_s))


@dataclass
class PassMemory:
    peak_bytes: int | None = None  # peak during the passes
    peak_kind: str | None = None  # "CUDA peak allocated" or "CPU peak resident set"
    rss_before_bytes: int | None = optional()  # resident set before the passes


@dataclass
class UnmatchedCall:
    """A call of the variant pass without a reference record."""

    name: str
    call: int
    type: str | None = None


@dataclass
class OnnxBlock:
    """Leaf calls the ONNX graph has no single value for, compared at the level of their enclosing block."""

    block: str  # the block's module path
    reference: list  # [name, call]: the leaf call whose output the block returns
    records: list[list] = field(default_factory=list)  # [name, call] of the leaf calls it stands for
    reason: str = ""


@dataclass
class OnnxUnmapped:
    name: str
    call: int
    reason: str


@dataclass
class OnnxRuns:
    """ONNX Runtime's sessions fetching the leaf values, a group of outputs at a time."""

    runs: int = 0
    budget_bytes: int = 0  # the most bytes one run fetches
    estimated_bytes: int = 0  # all values, by shape inference
    provider: str = ""
    unknown_sizes: int = 0
    fetched_bytes: int = 0
    largest_run_bytes: int = 0


@dataclass
class OnnxRise:
    """The leaf call whose propagated error rises most over that of the mapped values it is computed
    from (their largest, at least the tolerance): where an error that builds up in every layer (INT8)
    has a step of its own."""

    name: str
    call: int
    rise: float  # its propagated error over that of its inputs
    propagated: float


@dataclass
class OnnxSummary:
    """How the leaf calls were found in the exported graph (onnxruntime's variant pass)."""

    prefix: str  # what aligns the graph's scopes with the hooked network's module paths
    records: int = 0  # leaf + block + unmapped
    leaf: int = 0  # compared at leaf level
    block: int = 0  # compared at block level
    unmapped: int = 0  # without a value in the graph
    blocks: list[OnnxBlock] = field(default_factory=list)
    unmapped_reasons: dict[str, int] = field(default_factory=dict)
    unmapped_records: list[OnnxUnmapped] = field(default_factory=list)  # the first 40
    unresolved_scopes: list[str] = field(default_factory=list)  # the first 20
    runs: OnnxRuns | None = optional()
    compared: int | None = optional()
    seconds: float | None = optional()
    largest_rise: OnnxRise | None = optional()

    @property
    def level_note(self) -> str:
        rise = self.largest_rise
        return (
            f"{self.leaf} of {self.records} record(s) compared at leaf level, {self.block} at block level, "
            f"{self.unmapped} without a value in the graph"
        ) + (
            f"; the largest rise of the propagated error over its inputs': {rise.name} (call {rise.call}), "
            f"{rise.rise:.1f}x to {rise.propagated:.3g}"
            if rise is not None
            else ""
        )


@dataclass
class PlainVariant:
    """The variant as the variants pass measured it, for comparison with a set kept in fp32."""

    speedup_forward: float | None = None
    verdict: ParityVerdict | None = None
    worst: ParityWorst | None = None  # parity's worst figures


@dataclass
class SetTried:
    modules: int  # the set's size
    verdict: ParityVerdict
    worst: ParityWorst | None = None  # parity's worst figures


@dataclass
class Suggestion:
    """A half-precision variant with the fewest modules kept in fp32 that passes parity, or why none."""

    status: SuggestionStatus
    reason: str | None = optional()
    modules: list[str] | None = optional()  # the set (passes), or every candidate tried (no small set)
    tried: list[SetTried] | None = optional()
    plain: PlainVariant | None = optional()
    latency_forward: LatencyStats | None = optional()  # the set timed like a variant, seconds
    latency_end_to_end: LatencyStats | None = optional()
    speedup_forward: float | None = optional()  # the reference's forward median / the set's
    parity: ParityRecord | None = optional()  # its headline: verdict, reasons, worst
    timing_seconds: float | None = optional()


@dataclass
class DivergenceEntry:
    """One variant compared with the fp32 reference, record by record."""

    variant: str
    status: VariantStatus
    image: str | None = None  # the image the passes ran on
    first_divergent: Brief | None = None  # the culprit: first over the tolerance by `culprit_by`
    culprit_by: str = "own"  # "own", or "propagated" without shadow calls (onnxruntime)
    first_propagated: Brief | None = None  # the first record whose inherited error passes the tolerance
    top_own: list[Brief] = field(default_factory=list)  # the largest own errors, worst first
    over_tolerance: int = 0  # records over the tolerance by `culprit_by`
    compared: int = 0  # records with a propagated figure
    tolerance: float = 0.0  # relative L2
    metric: str = "relative_l2"
    modes: list[str] = field(default_factory=list)  # "propagated", "shadow"
    level: str = "leaf"  # "block": some records compared at the level of their enclosing block
    records: list[LayerRecord] = field(default_factory=list)
    ops_records: list[OpsRecord] = field(default_factory=list)
    passes: Passes = field(default_factory=Passes)
    spilled_bytes: int | None = None  # reference outputs written to the scratch folder
    unmatched_in_variant: list[UnmatchedCall] | None = optional()  # the first 20
    unmatched_count: int | None = optional()
    onnx: OnnxSummary | None = optional()
    file: str | None = optional()  # the ONNX file compared
    level_note: str | None = optional()
    memory: PassMemory | None = None
    suggestion: Suggestion | None = optional()
    reason: str | None = optional()  # why it failed after its passes
    traceback: str | None = optional()

    def record_at(self, index: int) -> LayerRecord | None:
        """The leaf record of that index (records are in execution order)."""
        if 0 <= index < len(self.records) and self.records[index].index == index:
            return self.records[index]
        return next((r for r in self.records if r.index == index), None)


@dataclass
class DivergenceNotCompared:
    """A variant whose passes did not run (yet): running, unsupported, or failed, and why."""

    variant: str
    status: VariantStatus
    image: str | None = optional()
    reason: str | None = optional()
    traceback: str | None = optional()


AnyDivergenceEntry = DivergenceEntry | DivergenceNotCompared


def read_divergence(value: Any) -> list[AnyDivergenceEntry]:
    """`divergence[]` of a results file as records: an entry with the culprit keys was compared."""

    def read(item):
        if is_record(item):
            return item
        return from_json(DivergenceEntry if "culprit_by" in item else DivergenceNotCompared, item)

    return [read(item) for item in value]
