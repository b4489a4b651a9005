"""A model's section of the report, as blocks: what it ran on, its per-image timings, its output,
then each capability's part (variants, divergence, sweeps, time breakdown, profiler trace, the
dissection and, on the page, its layer explorer)."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from ..common import format_bytes, ms
from ..divergence.divergence_report import divergence_section, explorer_overlay
from ..document.blocks import (
    Block,
    BulletList,
    Columns,
    Explorer,
    Figure,
    Fold,
    Heading,
    Note,
    Paragraph,
    Section,
    Table,
)
from ..document.charts import activation_profile_chart
from ..inspect.trace_report import trace_blocks
from ..measure.sampling_report import sampling_items
from ..phases import phase_label
from ..records.inspection import DissectionSummary, LayerRecord, TimeBreakdownRecord, layer_records
from ..records.measurement import LatencyStats, PhaseMedians, RunKind
from ..records.model_result import ModelResult
from ..sweeps.sweep_report import sweep_section
from ..variants.variants_report import variants_section


def model_blocks(r: ModelResult, position: int, ctx) -> Section:
    """The model's section: its facts in view, then each long part folded on the page (per image,
    output, the capabilities' parts)."""
    parts: list[Block] = per_image_blocks(r) + output_blocks(r)
    if r.variants:
        parts += variants_section(r)
    if r.divergence:
        parts += divergence_section(r, ctx.assets_dir)
    if r.sweep:
        parts += sweep_section(r, ctx.assets_dir)
    parts += time_breakdown_blocks(r) + trace_blocks(r) + dissection_blocks(r, ctx)
    headline: list[Block] = [Heading(2, r.model or "?"), BulletList(fact_items(r) + sampling_items(r))]
    return Section(r.model or "?", f"model-{position}", headline + folded(parts))


def folded(blocks: list[Block]) -> list[Block]:
    """Each level-3 heading and the blocks up to the next one as a Fold; blocks before the first stay."""
    out: list[Block] = []
    fold: Fold | None = None
    for block in blocks:
        if isinstance(block, Heading) and block.level == 3:
            fold = Fold(block.text, [])
            out.append(fold)
        elif fold is not None:
            fold.blocks.append(block)
        else:
            out.append(block)
    return out


def fact_items(r: ModelResult) -> list[str]:
    """Status, weights, input, settings, runs, medians, phases, worker."""
    items = [
        f"Status: {r.status}; weights: {r.weights_source or r.weights}",
        f"Input the network received: {r.input_shape} (nominal size {r.nominal_input_size}), "
        f"computed in {r.dtype or 'n/a'}",
    ]
    if r.memory and r.memory.cuda_context_bytes is not None:
        items.append(f"CUDA context (apart from the model): {format_bytes(r.memory.cuda_context_bytes)}")
    if r.config:
        items.append("Settings: " + ", ".join(f"{k}={v}" for k, v in r.config.items()))
    kinds = [run.run_kind for run in r.runs or []]
    if kinds:
        items.append(
            f"Runs: {kinds.count(RunKind.COLD)} cold start, {kinds.count(RunKind.WARMUP)} warm-up (not in the "
            f"statistics), {kinds.count(RunKind.TIMED)} timed"
        )
    phases = r.latency_phases_median or PhaseMedians()
    if phases.forward is not None:
        items.append(
            f"Timed medians: preprocess {ms(phases.preprocess)} ms, forward {ms(phases.forward)} ms "
            f"{(r.latency_forward or LatencyStats()).interval_text()}, postprocess {ms(phases.postprocess)} "
            f"ms; cold start {ms(r.cold_start.total_s if r.cold_start else None)} ms"
        )
    if r.phase_seconds:
        items.append(
            "Wall time by phase: "
            + ", ".join(f"{phase_label(k)} {v:.1f} s" for k, v in r.phase_seconds.items() if v is not None)
        )
    if r.worker:
        items.append("Worker process: " + r.worker.describe())
    return items


def per_image_blocks(r: ModelResult) -> list[Block]:
    per_image = r.latency_per_image or {}
    if not per_image:
        return []
    headers = [
        "image",
        "size",
        "cold start ms",
        "warm-up ms",
        "timed median ms [95% CI]",
        "p90 ms",
        "CoV",
        "timed runs",
    ]
    rows = []
    for name, img in per_image.items():
        steady = img.steady
        rows.append(
            [
                f"`{name}`",
                "x".join(map(str, img.image_size or [])),
                ms(img.first_run_s) if img.first_is_cold_start else "",
                ", ".join(ms(s) for s in img.warmup_s) or "none",
                f"{ms(steady.median)} {steady.interval_text()}",
                ms(steady.p90),
                f"{steady.cov * 100:.1f}%" if steady.cov is not None else "n/a",
                steady.n,
            ]
        )
    return [Heading(3, "Per image"), Table(headers, rows)]


def output_blocks(r: ModelResult) -> list[Block]:
    if not r.output_image:
        return []
    summary = r.prediction_summary or {}
    blocks: list[Block] = [
        Heading(3, "What it produced (first image)"),
        Figure(r.output_image, f"{r.model} output", kind="output"),
    ]
    if summary:
        blocks.append(
            BulletList([", ".join(f"{k}: {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in summary.items())])
        )
    if r.weights == "random":
        blocks.append(Note("(Random weights: this output shows the pipeline works, not what the model can do.)"))
    return blocks


def time_breakdown_blocks(r: ModelResult) -> list[Block]:
    tb: TimeBreakdownRecord | None = r.time_breakdown
    if not tb:
        return []
    blocks = Table(["block", "ms", "share"], [[b.block, f"{b.ms:.1f}", f"{b.share * 100:.1f}%"] for b in tb.blocks])
    leaves = Table(
        ["module", "type", "calls", "ms", "share"],
        [[f"`{t.name}`", t.type, t.calls, f"{t.ms:.1f}", f"{t.share * 100:.1f}%"] for t in tb.top_leaves],
        caption="Ten most expensive leaf modules:",
    )
    return [
        Heading(3, "Where the time goes"),
        Paragraph(
            f"One profiled pass (not a timed run), forward {tb.forward_ms:.1f} ms with timing hooks on every module."
        ),
        Columns([[blocks], [leaves]]),
    ]


def dissection_blocks(r: ModelResult, ctx) -> list[Block]:
    d: DissectionSummary | None = r.dissection
    if not d:
        return []
    link = os.path.relpath(d.folder, ctx.results_dir) if d.folder else ""
    blocks: list[Block] = [
        Heading(3, "Inside the model"),
        Paragraph(
            f"{d.records} records (every call of {d.leaf_modules} leaf modules) "
            f"in one pass of {d.seconds:.1f} s; {d.png_files} PNG and {d.npy_files} NPY files in "
            f"[`{link}`]({link}/). NaN in {d.nan_records} records, Inf in {d.inf_records}."
        ),
        Paragraph("Layer types: " + ", ".join(f"{t} {n}" for t, n in d.type_counts.items())),
    ]
    chart = ctx.assets_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', r.model)}_activations.png"  # a name is no path
    # A finished model's chart never changes: drawn once, where the report's pictures go.
    if chart.exists() or (chart.parent.is_dir() and activation_profile_chart(r, chart)):
        blocks.append(Figure(f"{ctx.assets_dir.name}/{chart.name}", f"{r.model} activation profile"))
    if r.weights == "random":
        blocks.append(
            Note("(Random weights: the activation statistics below describe the initialisation, not a trained model.)")
        )
    return blocks + [activation_tables(d), explorer_block(r, d, link)]


def activation_tables(d: DissectionSummary) -> Columns:
    widest = Table(
        ["record", "module", "call", "type", "min", "max"],
        [
            [w.index, f"`{w.name}`", w.call, w.type, f"{w.range[0]:.4g}", f"{w.range[1]:.4g}"]
            for w in d.widest_range
            if w.range
        ],
        caption="Widest activation range:",
    )
    zeros = Table(
        ["record", "module", "call", "type", "zeros"],
        [[z.index, f"`{z.name}`", z.call, z.type, f"{(z.zero_fraction or 0) * 100:.1f}%"] for z in d.most_zeros],
        caption="Highest fraction of exact zeros:",
    )
    return Columns([[widest], [zeros]])


def explorer_records(dissection: DissectionSummary) -> tuple[list[LayerRecord], list[dict], str | None]:
    """Every record of the model's layers_metadata.json (the result JSON keeps only a digest), in
    execution order, and each as the page's explorer reads it; or why they are missing."""
    if not dissection.folder:
        return [], [], "no dissection folder recorded"
    path = Path(dissection.folder) / "layers_metadata.json"
    try:
        return (*read_explorer_records(str(path), path.stat().st_mtime_ns), None)
    except (OSError, ValueError) as exc:  # RecordError is a ValueError
        return [], [], f"layer records not readable ({type(exc).__name__}: {path})"


@functools.lru_cache(maxsize=16)
def read_explorer_records(path: str, mtime_ns: int) -> tuple[list[LayerRecord], list[dict]]:
    """A layers_metadata.json read once for all the report writes of a run (the report is written again
    after every model; a finished model's file does not change, and `mtime_ns` tells when it did)."""
    records = layer_records(json.loads(Path(path).read_text(encoding="utf-8")))
    return records, [rec.explorer_json() for rec in records]


def explorer_block(r: ModelResult, d: DissectionSummary, link: str) -> Explorer:
    records, explorer_json, problem = explorer_records(d)
    base = (Path(link).as_posix() + "/") if link else ""
    overlay = explorer_overlay(r, records) if records else []
    return Explorer(r.model or "?", base, explorer_json, overlay, problem)
