"""What --history builds and writes (history_<run>.json): the runs in order, each model's series of
per-run figures, the change points found in it, the library-version changes and the gate's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

from .codec import optional
from .run_config import SourceState


@dataclass
class HistoryRun:
    """One results file, in the history's order (`index` from 1)."""

    index: int
    file: str
    run_id: str | None
    started: str | None
    label: str | None = None
    source: list[SourceState] = field(default_factory=list)  # the commits it ran from (may be empty)
    libraries: dict[str, str] = field(default_factory=dict)  # torch, transformers, ultralytics, python

    def commit_text(self) -> str:
        """'1a2b3c4' (+ ' dirty'), the working folder's first; 'no commit' without one."""
        if not self.source:
            return "no commit"
        return self.source[0].short_text()


@dataclass
class SeriesPoint:
    """One model (and variant) in one run: a gap (median None) when it did not complete there."""

    run: int  # HistoryRun.index
    status: str  # the model's status in that run, "missing" when the file does not hold it
    median_s: float | None = None  # end-to-end median of the timed runs
    ci95_low_s: float | None = None  # its distribution-free 95% interval
    ci95_high_s: float | None = None
    timed_runs: int = 0
    peak_bytes: int | None = None  # peak memory
    own_share_bytes: int | None = None  # the model's own share of it (peak over the baseline)
    outlier: bool = False  # left out of the change-point search (history.change_points.outliers)
    flagged: bool = False  # timed runs flagged throttled, shared or busy count in its median


@dataclass
class ChangePoint:
    """A step in a series: the level of the runs from `after` on differs from the level before."""

    key: str  # results_file.model_key
    before: int  # the last run before the step (HistoryRun.index)
    after: int  # the first run after it
    shift_pct: float  # Hodges-Lehmann shift of the run medians, in percent of the level before
    low_pct: float | None  # its 95% interval (None: too few runs for one)
    high_pct: float | None
    p: float  # the U test's p value at the split, before the correction for the splits tried
    corrected_p: float  # p times the number of splits tried (Bonferroni), capped at 1
    level_before_s: float  # the median of the run medians of the segment before, and after
    level_after_s: float
    commits: list[str] = field(default_factory=list)  # 'hash subject' of the commits between the two runs
    library_change: list[str] = field(default_factory=list)  # 'torch 2.1 -> 2.2' between the two runs


@dataclass
class ModelHistory:
    """One model (and variant) over the runs."""

    key: str
    model: str
    points: list[SeriesPoint]
    change_points: list[ChangePoint] = field(default_factory=list)  # oldest first


@dataclass
class LibraryChange:
    """A library whose version differs from the run before."""

    run: int  # the first run with the new version
    library: str
    before: str | None
    after: str | None

    def text(self) -> str:
        return f"{self.library} {self.before or 'none'} -> {self.after or 'none'}"


@dataclass
class GateResult:
    """--fail-if-slower over the history: each model's newest step against the segment before it."""

    threshold_pct: float
    failed: list[str] = field(default_factory=list)  # one line a failing model
    passed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # completed in the run before the newest, not in it
    allowed_missing: bool = False  # --allow-missing: those warn instead of failing


@dataclass
class History:
    """The whole history (history_<run>.json)."""

    schema: str
    order: str  # start | label | commit-date
    method: str  # how the change points are found, in words
    runs: list[HistoryRun]
    series: list[ModelHistory]
    change_points: list[ChangePoint]  # every series' change points, newest first
    library_changes: list[LibraryChange] = field(default_factory=list)
    gate: GateResult | None = optional()
