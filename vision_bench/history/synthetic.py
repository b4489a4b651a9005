"""Synthetic histories with the spread of a real run, for the change-point method's measured targets
(tests/test_history.py and benchmarks/history_detection.py draw the same ones): each run's median is
the median of a resample of a real run's timed runs, drawn per image as a run times each image the
same number of times; from one run on, a step makes every run slower."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .change_points import ALPHA, find_steps, outliers

# The 20 timed end-to-end times (seconds) of a real run here: yolo11n-detect, --runs 10 --weights random,
# 2 images, on the shared 2-core EPYC (results/benchmark_results_20261207_131554.json of issue 33's history).
# A run times each image 10 times (--runs 10): resampling the 20 together would give a run 14 of one
# image and 6 of the other, a spread no real run has (its median's: 3.3% against 3.0% per image).
REAL_TIMED_S = {
    "bus.jpg": (0.11133, 0.06208, 0.05719, 0.22813, 0.04843, 0.05097, 0.05096, 0.05234, 0.05162, 0.05374),
    "zidane.jpg": (0.05488, 0.04877, 0.05677, 0.04656, 0.057, 0.04564, 0.04872, 0.04766, 0.0543, 0.04854),
}
RUNS = 30
HISTORIES = 200
STEP = 0.10
FIRST_STEP_RUN, LAST_STEP_RUN = 5, 25  # indices of the first slower run drawn from (the 6th to the 26th run)


def run_median(rng: np.random.Generator, pooled: bool = False, per_image: int | None = None) -> float:
    """One run's median: each image's times resampled, `per_image` of each (default: as many as the real
    run had), or, `pooled`, all times together (the earlier model)."""
    if pooled:
        every = [t for times in REAL_TIMED_S.values() for t in times]
        return float(np.median(rng.choice(every, len(every))))
    drawn = [rng.choice(times, per_image or len(times)) for times in REAL_TIMED_S.values()]
    return float(np.median(np.concatenate(drawn)))


def simulated_history(
    rng: np.random.Generator, step: float, runs: int = RUNS, pooled: bool = False, per_image: int | None = None
) -> tuple[list[float], int | None]:
    """`runs` run medians; with a step, from a random run on `step` slower. Returns the medians and the
    index of the first slower run (None without a step)."""
    first_after = int(rng.integers(FIRST_STEP_RUN, LAST_STEP_RUN + 1)) if step else None
    medians = []
    for i in range(runs):
        factor = 1.0 + step if first_after is not None and i >= first_after else 1.0
        medians.append(run_median(rng, pooled, per_image) * factor)
    return medians, first_after


def steps_at(medians: list[float], alpha: float = ALPHA) -> list[int]:
    """The runs (indices into medians) where steps were found, outliers left out as --history does."""
    flags = outliers(medians)
    kept = [i for i, flagged in enumerate(flags) if not flagged]
    return [kept[s.index] for s in find_steps([medians[i] for i in kept], alpha)]


@dataclass(frozen=True)
class DetectionRates:
    """Of `histories` histories with a step, the share where one was found within one run of it; of as
    many without, the share where any step was found."""

    histories: int
    found: float
    false_alarms: float


def detection_rates(
    seed: int,
    histories: int = HISTORIES,
    step: float = STEP,
    alpha: float = ALPHA,
    pooled: bool = False,
    per_image: int | None = None,
) -> DetectionRates:
    """The method's rates on `histories` histories with a step and as many without, drawn from `seed`
    (`alpha` the test's level, `pooled` the earlier spread model, `per_image` timed runs of each image
    in a run: to measure what each choice does)."""
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(histories):
        medians, first_after = simulated_history(rng, step, pooled=pooled, per_image=per_image)
        found += any(abs(at - first_after) <= 1 for at in steps_at(medians, alpha))  # type: ignore[operator]
    alarms = sum(
        bool(steps_at(simulated_history(rng, 0.0, pooled=pooled, per_image=per_image)[0], alpha))
        for _ in range(histories)
    )
    return DetectionRates(histories, found / histories, alarms / histories)
