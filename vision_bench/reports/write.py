"""Writing a run's reports: the results JSON, the CSV (one row a model), the Markdown and the
HTML, after every model and once at the end."""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from pathlib import Path

from ..common import atomic_write_json, atomic_write_text
from ..document.tables import e2e_csv_values
from ..measure.stats import CI_METHOD
from ..records.codec import known
from ..records.measurement import LatencyStats, MemoryFigures, RunKind
from ..records.model_result import ModelResult
from ..records.run_config import RunConfig, SystemInfo, with_undeclared
from ..records.run_document import RunDocument, SlotSpan, read_document
from ..records.statuses import RunStatus
from ..sweeps.sweep_report import SWEEP_CSV_COLUMNS, sweep_csv_rows
from ..variants.variants_report import variant_csv_rows
from .html import report_title
from .render_html import render_html
from .render_markdown import render_markdown
from .report_model import build_report, draw_summary_charts
from .results_file import RESULTS_SCHEMA, phase_totals, report_paths

# One row a model: these columns, then one a model option (ModelOption: the run's config.model_options,
# each holding the value the model used), then the variant and sweep columns (csv_columns).
CSV_MODEL_COLUMNS = [
    "model",
    "cli_name",
    "status",
    "weights",
    "load_s",
    "cold_start_s",
    "e2e_median_s",
    "e2e_ci95_low_s",
    "e2e_ci95_high_s",
    "e2e_p90_s",
    "e2e_mean_s",
    "e2e_std_s",
    "e2e_cov",
    "forward_median_s",
    "fps",
    "peak_memory_mb",
    "peak_over_baseline_mb",
    "peak_memory_kind",
    "parameters",
    "gflops",
    "input_shape",
    "layers_dissected",
    "warm_runs",
    "warmup_runs",
    # the machine the model ran on (a merged or --devices model's own, else the run's)
    "gpu",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "cpu_features",
]
CSV_MORE_COLUMNS = [
    # --variants: the model's own row is torch-fp32; one more row per other variant
    "variant",
    "speedup_forward",
    "parity_verdict",
    "parity_normalised_error",
    "parity_worst_part",
    "variant_reason",
    # --batch-sizes / --input-sizes: one more row per sweep point (times per batch, GFLOPs per image)
    *SWEEP_CSV_COLUMNS,
]


def csv_columns(option_names) -> list[str]:
    """The CSV's columns for a run whose models declare these options."""
    return CSV_MODEL_COLUMNS + list(option_names) + CSV_MORE_COLUMNS


def csv_row(r: ModelResult, option_names, system: SystemInfo) -> dict:
    e2e = r.latency_end_to_end or LatencyStats()
    mem = r.memory or MemoryFigures()
    machine = r.system or system
    return {
        "model": r.model,
        "cli_name": r.cli_name,
        "status": r.status,
        "weights": r.weights,
        "load_s": r.load_seconds,
        "cold_start_s": r.cold_start.total_s if r.cold_start else None,
        **e2e_csv_values(e2e),
        "forward_median_s": (r.latency_forward or LatencyStats()).median,
        "fps": r.fps,
        "peak_memory_mb": mem.peak_bytes / 1024**2 if mem.peak_bytes else None,
        "peak_over_baseline_mb": mem.peak_over_baseline_bytes / 1024**2
        if mem.peak_bytes and mem.peak_over_baseline_bytes is not None
        else None,
        "peak_memory_kind": mem.peak_kind,
        "parameters": r.parameters,
        "gflops": r.gflops,
        "input_shape": "x".join(map(str, r.input_shape)) if r.input_shape else None,
        "layers_dissected": r.dissection.records if r.dissection else None,
        "warm_runs": e2e.n if r.latency_end_to_end else None,
        "warmup_runs": sum(1 for run in r.runs if run.kind == RunKind.WARMUP),
        "gpu": machine.value("gpu"),
        "cpu_model": machine.value("cpu_model") or machine.value("cpu"),
        "cpu_cores": machine.value("cpu_cores"),
        "cpu_threads": machine.value("cpu_threads"),
        "cpu_features": " ".join(machine.value("cpu_features") or []) or None,
        **{name: (r.config or {}).get(name) for name in option_names},
        "variant": "torch-fp32" if r.variants else None,
    }


def write_reports(ctx) -> dict:
    """The reports of the run so far. When it has ended, the summary charts are drawn first, so
    that the wall time written runs to the end of all the work but the text files' own writing."""
    if ctx.status != RunStatus.RUNNING:
        draw_summary_charts(RunDocument(models=ctx.results), ctx.assets_dir)
    finished = datetime.now()
    total_seconds = (finished - ctx.started).total_seconds()
    document = RunDocument(
        schema=RESULTS_SCHEMA,
        run_id=ctx.run_id,
        status=ctx.status,
        started=ctx.started.isoformat(timespec="seconds"),
        written=finished.isoformat(timespec="seconds"),
        total_seconds=total_seconds,
        command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        config=run_config(ctx),
        system=ctx.system,
        images=[str(p) for p in ctx.images],
        models=ctx.results,
        label=ctx.settings.label,
        source=ctx.source or None,
    )
    document.phase_totals = phase_totals(ctx.results, total_seconds, slots=slot_spans(ctx, finished))
    return write_report_files(document, ctx)


def run_config(ctx) -> RunConfig:
    """The results file's config: the run's settings as written (keys kept across versions)."""
    s = ctx.settings
    config = RunConfig(
        runs_per_image=None if s.precision else s.runs,
        warmup_rounds=s.warmup,
        isolation=s.isolation,
        model_timeout_s=s.model_timeout,
        precision_pct=s.precision,
        max_time_s=s.max_time if s.precision else None,
        processes=s.processes,
        discard_throttled=s.discard_throttled,
        latency_interval=CI_METHOD,
        seed=s.seed,
        weights=s.weights,
        device=str(ctx.device),
        torch_threads=s.threads,
        dissect_files=s.dissect,
        keep_going=s.keep_going,
        models=[c.CLI_NAME for c in s.models],
        variants=s.variants,
        shard=s.shard,
        trace=s.trace,
        trace_stacks=s.trace_stacks,
        batch_sizes=s.batch_sizes,
        input_sizes=s.input_sizes,
        sweep_budget_s=s.sweep_budget,
        memory_limit_bytes=s.memory_limit,
        image_source=ctx.image_source,
        viz_dir=str(ctx.viz_dir),
        model_options=dict(s.model_options),  # the options the models declare, as given (None: the default)
        devices=[str(d) for d in s.devices] if s.devices else None,
    )
    return with_undeclared(config, dict(s.model_options))  # each model option at the top level too, as always


def slot_spans(ctx, now: datetime) -> list[SlotSpan] | None:
    """--devices: each device slot's busy seconds, from its thread's start to its end (or now)."""
    spans = ctx.device_slots
    if not spans:
        return None
    at = lambda t: (t - ctx.started).total_seconds()
    return [
        SlotSpan(
            device=s.device,
            slot=s.slot,
            start=at(s.start),
            end=at(s.end or now),
            busy=((s.end or now) - s.start).total_seconds(),
        )
        for s in spans
        if s.start
    ]


def write_report_files(data: RunDocument | dict, ctx) -> dict:
    """The JSON, CSV and Markdown of `data` (a document, or one built by hand); ctx gives run_id,
    results_dir, viz_dir and assets_dir (a run's RunContext, or what --merge builds)."""
    data = read_document(data)
    paths = report_paths(ctx)
    atomic_write_json(paths["json"], data)

    buffer = io.StringIO()
    option_names = list(known(data.config.model_options) or {})
    columns = csv_columns(option_names)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in data.models:
        if r.status != "not run":
            row = dict.fromkeys(columns) | csv_row(r, option_names, data.system)
            for written in [row] + variant_csv_rows(r, row) + sweep_csv_rows(r, row):
                writer.writerow({k: ("" if v is None else v) for k, v in written.items()})
    atomic_write_text(paths["csv"], buffer.getvalue())

    blocks = build_report(data, ctx)  # built once, rendered twice
    atomic_write_text(paths["md"], render_markdown(blocks))
    atomic_write_text(paths["html"], render_html(blocks, report_title(data)))
    return paths
