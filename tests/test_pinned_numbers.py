"""Pinned numbers: figures the reports print that no other test checks against an independent
computation, pinned before a wide refactor. Each expected figure is worked out here by other means
(exact binomial sums in fractions, scipy, float64 numpy, an analytic case, /proc read by hand):

1. a sweep point's images per second and its 95% interval (sweep_pass, sweep_plan, sweep_report);
2. the --precision stopping threshold (StoppingRule), on both sides of it and at the minimum run count;
3. the interval over the --processes medians: Student t for K = 2..5, order statistics for K >= 6;
4. the p90/p99 intervals: their bounds, their exact coverage, and the 36 and 368 runs they need;
5. the divergence culprit: the first record over the tolerance in execution order, not the worst;
6. the divergence error figures (relative L2, cosine similarity, max abs, normalised) against float64;
7. the private memory (USS) from smaps_rollup and its peak (the largest reading, not the last).

Each test's docstring names the mutation of the code it guards that was seen to make it fail.
"""

import contextlib
import math
import re
import statistics
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats as scipy_stats

from vision_bench.divergence.error_figures import FIGURE_CHUNK_ELEMENTS, error_figures
from vision_bench.divergence.layer_passes import summarise_records
from vision_bench.measure.memory import MemoryTracker, private_memory
from vision_bench.measure.stats import percentile_interval, tail_stats
from vision_bench.measure.stopping_rule import StoppingRule, process_interval
from vision_bench.records.codec import to_json
from vision_bench.records.divergence import ErrorFigures, LayerRecord, OpsRecord
from vision_bench.records.measurement import MemoryFigures, PeakReading, PrivateMemory
from vision_bench.records.model_result import with_records
from vision_bench.records.sweep import SweepPlan, SweepRecord
from vision_bench.settings import RunContext, RunSettings
from vision_bench.sweeps.sweep_pass import measure_point
from vision_bench.sweeps.sweep_plan import point_record
from vision_bench.sweeps.sweep_report import SWEEP_HEADERS, sweep_csv_rows, sweep_rows


# -- independent references -----------------------------------------------------------------------
def exact_ranks(n: int, q: Fraction, level: Fraction = Fraction(95, 100)) -> tuple[int, int] | None:
    """By brute force in exact fractions: l, the largest rank with P(B < l) <= (1 - level)/2, and u,
    the smallest with P(B >= u) <= (1 - level)/2, for B ~ Binomial(n, q) the count of runs below the
    q-quantile; [x(l), x(u)] then covers it with probability P(l <= B < u). None when either is missing."""
    tail = (1 - level) / 2
    pmf = [math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(n + 1)]
    below = [Fraction(0)]  # below[rank] = P(B < rank), rank = 0..n + 1
    for p in pmf:
        below.append(below[-1] + p)
    lows = [rank for rank in range(1, n + 1) if below[rank] <= tail]
    highs = [rank for rank in range(1, n + 1) if 1 - below[rank] <= tail]
    if not lows or not highs or max(lows) > min(highs):
        return None
    return max(lows), min(highs)


def scipy_coverage(n: int, q: float, low_rank: int, high_rank: int) -> float:
    """P(low_rank <= B <= high_rank - 1) for B ~ Binomial(n, q): the interval's exact coverage."""
    return float(scipy_stats.binom.cdf(high_rank - 1, n, q) - scipy_stats.binom.cdf(low_rank - 1, n, q))


def smaps_rollup_by_hand(pid) -> dict[str, int]:
    """Every 'Name: N kB' line of /proc/<pid>/smaps_rollup, in bytes."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        text = f.read()
    return {name: int(kb) * 1024 for name, kb in re.findall(r"^(\w+):\s+(\d+) kB$", text, re.MULTILINE)}


# -- 1. the sweep's throughput --------------------------------------------------------------------
class ScriptedBatchModel:
    """A model whose batch calls take the scripted seconds, one after the other (cold, warm-up, timed)."""

    MODEL_NAME = "scripted"

    def __init__(self, seconds: list[float]):
        self.seconds = iter(seconds)

    def timed_call(self, call):
        total = next(self.seconds)
        return None, total, {"preprocess": 0.0, "forward": total, "postprocess": 0.0}

    def run_batch(self, images, size):
        return None, {}

    def progress(self, *args, **kwargs):
        return contextlib.nullcontext()

    def count_flops_and_input(self, image, run):
        return 1e9, (1, 3, 32, 32)


class FixedMemoryTracker:
    def reset_peak(self):
        pass

    def rss(self):
        return 100 * 2**20

    def safe_peak_reading(self):
        return PeakReading(cpu_peak_rss_bytes=200 * 2**20)


def test_sweep_point_images_per_second_and_interval_are_batch_over_the_median_and_its_order_statistics(tmp_path):
    """Breaking throughput()'s swap of the interval's ends (ci95_low from the latency's ci95_low) makes
    this fail; so does measure_point passing batch 1 instead of the point's batch."""
    batch, timed = 4, 30
    rng = np.random.default_rng(1)
    timed_seconds = list(rng.uniform(0.08, 0.12, timed))
    # The cold start and the warm-up run are far slower: they must not count.
    scripted = [5.0, 1.0] + timed_seconds
    settings = RunSettings(models=[], runs=timed, warmup=1, seed=0)
    ctx = RunContext(
        settings=settings,
        device=torch.device("cpu"),
        images=[tmp_path / "image.jpg"],
        image_source="test",
        run_id="test",
        results_dir=tmp_path,
        viz_dir=tmp_path,
        assets_dir=tmp_path,
        system={},
    )
    point = point_record("batch", batch, False)
    measure_point(ScriptedBatchModel(scripted), ctx, point, FixedMemoryTracker(), Image.new("RGB", (32, 32)), {})
    assert point.status == "ok", point.reason

    ordered = sorted(timed_seconds)
    low_rank, high_rank = exact_ranks(timed, Fraction(1, 2))
    assert (low_rank, high_rank) == (10, 21)  # Binomial(30, 1/2): P(B <= 9) = 2.1% <= 2.5% < P(B <= 10) = 4.9%
    expected = {
        "median": batch / statistics.median(timed_seconds),
        # images per second falls as the latency grows: the slow end of the latency is the low end here
        "ci95_low": batch / ordered[high_rank - 1],
        "ci95_high": batch / ordered[low_rank - 1],
    }
    assert vars(point.throughput) == pytest.approx(expected, rel=1e-12)
    assert expected["ci95_low"] < expected["median"] < expected["ci95_high"]

    # What the table and the CSV show of it.
    sweep = SweepRecord(
        plan=SweepPlan(batch=[batch]), budget_s=None, nominal_size=None, size_step=1, unsupported={}, limit=None
    )
    sweep.points.append(point)
    result = with_records({"model": "scripted", "cli_name": "scripted", "sweep": sweep})
    (row,) = sweep_rows(result)
    assert (
        row[SWEEP_HEADERS.index("images/s [95% CI]")]
        == f"{expected['median']:.2f} [{expected['ci95_low']:.2f}, {expected['ci95_high']:.2f}]"
    )
    (csv_row,) = sweep_csv_rows(result, {"model": None})
    assert csv_row["throughput_ips"] == pytest.approx(expected["median"], rel=1e-12)
    assert csv_row["throughput_ci95_low"] == pytest.approx(expected["ci95_low"], rel=1e-12)
    assert csv_row["throughput_ci95_high"] == pytest.approx(expected["ci95_high"], rel=1e-12)


# -- 2. the --precision stopping threshold ---------------------------------------------------------
def precision_rule(pct: float) -> StoppingRule:
    """The rule with a clock that never moves, so that only precision and the run count decide."""
    rule = StoppingRule(pct, clock=lambda: 0.0)
    rule.start()
    return rule


def ramp_around_one(n: int, step: float) -> list[float]:
    """n runs 1 + (i - (n + 1)/2) step, i = 1..n, shuffled: median 1, rank i at (i - (n + 1)/2) step from it."""
    values = [1.0 + (i - (n + 1) / 2) * step for i in range(1, n + 1)]
    return list(np.random.default_rng(n).permutation(values))


def test_precision_stops_exactly_when_the_medians_interval_is_within_the_target():
    """Breaking the rule's `<= precision_pct` into `<` makes this fail (the exact-threshold case), and
    so does the median's 95% level lowered to 90% in binomial_ranks (ranks 11 and 20 of 30 reach 4.5%)."""
    # 30 runs: the 95% interval of the median is [x(10), x(21)] (exact binomial ranks), 5.5 steps away.
    assert exact_ranks(30, Fraction(1, 2)) == (10, 21)
    runs = ramp_around_one(30, 0.01)
    assert StoppingRule.reached(runs) == pytest.approx(5.5, rel=1e-9)
    assert precision_rule(5.0).reason(runs) is None
    assert precision_rule(6.0).reason(runs) == "precision"

    # Exactly at the threshold (binary fractions, so the reach is exactly 6.25%): within means <=.
    assert exact_ranks(10, Fraction(1, 2)) == (2, 9)
    at_threshold = [1.0625, 0.5, 1.0, 0.9375, 2.0, 1.0, 0.96875, 1.0, 1.03125, 1.0]
    assert StoppingRule.reached(at_threshold) == 6.25
    assert precision_rule(6.25).reason(at_threshold) == "precision"
    assert precision_rule(6.2499).reason(at_threshold) is None


def test_precision_reads_the_wider_side_of_the_interval():
    """Breaking relative_half_width's max of the two sides into min makes this fail."""
    # x(2) 8% below the median, x(9) 4% above: the reach is 8%, so 5% is not reached.
    lopsided = [0.5, 0.92, 0.99, 1.0, 1.0, 1.0, 1.0, 1.01, 1.04, 2.0]
    assert StoppingRule.reached(lopsided) == pytest.approx(8.0, rel=1e-9)
    assert precision_rule(5.0).reason(lopsided) is None
    assert precision_rule(8.5).reason(lopsided) == "precision"


def test_precision_never_stops_before_ten_timed_runs():
    """Breaking the rule's `len(seconds) >= self.min_runs` into `>` makes this fail (it waits for 11)."""
    identical = [0.1] * 9
    # Nine identical runs already have a 95% interval of zero width (ranks 2 and 8 of 9) ...
    assert exact_ranks(9, Fraction(1, 2)) == (2, 8)
    assert StoppingRule.reached(identical) == 0.0
    # ... but the rule still asks for another round, and stops at the tenth run.
    assert precision_rule(1.0).reason(identical) is None
    assert precision_rule(1.0).reason(identical + [0.1]) == "precision"


# -- 3. the interval over the --processes medians --------------------------------------------------
@pytest.mark.parametrize("processes", [2, 3, 4, 5])
def test_process_interval_below_six_processes_is_the_student_t_interval(processes):
    """Breaking process_interval's `a.std(ddof=1)` into ddof=0 makes this fail, and so does T_975[3]
    set to 3.18 (the K = 4 case)."""
    medians = list(np.random.default_rng(processes).uniform(0.09, 0.11, processes))
    mean, spread = statistics.mean(medians), statistics.stdev(medians)  # stdev: the n - 1 estimate
    half = scipy_stats.t.ppf(0.975, processes - 1) * spread / math.sqrt(processes)
    interval = process_interval(medians)
    assert interval.method == "t over process medians"
    assert interval.processes == processes and interval.ci_coverage == 0.95
    assert interval.ci95_low == pytest.approx(mean - half, rel=1e-9)
    assert interval.ci95_high == pytest.approx(mean + half, rel=1e-9)


@pytest.mark.parametrize("processes", [6, 7, 8, 9, 12, 17])
def test_process_interval_from_six_processes_is_the_order_statistics_interval(processes):
    """Breaking binomial_ranks's median coverage (1 - 2 x below) into 1 - below makes this fail."""
    medians = list(np.random.default_rng(100 + processes).uniform(0.09, 0.11, processes))
    low_rank, high_rank = exact_ranks(processes, Fraction(1, 2))
    interval = process_interval(medians + [None])  # a process without a median does not count
    ordered = sorted(medians)
    assert interval.method == "order statistics of process medians"
    assert interval.processes == processes
    assert interval.ci95_low == ordered[low_rank - 1] and interval.ci95_high == ordered[high_rank - 1]
    assert interval.ci_coverage == pytest.approx(scipy_coverage(processes, 0.5, low_rank, high_rank), abs=1e-12)
    if processes == 6:  # the smallest K: [min, max], covering 1 - 2/64
        assert (low_rank, high_rank) == (1, 6) and interval.ci_coverage == pytest.approx(62 / 64, abs=1e-15)


def test_process_interval_needs_two_processes():
    """Breaking process_interval's `k < 2` into `k < 1` makes this fail (a KeyError for T_975[0])."""
    assert process_interval([0.1]) is None and process_interval([0.1, None]) is None


# -- 4. the p90 and p99 intervals ------------------------------------------------------------------
@pytest.mark.parametrize(("percentile", "runs"), [(90, 36), (90, 50), (90, 200), (99, 368), (99, 500), (99, 1500)])
def test_tail_interval_bounds_and_coverage(percentile, runs):
    """Breaking binomial_ranks's coverage into 1 - 2 x below for every q (right only for the median)
    makes this fail, and so does percentile_interval's lower end read at a[low] instead of a[low - 1].
    (1500 runs take the pmf's log-gamma branch.)"""
    q = percentile / 100
    seconds = list(np.random.default_rng(runs + percentile).lognormal(-2.3, 0.2, runs))
    low_rank, high_rank = exact_ranks(runs, Fraction(percentile, 100))
    ordered = sorted(seconds)
    expected_coverage = scipy_coverage(runs, q, low_rank, high_rank)
    assert expected_coverage >= 0.95

    assert percentile_interval(seconds, q) == pytest.approx(
        (ordered[low_rank - 1], ordered[high_rank - 1], expected_coverage), rel=1e-9
    )
    tail = getattr(tail_stats(seconds), f"p{percentile}")
    assert tail.ci95_low == ordered[low_rank - 1] and tail.ci95_high == ordered[high_rank - 1]
    assert tail.ci_coverage == pytest.approx(expected_coverage, rel=1e-9)
    # The value: linear interpolation between the order statistics around rank (n - 1) q + 1.
    position = (runs - 1) * q
    below = math.floor(position)
    by_hand = ordered[below] + (position - below) * (ordered[min(below + 1, runs - 1)] - ordered[below])
    assert tail.value == pytest.approx(by_hand, rel=1e-12)


def test_tail_intervals_are_not_estimable_below_36_runs_for_p90_and_368_for_p99():
    """Breaking binomial_ranks's two-sided tail (1 - level) / 2 into 1 - level makes this fail (p90
    then needs 29 runs), and so does MIN_RUNS_FOR_CI raised from 6 to 40."""
    for percentile, needed in ((90, 36), (99, 368)):
        q = Fraction(percentile, 100)
        # The upper end exists once even the largest run is above the percentile with 97.5%
        # probability: 1 - q**n >= 0.975, i.e. n >= log(0.025) / log(q).
        assert needed == math.ceil(math.log(0.025) / math.log(percentile / 100))
        assert exact_ranks(needed - 1, q) is None and exact_ranks(needed, q) is not None
        assert all(exact_ranks(n, q) is not None for n in range(needed, needed + 15))
        for runs in (1, 6, 20, needed - 1, needed, needed + 1):
            tail = getattr(tail_stats([0.1 + i * 1e-4 for i in range(runs)]), f"p{percentile}")
            assert tail.needed_runs == needed
            assert (tail.ci95_low is None) == (runs < needed), (percentile, runs)
            assert (tail.ci_coverage is None) == (runs < needed), (percentile, runs)


# -- 5. the divergence culprit ---------------------------------------------------------------------
def layer_record(index: int, own: float, propagated: float) -> LayerRecord:
    return LayerRecord(
        index, f"layer{index}", 0, "Conv2d", shadow=ErrorFigures(own), propagated=ErrorFigures(propagated)
    )


def test_the_culprit_is_the_first_record_over_the_tolerance_in_execution_order_not_the_worst():
    """Breaking summarise_records's culprit into the largest own error over the tolerance makes this
    fail, and so does its `value > tolerance` turned into `>=` (layer 1 sits exactly at it), and a
    container's operations placed one leaf later in in_execution_order (`after + 1`)."""
    tolerance = 0.01
    own_errors = [0.001, 0.01, 0.02, 0.004, 0.5, 0.03]  # 1 at the tolerance, 2 first over it, 4 the worst
    propagated = [0.001, 0.012, 0.03, 0.03, 0.6, 0.6]  # 1 is the first whose propagated error is over
    records = [layer_record(i, own, prop) for i, (own, prop) in enumerate(zip(own_errors, propagated))]
    # Handed over out of order: execution order is the records' index, not the list's order.
    shuffled = [records[i] for i in (4, 0, 5, 2, 1, 3)]
    out = summarise_records(shuffled, tolerance)
    assert out.first_divergent.index == 2 and out.first_divergent.own == 0.02
    assert out.over_tolerance == 3
    assert [r.index for r in out.top_own] == [4, 5, 2, 1, 3]

    in_order = summarise_records(records, tolerance)
    assert in_order.first_divergent.index == 2 and in_order.first_propagated.index == 1
    by_propagated = summarise_records(records, tolerance, shadow=False)
    assert by_propagated.culprit_by == "propagated" and by_propagated.first_divergent.index == 1

    # A container's own operations run after the leaf call they follow: one over the tolerance
    # after layer 1 comes before layer 2, so it is the culprit though layer 4 is far worse.
    container_ops = OpsRecord("block", 0, "Block", after=1, shadow=ErrorFigures(0.015))
    with_ops = summarise_records(records, tolerance, ops_records=[container_ops])
    assert with_ops.first_divergent.name == "block" and with_ops.first_divergent.kind == "ops"
    assert with_ops.over_tolerance == 4


# -- 6. the divergence error figures ---------------------------------------------------------------
def figures_in_float64(a: np.ndarray, b: np.ndarray) -> dict:
    """The four figures in float64, with 1 - cos (not cos: its digits near 1 are the information) as half
    the squared distance between the unit vectors, which does not cancel near cos = 1."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    d = a - b
    unit_gap = a / np.linalg.norm(a) - b / np.linalg.norm(b)
    return {
        "relative_l2": np.linalg.norm(d) / np.linalg.norm(b),
        "one_minus_cosine": float(unit_gap @ unit_gap) / 2,
        "max_abs": np.abs(d).max(),
        "normalised": np.abs(d).max() / np.abs(b).max(),
    }


@pytest.mark.parametrize(
    ("elements", "variant_dtype"),
    [
        (1000, torch.float32),
        (2 * FIGURE_CHUNK_ELEMENTS + 12345, torch.float32),
        (FIGURE_CHUNK_ELEMENTS + 7, torch.float16),
    ],
)
def test_error_figures_match_float64_on_random_tensors(elements, variant_dtype):
    """Breaking error_figures's running `max(max_d, sums[3])` into the last chunk's sums[3] makes
    this fail (the largest difference and the largest reference value sit in the first chunk), and so
    do `bb + sums[1]` into sums[1] and the cosine's denominator scaled by 1.001."""
    rng = np.random.default_rng(elements)
    reference = rng.standard_normal(elements).astype(np.float32)
    variant_np = reference + 0.01 * rng.standard_normal(elements).astype(np.float32)
    reference[3], variant_np[3] = 40.0, 41.5  # the largest |b| and |a - b|, in the first chunk
    variant = torch.from_numpy(variant_np).to(variant_dtype)
    expected = figures_in_float64(variant.float().numpy(), reference)  # the variant as it is held
    figures = error_figures(variant, reference)
    assert figures.relative_l2 == pytest.approx(expected["relative_l2"], rel=1e-6)
    # The figure is the cosine similarity itself; float32 dot products leave ~1e-5 of 1 - cos
    # (measured: 1.5e-5 relative with the float16 variant).
    assert 1 - figures.cosine == pytest.approx(expected["one_minus_cosine"], rel=1e-4)
    assert figures.max_abs == pytest.approx(expected["max_abs"], rel=1e-6)
    assert figures.normalised == pytest.approx(expected["normalised"], rel=1e-6)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request):
    """The figures' float32 sums are reduced in an order that depends on torch's thread count (an
    earlier test in the same process may have changed it): each analytic case runs under both."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


# Over ~800k float32 squares, the sums' rounding moves the figures by up to ~2e-6 (measured: the
# orthogonal case's cosine is 2.0e-6 on one thread, 4.2e-7 on two); the mutations below move them by
# 0.1 or more.
FLOAT32_SUMS = 1e-5


def test_error_figures_on_analytic_cases(torch_threads):
    """Breaking the cosine's `(norm_a - norm_b) ** 2` into `(norm_a + norm_b) ** 2` makes this fail, and
    so does the relative L2 divided by ||a|| instead of ||b||."""
    b = np.random.default_rng(7).standard_normal(3 * FIGURE_CHUNK_ELEMENTS // 2).astype(np.float32)
    top = float(np.abs(b).max())
    # a = 2b (exact in float32): ||a - b|| / ||b|| = 1, same direction, max|a - b| = max|b|.
    doubled = error_figures(torch.from_numpy(2 * b), b)
    assert doubled.relative_l2 == pytest.approx(1.0, rel=FLOAT32_SUMS)
    assert doubled.cosine == pytest.approx(1.0, abs=1e-9)
    assert doubled.max_abs == top and doubled.normalised == 1.0
    # a = b (1 + eps): relative L2 and normalised error eps, still the same direction.
    eps = 2.0**-10
    scaled = error_figures(torch.from_numpy(b * np.float32(1 + eps)), b)
    assert scaled.relative_l2 == pytest.approx(eps, rel=1e-3)
    assert scaled.normalised == pytest.approx(eps, rel=1e-3)
    assert scaled.max_abs == pytest.approx(eps * top, rel=1e-3)
    assert scaled.cosine == pytest.approx(1.0, abs=1e-9)
    # a = -b: opposite directions, cos = -1, ||a - b|| = 2 ||b||.
    flipped = error_figures(torch.from_numpy(-b), b)
    assert flipped.cosine == pytest.approx(-1.0, rel=FLOAT32_SUMS)
    assert flipped.relative_l2 == pytest.approx(2.0, rel=FLOAT32_SUMS)
    # Orthogonal halves: a = (u, 0), b = (0, u): cos = 0, ||a - b|| / ||b|| = sqrt 2.
    u = b[: len(b) // 2]
    zeros = np.zeros_like(u)
    orthogonal = error_figures(torch.from_numpy(np.concatenate([u, zeros])), np.concatenate([zeros, u]))
    assert orthogonal.cosine == pytest.approx(0.0, abs=FLOAT32_SUMS)
    assert orthogonal.relative_l2 == pytest.approx(math.sqrt(2), rel=FLOAT32_SUMS)


# -- 7. private memory and its peak ----------------------------------------------------------------
# A child that writes 64 MB of its own (private dirty) and reads 8 MB of a file only it maps (private
# clean: page cache mapped by no one else, written back first, else its pages count as dirty), then
# holds still while both sides read its smaps_rollup.
HOLD_PRIVATE_PAGES = """
import mmap, os, sys, tempfile
block = b"x" * (64 << 20)
backing = tempfile.TemporaryFile(dir=sys.argv[1])  # the checkout: on disk, where /tmp may be a tmpfs
backing.write(b"y" * (8 << 20))
backing.flush()
os.fsync(backing.fileno())
mapped = mmap.mmap(backing.fileno(), 0, access=mmap.ACCESS_READ)
touched = sum(mapped[i] for i in range(0, len(mapped), 4096))
print("ready", flush=True)
sys.stdin.read()
"""


def test_private_memory_is_private_clean_plus_private_dirty_of_smaps_rollup():
    """Breaking private_memory's sum to leave out Private_Clean makes this fail."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_PRIVATE_PAGES, str(Path(__file__).resolve().parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        fields = smaps_rollup_by_hand(child.pid)
        figures = private_memory(child.pid)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    assert fields["Private_Clean"] >= 8 << 20, "no private clean pages: is the tests folder on a tmpfs?"
    assert fields["Private_Dirty"] >= 64 << 20
    assert figures is not None
    assert figures.uss == fields["Private_Clean"] + fields["Private_Dirty"] + fields.get("Private_Hugetlb", 0)
    assert figures.rss == fields["Rss"] and figures.pss == fields["Pss"]
    assert private_memory("no-such-process") is None


def test_private_peak_adds_what_the_resident_set_gave_back_since_its_peak():
    """Breaking MemoryFigures.set_private_peak into the last reading (now.uss alone) makes this fail, and so does
    dropping its max(..., 0) (a resident set above the recorded peak would lower the figure)."""
    mb = 2**20
    memory = MemoryFigures(cpu_private_before_load_bytes=50 * mb, cpu_peak_rss_bytes=900 * mb)
    memory.set_private_peak(PrivateMemory(uss=300 * mb, pss=None, rss=500 * mb))
    assert memory.cpu_private_peak_bytes == 300 * mb + 400 * mb  # the 400 MB given back were private
    memory = MemoryFigures(cpu_private_before_load_bytes=50 * mb, cpu_peak_rss_bytes=900 * mb)
    memory.set_private_peak(PrivateMemory(uss=300 * mb, pss=None, rss=950 * mb))
    assert memory.cpu_private_peak_bytes == 300 * mb
    # Without the baseline before the load there is no own share to give.
    without_baseline = MemoryFigures(cpu_peak_rss_bytes=900 * mb)
    without_baseline.set_private_peak(PrivateMemory(uss=300 * mb, pss=None, rss=500 * mb))
    assert "cpu_private_peak_bytes" not in to_json(without_baseline)


def test_sampled_resident_peak_is_the_largest_reading_not_the_last():
    """Breaking MemoryTracker._sample's max(self._sampled_peak, self.rss()) into the last reading makes
    this fail."""
    tracker = MemoryTracker(torch.device("cpu"))
    readings = iter([300, 900, 400, 200])

    def scripted_rss():
        value = next(readings, None)
        if value is None:  # the readings are over: the sampler stops, and the window closes at 250
            tracker._sampling = False
            return 250
        return value

    # The path taken where the kernel's high-water mark cannot be reset (no /proc/self/clear_refs).
    tracker.rss = scripted_rss
    tracker._hwm_exact, tracker._sampled_peak, tracker._sampling = False, 100, True
    tracker._sample()
    assert tracker.peak_reading().cpu_peak_rss_bytes == 900
