"""--history's reports: history_<run>.md and .html (the run report's blocks and page; one chart per
series, its points' commits on hover in the HTML) and history_<run>.json (the series and, under
`change_points`, each step naming the first run after it, for CI scripts); the terminal lines and
the gate's exit code (as --compare's)."""

from __future__ import annotations

import re
from pathlib import Path

from ..common import EXIT_FAILED, EXIT_OK, atomic_write_json, atomic_write_text, log
from ..document.blocks import Block, BulletList, Figure, Heading, Note, Paragraph, Section, Table
from ..records.history import ChangePoint, History, ModelHistory
from ..reports.compare import missing_error, unique_output
from ..reports.render_html import html_url, render_html
from ..reports.render_markdown import render_markdown
from ..settings import HistoryOptions
from .analysis import build_history, step_text
from .charts import series_svg

ORDER_WORDS = {"start": "start time", "label": "--label", "commit-date": "commit date of the working folder"}


def mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1024**2:.0f}"


def run_name(history: History, index: int) -> str:
    run = history.runs[index - 1]
    return f"{index}" + (f" ({run.label})" if run.label else "") + f" `{run.commit_text()}`"


def change_rows(history: History, changes: list[ChangePoint]) -> list[list]:
    return [
        [
            c.key,
            run_name(history, c.after),
            run_name(history, c.before),
            step_text(c),
            f"{c.level_before_s * 1000:.1f} -> {c.level_after_s * 1000:.1f}",
            f"{c.corrected_p:.2g}",
            "; ".join(c.commits) or "none recorded",
            "; ".join(c.library_change) or "",
        ]
        for c in changes
    ]


CHANGE_HEADERS = [
    "series",
    "first run after",
    "run before",
    "step [95% CI]",
    "level ms",
    "p (corrected)",
    "commits between",
    "library change",
]


def series_section(history: History, series: ModelHistory, chart: str) -> Section:
    """One series: its chart, its change points, and a row per run."""
    rows = []
    for p in series.points:
        median = "gap: " + p.status if p.median_s is None else f"{p.median_s * 1000:.1f}"
        interval = (
            f"[{p.ci95_low_s * 1000:.1f}, {p.ci95_high_s * 1000:.1f}]"
            if p.ci95_low_s is not None and p.ci95_high_s is not None
            else ""
        )
        rows.append(
            [
                run_name(history, p.run),
                median,
                interval,
                p.timed_runs,
                mb(p.peak_bytes),
                mb(p.own_share_bytes),
                "outlier" if p.outlier else "",
            ]
        )
    blocks: list[Block] = [Heading(2, series.key), Figure(chart, f"{series.key} over the runs")]
    if series.change_points:
        blocks.append(Table(CHANGE_HEADERS, change_rows(history, series.change_points[::-1])))
    else:
        blocks.append(Paragraph("No step found."))
    blocks.append(Table(["run", "median ms", "95% CI", "timed runs", "peak MB", "own share MB", "note"], rows))
    return Section(series.key, "series-" + re.sub(r"[^A-Za-z0-9]+", "-", series.key).strip("-"), blocks)


def history_blocks(history: History, charts: dict[str, str]) -> list[Block]:
    first, last = history.runs[0], history.runs[-1]
    blocks: list[Block] = [
        Heading(1, "Benchmark history"),
        Paragraph(
            f"{len(history.runs)} runs ordered by {ORDER_WORDS[history.order]}, from run 1 ({first.started}) "
            f"to run {last.index} ({last.started}); {len(history.series)} series (model and variant). A gap is a "
            "run where the model did not complete (never a zero)."
        ),
        Paragraph(f"Change points: {history.method}."),
        Heading(2, "Change points, newest first", anchor="change-points"),
    ]
    if history.change_points:
        blocks.append(Table(CHANGE_HEADERS, change_rows(history, history.change_points)))
    else:
        blocks.append(Paragraph("None found."))
    if history.library_changes:
        blocks += [
            Heading(3, "Library versions"),
            BulletList([f"run {c.run}: {c.text()}" for c in history.library_changes]),
        ]
    if history.gate is not None:
        gate = history.gate
        failing = gate.failed + ([] if gate.allowed_missing else gate.missing)
        verdict = f"**fails** ({'; '.join(failing)})" if failing else "passes"
        blocks.append(
            Note(
                f"`--fail-if-slower {gate.threshold_pct:g}`: each series' newest step fails the gate when its 95% "
                f"interval's lower bound is above {gate.threshold_pct:g}%; as in --compare, so does a series whose "
                "newest run holds throttled, shared or busy runs, or that completed in the run before the newest "
                f"and not in it (unless --allow-missing). The history {verdict}.",
                title="Gate:",
            )
        )
    blocks += [series_section(history, s, charts[s.key]) for s in history.series]
    runs = [
        [r.index, r.label or "", r.started or "", r.commit_text(), r.run_id or "", f"`{r.file}`"] for r in history.runs
    ]
    return blocks + [
        Heading(2, "Runs", anchor="runs"),
        Table(["run", "label", "started", "commit", "run id", "file"], runs),
    ]


def inline_charts(page: str, charts: dict[str, str], folder: Path) -> str:
    """The HTML page with each chart's picture replaced by the SVG itself, so that hovering a point
    shows its run and commits (a picture in an <img> shows no titles)."""
    for relative in charts.values():
        picture = re.compile(rf'<img src="{re.escape(html_url(relative))}" alt="[^"]*">')
        svg = (folder / relative).read_text(encoding="utf-8")
        page = picture.sub(svg.replace("\\", "\\\\"), page)
    return page


def write_history(history: History, results_dir: Path) -> list[Path]:
    """The charts, then the Markdown, HTML and JSON; returns the report files."""
    run_id, stem = unique_output(results_dir, "history")
    chart_dir = results_dir / f"history_{run_id}"
    chart_dir.mkdir(parents=True, exist_ok=True)
    charts = {}
    for i, series in enumerate(history.series):
        name = f"{i:02d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', series.key)}.svg"
        atomic_write_text(chart_dir / name, series_svg(series, history.runs, history.library_changes))
        charts[series.key] = f"{chart_dir.name}/{name}"
    blocks = history_blocks(history, charts)
    paths = [stem.with_suffix(".md"), stem.with_suffix(".html"), stem.with_suffix(".json")]
    atomic_write_text(paths[0], render_markdown(blocks) + "\n")
    atomic_write_text(paths[1], inline_charts(render_html(blocks, f"Benchmark history {run_id}"), charts, results_dir))
    atomic_write_json(paths[2], history)
    return paths


def history_results(paths: list[Path], options: HistoryOptions) -> int:
    """--history FILE|DIR ...: read, analyse, write, print; exit 1 when --fail-if-slower trips, else 0
    (2 for unreadable or invalid files, raised as UsageError before anything is written)."""
    history = build_history(paths, options.order, options.fail_if_slower, options.allow_missing)
    written = write_history(history, options.output_dir.expanduser() / "results")
    print(
        f"History: {len(history.runs)} runs, {len(history.series)} series, {len(history.change_points)} change point(s)"
    )
    for c in history.change_points:
        print(
            f"  {c.key}: step {step_text(c)} at run {c.after} (after run {c.before}); commits: {'; '.join(c.commits) or 'none recorded'}"
        )
    gate = history.gate
    for series in history.series:
        newest = series.points[-1]
        if newest.median_s is None and not (gate and any(line.startswith(f"{series.key}: ") for line in gate.missing)):
            log(
                "WARNING", f"{series.key}: no median in the newest run ({newest.status}): a gap, not judged by any step"
            )
    for target in written:
        print(f"History: {target}")
    return gate_exit(history)


def gate_exit(history: History) -> int:
    """The gate's lines and exit code, worded as --compare's: 1 when a series fails it, else 0."""
    gate = history.gate
    if gate is None:
        return EXIT_OK
    newest_run = history.runs[-1]
    for line in gate.missing:
        log(*missing_error(line, newest_run.run_id or newest_run.file, gate.allowed_missing))
    if gate.failed:
        log("ERROR", f"--fail-if-slower {gate.threshold_pct:g}: " + "; ".join(gate.failed))
    missing = gate.missing and not gate.allowed_missing
    if missing:
        log("ERROR", f"{len(gate.missing)} model(s) completed in the run before the newest and not in it: it fails")
    return EXIT_FAILED if gate.failed or missing else EXIT_OK
