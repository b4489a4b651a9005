"""A variant's outputs against the reference's (`variants[].parity`), as records: the figures of one
image (the raw output per part, and the task's: detection, depth or SAM masks), the verdict per image,
the worst figures over all images and the verdict over them. variants/parity.py computes them.

Errors are plain floats (inf kept: an overflow is the worst error; the results file writes it as
null); a shape mismatch is [reference shape, variant shape] (the variant's None where the part is
missing). Keys a figure has only for some tasks are `optional()` (absent while None) or `absent()`
(present, maybe null, where the task has the figure; absent elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import absent, optional
from .statuses import ParityVerdict


@dataclass
class PartParity:
    """One part of the raw output (`raw.parts[]`: boxes, scores, keypoints, a depth map, ...). A part
    of another shape, or missing from the variant's output, has only its shape_mismatch."""

    part: str  # the part's name in the model's raw output
    shape_mismatch: list | None = optional()  # [reference shape, variant shape or None]
    max_abs_error: float | None = optional()  # max|a-b| over the part
    normalised_error: float | None = optional()  # max|a-b| / max|b| (the max|a-b| itself where max|b| is 0)
    reference_max_abs: float | None = optional()  # max|b| over the reference's finite values


@dataclass
class RawParity:
    """The raw outputs' errors, per part (`per_image[].raw`)."""

    parts: list[PartParity] = field(default_factory=list)
    worst_part: str | None = None  # the part with the largest normalised error (a mismatched one: inf)
    normalised_error: float = 0.0  # that part's normalised error
    max_abs_error: float = 0.0  # max|a-b| over all parts
    shape_mismatch: bool = False  # any part of another shape, or missing


@dataclass
class ImageOutputs:
    """A model's outputs on one image, what parity compares (in memory only: tensors, never written)."""

    image: str  # the image's file name
    raw: dict[str, Any]  # the network's raw output, by part name (tensors)
    task: dict[str, Any]  # the postprocessed output (the model contract's dict)


@dataclass
class BoxMatch:
    """Greedy same-class matching of the variant's boxes to the reference's (not written: its counts
    go into DetectionParity)."""

    matched: list[tuple[int, int, float]]  # (reference index, variant index, IoU), best IoU first
    unmatched_reference: int  # reference boxes without a partner
    unmatched_variant: int  # variant boxes without a partner
    mean_iou: float | None  # over the matched pairs; None when nothing matched


@dataclass
class DetectionParity:
    """Box, keypoint and instance-mask agreement of one image's detections (`per_image[].detection`)."""

    matched: int  # matched box pairs
    unmatched_reference: int
    unmatched_variant: int
    unmatched: int  # both sides
    mean_iou: float | None  # mean box IoU of the matched pairs; None when nothing matched
    notes: list[str] = field(default_factory=list)  # what could not be compared, in words
    # Pose models: the largest displacement of a matched pair's keypoints (x, y), pixels; null without pairs.
    max_keypoint_displacement_px: float | None = absent()
    mask_shape_mismatch: list | None = optional()  # segmentation: [reference, variant] mask set shapes
    mean_mask_iou: float | None = absent()  # segmentation: mean mask IoU of the matched pairs; null without


@dataclass
class DepthParity:
    """Relative error |a-b| / (|b| + eps) of a depth map against the reference's (`per_image[].depth`)."""

    shape_mismatch: list | None = optional()  # [reference shape, variant shape]; the errors are then inf
    mean_relative_error: float = 0.0
    p99_relative_error: float = 0.0  # 99th percentile
    max_abs_error: float | None = optional()  # max|a-b|, depth units; absent on a shape mismatch


@dataclass
class MaskParity:
    """Agreement of SAM's masks (`per_image[].masks`): each reference mask takes the best unused variant mask."""

    shape_mismatch: list | None = optional()  # [reference, variant] mask set shapes; no IoU then
    mean_mask_iou: float | None = None  # None without a pair
    min_mask_iou: float | None = None
    unmatched_reference: int = 0
    unmatched_variant: int = 0

    @property
    def unmatched(self) -> int:
        return self.unmatched_reference + self.unmatched_variant


Figure = RawParity | DetectionParity | DepthParity | MaskParity  # what verdict() judges


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
    detection, depth, masks), and the image's verdict."""

    image: str  # the image's file name
    raw: RawParity
    detection: DetectionParity | None = optional()  # detectors, pose, segmentation
    depth: DepthParity | None = optional()  # depth models
    masks: MaskParity | None = optional()  # SAM
    verdict: ParityVerdict = ParityVerdict.FAIL

    def figures(self) -> list[Figure]:
        """The figures the image has, raw output first."""
        return [f for f in (self.raw, self.detection, self.depth, self.masks) if f is not None]


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
