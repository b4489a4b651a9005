"""What inspect/ records of a model: the layer dissection (each leaf-module call's statistics, as
layers_metadata.json holds them, and the summary the results file keeps), the time breakdown of
one hooked pass, and the summary of the profiler trace (--trace). Field names are the JSON keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .codec import RecordError, from_json, optional, to_json


# -- the dissection -----------------------------------------------------------------------------
@dataclass
class LayerRecord:
    """One call of one leaf module in the dissection pass: a record of layers_metadata.json."""

    index: int  # execution order in the pass, from 0; the number in its files' names
    name: str  # the module's path in the network
    call: int  # which call of that module (1 = its first in the pass)
    type: str  # the module's class name
    note: str | None = optional()  # a call whose output held no tensor: why it has no statistics
    source: str | None = optional()  # where in the output the tensor was, when not the output itself
    shape: list[int] | None = None
    dtype: str | None = None  # torch dtype without "torch."
    min: float | None = None  # of the finite values; None for an empty tensor (or no finite value)
    max: float | None = None
    mean: float | None = None
    std: float | None = None  # population standard deviation of the finite values
    zero_fraction: float | None = None  # share of exact zeros among all elements
    nan_count: int | None = None
    inf_count: int | None = None
    files: list[str] | None = None  # [PNG, NPY] names in the dissection folder; [] without files
    reshaped: str | None = optional()  # how a token sequence was drawn as a patch grid

    @property
    def has_stats(self) -> bool:
        return self.min is not None

    @property
    def range_width(self) -> float:
        """max - min; 0 without statistics."""
        return self.max - self.min if self.max is not None and self.min is not None else 0.0

    @property
    def absmax(self) -> float | None:
        """The largest magnitude, max(|min|, |max|); None without statistics."""
        return max(abs(self.min), abs(self.max)) if self.max is not None and self.min is not None else None

    @property
    def reshaped_shape(self) -> list[int] | None:
        """A token sequence drawn as a patch grid: (B, tokens, C) drawn as [C, h, w]; None otherwise."""
        grid = re.search(r"(\d+)x(\d+) grid", self.reshaped or "")
        if grid and self.shape is not None and len(self.shape) == 3:
            return [self.shape[2], int(grid[1]), int(grid[2])]
        return None

    def explorer_json(self) -> dict:
        """The record as the page's layer explorer reads it: its keys in the file, and the drawn
        shape of a reshaped token sequence (`reshaped_shape`)."""
        drawn = self.reshaped_shape
        return {**to_json(self), **({"reshaped_shape": drawn} if drawn else {})}


@dataclass
class CallWithoutTensor(LayerRecord):
    """A call whose output held no tensor: its statistics' keys are absent from the file (not null)."""

    shape: list[int] | None = optional()
    dtype: str | None = optional()
    min: float | None = optional()
    max: float | None = optional()
    mean: float | None = optional()
    std: float | None = optional()
    zero_fraction: float | None = optional()
    nan_count: int | None = optional()
    inf_count: int | None = optional()
    files: list[str] | None = optional()


def layer_records(metadata: dict) -> list[LayerRecord]:
    """The records of a layers_metadata.json (its `records`: by number, or a list), in execution
    order; a call without a tensor (no `shape` key) as a CallWithoutTensor, so that its keys stay absent."""
    if not isinstance(metadata, dict):
        raise RecordError(f"layers_metadata.json: expected a JSON object, got {type(metadata).__name__}")
    records = metadata.get("records") or {}
    return sorted(
        (
            from_json(LayerRecord if isinstance(r, dict) and "shape" in r else CallWithoutTensor, r, f"records[{n}]")
            for n, r in enumerate(records.values() if isinstance(records, dict) else records)
        ),
        key=lambda r: r.index,
    )


@dataclass
class LayerExtreme:
    """A record the report lists for its extreme (widest range, most zeros): one of the two figures."""

    index: int
    name: str
    call: int
    type: str
    range: list[float] | None = optional()  # [min, max] (widest_range)
    zero_fraction: float | None = optional()  # (most_zeros)
    files: list[str] = field(default_factory=list)


@dataclass
class ActivationProfile:
    """Per record with statistics, in execution order: the activation chart's three series."""

    index: list[int] = field(default_factory=list)
    std: list[float | None] = field(default_factory=list)
    absmax: list[float | None] = field(default_factory=list)  # max(|min|, |max|)


@dataclass
class DissectionSummary:
    """The dissection as the results file keeps it (`dissection`): the pass's counts and the digest
    the report shows; every record is in layers_metadata.json in `folder`."""

    records: int  # leaf-module calls recorded
    leaf_modules: int  # leaf modules hooked
    png_files: int
    npy_files: int
    seconds: float  # the pass, its files written
    writer_errors: list[str] = field(default_factory=list)  # files that failed to write
    folder: str | None = None  # the dissection folder (layers_metadata.json, layer_NNN.png/.npy)
    type_counts: dict[str, int] = field(default_factory=dict)  # records per module class, most first
    widest_range: list[LayerExtreme] = field(default_factory=list)  # the five widest max - min
    most_zeros: list[LayerExtreme] = field(default_factory=list)  # the five largest zero fractions
    nan_records: int = 0  # records with a NaN
    inf_records: int = 0  # records with an Inf
    profile: ActivationProfile = field(default_factory=ActivationProfile)


# -- the time breakdown -------------------------------------------------------------------------
@dataclass
class BlockShare:
    """A top-level block's time in the forward (or the time outside the blocks)."""

    block: str  # "path (Class)", or "(outside top-level blocks)"
    ms: float
    share: float  # of the forward (or of the blocks' sum when it exceeds the forward)


@dataclass
class LeafTime:
    """A leaf module's time, all its calls added up."""

    name: str
    type: str
    ms: float
    calls: int
    share: float


@dataclass
class TimeBreakdownRecord:
    """Where the forward's time goes (`time_breakdown`): one pass with timing hooks on every module."""

    forward_ms: float
    blocks: list[BlockShare] = field(default_factory=list)
    top_leaves: list[LeafTime] = field(default_factory=list)  # the ten most expensive


# -- the profiler trace (--trace) ---------------------------------------------------------------
@dataclass
class PhaseRange:
    """A pipeline phase's ranges in the trace."""

    ranges: int
    ms: float


@dataclass
class OperatorTime:
    """An operator's time in the trace: CPU self time, or device time by the operator that launched it."""

    name: str
    calls: int
    self_ms: float
    share: float | None  # of all operators' time in the pass


@dataclass
class DeviceIdle:
    """On CUDA: the device's work during the forward."""

    window_ms: float  # from the forward's start on the host to the end of its last kernel
    busy_ms: float  # kernels and copies running, their union
    idle_share: float | None
    kernels: int  # kernels the forward queued
    launch_bound: bool  # idle for more than half the window


@dataclass
class TraceBlockShare(BlockShare):
    """A top-level block's share of the forward from the trace, beside the hooks' breakdown."""

    hook_ms: float | None = None  # the time breakdown's figure for the same block
    hook_share: float | None = None
    difference_pp: float | None = None  # trace share - hooks share, in percentage points


@dataclass
class TraceSummary:
    """The profiler trace of one more warm pass (`trace`): the pass, the file, and its events' summary."""

    pass_wall_s: float = 0.0  # the traced pipeline call's wall time
    bytes: int = 0  # the gzipped trace file
    write_seconds: float = 0.0  # writing it and reading its events back
    activities: list[str] = field(default_factory=list)  # "CPU", "CUDA"
    shapes: bool = True  # operator input shapes recorded
    stacks: bool = False  # Python call stacks recorded
    left_out: list[str] = field(default_factory=list)  # what the trace does not hold, as the report says it
    events: int = 0
    leaf_ranges: int = 0  # ranges of leaf-module calls
    module_ranges: int = 0  # ... and of top-level blocks
    phases: dict[str, PhaseRange] = field(default_factory=dict)  # preprocess, forward, postprocess
    top_cpu_operators: list[OperatorTime] = field(default_factory=list)
    top_cuda_operators: list[OperatorTime] | None = None  # on CUDA
    cuda: DeviceIdle | None = None  # on CUDA, when the forward's range was found
    forward_ms: float = 0.0  # host time on the CPU; the device's span of the forward's kernels on CUDA
    block_clock: str = "host"  # "host" or "device (kernel spans)"
    blocks: list[TraceBlockShare] = field(default_factory=list)
    file: str | None = None  # the .json.gz, relative to the results folder
    max_difference_pp: float | None = None  # the largest |difference_pp| of the blocks
    timed_median_s: float | None = None  # the timed end-to-end median it is set against
    overhead_ratio: float | None = None  # pass_wall_s / timed_median_s
