"""The history's data: every results file found (validated as --compare validates), the runs put in
order, one series per model and variant (a gap where it did not complete), the library-version
changes between runs, and the commits between two runs."""

from __future__ import annotations

from pathlib import Path

from ..common import UsageError
from ..measure.source_control import git
from ..measure.stats import latency_stats
from ..records.codec import known
from ..records.history import HistoryRun, LibraryChange, ModelHistory, SeriesPoint
from ..records.model_result import ModelResult
from ..records.run_document import RunDocument
from ..reports.results_file import model_key, read_results, setting, timed_seconds

RESULTS_GLOB = "benchmark_results_*.json"
LIBRARIES = ("torch", "transformers", "ultralytics", "python")
MAX_COMMITS_LISTED = 20


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


def order_key(document: RunDocument, order: str) -> tuple:
    """How a run sorts: by its start, its --label or its working folder's commit date; the start breaks ties."""
    started = known(document.started) or ""
    if order == "label":
        return (document.label or "", started)
    if order == "commit-date":
        committed = document.source[0].committed if document.source else None
        return (committed or "", started)
    return (started,)


def read_history(paths: list[Path], order: str) -> tuple[list[HistoryRun], list[RunDocument]]:
    """Every file read and validated (a UsageError on the first bad one), in the order asked for."""
    documents = [(path, read_results(path, "--history")) for path in results_files(paths)]
    documents.sort(key=lambda pair: order_key(pair[1], order))
    runs = [
        HistoryRun(
            index=i,
            file=str(path),
            run_id=known(document.run_id),
            started=known(document.started),
            label=document.label,
            source=list(document.source or []),
            libraries={name: str(v) for name in LIBRARIES if (v := setting(document, None, "system", name))},
        )
        for i, (path, document) in enumerate(documents, start=1)
    ]
    return runs, [document for _, document in documents]


def series_point(run: int, result: ModelResult | None) -> SeriesPoint:
    """One model in one run; a gap (no median) unless it completed with timed runs."""
    if result is None:
        return SeriesPoint(run=run, status="missing")
    seconds = timed_seconds(result)  # the statistics from the runs, as --compare makes them
    memory = result.memory
    point = SeriesPoint(run=run, status=str(result.status))
    if result.status == "complete" and seconds:
        stats = latency_stats(seconds)
        point.median_s, point.ci95_low_s, point.ci95_high_s = stats.median, stats.ci95_low, stats.ci95_high
        point.timed_runs = len(seconds)
    if memory is not None:
        point.peak_bytes, point.own_share_bytes = memory.peak_bytes, memory.peak_over_baseline_bytes
    return point


def model_series(runs: list[HistoryRun], documents: list[RunDocument]) -> list[ModelHistory]:
    """One series per model key found in any run, in the order first seen, a point in every run."""
    by_run = [{model_key(r): r for r in document.models} for document in documents]
    names: dict[str, str] = {}
    for models in by_run:
        for key, result in models.items():
            names.setdefault(key, result.model)
    return [
        ModelHistory(key=key, model=model, points=[series_point(run.index, m.get(key)) for run, m in zip(runs, by_run)])
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
