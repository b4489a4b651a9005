"""A variant's outputs against the torch-fp32 reference's on a loaded model: one untimed pipeline call
per image, the figures of its task (parity.py's pure functions), and the verdict under the limits the
variant's class gives (Variant.limits)."""

from __future__ import annotations

from ..records.parity_figures import ImageOutputs, ImageParity, ParityRecord
from .parity import combine_verdicts, depth_parity, detection_parity, mask_parity, raw_output_parity, summarise, verdict
from .registry import get_variant


def parity_outputs(bench, images: list) -> list[ImageOutputs]:
    """The raw and task outputs of one (untimed) pipeline call per image."""
    out = []
    with bench.progress("parity outputs", through_network=False):
        for path, image in images:
            raw, task = bench.parity_outputs(image)
            out.append(ImageOutputs(path.name, raw, task))
    return out


def task_parity(task: str, reference: dict, variant: dict) -> dict:
    """The task's figures of one image, as ImageParity's field (detection, depth or masks) to its
    value; none without a postprocessed output. `reference`, `variant`: the model's postprocess
    outputs (the model contract's keys: boxes, classes, keypoints, masks, depth)."""
    if not reference:
        return {}
    if task == "depth":
        # eps at 0.1% of the reference's largest depth: relative (inverse) depth is near zero far
        # away, where any error would otherwise read as a huge relative one
        depth = reference["depth"]
        eps = 1e-3 * float(abs(depth).max()) if depth.size else 1e-6
        return {"depth": depth_parity(depth, variant.get("depth"), eps=max(eps, 1e-6))}
    if task == "sam":
        return {"masks": mask_parity(reference.get("masks"), variant.get("masks"))}
    return {"detection": detection_parity(reference, variant)}


def compare_outputs(bench, variant: str, reference: list[ImageOutputs], outputs: list[ImageOutputs]) -> ParityRecord:
    """Parity of a variant on every image: the figures per image, the worst case, the verdict."""
    chosen = get_variant(variant)
    tolerance = chosen.limits(bench)
    per_image, verdicts = [], []
    for ref, var in zip(reference, outputs):
        image = ImageParity(
            image=ref.image, raw=raw_output_parity(ref.raw, var.raw), **task_parity(bench.TASK, ref.task, var.task)
        )
        verdicts.append(verdict(image.figures(), tolerance))
        image.verdict = verdicts[-1][0]
        per_image.append(image)
    overall, reasons = combine_verdicts(verdicts)
    return ParityRecord(
        verdict=overall,
        reasons=reasons,
        worst=summarise(per_image),
        per_image=per_image,
        tolerance=chosen.limits_label,
        limits=tolerance,
    )
