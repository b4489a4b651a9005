"""Statistics of run times: the median with a distribution-free 95% interval, percentiles, and
the Mann-Whitney U test that --compare uses."""
from __future__ import annotations

import math

import numpy as np

MIN_RUNS_FOR_CI = 6                 # fewer runs than this have no distribution-free 95% interval
CI_METHOD = "distribution-free 95% interval of the median from order statistics (binomial ranks)"


def median_interval(values) -> tuple[float, float, float] | None:
    """A 95% confidence interval of the median that assumes nothing about the distribution:
    order statistics x(k) and x(n+1-k), with k the largest rank such that a Binomial(n, 1/2)
    falls below k with probability at most 2.5%. Returns (low, high, exact coverage), or None
    when there are too few values (n < 6: even [min, max] covers less than 95%)."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    n = a.size
    below, k = 0.0, 0
    for j in range(n + 1):
        p = math.comb(n, j) / 2.0 ** n
        if below + p > 0.025:
            break
        below += p
        k = j + 1
    if k == 0:
        return None
    return float(a[k - 1]), float(a[n - k]), 1.0 - 2.0 * below


def latency_stats(seconds: list[float]) -> dict:
    """Statistics of a list of run times in seconds; every field None when the list is empty."""
    keys = ("n", "median", "ci95_low", "ci95_high", "ci_coverage", "p10", "p90", "mean", "std", "min", "max", "cov")
    if not seconds:
        return dict.fromkeys(keys) | {"n": 0}
    a = np.asarray(seconds, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    low, high, coverage = median_interval(a) or (None, None, None)
    return {
        "n": int(a.size), "median": float(np.median(a)), "ci95_low": low, "ci95_high": high,
        "ci_coverage": coverage, "p10": float(np.percentile(a, 10)),
        "p90": float(np.percentile(a, 90)), "mean": mean, "std": std,
        "min": float(a.min()), "max": float(a.max()), "cov": std / mean if mean > 0 else None,
    }


def format_interval(stats: dict) -> str:
    """'[low, high] ms' for a median's 95% interval, or why there is none."""
    if stats.get("ci95_low") is None:
        return f"[no 95% interval: {stats.get('n') or 0} runs, need {MIN_RUNS_FOR_CI}]"
    return f"[{stats['ci95_low'] * 1000:.1f}, {stats['ci95_high'] * 1000:.1f}]"


EXACT_TEST_MAX_SIDE = 7             # up to this many runs on a side, the U test's exact distribution
EXACT_TEST_MAX_SPLITS = 200_000     # the exact test enumerates this many ways to split the runs at most


def mann_whitney_p(base: list[float], new: list[float]) -> float:
    """Two-sided p value of the Mann-Whitney U test (ties get average ranks)."""
    n1, n2 = len(base), len(new)
    if n1 == 0 or n2 == 0:
        return 1.0
    values = np.concatenate([np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):  # average ranks over runs of equal values
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    mean_u = n1 * n2 / 2.0
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    if min(n1, n2) > EXACT_TEST_MAX_SIDE or math.comb(n1 + n2, n1) > EXACT_TEST_MAX_SPLITS:
        _, counts = np.unique(values, return_counts=True)
        n = n1 + n2
        var = n1 * n2 / 12.0 * ((n + 1) - (counts ** 3 - counts).sum() / (n * (n - 1)))
        if var <= 0:
            return 1.0
        z = max(abs(u - mean_u) - 0.5, 0.0) / math.sqrt(var)  # with continuity correction
        return math.erfc(z / math.sqrt(2.0))
    # Exact: every way to split the pooled ranks into the two sides (ties included).
    import itertools
    splits = np.array(list(itertools.combinations(range(n1 + n2), n1)))
    us = ranks[splits].sum(axis=1) - n1 * (n1 + 1) / 2.0
    return float(np.mean(np.abs(us - mean_u) >= abs(u - mean_u) - 1e-9))
