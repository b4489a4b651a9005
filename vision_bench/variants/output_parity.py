"""A variant's outputs against the torch-fp32 reference's on a loaded model: one untimed pipeline call
per image, the figures of its task (parity.py's pure functions), and the verdict under the limits the
variant's class gives (Variant.limits)."""

from __future__ import annotations

from ..records.variants import ImageParity, ParityRecord
from .parity import combine_verdicts, depth_parity, detection_parity, mask_parity, raw_output_parity, summarise, verdict
from .registry import get_variant


def parity_outputs(bench, images: list) -> list[dict]:
    """The raw and task outputs of one (untimed) pipeline call per image."""
    out = []
    with bench.progress("parity outputs", through_network=False):
        for path, image in images:
            raw, task = bench.parity_outputs(image)
            out.append({"image": path.name, "raw": raw, "task": task})
    return out


def task_parity(task: str, reference: dict, variant: dict) -> dict:
    if not reference:
        return {}
    if task == "depth":
        # eps at 0.1% of the reference's largest depth: relative (inverse) depth is near zero far
        # away, where any error would otherwise read as a huge relative one
        eps = 1e-3 * float(abs(reference["depth"]).max()) if reference["depth"].size else 1e-6
        return {"depth": depth_parity(reference["depth"], variant.get("depth"), eps=max(eps, 1e-6))}
    if task == "sam":
        return {"masks": mask_parity(reference.get("masks"), variant.get("masks"))}
    return {"detection": detection_parity(reference, variant)}


def compare_outputs(bench, variant: str, reference: list[dict], outputs: list[dict]) -> ParityRecord:
    """Parity of a variant on every image: the figures per image, the worst case, the verdict."""
    chosen = get_variant(variant)
    tolerance = chosen.limits(bench)
    figures_per_image, per_image, verdicts = [], [], []
    for ref, var in zip(reference, outputs):
        figures = {
            "raw": raw_output_parity(ref["raw"], var["raw"]),
            **task_parity(bench.TASK, ref["task"], var["task"]),
        }
        verdicts.append(verdict(figures, tolerance))
        figures_per_image.append(figures)
        per_image.append(ImageParity(image=ref["image"], **figures, verdict=verdicts[-1][0]))
    overall, reasons = combine_verdicts(verdicts)
    return ParityRecord(
        verdict=overall,
        reasons=reasons,
        worst=summarise(figures_per_image),
        per_image=per_image,
        tolerance=chosen.limits_label,
        limits=tolerance,
    )
