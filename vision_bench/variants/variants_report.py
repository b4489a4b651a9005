"""What the reports show of the variants (--variants): one table per model (the same rows in
Markdown and HTML, as report blocks), the findings (fastest variant that passes parity, faster ones that fail it)
and the CSV's rows, one per model and variant."""

from __future__ import annotations

from ..common import ms
from ..document.blocks import Block, BulletList, Heading, Paragraph, Table
from ..document.tables import e2e_csv_values
from ..records import ParityVerdict
from ..records.model_result import ModelResult
from ..records.variants import ParityWorst, VariantDetails, VariantResult

VARIANT_HEADERS = [
    "variant",
    "status",
    "forward median ms",
    "end-to-end median ms",
    "speed-up (forward)",
    "peak memory MB",
    "cold start ms",
    "worst normalised error (part)",
    "task-level parity",
    "verdict",
]


def number(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def task_text(worst: ParityWorst) -> str:
    """The task-level figures of the worst image, in a few words."""
    parts = []
    if worst.depth_p99_relative_error is not None:
        parts.append(
            f"depth rel. error mean {number(worst.depth_mean_relative_error, '.3g')}, "
            f"p99 {worst.depth_p99_relative_error:.3g}"
        )
    if worst.min_mean_iou is not None:
        parts.append(f"box IoU {worst.min_mean_iou:.3f}")
    if worst.unmatched:
        parts.append(f"{worst.unmatched} unmatched")
    if worst.max_keypoint_displacement_px is not None:
        parts.append(f"keypoints {worst.max_keypoint_displacement_px:.2f} px")
    if worst.min_mask_iou is not None:
        parts.append(f"mask IoU {worst.min_mask_iou:.3f}")
    return "; ".join(parts) or "nothing to match"


def relative_speed(speedup: float | None, reference: str) -> str:
    """A speed-up as words that cannot be misread: "2.25x faster than torch-fp32", "1.30x slower than
    torch-fp32" (a ratio below 1 turned over), "as fast as torch-fp32" within half a percent."""
    if not speedup:
        return f"not timed against {reference}"
    if abs(speedup - 1) < 0.005:
        return f"as fast as {reference}"
    if speedup > 1:
        return f"{speedup:.2f}x faster than {reference}"
    return f"{1 / speedup:.2f}x slower than {reference}"


def variants_of(r: ModelResult) -> list[VariantResult]:
    """The model's variants (the reference first); none without --variants."""
    return r.variants or []


def variant_rows(r: ModelResult) -> list[list[str]]:
    rows = []
    for v in variants_of(r):
        if not v.complete:
            rows.append([v.variant, v.status, "", "", "", "", "", "", "", v.reason or ""])
            continue
        worst = v.parity_worst
        error = "reference" if v.reference else f"{number(worst.normalised_error, '.3g')} ({worst.worst_part or 'n/a'})"
        verdict = "reference" if v.reference else (v.parity_verdict or "n/a")
        if v.parity and v.parity.reasons:
            verdict += ": " + "; ".join(v.parity.reasons[:2])
        rows.append(
            [
                v.variant,
                v.status,
                ms(v.forward_median),
                ms(v.end_to_end_median),
                number(v.speedup_forward, ".2f") + "x",
                number(v.peak_mb, ".0f"),
                ms(v.cold_start_seconds),
                error,
                "" if v.reference else task_text(worst),
                verdict,
            ]
        )
    return rows


def variant_notes(r: ModelResult) -> list[str]:
    """How each variant ran: autocast dtype, export file and provider, compile time in the cold start."""
    notes = []
    for v in variants_of(r):
        d = v.details or VariantDetails()
        if d.provider is not None:
            export = (
                f"exported in {d.export_seconds:.1f} s"
                if d.export_seconds is not None
                else "export reused from the cache"
            )
            files = ", ".join(f"`{f}`" for f in d.files or [])
            notes.append(f"{v.variant}: {export} ({files}), provider {d.provider}")
        if d.calibration is not None:
            notes.append(
                f"{v.variant}: calibrated on {d.calibration}; {d.float_nodes or 0} graph node(s) kept in float "
                "(the model's INT8_IGNORED_SCOPE)"
            )
        if v.variant == "torch-compile" and v.cold_start:
            notes.append(
                f"torch-compile: compiling happens in the cold start "
                f"({ms(v.cold_start_seconds)} ms, against the reference's "
                f"{ms(r.cold_start.total_s if r.cold_start else None)} ms)"
            )
        if d.autocast_dtype:
            notes.append(f"{v.variant}: torch.autocast to {d.autocast_dtype} around the network; weights stay float32")
    return notes


def variants_section(r: ModelResult) -> list[Block]:
    """The model's variants: how they were compared, their table, and how each ran."""
    return [
        Heading(3, "Variants"),
        Paragraph(
            "Each variant loaded afresh (same weights), timed like the reference, then run "
            "once more per image to compare its outputs with torch-fp32's: the normalised error is "
            "max|a-b| / max|b| of the raw output, per part (boxes, scores, keypoints, ...), worst part shown."
        ),
        Table(VARIANT_HEADERS, variant_rows(r)),
        BulletList(variant_notes(r)),
    ]


def variant_findings(results: list[ModelResult]) -> list[str]:
    lines = []
    for r in results:
        done = [v for v in variants_of(r) if v.complete and not v.reference]
        if not done:
            continue
        passing = [v for v in done if v.parity and v.parity.passes and v.speedup_forward]
        best = max(passing, key=lambda v: v.speedup_forward or 0, default=None)
        if best is not None and (best.speedup_forward or 0) > 1:
            lines.append(
                f"Fastest variant that passes parity: {r.model} {best.variant}, "
                f"{best.speedup_forward:.2f}x the torch-fp32 forward."
            )
        else:
            lines.append(f"No variant of {r.model} both passes parity and beats torch-fp32's forward.")
        for v in done:
            if v.parity and v.parity.verdict == ParityVerdict.FAIL and (v.speedup_forward or 0) > 1:
                lines.append(
                    f"Faster but fails parity: {r.model} {v.variant}, {v.speedup_forward:.2f}x, "
                    + "; ".join(v.parity.reasons[:2])
                    + "."
                )
    return lines


def variant_csv_rows(r: ModelResult, base_row: dict) -> list[dict]:
    """One CSV row per non-reference variant, in the columns of the model's own row."""
    rows = []
    for v in variants_of(r):
        if v.reference:
            continue
        worst = v.parity_worst
        row = dict.fromkeys(base_row)
        row.update(
            model=r.model,
            cli_name=r.cli_name,
            status=v.status,
            weights=r.weights,
            variant=v.variant,
            cold_start_s=v.cold_start_seconds,
            **e2e_csv_values(v.latency_end_to_end),
            forward_median_s=v.forward_median,
            fps=v.fps,
            peak_memory_mb=v.peak_mb,
            peak_over_baseline_mb=v.peak_over_baseline_mb,
            peak_memory_kind=v.memory.peak_kind if v.memory else None,
            parameters=r.parameters,
            input_shape="x".join(map(str, r.input_shape)) if r.input_shape else None,
            warm_runs=v.warm_runs,
            speedup_forward=v.speedup_forward,
            parity_verdict=v.parity_verdict,
            parity_normalised_error=worst.normalised_error,
            parity_worst_part=worst.worst_part,
            variant_reason=v.reason,
        )
        rows.append(row)
    return rows
