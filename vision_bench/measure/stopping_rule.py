"""How many timed runs and processes make a number: the stopping rule of --precision (run until
the median's 95% interval is within +-PCT% of it, or a time or count cap), and the interval of
the median over --processes K workers, which accounts for the spread between processes."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from ..records.measurement import LatencyStats, PrecisionRecord
from .stats import median_interval

PRECISION_MIN_RUNS = 10  # --precision never stops on fewer timed runs (6 would be [min, max])
PRECISION_MAX_RUNS = 2000  # the count cap of --precision, per model (per process with --processes)
DEFAULT_MAX_TIME = 300.0  # --max-time's default: seconds of timed runs per model
STOPPED_BY = {
    "precision": "reached the precision",
    "max-time": "hit --max-time",
    "max-runs": "hit the run cap",
    "fixed": "fixed --runs",
}


class StoppingRule:
    """--precision PCT: after each round over the images, stop when the 95% interval of the
    end-to-end median is within +-PCT% of it (at least PRECISION_MIN_RUNS runs), or when the timed
    runs have taken max_seconds, or max_runs runs. `clock` is injectable for tests."""

    def __init__(
        self,
        precision_pct: float,
        max_seconds: float = DEFAULT_MAX_TIME,
        max_runs: int = PRECISION_MAX_RUNS,
        min_runs: int = PRECISION_MIN_RUNS,
        clock=time.perf_counter,
    ):
        self.precision_pct, self.max_seconds = precision_pct, max_seconds
        self.max_runs, self.min_runs, self.clock = max_runs, min_runs, clock
        self.started = None

    def start(self) -> None:
        self.started = self.clock()

    def reason(self, seconds: list[float]) -> str | None:
        """Why to stop now ('precision', 'max-time', 'max-runs'), or None to run another round."""
        reached = self.reached(seconds) if len(seconds) >= self.min_runs else None
        if reached is not None and reached <= self.precision_pct:
            return "precision"
        if len(seconds) >= self.max_runs:
            return "max-runs"
        if self.clock() - self.started >= self.max_seconds:
            return "max-time"
        return None

    @staticmethod
    def reached(seconds: list[float]) -> float | None:
        """The interval's reach from the median, in percent of it (None below 6 runs)."""
        interval = median_interval(seconds)
        if interval is None:
            return None
        stats = LatencyStats(
            n=len(seconds), median=float(np.median(seconds)), ci95_low=interval[0], ci95_high=interval[1]
        )
        return stats.relative_half_width

    def record(self, seconds: list[float], stopped_by: str) -> PrecisionRecord:
        return PrecisionRecord(
            target_pct=self.precision_pct,
            reached_pct=self.reached(seconds),
            stopped_by=stopped_by,
            runs=len(seconds),
            seconds=self.clock() - self.started,
            max_seconds=self.max_seconds,
            max_runs=self.max_runs,
            min_runs=self.min_runs,
        )


# Two-sided 97.5% quantiles of Student's t for 1..4 degrees of freedom (K = 2..5 processes).
T_975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105}
PROCESS_INTERVAL_METHODS = {
    "order statistics of process medians": (
        "the distribution-free 95% interval over the K per-process medians (order statistics at binomial "
        "ranks, as for the runs): each process is one draw of the between-process spread, so the process, "
        "not the run, is the unit; it needs K >= 6"
    ),
    "t over process medians": (
        "a Student-t 95% interval over the K per-process medians (mean +- t(K-1) s / sqrt K): with fewer than 6 "
        "processes no distribution-free interval exists, and a bootstrap over so few processes only reshuffles "
        "them and under-covers; t assumes the process medians scatter roughly normally and widens for small K"
    ),
}


@dataclasses.dataclass
class ProcessInterval:
    """The median's 95% interval over K process medians, and how it was made."""

    ci95_low: float
    ci95_high: float
    ci_coverage: float
    processes: int  # K
    method: str  # a key of PROCESS_INTERVAL_METHODS
    why: str


def process_interval(medians: Sequence[float | None]) -> ProcessInterval | None:
    """The 95% interval of the median that accounts for the spread between K processes, from
    their K medians: order statistics for K >= 6, Student t for 2 <= K <= 5. None for K < 2."""
    values = [m for m in medians if m is not None]
    k = len(values)
    if k < 2:
        return None
    interval = median_interval(values)
    if interval is not None:
        low, high, coverage = interval
        method = "order statistics of process medians"
    else:
        a = np.asarray(values, dtype=np.float64)
        half = T_975[k - 1] * float(a.std(ddof=1)) / math.sqrt(k)
        low, high, coverage = float(a.mean()) - half, float(a.mean()) + half, 0.95
        method = "t over process medians"
    return ProcessInterval(low, high, coverage, k, method, PROCESS_INTERVAL_METHODS[method])
