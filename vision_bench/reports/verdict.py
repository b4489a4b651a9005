"""The report's first section, the verdict: what a reader came for, in a dozen lines. The run's status and
each failed model with its reason; the fastest and the leanest model; per model with variants, the fastest
variant that passes parity (or that none does, with the nearest miss); the machine state in one line; the
weights. Every figure in it is in the sections below; it only picks them."""

from __future__ import annotations

from ..common import format_bytes, ms
from ..document.blocks import Block, BulletList, Heading
from ..measure.sampling_report import machine_state_summary, throttled_in_statistics
from ..records.codec import known
from ..records.measurement import LatencyStats
from ..records.model_result import ModelResult
from ..records.run_document import RunDocument
from ..records.variants import VariantResult
from ..variants.variants_report import relative_speed, variants_of

FAILED_SHOWN = 3  # failed models named one a line; more are counted on one line
NOT_STARTED = ("not run", "running")


def verdict_blocks(data: RunDocument) -> list[Block]:
    """The verdict as one heading and one list, each item one line."""
    results = [r for r in data.models if r.status != "not run"]
    items = [status_line(data)] + failure_lines(data.models)
    items += [line for line in (extremes_line(results), *map(variant_line, results)) if line]
    items += [machine_state_line(results), weights_line(data)]
    return [Heading(2, "Verdict", "verdict"), BulletList([i for i in items if i])]


def took_text(data: RunDocument) -> str:
    """The run's time in words that stay true: 'took N s' once it ended, 'N s so far' while it runs or
    when it was stopped (Ctrl-C, SIGTERM) before it could say how long it would have taken."""
    seconds = known(data.total_seconds) or 0
    if data.status in ("running", "interrupted"):
        return f"{seconds:.0f} s so far"
    return f"took {seconds:.0f} s"


def status_line(data: RunDocument) -> str:
    models = data.models
    done = sum(r.status == "complete" for r in models)
    running = [str(r.model) for r in models if r.status == "running"]
    now = f"; running now: {', '.join(running)} (this report is rewritten after every model)" if running else ""
    return f"**Run {known(data.status)}.** {done} of {len(models)} models complete; {took_text(data)}{now}."


def failure_lines(models: list[ModelResult]) -> list[str]:
    """Each model that did not complete, with its one-line reason (at most FAILED_SHOWN named)."""
    stopped = [r for r in models if r.status not in ("complete", *NOT_STARTED)]
    lines = []
    for r in stopped[:FAILED_SHOWN]:
        error = r.error
        phase = (error.phase if error else None) or r.phase_reached or r.phase
        reason = one_line(error.text) if error and error.text else "no error recorded"
        where = f" in {phase}" if phase and f"during {phase}" not in reason else ""  # a timeout names its phase
        lines.append(f"**{r.model} {r.status}**{where}: {reason}")
    if len(stopped) > FAILED_SHOWN:
        rest = ", ".join(f"{r.model} ({r.status})" for r in stopped[FAILED_SHOWN:])
        lines.append(f"Also stopped: {rest} (see Failed or interrupted models).")
    not_run = [r.model for r in models if r.status == "not run"]
    if not_run:
        lines.append(f"Not started: {', '.join(f'{name} (not run)' for name in not_run)}.")
    return lines


def one_line(text: str, width: int = 140) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 3] + "..."


def extremes_line(results: list[ModelResult]) -> str | None:
    """The fastest model end to end (with its median's interval) and the leanest in memory (its own
    share when measured, the process's peak otherwise); None with fewer than two finished models."""
    timed = [r for r in results if r.status == "complete" and median(r)]
    if not timed:
        return None
    fast = min(timed, key=median)
    e2e = fast.latency_end_to_end or LatencyStats()
    line = f"Fastest: **{fast.model}**, {ms(e2e.median)} ms {e2e.interval_text()} end to end"
    close = [str(r.model) for r in timed if r is not fast and overlaps(e2e, r.latency_end_to_end or LatencyStats())]
    if close and e2e.ci95_low is None:
        line += " (no interval: not shown faster than the others)"
    elif close:
        line += f" (its interval overlaps {', '.join(close)}'s: not shown faster)"
    if len(timed) == 1:
        return line + " (the only model timed)."
    measured = [r for r in timed if r.memory and r.memory.peak_bytes]
    lean = min(measured, key=memory_key, default=None)
    if lean is None or lean.memory is None:
        return line + "."
    own, peak = lean.memory.peak_over_baseline_bytes, format_bytes(lean.memory.peak_bytes)
    memory = f"{format_bytes(own)} of its own (peak {peak})" if own is not None else f"peak {peak}"
    return line + f"; leanest: **{lean.model}**, {memory}."


def overlaps(a: LatencyStats, b: LatencyStats) -> bool:
    """The two medians' 95% intervals overlap (no interval on either side: they cannot be told apart)."""
    if None in (a.ci95_low, a.ci95_high, b.ci95_low, b.ci95_high):
        return True
    return (b.ci95_low or 0) <= (a.ci95_high or 0) and (a.ci95_low or 0) <= (b.ci95_high or 0)


def median(r: ModelResult) -> float:
    return (r.latency_end_to_end or LatencyStats()).median or 0.0


def memory_key(r: ModelResult) -> int:
    memory = r.memory
    if memory is None:
        return 0
    own = memory.peak_over_baseline_bytes
    return own if own is not None else memory.peak_bytes or 0


def variant_line(r: ModelResult) -> str | None:
    """The fastest variant that passes parity, or that none does and which came nearest."""
    done = [v for v in variants_of(r) if v.complete]
    reference = next((v for v in done if v.reference), None)
    others = [v for v in done if not v.reference]
    if not others:
        failed = [v for v in variants_of(r) if not v.complete and not v.reference]
        if failed:
            return f"{r.model}: no variant ran to the end ({', '.join(f'{v.variant} {v.status}' for v in failed)})."
        return None
    name = reference.variant if reference else "torch-fp32"
    passing = [v for v in others if v.parity and v.parity.passes and v.speedup_forward]
    if passing:
        best = max(passing, key=lambda v: v.speedup_forward or 0)
        speed = best.speedup_forward or 0
        if speed > 1:
            return f"{r.model}: **{best.variant}** passes parity, forward {relative_speed(speed, name)}."
        return (
            f"{r.model}: keep **{name}**; {best.variant} passes parity but its forward is "
            f"{relative_speed(speed, name)}."
        )
    miss = nearest_miss(others)
    return f"{r.model}: **none passes** parity; nearest miss {miss_text(miss, name)}."


def nearest_miss(variants: list[VariantResult]) -> VariantResult:
    """The variant whose worst normalised error is smallest (an unknown error counts as the largest)."""
    return min(variants, key=lambda v: v.parity_worst.normalised_error if v.parity_worst.normalised_error else 1e300)


def miss_text(v: VariantResult, reference: str) -> str:
    error = v.parity_worst.normalised_error
    reasons = v.parity.reasons if v.parity else []
    why = one_line(reasons[0], 80) if reasons else (f"error {error:.3g}" if error is not None else "not compared")
    speed = f", forward {relative_speed(v.speedup_forward, reference)}" if v.speedup_forward else ""
    return f"{v.variant} ({why}{speed})"


def machine_state_line(results: list[ModelResult]) -> str:
    """The machine state in one line: the Machine state section's first line, how many models differ
    from it, and the models whose statistics hold flagged runs."""
    lines = machine_state_summary(results)
    if not lines:
        return "Machine state: not recorded."
    head = lines[0].replace("machine not clean", "machine **not clean**", 1)
    differ = f"; {len(lines) - 1} model(s) differ, see Machine state" if len(lines) > 1 else ""
    flagged = [str(r.model) for r in results if r.machine_state and throttled_in_statistics(r)]
    in_statistics = f"; flagged runs in the statistics of {', '.join(flagged)}" if flagged else ""
    return f"Machine state: {head}{differ}{in_statistics}."


def weights_line(data: RunDocument) -> str:
    ran = [r for r in data.models if r.status != "not run"]
    random = [str(r.model) for r in ran if r.weights == "random"]
    if random:
        who = "Every model" if len(random) == len(ran) else ", ".join(random)
        return (
            f"**Warning: random weights.** {who} ran with random weights: timing, memory and FLOPs are valid; "
            "outputs, activation statistics and what parity means for a trained model are not."
        )
    kinds = sorted({str(r.weights) for r in ran if r.weights})
    return f"Weights: {', '.join(kinds) or known(data.config.weights) or 'not recorded'}."
