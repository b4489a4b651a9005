"""The history built: each series' outliers and change points (with their sizes, the runs either
side, the commits and library changes between them), every change point newest first, and the gate
over each model's newest step."""

from __future__ import annotations

from pathlib import Path

from ..records.history import ChangePoint, GateResult, History, HistoryRun, LibraryChange, ModelHistory
from ..reports.compare import REFUSED, cannot_judge
from .change_points import METHOD, find_steps, outliers, step_sizes
from .series import commits_between, library_changes, model_series, read_history

HISTORY_SCHEMA = "unified-benchmark-history/1"


def analyse_series(series: ModelHistory, runs: list[HistoryRun], changes: list[LibraryChange]) -> None:
    """Marks the outliers and fills the change points of one series, in place."""
    present = [p for p in series.points if p.median_s is not None and p.median_s > 0]
    for point, flagged in zip(present, outliers([p.median_s for p in present])):  # type: ignore[misc]
        point.outlier = flagged
    kept = [p for p in present if not p.outlier]
    values: list[float] = [p.median_s for p in kept]  # type: ignore[misc]
    steps = find_steps(values)
    by_index = {run.index: run for run in runs}
    series.change_points = []
    for step, size in zip(steps, step_sizes(values, steps)):
        before, after = kept[step.index - 1].run, kept[step.index].run
        series.change_points.append(
            ChangePoint(
                key=series.key,
                before=before,
                after=after,
                shift_pct=size.shift_pct,
                low_pct=size.low_pct,
                high_pct=size.high_pct,
                p=step.p,
                corrected_p=step.corrected_p,
                level_before_s=size.level_before,
                level_after_s=size.level_after,
                commits=commits_between(by_index[before], by_index[after]),
                library_change=[c.text() for c in changes if before < c.run <= after],
            )
        )


def gate(history: History, threshold_pct: float, allow_missing: bool = False) -> GateResult:
    """Each model whose newest step is a slowdown larger than the threshold with 95% confidence (the
    lower bound of the step's interval above it) fails; a model without a step passes. As --compare's
    gate (its newest run the new side, the run before it the base): a model whose newest run's
    statistics hold throttled, shared or busy runs fails, as the gate cannot judge it; a model that
    completed in the run before the newest and not in the newest fails unless --allow-missing."""
    result = GateResult(threshold_pct=threshold_pct, allowed_missing=allow_missing)
    newest_run = history.runs[-1]
    for series in history.series:
        newest = series.change_points[-1] if series.change_points else None
        text = f"{series.key}: {step_text(newest)} from run {newest.after}" if newest else f"{series.key}: no step"
        if newest is not None and newest.low_pct is not None and newest.low_pct > threshold_pct:
            result.failed.append(text)
        elif series.points[-1].flagged:
            verdict = f"{REFUSED} (newest run {newest_run.index})"
            result.failed.append(cannot_judge(series.key, verdict, newest_run.run_id or newest_run.file))
        else:
            result.passed.append(text)
        before, last = series.points[-2:]
        if before.median_s is not None and last.median_s is None:
            reason = "missing" if last.status == "missing" else last.status
            result.missing.append(
                f"{series.key}: completed in run {before.run}, {reason} in the newest run ({last.run})"
            )
    return result


def step_text(change: ChangePoint) -> str:
    """'+19.8% [+15.1, +24.0]', or the shift alone when the run counts allow no interval."""
    if change.low_pct is None or change.high_pct is None:
        return f"{change.shift_pct:+.1f}% (no 95% interval: too few runs)"
    return f"{change.shift_pct:+.1f}% [{change.low_pct:+.1f}, {change.high_pct:+.1f}]"


def build_history(
    paths: list[Path], order: str, threshold_pct: float | None = None, allow_missing: bool = False
) -> History:
    """Read, order, analyse; with a threshold, the gate's verdict too."""
    read = read_history(paths, order)
    runs = [one.run for one in read]
    changes = library_changes(runs)
    series = model_series(read)
    for one in series:
        analyse_series(one, runs, changes)
    every = [c for s in series for c in s.change_points]
    history = History(
        schema=HISTORY_SCHEMA,
        order=order,
        method=METHOD,
        runs=runs,
        series=series,
        change_points=sorted(every, key=lambda c: (-c.after, c.key)),
        library_changes=changes,
    )
    if threshold_pct is not None:
        history.gate = gate(history, threshold_pct, allow_missing)
    return history
