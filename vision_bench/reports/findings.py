"""Findings: observations computed from a run's numbers (fastest, noisiest, cold start, new input
shapes), never about outputs or activations."""

from __future__ import annotations

from typing import Any

from ..common import format_bytes, ms
from ..records.model_result import ModelResult
from ..variants.variants_report import variant_findings

UNSTABLE_CI_WIDTH = 0.20  # an interval of a median wider than this share of it: noisy timing
MIN_RUNS_FOR_RANGE = 5  # [min, max] of 5 runs covers the median with 93.8%: enough to flag noise
COLD_START_FACTOR = 3.0  # cold start this many times the warm median is a finding
SHAPE_WARMUP_FACTOR = 1.3  # first run on a new image this much slower than its repeats


def findings(results: list[ModelResult]) -> list[str]:
    """Observations computed from this run's numbers; none about outputs or activations."""
    done: list[Any] = [r for r in results if r.status == "complete"]  # complete: every figure is there
    warm = [r for r in done if r.latency_end_to_end.n]
    lines = extremes(warm, done)
    for r in warm:
        lines += unstable_timing(r) + cold_start_and_shapes(r)
    return lines + variant_findings(results)


def extremes(warm: list[Any], done: list[Any]) -> list[str]:
    """The fastest and slowest, the most memory, the largest and the costliest model (complete
    ModelResults: every figure is there, hence Any)."""
    lines = []
    if len(warm) >= 2:
        fast = min(warm, key=lambda r: r.latency_end_to_end.median)
        slow = max(warm, key=lambda r: r.latency_end_to_end.median)
        ratio = slow.latency_end_to_end.median / fast.latency_end_to_end.median
        fps = f" ({fast.fps:.2f} FPS)" if fast.fps else ""  # a file read back may not carry it
        lines.append(
            f"Fastest: {fast.model}, {ms(fast.latency_end_to_end.median)} ms median end to end"
            f"{fps}. Slowest: {slow.model}, {ms(slow.latency_end_to_end.median)} ms "
            f"({ratio:.1f}x the fastest)."
        )
    if len(done) >= 2:
        mem = max(done, key=lambda r: r.memory.peak_bytes)
        lines.append(f"Most memory: {mem.model}, {format_bytes(mem.memory.peak_bytes)} ({mem.memory.peak_kind}).")
        big = max(done, key=lambda r: r.parameters)
        heavy = max(done, key=lambda r: r.gflops)
        lines.append(
            f"Largest: {big.model}, {big.parameters / 1e6:.1f} M parameters; most compute per image: "
            f"{heavy.model}, {heavy.gflops:.1f} GFLOPs at input {heavy.input_shape}."
        )
    return lines


def unstable_timing(r: Any) -> list[str]:
    """Images whose median's interval is wider than UNSTABLE_CI_WIDTH of it.

    Noise is judged within one image (mixing input sizes widens any interval) from the width of an
    interval of its median, not from the CoV of a handful of runs. Below the runs a 95% interval
    needs, [min, max] is one with coverage 1 - 2/2^n (93.8% with the default 5 runs an image)."""
    lines = []
    for name, img in (r.latency_per_image or {}).items():
        steady = img.steady
        if steady.ci95_low is not None:
            low, high, what = steady.ci95_low, steady.ci95_high, "95% interval"
        elif (steady.n or 0) >= MIN_RUNS_FOR_RANGE:
            low, high = steady.min, steady.max
            what = f"range of its runs (a {(1 - 2 / 2**steady.n) * 100:.1f}% interval)"
        else:
            continue
        width = (high - low) / steady.median
        if width > UNSTABLE_CI_WIDTH:
            lines.append(
                f"Unstable timing: {r.model} on {name}: median {ms(steady.median)} ms, {what} "
                f"[{low * 1000:.1f}, {high * 1000:.1f}] ms, {width * 100:.0f}% of the median wide over "
                f"{steady.n} timed runs; treat its figures with care or raise --runs."
            )
    return lines


def cold_start_and_shapes(r: Any) -> list[str]:
    """A cold start far above the warm median, and images whose first run paid for a new input shape."""
    lines = []
    e2e, cold = r.latency_end_to_end, r.cold_start.total_s
    if cold > COLD_START_FACTOR * e2e.median:
        lines.append(
            f"Cold start: {r.model} first run {ms(cold)} ms, {cold / e2e.median:.1f}x its warm "
            f"median ({ms(e2e.median)} ms)."
        )
    new_shape = [
        (name, img.first_run_s / img.steady.median)
        for name, img in (r.latency_per_image or {}).items()
        if not img.first_is_cold_start and img.steady.n
    ]
    slow_shapes = [(name, ratio) for name, ratio in new_shape if ratio > SHAPE_WARMUP_FACTOR]
    if slow_shapes:
        lines.append(
            f"New input shape: {r.model}'s first run on "
            + ", ".join(f"{name} took {ratio:.2f}x its timed median" for name, ratio in slow_shapes)
            + "; varying input sizes cost a warm-up each (kernels are built per shape). The warm-up "
            "rounds take this out of the timed runs."
        )
    return lines
