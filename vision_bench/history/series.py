"""The history's data: every results file found (validated as --compare validates), the runs put in
order, one series per model and variant (a gap where it did not complete), the library-version
changes between runs, and the commits between two runs."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

from ..common import UsageError
from ..measure.sampling_report import flagged_in_statistics
from ..measure.source_control import git
from ..measure.stats import latency_stats
from ..records.codec import known
from ..records.history import HistoryRun, LibraryChange, ModelHistory, SeriesPoint
from ..records.measurement import MemoryFigures, RunKind, RunRecord
from ..records.model_result import ModelResult
from ..reports.results_file import model_key, read_results, setting

RESULTS_GLOB = "benchmark_results_*.json"
LIBRARIES = ("torch", "transformers", "ultralytics", "python")
MAX_COMMITS_LISTED = 20
PARALLEL_FROM = 16  # files a worker process: fewer are read here (a worker costs more than it saves)


def results_files(paths: list[Path]) -> list[Path]:
    """The files given, and the results files in the folders given (searched through), each once."""
    found: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            inside = sorted(path.rglob(RESULTS_GLOB))
            if not inside:
                raise UsageError(f"--history: {path}: no {RESULTS_GLOB} file in this folder or below it")
            found += inside
        else:
            found.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if len(unique) < 2:
        raise UsageError("--history needs two or more results files (files, or folders that hold them)")
    return unique


def order_key(run: HistoryRun, order: str) -> tuple:
    """How a run sorts: by its start, its --label or its working folder's commit date; the start breaks ties."""
    started = run.started or ""
    if order == "label":
        return (run.label or "", started)
    if order == "commit-date":
        return ((run.source[0].committed if run.source else None) or "", started)
    return (started,)


@dataclass
class RunSeries:
    """What the history keeps of one file: the run, and each model's point (key, model name, point)."""

    run: HistoryRun
    points: list[tuple[str, str, SeriesPoint]]


def read_run(path: Path) -> RunSeries:
    """One file read and validated as --compare reads it (a UsageError when it is not valid), kept small."""
    document = read_results(path, "--history")
    run = HistoryRun(
        index=0,
        file=str(path),
        run_id=known(document.run_id),
        started=known(document.started),
        label=document.label,
        source=list(document.source or []),
        libraries={name: str(v) for name in LIBRARIES if (v := setting(document, None, "system", name))},
    )
    return RunSeries(run, [point for r in document.models for point in run_points(r)])


def read_history(paths: list[Path], order: str) -> list[RunSeries]:
    """Every file read and validated (a UsageError on the first bad one), in the order asked for,
    numbered from 1. Many files are read in worker processes, one a core: validating and decoding a
    file costs tens of milliseconds."""
    files = results_files(paths)
    workers = min(os.cpu_count() or 1, len(files) // PARALLEL_FROM)
    if workers > 1:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            runs = list(pool.map(read_run, files, chunksize=8))
    else:
        runs = [read_run(path) for path in files]
    runs.sort(key=lambda one: order_key(one.run, order))
    for index, one in enumerate(runs, start=1):
        one.run.index = index
        for _, _, point in one.points:
            point.run = index
    return runs


def series_point(status: str, runs: list[RunRecord] | None, memory: MemoryFigures | None) -> SeriesPoint:
    """One model (or variant) in one run; a gap (no median) unless it completed with timed runs.
    The statistics come from the timed runs, as --compare makes them (results_file.timed_seconds)."""
    seconds = [run.total_s for run in runs or [] if run.run_kind == RunKind.TIMED and not run.discarded]
    point = SeriesPoint(run=0, status=status, flagged=flagged_in_statistics(runs))
    if status == "complete" and seconds:
        stats = latency_stats(seconds)
        point.median_s, point.ci95_low_s, point.ci95_high_s = stats.median, stats.ci95_low, stats.ci95_high
        point.timed_runs = len(seconds)
    if memory is not None:
        point.peak_bytes, point.own_share_bytes = memory.peak_bytes, memory.peak_over_baseline_bytes
    return point


def run_points(result: ModelResult) -> list[tuple[str, str, SeriesPoint]]:
    """(key, model, point) of a model, and of each of its --variants but the reference (the model's own row)."""
    key = model_key(result)
    points = [(key, result.model, series_point(str(result.status), result.runs, result.memory))]
    for variant in result.variants or []:
        if not variant.reference:
            point = series_point(str(variant.status), variant.runs, variant.memory)
            points.append((f"{key} [{variant.variant}]", f"{result.model} {variant.variant}", point))
    return points


def model_series(runs: list[RunSeries]) -> list[ModelHistory]:
    """One series per model key found in any run, in the order first seen, a point in every run."""
    by_run = [{key: point for key, _, point in one.points} for one in runs]
    names: dict[str, str] = {}
    for one in runs:
        for key, model, _ in one.points:
            names.setdefault(key, model)
    return [
        ModelHistory(
            key=key,
            model=model,
            points=[
                points.get(key) or SeriesPoint(run=one.run.index, status="missing") for one, points in zip(runs, by_run)
            ],
        )
        for key, model in names.items()
    ]


def library_changes(runs: list[HistoryRun]) -> list[LibraryChange]:
    """Each library whose version differs from the run before, at the first run with the new one."""
    changes = []
    for before, after in zip(runs, runs[1:]):
        for name in LIBRARIES:
            old, new = before.libraries.get(name), after.libraries.get(name)
            if old != new:
                changes.append(LibraryChange(run=after.index, library=name, before=old, after=new))
    return changes


def commits_between(before: HistoryRun, after: HistoryRun) -> list[str]:
    """'hash subject' of the commits that came in between two runs, per repository: git log of the
    range when the repository is still there and knows both, else the two runs' own commits."""
    lines = []
    for new in after.source:
        old = next((s for s in before.source if s.folder == new.folder), None)
        if old is None or old.commit == new.commit:
            continue
        log = git(
            Path(new.folder),
            "log",
            f"--max-count={MAX_COMMITS_LISTED}",
            "--format=%h %s",
            f"{old.commit}..{new.commit}",
        )
        prefix = "" if new.role == "working folder" else f"{new.role}: "
        if log:
            lines += [prefix + line for line in log.splitlines()]
        else:
            lines.append(f"{prefix}{old.commit[:7]} -> {new.commit[:7]} {new.subject or ''}".rstrip())
    return lines
