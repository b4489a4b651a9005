"""Statistics of run times: the median and the tail percentiles with distribution-free 95%
intervals (order statistics at binomial ranks), and the Mann-Whitney U test and Hodges-Lehmann
shift that --compare uses."""

from __future__ import annotations

import math

import numpy as np

from ..records.codec import from_json
from ..records.measurement import MIN_RUNS_FOR_CI, LatencyStats, LatencyTails, TailStat

CI_METHOD = "distribution-free 95% interval of the median from order statistics (binomial ranks)"


def binomial_pmf(n: int, q: float) -> list[float]:
    """P(B = j), j = 0..n, for B ~ Binomial(n, q): exact products up to 1000 runs, through
    log-gamma beyond (where q**j underflows and 2**n overflows a float)."""
    if n <= 1000:
        return [math.comb(n, j) * q**j * (1.0 - q) ** (n - j) for j in range(n + 1)]
    log_q, log_r, log_n = math.log(q), math.log1p(-q), math.lgamma(n + 1)
    return [
        math.exp(log_n - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_q + (n - j) * log_r)
        for j in range(n + 1)
    ]


def binomial_ranks(n: int, q: float, level: float = 0.95) -> tuple[int, int, float] | None:
    """Ranks (1-based) l and u such that [x(l), x(u)] covers the q-quantile with probability at
    least `level`, whatever the distribution: the number of runs below the quantile is Binomial(n, q);
    l is the largest rank with P(B < l) <= (1 - level)/2, u the smallest with P(B >= u) <= (1 - level)/2.
    Returns (l, u, exact coverage), or None when n is too small for either end."""
    tail = (1.0 - level) / 2.0
    pmf = binomial_pmf(n, q)
    below, low = 0.0, 0
    for j in range(n + 1):
        if below + pmf[j] > tail:
            break
        below += pmf[j]
        low = j + 1
    above, high = 0.0, n + 1
    for j in range(n, -1, -1):
        if above + pmf[j] > tail:
            break
        above += pmf[j]
        high = j
    if low == 0 or high > n or low > high:
        return None
    return low, high, 1.0 - (2.0 * below if q == 0.5 else below + above)  # the median's tails are equal


def runs_needed(q: float, level: float = 0.95) -> int:
    """The fewest runs for which the q-quantile has a distribution-free interval at `level`."""
    n = MIN_RUNS_FOR_CI
    while binomial_ranks(n, q, level) is None:
        n += 1
    return n


def percentile_interval(values, q: float) -> tuple[float, float, float] | None:
    """The distribution-free 95% interval of the q-quantile from order statistics at binomial ranks
    (low, high, exact coverage), or None when there are too few values for it."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    ranks = binomial_ranks(a.size, q)
    if ranks is None:
        return None
    low, high, coverage = ranks
    return float(a[low - 1]), float(a[high - 1]), coverage


def median_interval(values) -> tuple[float, float, float] | None:
    """A 95% confidence interval of the median that assumes nothing about the distribution:
    order statistics x(k) and x(n+1-k), with k the largest rank such that a Binomial(n, 1/2)
    falls below k with probability at most 2.5%. Returns (low, high, exact coverage), or None
    when there are too few values (n < 6: even [min, max] covers less than 95%)."""
    return percentile_interval(values, 0.5)


TAIL_PERCENTILES = (90, 99)


def tail_stats(seconds: list[float]) -> LatencyTails:
    """p90 and p99 of the runs, each with its distribution-free 95% interval, or, when the runs
    are too few for one, `needed_runs` (p90 needs 36 runs, p99 368: the interval's upper end must
    be a run that, with 97.5% probability, lies above the percentile)."""
    tails = {}
    for pct in TAIL_PERCENTILES:
        q = pct / 100.0
        interval = percentile_interval(seconds, q) if seconds else None
        tails[f"p{pct}"] = TailStat(
            value=float(np.percentile(seconds, pct)) if seconds else None,
            n=len(seconds),
            ci95_low=interval[0] if interval else None,
            ci95_high=interval[1] if interval else None,
            ci_coverage=interval[2] if interval else None,
            needed_runs=runs_needed(q),
        )
    return LatencyTails(**tails)


def tail_text(tail: TailStat | dict) -> str:
    """'812.3 ms [790.1, 901.7]' or '812.3 ms (no interval: not estimable with 20 runs, needs 368)';
    `tail` may be a results file's JSON value."""
    return (from_json(TailStat, tail) if isinstance(tail, dict) else tail).text()


def latency_stats(seconds: list[float]) -> LatencyStats:
    """Statistics of a list of run times in seconds; every field None (n 0) when the list is empty."""
    if not seconds:
        return LatencyStats()
    a = np.asarray(seconds, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else None  # one run has no spread to speak of
    low, high, coverage = median_interval(a) or (None, None, None)
    return LatencyStats(
        n=int(a.size),
        median=float(np.median(a)),
        ci95_low=low,
        ci95_high=high,
        ci_coverage=coverage,
        p10=float(np.percentile(a, 10)),
        p90=float(np.percentile(a, 90)),
        p99=float(np.percentile(a, 99)),
        mean=mean,
        std=std,
        min=float(a.min()),
        max=float(a.max()),
        cov=std / mean if std is not None and mean > 0 else None,
    )


EXACT_TEST_MAX_SIDE = 7  # up to this many runs on a side, the U test's exact distribution
EXACT_TEST_MAX_SPLITS = 200_000  # the exact test enumerates this many ways to split the runs at most


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def rank_sum_counts(doubled_ranks: np.ndarray, k: int) -> np.ndarray:
    """counts[s]: how many ways k of the runs have doubled ranks summing to s (average ranks doubled are
    whole numbers, ties included). The exact permutation distribution of a side's rank sum, built one
    run at a time, N*k array additions instead of listing every split."""
    top = int(np.sort(doubled_ranks)[-k:].sum()) if k else 0
    ways = np.zeros((k + 1, top + 1))
    ways[0, 0] = 1.0
    for w in doubled_ranks.astype(np.int64):
        for j in range(k, 0, -1):  # each run at most once in a split
            ways[j, w:] += ways[j - 1, : top + 1 - w]
    return ways[k]


def mann_whitney_p(base, new) -> float:
    """Two-sided p value of the Mann-Whitney U test (ties get average ranks): exact (the permutation
    distribution of the rank sum, ties included) when a side has EXACT_TEST_MAX_SIDE runs or fewer and
    the splits number EXACT_TEST_MAX_SPLITS or fewer, else the normal approximation with the tie and
    continuity corrections. --compare and --history's change points both use it."""
    n1, n2 = len(base), len(new)
    if n1 == 0 or n2 == 0:
        return 1.0
    values = np.concatenate([np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)])
    ranks = average_ranks(values)
    mean_u = n1 * n2 / 2.0
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    if min(n1, n2) > EXACT_TEST_MAX_SIDE or math.comb(n1 + n2, n1) > EXACT_TEST_MAX_SPLITS:
        _, counts = np.unique(values, return_counts=True)
        n = n1 + n2
        var = n1 * n2 / 12.0 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1)))
        if var <= 0:
            return 1.0
        z = max(abs(u - mean_u) - 0.5, 0.0) / math.sqrt(var)  # with continuity correction
        return math.erfc(z / math.sqrt(2.0))
    # Exact: the smaller side's rank sum over every split of the runs (|U - mean| is the same either side).
    k = min(n1, n2)
    counts = rank_sum_counts(np.rint(2.0 * ranks).astype(np.int64), k)
    us = np.arange(counts.size) / 2.0 - k * (k + 1) / 2.0
    extreme = np.abs(us - mean_u) >= abs(u - mean_u) - 1e-9
    return float(counts[extreme].sum() / counts.sum())


SHIFT_METHOD = (
    "Hodges-Lehmann shift (the median of all differences new run - base run), with its distribution-free "
    "95% interval from the Mann-Whitney U distribution (exact up to {exact:,} pairs, normal approximation "
    "beyond; ties are not corrected for)"
)
EXACT_SHIFT_MAX_PAIRS = 10_000  # up to this many (base, new) pairs, U's exact null distribution


def u_distribution(m: int, n: int) -> np.ndarray:
    """P(U = u), u = 0..m*n, for two samples of m and n distinct values under no difference.
    Built from P_{i,j}(u) = i/(i+j) P_{i-1,j}(u - j) + j/(i+j) P_{i,j-1}(u): the largest value is
    from the first sample with probability i/(i+j), and then it exceeds all j of the second."""
    rows = [np.ones(1)] * (n + 1)  # rows[j] = distribution for (i, j); i = 0: U = 0
    for i in range(1, m + 1):
        current = [np.ones(1)]  # j = 0: U = 0
        for j in range(1, n + 1):
            p = np.zeros(i * j + 1)
            above = rows[j]  # (i - 1, j), its U shifted by j
            p[j : j + above.size] += above * (i / (i + j))
            left = current[j - 1]  # (i, j - 1)
            p[: left.size] += left * (j / (i + j))
            current.append(p)
        rows = current
    return rows[n]


def smallest_two_sided_p(m: int, n: int) -> float:
    """The smallest p value any data can give with m and n runs (no ties): both extremes of U."""
    return min(1.0, 2.0 / math.comb(m + n, m)) if m and n else 1.0


def interval_rank(m: int, n: int, level: float = 0.95) -> tuple[int, float]:
    """(c, coverage): the interval is the c-th smallest and c-th largest of the m*n differences;
    c = 0 when no interval reaches the level (too few runs)."""
    alpha_half = (1.0 - level) / 2.0
    if m * n <= EXACT_SHIFT_MAX_PAIRS:
        cdf = np.cumsum(u_distribution(m, n))
        c = int(np.searchsorted(cdf, alpha_half + 1e-12, side="right"))  # P(U <= c - 1) <= alpha/2
        return c, (1.0 - 2.0 * float(cdf[c - 1])) if c else 0.0
    z = 1.959963984540054
    c = math.floor(m * n / 2.0 - z * math.sqrt(m * n * (m + n + 1) / 12.0))
    return max(c, 0), level if c > 0 else 0.0


def shift_estimate(base: list[float], new: list[float]) -> dict | None:
    """Hodges-Lehmann estimate of how much later new's times are than base's (new - base, in the
    units of the inputs) with its 95% interval: the interval holds exactly the shifts that the
    two-sided U test at 5% does not reject, so direction, size and significance agree.
    None when a side is empty; low/high None when the run counts allow no 95% interval."""
    a = np.asarray(base, dtype=np.float64)
    b = np.asarray(new, dtype=np.float64)
    m, n = a.size, b.size
    if not m or not n:
        return None
    differences = np.sort((b[None, :] - a[:, None]).ravel())
    c, coverage = interval_rank(m, n)
    low = high = None
    if c:
        low, high = float(differences[c - 1]), float(differences[m * n - c])
    return {
        "shift": float(np.median(differences)),
        "low": low,
        "high": high,
        "coverage": coverage,
        "pairs": m * n,
        "smallest_p": smallest_two_sided_p(m, n),
    }
