"""Output parity between a model variant and its fp32 reference, and the pass/fail verdict.

This module owns the numbers that say whether a variant (bf16/fp16 autocast, channels-last,
torch.compile, onnxruntime, ...) still computes what the torch-fp32 reference computes on the
same images: raw-tensor errors per output part, detection/keypoint/mask agreement, depth
relative error, the tolerances, the per-image verdict and the worst-case summary for a report
row. It is pure: only numpy, no model loading, no torch import (tensors are duck-typed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..records import ParityVerdict
from ..records.codec import known
from ..records.parity_figures import (
    BoxMatch,
    DepthParity,
    DetectionParity,
    Figure,
    ImageParity,
    MaskParity,
    ParityWorst,
    PartParity,
    RawParity,
)

FP32_TOLERANCE = {
    "normalised_error": 1e-3,
    "depth_p99_relative_error": 1e-2,
    "min_mean_iou": 0.99,
    "max_unmatched": 0,
    "max_keypoint_displacement_px": 1.0,
    "min_mask_iou": 0.98,
}
HALF_TOLERANCE = {
    "normalised_error": 3e-2,
    "depth_p99_relative_error": 5e-2,
    "min_mean_iou": 0.95,
    "max_unmatched": 1,
    "max_keypoint_displacement_px": 4.0,
    "min_mask_iou": 0.90,
}
# INT8 (openvino-int8, onnxruntime-int8): activations rounded to 1/256 of their calibrated range at
# every quantised layer, errors that add up through the network; a model declares its own
# (ModelBenchmark.INT8_TOLERANCE) once measured on pretrained weights.
INT8_LIMITS = {
    "normalised_error": 1e-1,
    "depth_p99_relative_error": 2e-1,
    "min_mean_iou": 0.85,
    "max_unmatched": 3,
    "max_keypoint_displacement_px": 8.0,
    "min_mask_iou": 0.80,
}


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any dtype), numpy array or (nested) list as a float64 numpy array."""
    if hasattr(x, "detach"):
        # .float() first: numpy has no bfloat16, so .numpy() on a bf16 tensor would raise.
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _plain(value: Any) -> float | None:
    """A JSON-friendly float (or None), never a numpy scalar."""
    return None if value is None else float(value)


def _abs_error(reference: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """|variant - reference|, with any disagreement in finiteness counted as infinite.

    Plain subtraction gives NaN where the variant overflowed, and np.max/np.percentile would
    then either propagate NaN (which compares False against every limit) or be skipped by
    nan-aware callers; an overflow is the worst possible error, so it must read as inf.
    """
    ref_finite, var_finite = np.isfinite(reference), np.isfinite(variant)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(variant - reference)
    # Identical non-finite values (same-signed inf, or NaN in both) are agreement, not error.
    same_nonfinite = ~ref_finite & ~var_finite & ((reference == variant) | (np.isnan(reference) & np.isnan(variant)))
    err = np.where(ref_finite & var_finite, err, np.inf)
    return np.where(same_nonfinite, 0.0, err)


def raw_output_parity(reference: dict[str, Any], variant: dict[str, Any]) -> RawParity:
    """Per-part max and normalised error of a variant's raw outputs against the reference's (each a
    dict of named tensors: the model's raw output)."""
    parts: list[PartParity] = []
    worst_part, worst, max_abs, shape_mismatch = None, 0.0, 0.0, False
    for name, ref_value in reference.items():
        ref = to_numpy(ref_value)
        var = to_numpy(variant[name]) if name in variant else None
        if var is None or var.shape != ref.shape:
            var_shape = None if var is None else list(var.shape)
            parts.append(PartParity(part=name, shape_mismatch=[list(ref.shape), var_shape]))
            shape_mismatch = True
            if worst_part is None or worst != math.inf:
                worst_part, worst = name, math.inf
            continue
        err = _abs_error(ref, var)
        part_max = float(err.max()) if err.size else 0.0
        finite_ref = np.abs(ref[np.isfinite(ref)])
        ref_max = float(finite_ref.max()) if finite_ref.size else 0.0
        normalised = part_max / ref_max if ref_max > 0 else part_max
        parts.append(
            PartParity(part=name, max_abs_error=part_max, normalised_error=normalised, reference_max_abs=ref_max)
        )
        max_abs = max(max_abs, part_max)
        if worst_part is None or normalised > worst:
            worst_part, worst = name, normalised
    return RawParity(
        parts=parts, worst_part=worst_part, normalised_error=worst, max_abs_error=max_abs, shape_mismatch=shape_mismatch
    )


def split_yolo_output(
    raw: Any,
    task: str,
    num_classes: int = 80,
    num_keypoints: int = 17,
    keypoint_dims: int = 3,
    num_mask_coefficients: int = 32,
) -> dict[str, np.ndarray]:
    """Cut a YOLO11 head output (batch, 4 + classes + extra, anchors) into its parts.

    One max|a-b|/max|b| over the whole tensor is dominated by box coordinates (up to ~640 px)
    and cannot see a half-precision error in the 0..1 scores; normalising each part on its own
    scale (and judging by the worst part) makes every part's error visible.
    """
    extra = {"detect": 0, "pose": num_keypoints * keypoint_dims, "segment": num_mask_coefficients}
    if task not in extra:
        raise ValueError(f"unknown YOLO task {task!r}; expected one of {sorted(extra)}")
    out = to_numpy(raw)
    if out.ndim != 3:
        raise ValueError(f"YOLO raw output must be (batch, rows, anchors), got shape {out.shape}")
    expected = 4 + num_classes + extra[task]
    if out.shape[1] != expected:
        raise ValueError(
            f"YOLO {task} output has {out.shape[1]} rows, expected {expected} "
            f"(4 box + {num_classes} classes + {extra[task]} {task} values)"
        )
    parts = {"boxes": out[:, :4], "scores": out[:, 4 : 4 + num_classes]}
    extra_part = {"pose": "keypoints", "segment": "mask_coefficients"}.get(task)
    if extra_part:
        parts[extra_part] = out[:, 4 + num_classes :]
    return parts


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N,4) x (M,4) -> (N,M)."""
    a, b = to_numpy(a).reshape(-1, 4), to_numpy(b).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _greedy_pairs(scores: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i, j, score) taken in descending score order, each row and column used once."""
    rows, cols = np.nonzero(scores >= threshold)
    order = np.argsort(-scores[rows, cols], kind="stable")  # stable: ties resolve by index
    used_rows, used_cols, pairs = set(), set(), []
    for k in order:
        i, j = int(rows[k]), int(cols[k])
        if i not in used_rows and j not in used_cols:
            used_rows.add(i)
            used_cols.add(j)
            pairs.append((i, j, float(scores[i, j])))
    return pairs


def match_boxes(
    ref_boxes: Any, ref_classes: Any, var_boxes: Any, var_classes: Any, iou_threshold: float = 0.5
) -> BoxMatch:
    """Greedy same-class matching of variant boxes to reference boxes by descending IoU.

    mean_iou is over matched pairs only, None when nothing matched: boxes that found no
    partner are reported by the unmatched counts, so they are not also folded into the mean.
    """
    iou = box_iou(ref_boxes, var_boxes)
    if ref_classes is not None and var_classes is not None and iou.size:
        same = to_numpy(ref_classes).reshape(-1)[:, None] == to_numpy(var_classes).reshape(-1)[None, :]
        iou = np.where(same, iou, -1.0)
    matched = _greedy_pairs(iou, iou_threshold)
    n_ref, n_var = iou.shape
    return BoxMatch(
        matched=matched,
        unmatched_reference=n_ref - len(matched),
        unmatched_variant=n_var - len(matched),
        mean_iou=float(np.mean([m[2] for m in matched])) if matched else None,
    )


def _mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boolean masks (N,H,W) x (M,H,W); two empty masks agree (IoU 1)."""
    pixels = int(np.prod(a.shape[1:]))  # explicit: reshape(-1) cannot infer it when N == 0
    fa = a.reshape(len(a), pixels).astype(np.float64)
    fb = b.reshape(len(b), pixels).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 1.0)


def _as_masks(x: Any) -> np.ndarray:
    """Masks as a boolean (N,H,W) array (a single (H,W) mask becomes N=1)."""
    m = to_numpy(x) > 0.5
    return m[None] if m.ndim == 2 else m


def detection_parity(ref: dict, var: dict) -> DetectionParity:
    """Box, keypoint and instance-mask agreement of one image's detections. `ref`, `var`: the model's
    postprocess outputs (boxes, classes, keypoints, masks: the model contract's keys)."""
    match = match_boxes(ref["boxes"], ref.get("classes"), var["boxes"], var.get("classes"))
    pairs = match.matched
    out = DetectionParity(
        matched=len(pairs),
        unmatched_reference=match.unmatched_reference,
        unmatched_variant=match.unmatched_variant,
        unmatched=match.unmatched_reference + match.unmatched_variant,
        mean_iou=match.mean_iou,
    )
    ref_kp, var_kp = ref.get("keypoints"), var.get("keypoints")
    if ref_kp is not None and var_kp is not None:
        # x, y only: a keypoint's confidence is not a position and has no pixel scale.
        ref_xy, var_xy = to_numpy(ref_kp)[..., :2], to_numpy(var_kp)[..., :2]
        dists = [np.linalg.norm(var_xy[j] - ref_xy[i], axis=-1).max() for i, j, _ in pairs]
        out.max_keypoint_displacement_px = float(max(dists)) if dists else None
    ref_masks, var_masks = ref.get("masks"), var.get("masks")
    if ref_masks is not None and var_masks is not None:
        ref_m, var_m = _as_masks(ref_masks), _as_masks(var_masks)
        if ref_m.shape[1:] != var_m.shape[1:]:
            out.notes.append(f"mask size differs: reference {list(ref_m.shape[1:])}, variant {list(var_m.shape[1:])}")
            out.mask_shape_mismatch = [list(ref_m.shape), list(var_m.shape)]
            out.mean_mask_iou = None
        else:
            ious = [float(_mask_iou_matrix(ref_m[i : i + 1], var_m[j : j + 1])[0, 0]) for i, j, _ in pairs]
            out.mean_mask_iou = float(np.mean(ious)) if ious else None
    return out


def depth_parity(ref_depth: Any, var_depth: Any, eps: float = 1e-6) -> DepthParity:
    """Relative error |a-b|/(|b|+eps) of a depth map against the reference b: mean, p99, max abs."""
    ref, var = to_numpy(ref_depth), to_numpy(var_depth)
    if ref.shape != var.shape:
        return DepthParity(
            shape_mismatch=[list(ref.shape), list(var.shape)], mean_relative_error=math.inf, p99_relative_error=math.inf
        )
    err = _abs_error(ref, var)
    with np.errstate(invalid="ignore"):
        rel = np.where(np.isfinite(err), err / (np.abs(np.nan_to_num(ref)) + eps), np.inf)
    if rel.size == 0:
        return DepthParity(mean_relative_error=0.0, p99_relative_error=0.0, max_abs_error=0.0)
    return DepthParity(
        mean_relative_error=float(rel.mean()),
        p99_relative_error=float(np.percentile(rel, 99)),
        max_abs_error=float(err.max()),
    )


def mask_parity(ref_masks: Any, var_masks: Any) -> MaskParity:
    """Agreement of SAM masks: each reference mask, in order, takes the best unused variant mask."""
    ref, var = _as_masks(ref_masks), _as_masks(var_masks)
    if ref.shape[1:] != var.shape[1:]:
        return MaskParity(
            shape_mismatch=[list(ref.shape), list(var.shape)], unmatched_reference=len(ref), unmatched_variant=len(var)
        )
    iou = _mask_iou_matrix(ref, var)
    used: set[int] = set()
    ious: list[float] = []
    for i in range(len(ref)):
        free = [j for j in range(len(var)) if j not in used]
        if not free:
            break
        j = max(free, key=lambda c: iou[i, c])
        used.add(j)
        ious.append(float(iou[i, j]))
    return MaskParity(
        mean_mask_iou=float(np.mean(ious)) if ious else None,
        min_mask_iou=float(min(ious)) if ious else None,
        unmatched_reference=len(ref) - len(ious),
        unmatched_variant=len(var) - len(ious),
    )


def _fmt(value: float | None) -> str:
    return f"{value:.3g}"


def _over(value: Any, limit: Any) -> bool:
    """True when value exceeds limit; written so that NaN counts as exceeding."""
    return limit is not None and value is not None and not value <= limit


def _under(value: Any, limit: Any) -> bool:
    """True when value falls below limit; NaN counts as falling below."""
    return limit is not None and value is not None and not value >= limit


def _raw_output_reasons(raw: RawParity, tol: Callable[[str], Any]) -> list[str]:
    """Why the raw output parts fail: a shape mismatch, or a normalised error over the tolerance."""
    reasons = []
    for part in raw.parts:
        if part.shape_mismatch is not None:
            ref_shape, var_shape = part.shape_mismatch
            reasons.append(f"{part.part} shape mismatch: reference {ref_shape}, variant {var_shape}")
        elif _over(part.normalised_error, tol("normalised_error")):
            reasons.append(
                f"{part.part} normalised error {_fmt(part.normalised_error)} > {_fmt(tol('normalised_error'))}"
            )
    return reasons


def _detection_reasons(det: DetectionParity, tol: Callable[[str], Any]) -> list[str]:
    """Why the detections fail: unmatched boxes, box IoU, keypoint displacement, mask shape or IoU."""
    reasons = []
    if _over(det.unmatched, tol("max_unmatched")):
        reasons.append(
            f"detection unmatched {det.unmatched} > {tol('max_unmatched')} "
            f"(reference {det.unmatched_reference}, variant {det.unmatched_variant})"
        )
    if _under(det.mean_iou, tol("min_mean_iou")):
        reasons.append(f"detection mean IoU {_fmt(det.mean_iou)} < {_fmt(tol('min_mean_iou'))}")
    displacement = known(det.max_keypoint_displacement_px)
    if _over(displacement, tol("max_keypoint_displacement_px")):
        reasons.append(
            f"keypoint displacement {_fmt(displacement)} px > {_fmt(tol('max_keypoint_displacement_px'))} px"
        )
    mask_iou = known(det.mean_mask_iou)
    if det.mask_shape_mismatch is not None:
        ref_shape, var_shape = det.mask_shape_mismatch
        reasons.append(f"detection mask shape mismatch: reference {ref_shape}, variant {var_shape}")
    elif _under(mask_iou, tol("min_mask_iou")):
        reasons.append(f"detection mean mask IoU {_fmt(mask_iou)} < {_fmt(tol('min_mask_iou'))}")
    return reasons


def _depth_reasons(depth: DepthParity, tol: Callable[[str], Any]) -> list[str]:
    """Why the depth map fails: a shape mismatch, or a p99 relative error over the tolerance."""
    if depth.shape_mismatch is not None:
        ref_shape, var_shape = depth.shape_mismatch
        return [f"depth shape mismatch: reference {ref_shape}, variant {var_shape}"]
    if _over(depth.p99_relative_error, tol("depth_p99_relative_error")):
        return [f"depth p99 relative error {_fmt(depth.p99_relative_error)} > {_fmt(tol('depth_p99_relative_error'))}"]
    return []


def _mask_reasons(masks: MaskParity, tol: Callable[[str], Any]) -> list[str]:
    """Why the SAM masks fail: a shape mismatch, unmatched masks, or a mean mask IoU too low."""
    if masks.shape_mismatch is not None:
        ref_shape, var_shape = masks.shape_mismatch
        return [f"mask shape mismatch: reference {ref_shape}, variant {var_shape}"]
    reasons = []
    if _over(masks.unmatched, tol("max_unmatched")):
        reasons.append(f"masks unmatched {masks.unmatched} > {tol('max_unmatched')}")
    if _under(masks.mean_mask_iou, tol("min_mask_iou")):
        reasons.append(f"mean mask IoU {_fmt(masks.mean_mask_iou)} < {_fmt(tol('min_mask_iou'))}")
    return reasons


REASONS: dict[type, Callable[[Any, Callable[[str], Any]], list[str]]] = {
    RawParity: _raw_output_reasons,
    DetectionParity: _detection_reasons,
    DepthParity: _depth_reasons,
    MaskParity: _mask_reasons,
}


def verdict(figures: Sequence[Figure], tolerance: dict) -> tuple[ParityVerdict, list[str]]:
    """(pass or fail, reasons) for one image's figures under a tolerance.

    figures: any of raw_output_parity(...), detection_parity(...), depth_parity(...) and
    mask_parity(...) (ImageParity.figures()). A figure the image lacks, or a tolerance key left out,
    is not checked; a shape mismatch always fails.
    """
    reasons: list[str] = []
    for figure in figures:
        reasons += REASONS[type(figure)](figure, tolerance.get)
    return (ParityVerdict.FAIL if reasons else ParityVerdict.PASS), reasons


def combine_verdicts(per_image: Sequence[tuple[str, list[str]]]) -> tuple[ParityVerdict, list[str]]:
    """One verdict over all images: fail if any image fails, reasons de-duplicated in order.

    No images at all is a fail: a parity check that compared nothing has shown nothing.
    """
    if not per_image:
        return ParityVerdict.FAIL, ["no images compared"]
    images_by_reason: dict[str, list[int]] = {}
    for index, (_, reasons) in enumerate(per_image):
        for reason in reasons:
            images_by_reason.setdefault(reason, []).append(index)
    failed = any(status != ParityVerdict.PASS for status, _ in per_image)
    reasons = [f"image {', '.join(map(str, idx))}: {reason}" for reason, idx in images_by_reason.items()]
    return (ParityVerdict.FAIL if failed else ParityVerdict.PASS), reasons


def _worst(values: list, pick) -> float | None:
    present = [v for v in values if v is not None]
    return _plain(pick(present)) if present else None


def summarise(per_image: list[ImageParity]) -> ParityWorst:
    """Worst-case figures across images, for one report row (plain floats/ints/None; inf kept).

    min_mask_iou is the lowest per-image mean mask IoU, the same figure verdict() judges.
    """
    raws = [f.raw for f in per_image]
    dets = [f.detection for f in per_image if f.detection]
    depths = [f.depth for f in per_image if f.depth]
    masks = [f.masks for f in per_image if f.masks]
    worst_raw = max(raws, key=lambda r: r.normalised_error, default=None)
    unmatched = [d.unmatched for d in dets] + [m.unmatched for m in masks]
    return ParityWorst(
        images=len(per_image),
        normalised_error=_plain(worst_raw.normalised_error) if worst_raw else None,
        worst_part=worst_raw.worst_part if worst_raw else None,
        max_abs_error=_worst([r.max_abs_error for r in raws], max),
        shape_mismatch=any(r.shape_mismatch for r in raws)
        or any(d.shape_mismatch is not None for d in depths)
        or any(m.shape_mismatch is not None for m in masks)
        or any(d.mask_shape_mismatch is not None for d in dets),
        depth_p99_relative_error=_worst([d.p99_relative_error for d in depths], max),
        depth_mean_relative_error=_worst([d.mean_relative_error for d in depths], max),
        min_mean_iou=_worst([d.mean_iou for d in dets], min),
        unmatched=int(sum(unmatched)) if unmatched else None,
        max_keypoint_displacement_px=_worst([known(d.max_keypoint_displacement_px) for d in dets], max),
        min_mask_iou=_worst([known(d.mean_mask_iou) for d in dets] + [m.mean_mask_iou for m in masks], min),
    )
