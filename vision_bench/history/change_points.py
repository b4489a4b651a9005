"""Steps in a series of run medians: binary segmentation with the Mann-Whitney U test (the one
--compare uses, measure.stats.mann_whitney_p), its p value corrected for the splits tried (Bonferroni), after a
guard has set aside single runs that differ from both their neighbours (outliers, not steps).
Each step's size and 95% interval is the Hodges-Lehmann shift between the two segments beside it,
the interval --compare's gate uses. Deterministic: no permutations, no random numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..measure.stats import mann_whitney_p, shift_estimate
from ..reports.compare import ShiftEstimate, relative_shift

MIN_SEGMENT = 3  # runs on each side of a step: fewer cannot be told from one or two bad runs
# The bound Bonferroni puts on each segment's false-alarm rate. It is loose (the tests at neighbouring
# splits share most runs): on 30 runs without a step 1.6% measured, 0-4.5% a seed of 200 histories
# (benchmarks/history_detection.py); a looser level found few more steps and passed 5% on some seeds.
ALPHA = 0.05
OUTLIER_WINDOW = 3  # neighbours on each side an outlier is compared with
OUTLIER_THRESHOLD = 5.0  # in robust standard deviations of the run-to-run noise (log scale)
NOISE_FLOOR = 1e-3  # the smallest noise assumed (0.1%), so that identical runs do not make every change an outlier

METHOD = (
    f"binary segmentation of the run medians (log scale): in each segment the least-squares split (the largest "
    f"shift in mean level for its sizes), at least {MIN_SEGMENT} runs a side, is a step when its two-sided "
    f"U test p value times the number of splits tried is at most {ALPHA:g} (Bonferroni: at most a {ALPHA:.0%} "
    "chance of a false step per segment tested); then each half is searched again. Before the search, a run "
    f"whose median differs from the medians of both its {OUTLIER_WINDOW} neighbours before and after, in the same "
    f"direction, by more than {OUTLIER_THRESHOLD:g} robust standard deviations of the run-to-run noise "
    "(1.048 x the median absolute difference of consecutive runs) is an outlier and left out. A step's size "
    "and 95% interval: the Hodges-Lehmann shift of the run medians after it against those before it (back to "
    "the neighbouring steps), in percent of the median before"
)


@dataclass(frozen=True)
class Step:
    """A split of the searched values: `index` is the position of the first value after the step."""

    index: int
    p: float
    corrected_p: float


@dataclass(frozen=True)
class StepSize:
    """The Hodges-Lehmann shift between the segments either side of a step, in percent of the level before."""

    shift_pct: float
    low_pct: float | None
    high_pct: float | None
    level_before: float
    level_after: float


def run_to_run_noise(logs: np.ndarray) -> float:
    """A robust standard deviation of the noise: steps and single outliers move few consecutive differences."""
    if logs.size < 2:
        return NOISE_FLOOR
    return max(1.0483 * float(np.median(np.abs(np.diff(logs)))), NOISE_FLOOR)


def outliers(values: list[float]) -> list[bool]:
    """Runs that differ from both their neighbours' levels, the same way, by far more than the noise.
    The first and the last run have neighbours on one side only and are never outliers."""
    logs = np.log(np.asarray(values, dtype=np.float64))
    limit = OUTLIER_THRESHOLD * run_to_run_noise(logs)
    flags = []
    for i, value in enumerate(logs):
        before, after = logs[max(0, i - OUTLIER_WINDOW) : i], logs[i + 1 : i + 1 + OUTLIER_WINDOW]
        if not before.size or not after.size:
            flags.append(False)
            continue
        differences = value - np.median(before), value - np.median(after)
        flags.append(bool(differences[0] * differences[1] > 0 and min(map(abs, differences)) > limit))
    return flags


def best_split(values: np.ndarray, min_segment: int = MIN_SEGMENT) -> tuple[int, int] | None:
    """(position, splits tried): the least-squares split of the log medians, i.e. the one that leaves the
    smallest spread about the two segments' means (the likelihood-ratio split for a shift in level; it
    places a step more exactly than the largest rank statistic, which leans towards the middle)."""
    n = values.size
    splits = np.arange(min_segment, n - min_segment + 1)
    if not splits.size:
        return None
    sums = np.cumsum(values)[splits - 1]
    before, after = sums / splits, (values.sum() - sums) / (n - splits)
    explained = splits * (n - splits) / n * (before - after) ** 2
    return int(splits[int(np.argmax(explained))]), int(splits.size)


def find_steps(values: list[float], alpha: float = ALPHA, min_segment: int = MIN_SEGMENT) -> list[Step]:
    """The steps in `values` (positive numbers, in order), oldest first."""
    logs = np.log(np.asarray(values, dtype=np.float64))
    steps: list[Step] = []
    segments = [(0, logs.size)]
    while segments:
        start, end = segments.pop()
        found = best_split(logs[start:end], min_segment)
        if found is None:
            continue
        split, tried = found
        p = mann_whitney_p(logs[start : start + split], logs[start + split : end])
        corrected = min(1.0, p * tried)
        if corrected <= alpha:
            steps.append(Step(start + split, p, corrected))
            segments += [(start, start + split), (start + split, end)]
    return sorted(steps, key=lambda s: s.index)


def step_sizes(values: list[float], steps: list[Step]) -> list[StepSize]:
    """Each step's Hodges-Lehmann shift between the segments beside it (to the neighbouring steps),
    in percent of the median before, as --compare states a shift."""
    bounds = [0, *(s.index for s in steps), len(values)]
    sizes = []
    for i in range(1, len(bounds) - 1):
        before, after = values[bounds[i - 1] : bounds[i]], values[bounds[i] : bounds[i + 1]]
        level = float(np.median(before))
        estimate = shift_estimate(before, after)
        relative = relative_shift(None if estimate is None else ShiftEstimate(**estimate), level)
        sizes.append(
            StepSize(
                shift_pct=relative.shift if relative else 0.0,
                low_pct=relative.low if relative else None,
                high_pct=relative.high if relative else None,
                level_before=level,
                level_after=float(np.median(after)),
            )
        )
    return sizes
