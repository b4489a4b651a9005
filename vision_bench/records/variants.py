"""What --variants records per model (`variants[]`): one VariantResult per variant, the torch-fp32
reference first, each complete variant with its ParityRecord (its outputs against the reference's:
the verdict, the figures per image and the worst case, the limits that judged them).

The timing and memory figures a variant shares with the model's own pass (runs, latency statistics,
memory, machine state) are those families' values, kept here as they are (`dict`, `list`) until
those families are records too."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .codec import optional
from .statuses import ParityVerdict, VariantStatus


@dataclass
class ParityWorst:
    """The worst figures over all images (`parity.worst`), for one report row: plain numbers, None
    where the task has no such figure (inf kept: an overflow is the worst error)."""

    images: int | None = None  # how many images were compared
    normalised_error: float | None = None  # max|a-b| / max|b| of the raw output, worst part of the worst image
    worst_part: str | None = None  # the raw output part (boxes, scores, ...) that error is in
    max_abs_error: float | None = None  # max|a-b| of the raw outputs, any part, any image
    shape_mismatch: bool | None = None  # any output part, depth map or mask set of another shape
    depth_p99_relative_error: float | None = None  # depth models: 99th percentile of |a-b| / (|b| + eps)
    depth_mean_relative_error: float | None = None  # depth models: mean of the same
    min_mean_iou: float | None = None  # detection: lowest per-image mean box IoU of the matched pairs
    unmatched: int | None = None  # detection and SAM: boxes or masks without a partner, both sides
    max_keypoint_displacement_px: float | None = None  # pose: largest keypoint displacement, pixels
    min_mask_iou: float | None = None  # segmentation and SAM: lowest per-image mean mask IoU


@dataclass
class ImageParity:
    """One image's figures (`parity.per_image[]`): the raw output's per part, the task's (one of
    detection, depth, masks: variants/parity.py's figure objects), and the image's verdict."""

    image: str  # the image's file name
    raw: dict[str, Any] = field(default_factory=dict)  # raw_output_parity(): parts, worst part, errors
    detection: dict[str, Any] | None = optional()  # detection_parity(): matches, IoU, keypoints, masks
    depth: dict[str, Any] | None = optional()  # depth_parity(): relative errors
    masks: dict[str, Any] | None = optional()  # mask_parity(): SAM mask agreement
    verdict: ParityVerdict = ParityVerdict.FAIL


@dataclass
class ParityRecord:
    """A variant's outputs against the reference's on every image (`parity`). The suggestion of
    --divergence keeps only its headline (verdict, reasons, worst): the other keys are then absent."""

    verdict: ParityVerdict  # fail if any image fails (or none was compared)
    reasons: list[str] = field(default_factory=list)  # why it fails, "image 0, 1: <figure> > <limit>"
    worst: ParityWorst = field(default_factory=ParityWorst)
    per_image: list[ImageParity] | None = optional()
    tolerance: str | None = optional()  # which limits applied: "fp32" or "half precision"
    limits: dict[str, float] | None = optional()  # the limits themselves, by figure name

    @property
    def passes(self) -> bool:
        return self.verdict == ParityVerdict.PASS

    def headline(self) -> ParityRecord:
        """The verdict, its reasons and the worst figures, without the per-image detail."""
        return ParityRecord(verdict=self.verdict, reasons=self.reasons, worst=self.worst)


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
    runs: list[dict] | None = optional()  # every run (cold, warm-up, timed), as the model's `runs`
    memory: dict | None = optional()  # as the model's `memory` (the reference row: the headline three)
    details: dict | None = optional()  # what preparing it did: autocast dtype, export files, provider, ...
    prepare_seconds: float | None = optional()  # load + prepare (export, compile, cast), seconds
    guard: dict | None = optional()  # the machine-state guard's samples, as the model's `guard`
    precision: dict | None = optional()  # --precision's stopping rule, as the model's `precision`
    cold_start: dict | None = optional()  # the first run, as the model's `cold_start`
    latency_end_to_end: dict | None = optional()  # latency statistics of the timed runs, seconds
    latency_forward: dict | None = optional()  # the same, network forward only
    latency_tails: dict | None = optional()
    latency_phases_median: dict | None = optional()
    fps: float | None = optional()  # 1 / end-to-end median
    machine_state: dict | None = optional()
    latency_per_image: dict | None = optional()
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
        return (self.latency_forward or {}).get("median")

    @property
    def end_to_end_median(self) -> float | None:
        return (self.latency_end_to_end or {}).get("median")

    @property
    def cold_start_seconds(self) -> float | None:
        return (self.cold_start or {}).get("total_s")

    @property
    def peak_mb(self) -> float | None:
        """The headline peak memory, MB (None when not measured)."""
        peak = (self.memory or {}).get("peak_bytes")
        return peak / 1024**2 if peak else None

    @property
    def parity_verdict(self) -> ParityVerdict | None:
        return self.parity.verdict if self.parity else None

    @property
    def parity_worst(self) -> ParityWorst:
        """The worst figures; all None when there is no parity (the reference, a variant that failed)."""
        return self.parity.worst if self.parity else ParityWorst()


VARIANT_FIELDS = frozenset(f.name for f in fields(VariantResult))  # the keys a variant's row may hold
