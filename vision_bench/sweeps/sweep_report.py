"""What the reports show of the sweeps (--batch-sizes, --input-sizes): per model, the table of its
points (the same rows in Markdown and HTML), its summary line (best throughput, its batch, the knee,
the out-of-memory edge and the memory model's prediction), its charts, and the CSV's rows, one per
model and point."""

from __future__ import annotations

from pathlib import Path

from ..common import ms
from ..document.blocks import Block, BulletList, Figure, Heading, Paragraph, Table
from ..document.charts import plot_style
from ..document.tables import e2e_csv_values
from ..records import ModelStatus
from ..records.measurement import LatencyStats
from ..records.model_result import ModelResult
from ..records.sweep import BATCH, INPUT_SIZE, BatchAnalysis, LineFit, SweepRecord, Throughput

SWEEP_HEADERS = [
    "point",
    "status",
    "input shape",
    "ms a batch [95% CI]",
    "ms an image",
    "images/s [95% CI]",
    "peak memory MB",
    "point's growth MB",
    "GFLOPs an image",
    "note",
]
CHART_SUFFIXES = (
    ("throughput", "throughput against batch, knee marked"),
    ("latency", "latency per image against batch"),
    ("memory", "memory against batch, fitted line and limit"),
    ("pixels", "latency and memory against pixels, FLOPs on the second axis"),
)
MB = 2**20


def number(value, fmt: str, scale: float = 1.0) -> str:
    return "n/a" if value is None else format(value * scale, fmt)


def interval(low, high, fmt: str, scale: float = 1.0) -> str:
    return "" if low is None or high is None else f" [{format(low * scale, fmt)}, {format(high * scale, fmt)}]"


def sweep_rows(r: ModelResult) -> list[list[str]]:
    sweep: SweepRecord | None = r.sweep
    if sweep is None:
        return []
    rows = [
        [f"{d.replace('_', ' ')} sweep", "unsupported", "", "", "", "", "", "", "", reason]
        for d, reason in sweep.unsupported.items()
    ]
    for p in sweep.points:
        peak = number(p.peak_bytes, ".0f", 1 / MB)
        if not p.ok:
            rows.append([p.name, p.status, "", "", "", "", peak, "", "", p.reason or ""])
            continue
        lat, thr = p.latency_end_to_end or LatencyStats(), p.throughput or Throughput()
        rows.append(
            [
                p.name,
                "ok",
                "x".join(map(str, p.input_shape or [])) or "n/a",
                ms(lat.median) + interval(lat.ci95_low, lat.ci95_high, ".1f", 1000),
                ms((lat.median or 0.0) / p.batch),
                number(thr.median, ".2f") + interval(thr.ci95_low, thr.ci95_high, ".2f"),
                peak,
                number(p.memory.cpu_peak_growth_bytes if p.memory else None, ".0f", 1 / MB),
                number(p.flops_per_image, ".2f", 1e-9),
                "",
            ]
        )
    return rows


def batch_summary(sweep: SweepRecord, a: BatchAnalysis) -> list[str]:
    """The batch sweep's parts of the summary line: best, knee, edge, prediction."""
    knee, edge = a.knee, a.edge
    parts = [f"best {a.best.throughput:.2f} images/s at batch {a.best.batch}"]
    parts.append(
        f"knee (smallest batch at {knee.share_of_best:.0%} of the best) batch {knee.batch}, "
        f"{knee.throughput:.2f} images/s"
        + (f", {knee.speedup_over_batch_1:.2f}x batch 1" if knee.speedup_over_batch_1 else "")
    )
    if edge.first_oom is not None:
        parts.append(
            f"out-of-memory edge: batch {edge.last_good} ran, {edge.first_oom} did not"
            + ("" if edge.one_step else " (not bisected to one step)")
        )
    else:
        parts.append("no out-of-memory edge within the batches swept")
    if a.predicted_max_batch is not None and sweep.limit is not None:
        parts.append(
            f"memory model predicts batch {a.predicted_max_batch} fits under "
            f"{sweep.limit.bytes / 2**30:.2f} GB ({sweep.limit.kind})"
            + (
                f", {a.prediction_minus_edge:+d} against the measured edge"
                if a.prediction_minus_edge is not None
                else ""
            )
        )
    return parts


def summary_line(r: ModelResult) -> str | None:
    """One line per model: best throughput and its batch, the knee, the edge, the prediction."""
    sweep: SweepRecord | None = r.sweep
    if not sweep:
        return None
    parts = []
    if sweep.batch_analysis:
        parts += batch_summary(sweep, sweep.batch_analysis)
    elif BATCH in sweep.unsupported:
        parts.append("batch: unsupported")
    s = sweep.input_size_analysis
    if s and s.edge.first_oom is not None:
        parts.append(f"input size {s.edge.first_oom} out of memory")
    if INPUT_SIZE in sweep.unsupported:
        parts.append("input size: unsupported")
    return f"{r.model}: " + "; ".join(parts) + "." if parts else None


def fit_text(fit: LineFit | None, per: str, scale: float, unit: str) -> str:
    if not fit:
        return "too few points for a fit"
    return (
        f"{fit.a / MB:.0f} MB + {fit.b * scale:.3g} {unit} x {per} (largest residual "
        f"{fit.max_residual / MB:.1f} MB over {fit.points} points)"
    )


def sweep_notes(r: ModelResult) -> list[str]:
    """The sentences under a model's sweep table."""
    sweep = r.sweep
    assert sweep is not None  # sweep_section calls it for a model with a sweep
    notes = [
        "Each point: the first image repeated to the batch, one first run, then warm-up and timed runs of the "
        "whole batch (end to end: preprocess, forward, postprocess); images/s = batch / the median, its interval "
        "from the median's. Peak memory: "
        + (
            "the CUDA allocator's peak"
            if sweep.limit and "CUDA" in sweep.limit.kind
            else "the worker's resident peak over the point"
        )
        + "; FLOPs per image counted at batch 1 of the point's size."
    ]
    a = sweep.batch_analysis
    if a and a.memory_fit:
        notes.append("Memory against batch: " + fit_text(a.memory_fit, "batch", 1 / MB, "MB"))
    s = sweep.input_size_analysis
    if s and s.memory_fit:
        notes.append("Memory against pixels: " + fit_text(s.memory_fit, "pixels", 1, "bytes"))
    if sweep.worker_deaths:
        notes.append(
            "Worker killed at: "
            + "; ".join(f"{d.dimension} {d.value} ({d.message})" for d in sweep.worker_deaths)
            + ". Each such point is the edge; a fresh worker went on with the sweep."
        )
    if sweep.budget_reached:
        notes.append(f"The sweep budget ({sweep.budget_s:g} s) ran out; points not started are marked skipped.")
    if sweep.error:
        notes.append(f"The sweep stopped: {sweep.error}")
    return notes


def chart_path(assets: Path, r: ModelResult, suffix: str) -> Path:
    return assets / f"{r.model}_sweep_{suffix}.png"


def sweep_charts(r: ModelResult, assets: Path) -> list[tuple[str, str]]:
    """The model's sweep charts (file name, alt text), drawn once when missing: a finished model's
    points never change."""
    sweep: SweepRecord | None = r.sweep
    if not sweep or r.phase == "sweep" and r.status == ModelStatus.RUNNING:
        return []
    out = []
    for suffix, alt in CHART_SUFFIXES:
        path = chart_path(assets, r, suffix)
        if path.exists() or DRAW[suffix](r, sweep, path):
            out.append((path.name, f"{r.model}: {alt}"))
    return out


def mark_edge(ax, sweep: SweepRecord) -> None:
    """The out-of-memory edge: a line at the smallest batch that did not run."""
    oom = [p.value for p in sweep.oom_points(BATCH)]
    if oom:
        ax.axvline(min(oom), color="tab:red", ls="--", lw=1, label=f"out of memory from batch {min(oom)}")


def finish(fig, ax, path: Path, title: str, xlabel: str, ylabel: str, plt) -> bool:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def batch_figure(sweep: SweepRecord, fewest: int = 2):
    """(plt, fig, ax, the batch points, their batches) for a chart against batch; None with too few points."""
    points = sweep.ok_points(BATCH)
    if len(points) < fewest:
        return None
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    return plt, fig, ax, points, [p.value for p in points]


def draw_throughput(r: ModelResult, sweep: SweepRecord, path: Path) -> bool:
    if (figure := batch_figure(sweep)) is None or sweep.batch_analysis is None:
        return False
    plt, fig, ax, points, x = figure
    thr = [p.throughput or Throughput() for p in points]
    y = [t.median or 0.0 for t in thr]
    low = [m - (t.ci95_low or m) for t, m in zip(thr, y)]
    high = [(t.ci95_high or m) - m for t, m in zip(thr, y)]
    ax.errorbar(x, y, yerr=[low, high], fmt="o-", color="black", capsize=3, label="images/s (95% interval)")
    knee = sweep.batch_analysis.knee
    ax.axhline(
        knee.share_of_best * sweep.batch_analysis.best.throughput,
        color="gray",
        ls=":",
        lw=1,
        label=f"{knee.share_of_best:.0%} of the best",
    )
    ax.plot([knee.batch], [knee.throughput], "*", ms=14, color="tab:red", label=f"knee: batch {knee.batch}")
    mark_edge(ax, sweep)
    ax.set_xscale("log", base=2)
    return finish(fig, ax, path, f"{r.model}: throughput against batch", "batch size (log 2)", "images per second", plt)


def draw_latency(r: ModelResult, sweep: SweepRecord, path: Path) -> bool:
    if (figure := batch_figure(sweep)) is None:
        return False
    plt, fig, ax, points, x = figure
    ax.plot(
        x, [(p.median_s or 0.0) / p.value * 1000 for p in points], "o-", color="black", label="end to end, per image"
    )
    ax.plot(
        x,
        [(p.forward_median_s or 0.0) / p.value * 1000 for p in points],
        "s--",
        color="gray",
        mfc="white",
        label="forward, per image",
    )
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    return finish(
        fig,
        ax,
        path,
        f"{r.model}: latency per image against batch (medians)",
        "batch size (log 2)",
        "ms per image",
        plt,
    )


def draw_memory(r: ModelResult, sweep: SweepRecord, path: Path) -> bool:
    if (figure := batch_figure(sweep, fewest=1)) is None:
        return False
    plt, fig, ax, points, x = figure
    peaks = [(p.peak_bytes or 0) / MB for p in points]
    ax.plot(x, peaks, "o", color="black", label="peak, measured")
    a = sweep.batch_analysis
    fit, limit = a.memory_fit if a else None, sweep.limit
    top = max(x + [p.value for p in sweep.oom_points(BATCH)])
    shows_limit = limit is not None and limit.bytes / MB <= 2.5 * max(peaks)
    if fit:
        end = max(top, (a.predicted_max_batch if a else None) or 0) if shows_limit else top
        ax.plot(
            [0, end + 1],
            [fit.a / MB, (fit.a + fit.b * (end + 1)) / MB],
            color="gray",
            lw=1,
            label=f"fit {fit.a / MB:.0f} MB + {fit.b / MB:.1f} MB x batch",
        )
    if limit is not None and shows_limit:
        ax.axhline(limit.bytes / MB, color="tab:red", lw=1, label=f"limit {limit.bytes / MB:.0f} MB ({limit.kind})")
        if a and fit and a.predicted_max_batch is not None:
            predicted = a.predicted_max_batch
            ax.plot(
                [predicted],
                [(fit.a + fit.b * predicted) / MB],
                "D",
                color="tab:blue",
                ms=7,
                zorder=3,
                label=f"predicted largest batch {predicted} (on the fit)",
            )
    elif limit is not None:
        ax.text(
            0.02,
            0.96,
            f"limit {limit.bytes / 2**30:.1f} GB ({limit.kind}): off the chart",
            fontsize=8,
            transform=ax.transAxes,
            va="top",
        )
    mark_edge(ax, sweep)
    return finish(fig, ax, path, f"{r.model}: memory against batch", "batch size", "peak memory (MB)", plt)


def draw_pixels(r: ModelResult, sweep: SweepRecord, path: Path) -> bool:
    points = sorted((p for p in sweep.ok_points(INPUT_SIZE) if p.pixels), key=lambda p: p.pixels or 0)
    if len(points) < 2:
        return False
    plt = plot_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    mp = [(p.pixels or 0) / 1e6 for p in points]
    series = (
        (axes[0], [(p.median_s or 0.0) * 1000 for p in points], "latency, median (ms)"),
        (axes[1], [(p.peak_bytes or 0) / MB for p in points], "peak memory (MB)"),
    )
    for ax, values, label in series:
        ax.plot(mp, values, "o-", color="black", label=label)
        for p, x in zip(points, mp):
            ax.annotate(
                str(p.value), (x, values[points.index(p)]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        flops = ax.twinx()
        flops.plot(
            mp,
            [(p.flops_per_image or 0) / 1e9 for p in points],
            "s--",
            color="gray",
            mfc="white",
            label="GFLOPs an image",
        )
        flops.set_ylabel("GFLOPs an image", color="gray")
        flops.grid(False)
        ax.set_xlabel("pixels the network received (millions); labels: input size")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        flops.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()
        extra = flops.get_legend_handles_labels()
        ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="lower right", fontsize=8)
    fig.suptitle(f"{r.model}: cost against input size (batch 1)", fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


DRAW = {"throughput": draw_throughput, "latency": draw_latency, "memory": draw_memory, "pixels": draw_pixels}
SWEEP_CSV_COLUMNS = [
    "sweep_dimension",
    "batch_size",
    "sweep_input_size",
    "throughput_ips",
    "throughput_ci95_low",
    "throughput_ci95_high",
    "sweep_reason",
]


def sweep_csv_rows(r: ModelResult, base_row: dict) -> list[dict]:
    """One CSV row per sweep point, in the columns of the model's own row (times per batch)."""
    sweep: SweepRecord | None = r.sweep
    rows = []
    for p in sweep.points if sweep else []:
        lat, thr = p.latency_end_to_end or LatencyStats(), p.throughput or Throughput()
        row = dict.fromkeys(base_row)
        row.update(
            model=r.model,
            cli_name=r.cli_name,
            status=p.status,
            weights=r.weights,
            sweep_dimension=p.dimension,
            batch_size=p.batch,
            sweep_input_size=p.input_size,
            **e2e_csv_values(lat),
            forward_median_s=p.forward_median_s,
            warm_runs=lat.n if p.latency_end_to_end else None,
            throughput_ips=thr.median,
            throughput_ci95_low=thr.ci95_low,
            throughput_ci95_high=thr.ci95_high,
            peak_memory_mb=p.peak_bytes / MB if p.peak_bytes else None,
            peak_memory_kind=r.memory.peak_kind if r.memory else None,
            parameters=r.parameters,
            gflops=p.flops_per_image / 1e9 if p.flops_per_image is not None else None,
            input_shape="x".join(map(str, p.input_shape)) if p.input_shape else None,
            sweep_reason=p.reason,
        )
        rows.append(row)
    return rows


def sweep_section(r: ModelResult, assets: Path) -> list[Block]:
    """The model's sweep: its summary line, the table of its points, the notes and the charts."""
    line = summary_line(r)
    blocks: list[Block] = [Heading(3, "How cost grows")]
    if line:
        blocks.append(Paragraph(line))
    blocks += [Table(SWEEP_HEADERS, sweep_rows(r)), BulletList(sweep_notes(r))]
    return blocks + [Figure(f"{assets.name}/{name}", alt) for name, alt in sweep_charts(r, assets)]
