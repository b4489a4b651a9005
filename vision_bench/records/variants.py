"""What --variants records per model (`variants[]`): one VariantResult per variant, the torch-fp32
reference first, each complete variant with what preparing it did (VariantDetails) and its
ParityRecord (records/parity_figures.py: its outputs against the reference's, the verdict, the
figures per image and the worst case, the limits that judged them).

The timing and memory figures a variant shares with the model's own pass (runs, latency statistics,
memory, machine state) are the measurement family's records (records/measurement.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .codec import optional
from .measurement import (
    GuardRecord,
    ImageLatency,
    LatencyStats,
    LatencyTails,
    MachineState,
    MemoryFigures,
    PhaseMedians,
    PrecisionRecord,
    RunRecord,
)
from .parity_figures import ImageParity, ParityRecord, ParityWorst
from .statuses import ParityVerdict, VariantStatus

__all__ = ["ImageParity", "ParityRecord", "ParityWorst", "VariantDetails", "VariantResult"]


@dataclass
class VariantDetails:
    """What preparing a variant did (`details`): the keys of the variants that set them, in the report's
    notes. A variant of several (bf16 on a channels-last network) merges its parts' with `|`."""

    memory_format: str | None = optional()  # torch-channels-last: "channels_last"
    autocast_dtype: str | None = optional()  # torch-fp16, torch-bf16: the dtype autocast computes in
    backend: str | None = optional()  # torch-compile: the compiler's backend
    files: list[str] | None = optional()  # onnxruntime: the exported files it runs
    cached: bool | None = optional()  # onnxruntime: every file came from the export cache
    export_seconds: float | None = optional()  # onnxruntime: the exports made (absent when all were cached)
    provider: str | None = optional()  # onnxruntime: the session's provider; openvino: device, precision
    calibration: str | None = optional()  # the INT8 variants: the calibration set (samples, images, transforms)
    float_nodes: int | None = optional()  # the INT8 variants: graph nodes the model's ignored scope kept in float

    def __or__(self, other: VariantDetails) -> VariantDetails:
        """These details with `other`'s set fields over them."""
        return replace(
            self, **{f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None}
        )


@dataclass
class VariantResult:
    """One variant of a model (`variants[]`). The reference (torch-fp32) row repeats the model's own
    figures (`reference` true, speed-ups 1); the others are measured in a fresh instance like the
    reference and carry their parity. A variant that could not run is `unsupported` or `failed`, with
    its `reason`. Keys the variant's state did not reach are absent."""

    variant: str  # its --variants name
    status: VariantStatus
    description: str | None = None  # what the variant changes, in a few words
    reference: bool | None = optional()  # true on the reference's row only
    runs: list[RunRecord] | None = optional()  # every run (cold, warm-up, timed), as the model's `runs`
    memory: MemoryFigures | None = optional()  # as the model's `memory` (the reference row: the headline three)
    details: VariantDetails | None = optional()  # what preparing it did: autocast dtype, export files, provider, ...
    prepare_seconds: float | None = optional()  # load + prepare (export, compile, cast), seconds
    guard: GuardRecord | None = optional()  # the machine-state guard's samples, as the model's `guard`
    precision: PrecisionRecord | None = optional()  # --precision's stopping rule, as the model's `precision`
    cold_start: RunRecord | None = optional()  # the first run, as the model's `cold_start`
    latency_end_to_end: LatencyStats | None = optional()  # latency statistics of the timed runs, seconds
    latency_forward: LatencyStats | None = optional()  # the same, network forward only
    latency_tails: LatencyTails | None = optional()
    latency_phases_median: PhaseMedians | None = optional()
    fps: float | None = optional()  # 1 / end-to-end median
    machine_state: MachineState | None = optional()
    latency_per_image: dict[str, ImageLatency] | None = optional()
    parity: ParityRecord | None = optional()
    speedup_forward: float | None = optional()  # the reference's forward median / this one's
    speedup_end_to_end: float | None = optional()  # the same, end to end
    reason: str | None = optional()  # why it is unsupported or failed
    traceback: str | None = optional()  # a failed variant's traceback

    @property
    def complete(self) -> bool:
        return self.status == VariantStatus.COMPLETE

    @property
    def forward_median(self) -> float | None:
        """The forward median, seconds (None when not measured)."""
        return self.latency_forward.median if self.latency_forward else None

    @property
    def end_to_end_median(self) -> float | None:
        return self.latency_end_to_end.median if self.latency_end_to_end else None

    @property
    def cold_start_seconds(self) -> float | None:
        return self.cold_start.total_s if self.cold_start else None

    @property
    def peak_mb(self) -> float | None:
        """The headline peak memory, MB (None when not measured)."""
        peak = self.memory.peak_bytes if self.memory else None
        return peak / 1024**2 if peak else None

    @property
    def peak_over_baseline_mb(self) -> float | None:
        """The model's own share of that peak, MB (None when not measured)."""
        memory = self.memory
        if not memory or not memory.peak_bytes or memory.peak_over_baseline_bytes is None:
            return None
        return memory.peak_over_baseline_bytes / 1024**2

    @property
    def warm_runs(self) -> int | None:
        """How many timed runs make the statistics (None when none was timed)."""
        return self.latency_end_to_end.n if self.latency_end_to_end else None

    @property
    def parity_verdict(self) -> ParityVerdict | None:
        return self.parity.verdict if self.parity else None

    @property
    def parity_worst(self) -> ParityWorst:
        """The worst figures; all None when there is no parity (the reference, a variant that failed)."""
        return self.parity.worst if self.parity else ParityWorst()
