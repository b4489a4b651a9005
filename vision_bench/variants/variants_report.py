"""What the reports show of the variants (--variants): one table per model (the same rows in
Markdown and HTML, as report blocks), the findings (fastest variant that passes parity, faster ones that fail it)
and the CSV's rows, one per model and variant."""

from __future__ import annotations

from ..common import ms
from ..records import ParityVerdict, VariantStatus
from ..reports.blocks import Block, BulletList, Heading, Paragraph, Table

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


def task_text(worst: dict) -> str:
    """The task-level figures of the worst image, in a few words."""
    parts = []
    if worst.get("depth_p99_relative_error") is not None:
        parts.append(
            f"depth rel. error mean {worst['depth_mean_relative_error']:.3g}, "
            f"p99 {worst['depth_p99_relative_error']:.3g}"
        )
    if worst.get("min_mean_iou") is not None:
        parts.append(f"box IoU {worst['min_mean_iou']:.3f}")
    if worst.get("unmatched"):
        parts.append(f"{worst['unmatched']} unmatched")
    if worst.get("max_keypoint_displacement_px") is not None:
        parts.append(f"keypoints {worst['max_keypoint_displacement_px']:.2f} px")
    if worst.get("min_mask_iou") is not None:
        parts.append(f"mask IoU {worst['min_mask_iou']:.3f}")
    return "; ".join(parts) or "nothing to match"


def variant_rows(r: dict) -> list[list[str]]:
    rows = []
    for v in r.get("variants") or []:
        if v.get("status") != VariantStatus.COMPLETE:
            rows.append([v["variant"], v.get("status"), "", "", "", "", "", "", "", v.get("reason") or ""])
            continue
        mem = v.get("memory") or {}
        parity = v.get("parity") or {}
        worst = parity.get("worst") or {}
        error = (
            "reference"
            if v.get("reference")
            else f"{number(worst.get('normalised_error'), '.3g')} ({worst.get('worst_part') or 'n/a'})"
        )
        verdict = "reference" if v.get("reference") else parity.get("verdict", "n/a")
        if parity.get("reasons"):
            verdict += ": " + "; ".join(parity["reasons"][:2])
        rows.append(
            [
                v["variant"],
                v["status"],
                ms((v.get("latency_forward") or {}).get("median")),
                ms((v.get("latency_end_to_end") or {}).get("median")),
                number(v.get("speedup_forward"), ".2f") + "x",
                number(mem["peak_bytes"] / 1024**2 if mem.get("peak_bytes") else None, ".0f"),
                ms((v.get("cold_start") or {}).get("total_s")),
                error,
                "" if v.get("reference") else task_text(worst),
                verdict,
            ]
        )
    return rows


def variant_notes(r: dict) -> list[str]:
    """How each variant ran: autocast dtype, export file and provider, compile time in the cold start."""
    notes = []
    for v in r.get("variants") or []:
        d = v.get("details") or {}
        if "provider" in d:
            export = (
                f"exported in {d['export_seconds']:.1f} s"
                if d.get("export_seconds") is not None
                else "export reused from the cache"
            )
            files = ", ".join(f"`{f}`" for f in d.get("files") or [])
            notes.append(f"onnxruntime: {export} ({files}), provider {d['provider']}")
        if v["variant"] == "torch-compile" and v.get("cold_start"):
            notes.append(
                f"torch-compile: compiling happens in the cold start "
                f"({ms(v['cold_start']['total_s'])} ms, against the reference's "
                f"{ms(r['cold_start'].total_s if r.get('cold_start') else None)} ms)"
            )
        if d.get("autocast_dtype"):
            notes.append(
                f"{v['variant']}: torch.autocast to {d['autocast_dtype']} around the network; weights stay float32"
            )
    return notes


def variants_section(r: dict) -> list[Block]:
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


def variant_findings(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        done = [
            v for v in r.get("variants") or [] if v.get("status") == VariantStatus.COMPLETE and not v.get("reference")
        ]
        if not done:
            continue
        passing = [
            v for v in done if (v.get("parity") or {}).get("verdict") == ParityVerdict.PASS and v.get("speedup_forward")
        ]
        best = max(passing, key=lambda v: v["speedup_forward"], default=None)
        if best is not None and best["speedup_forward"] > 1:
            lines.append(
                f"Fastest variant that passes parity: {r['model']} {best['variant']}, "
                f"{best['speedup_forward']:.2f}x the torch-fp32 forward."
            )
        else:
            lines.append(f"No variant of {r['model']} both passes parity and beats torch-fp32's forward.")
        for v in done:
            if (v.get("parity") or {}).get("verdict") == ParityVerdict.FAIL and (v.get("speedup_forward") or 0) > 1:
                lines.append(
                    f"Faster but fails parity: {r['model']} {v['variant']}, {v['speedup_forward']:.2f}x, "
                    + "; ".join(v["parity"]["reasons"][:2])
                    + "."
                )
    return lines


def variant_csv_rows(r: dict, base_row: dict) -> list[dict]:
    """One CSV row per non-reference variant, in the columns of the model's own row."""
    rows = []
    for v in r.get("variants") or []:
        if v.get("reference"):
            continue
        e2e, mem = v.get("latency_end_to_end") or {}, v.get("memory") or {}
        worst = (v.get("parity") or {}).get("worst") or {}
        row = dict.fromkeys(base_row)
        row.update(
            model=r["model"],
            cli_name=r["cli_name"],
            status=v.get("status"),
            weights=r.get("weights"),
            variant=v["variant"],
            cold_start_s=(v.get("cold_start") or {}).get("total_s"),
            e2e_median_s=e2e.get("median"),
            e2e_ci95_low_s=e2e.get("ci95_low"),
            e2e_ci95_high_s=e2e.get("ci95_high"),
            e2e_p90_s=e2e.get("p90"),
            e2e_mean_s=e2e.get("mean"),
            e2e_std_s=e2e.get("std"),
            e2e_cov=e2e.get("cov"),
            forward_median_s=(v.get("latency_forward") or {}).get("median"),
            fps=v.get("fps"),
            peak_memory_mb=mem["peak_bytes"] / 1024**2 if mem.get("peak_bytes") else None,
            peak_over_baseline_mb=mem["peak_over_baseline_bytes"] / 1024**2 if mem.get("peak_bytes") else None,
            peak_memory_kind=mem.get("peak_kind"),
            parameters=r.get("parameters"),
            input_shape=base_row.get("input_shape"),
            warm_runs=e2e.get("n"),
            speedup_forward=v.get("speedup_forward"),
            parity_verdict=(v.get("parity") or {}).get("verdict"),
            parity_normalised_error=worst.get("normalised_error"),
            parity_worst_part=worst.get("worst_part"),
            variant_reason=v.get("reason"),
        )
        rows.append(row)
    return rows
