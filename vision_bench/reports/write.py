"""Writing a run's reports: the results JSON, the CSV (one row a model), the Markdown and the
HTML, after every model and once at the end."""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from pathlib import Path

from ..common import atomic_write_json, atomic_write_text
from ..measure.stats import CI_METHOD
from ..sweeps.sweep_report import SWEEP_CSV_COLUMNS, sweep_csv_rows
from ..variants.variants_report import variant_csv_rows
from .html import html_report
from .markdown import markdown_report
from .report_model import draw_summary_charts
from .results_file import RESULTS_SCHEMA, phase_totals, report_paths

CSV_COLUMNS = [
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
    "sam_prompt",
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


def csv_row(r: dict) -> dict:
    e2e = r.get("latency_end_to_end") or {}
    mem = r.get("memory") or {}
    return {
        "model": r["model"],
        "cli_name": r["cli_name"],
        "status": r["status"],
        "weights": r["weights"],
        "load_s": r.get("load_seconds"),
        "cold_start_s": (r.get("cold_start") or {}).get("total_s"),
        "e2e_median_s": e2e.get("median"),
        "e2e_ci95_low_s": e2e.get("ci95_low"),
        "e2e_ci95_high_s": e2e.get("ci95_high"),
        "e2e_p90_s": e2e.get("p90"),
        "e2e_mean_s": e2e.get("mean"),
        "e2e_std_s": e2e.get("std"),
        "e2e_cov": e2e.get("cov"),
        "forward_median_s": (r.get("latency_forward") or {}).get("median"),
        "fps": r.get("fps"),
        "peak_memory_mb": mem["peak_bytes"] / 1024**2 if mem.get("peak_bytes") else None,
        "peak_over_baseline_mb": mem["peak_over_baseline_bytes"] / 1024**2 if mem.get("peak_bytes") else None,
        "peak_memory_kind": mem.get("peak_kind"),
        "parameters": r.get("parameters"),
        "gflops": r.get("gflops"),
        "input_shape": "x".join(map(str, r["input_shape"])) if r.get("input_shape") else None,
        "layers_dissected": (r.get("dissection") or {}).get("records"),
        "warm_runs": e2e.get("n"),
        "warmup_runs": sum(1 for run in r.get("runs", []) if run.get("kind") == "warmup"),
        "sam_prompt": (r.get("config") or {}).get("sam_prompt"),
        "variant": "torch-fp32" if r.get("variants") else None,
    }


def write_reports(ctx) -> dict:
    """The reports of the run so far. When it has ended, the summary charts are drawn first, so
    that the wall time written runs to the end of all the work but the text files' own writing."""
    if ctx.status != "running":
        draw_summary_charts({"models": ctx.results}, ctx.assets_dir)
    finished = datetime.now()
    data = {
        "schema": RESULTS_SCHEMA,
        "run_id": ctx.run_id,
        "status": ctx.status,
        "started": ctx.started.isoformat(timespec="seconds"),
        "written": finished.isoformat(timespec="seconds"),
        "total_seconds": (finished - ctx.started).total_seconds(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "config": {
            "runs_per_image": None if getattr(ctx.args, "precision", None) else ctx.args.runs,
            "warmup_rounds": ctx.args.warmup,
            "isolation": ctx.args.isolation,
            "model_timeout_s": ctx.args.model_timeout,
            "precision_pct": getattr(ctx.args, "precision", None),
            "max_time_s": getattr(ctx.args, "max_time", None) if getattr(ctx.args, "precision", None) else None,
            "processes": getattr(ctx.args, "processes", 1),
            "discard_throttled": getattr(ctx.args, "discard_throttled", False),
            "latency_interval": CI_METHOD,
            "seed": ctx.args.seed,
            "weights": ctx.args.weights,
            "device": str(ctx.device),
            "torch_threads": ctx.args.threads,
            "dissect_files": ctx.args.dissect,
            "sam_prompt": ctx.args.sam_prompt,
            "keep_going": ctx.args.keep_going,
            "models": [c.CLI_NAME for c in ctx.args.model_classes],
            "variants": getattr(ctx.args, "variants", None),
            "shard": getattr(ctx.args, "shard_record", None),
            "trace": getattr(ctx.args, "trace", False),
            "trace_stacks": getattr(ctx.args, "trace_stacks", False),
            "batch_sizes": getattr(ctx.args, "batch_sizes", None),
            "input_sizes": getattr(ctx.args, "input_sizes", None),
            "sweep_budget_s": getattr(ctx.args, "sweep_budget", None),
            "memory_limit_bytes": getattr(ctx.args, "memory_limit", None),
            "image_source": ctx.image_source,
            "viz_dir": str(ctx.viz_dir),
        },
        "system": ctx.system,
        "images": [str(p) for p in ctx.images],
        "models": ctx.results,
    }
    data["phase_totals"] = phase_totals(ctx.results, data["total_seconds"], slots=slot_spans(ctx, finished))
    if getattr(ctx.args, "devices", None):
        data["config"]["devices"] = [str(d) for d in ctx.args.devices]
    return write_report_files(data, ctx)


def slot_spans(ctx, now: datetime) -> list[dict] | None:
    """--devices: each device slot's busy seconds, from its thread's start to its end (or now)."""
    spans = getattr(ctx, "device_slots", None)
    if not spans:
        return None
    at = lambda t: (t - ctx.started).total_seconds()
    return [
        {
            "device": s["device"],
            "slot": s["slot"],
            "start": at(s["start"]),
            "end": at(s.get("end") or now),
            "busy": ((s.get("end") or now) - s["start"]).total_seconds(),
        }
        for s in spans
        if s.get("start")
    ]


def write_report_files(data: dict, ctx) -> dict:
    """The JSON, CSV and Markdown of `data`; ctx gives run_id, results_dir, viz_dir and assets_dir
    (a run's RunContext, or what --merge builds)."""
    paths = report_paths(ctx)
    atomic_write_json(paths["json"], data)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in data["models"]:
        if r["status"] != "not run":
            row = dict.fromkeys(CSV_COLUMNS) | csv_row(r)
            for written in [row] + variant_csv_rows(r, row) + sweep_csv_rows(r, row):
                writer.writerow({k: ("" if v is None else v) for k, v in written.items()})
    atomic_write_text(paths["csv"], buffer.getvalue())

    atomic_write_text(paths["md"], markdown_report(data, ctx))
    atomic_write_text(paths["html"], html_report(data, ctx))
    return paths
