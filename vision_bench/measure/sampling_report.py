"""Report text for how far to trust a model's timing: the machine state the guard saw (System
section, --compare), the --precision stop, the --processes medians and the tail percentiles."""

from __future__ import annotations

from ..common import ms
from ..document.blocks import Block, BulletList, Note, Paragraph
from ..records.measurement import MachineState, RunKind
from ..records.model_result import ModelResult
from .stopping_rule import STOPPED_BY


def fmt_range(values, unit: str, digits: int = 0) -> str | None:
    if not values:
        return None
    low, high = values
    return f"{low:.{digits}f} {unit}" if low == high else f"{low:.{digits}f}-{high:.{digits}f} {unit}"


def state_text(state: MachineState | None) -> str:
    """One line of a model's machine state over its timed runs."""
    if not state:
        return "not recorded (results written before the machine-state guard)"
    parts = [
        f"{state.flagged.throttled} throttled, {state.flagged.shared} shared of "
        f"{state.runs_sampled} timed runs" + (f" ({state.discarded} discarded)" if state.discarded else "")
    ]
    for key, unit, digits in (
        ("sm_clock_mhz", "MHz SM", 0),
        ("mem_clock_mhz", "MHz memory", 0),
        ("temperature_c", "C", 0),
        ("power_w", "W", 0),
        ("cpu_freq_mhz", "MHz CPU", 0),
        ("load1", "load average", 1),
    ):
        text = fmt_range(getattr(state, key), unit, digits)
        if text:
            parts.append(text)
    if state.governors:
        parts.append(f"governor {', '.join(state.governors)}")
    if state.involuntary_switches_per_run is not None:
        parts.append(f"{state.involuntary_switches_per_run} involuntary context switches per run (median)")
    if state.guard_cost_ratio is not None and state.guard_cost_s_per_run is not None:
        parts.append(
            f"guard cost {state.guard_cost_s_per_run * 1e6:.0f} us per run, "
            f"{state.guard_cost_ratio * 100:.3f}% of the median"
        )
    return "; ".join(parts)


def not_clean(state: MachineState | None) -> bool:
    return state is not None and not state.clean


def throttled_in_statistics(r: ModelResult) -> bool:
    """Runs flagged throttled or shared that count in the statistics (not left out by --discard-throttled)."""
    return any(run.flagged and not run.discarded for run in r.runs or [] if run.kind == RunKind.TIMED)


def machine_state_blocks(results: list[ModelResult]) -> list[Block]:
    """The System section's machine state: one line per model, and a warning when it was not clean."""
    done = [r for r in results if r.machine_state]
    if not done:
        return []
    blocks: list[Block] = [
        Paragraph("Machine state during the timed runs (sampled between runs only):"),
        BulletList([f"{r.model}: {state_text(r.machine_state)}" for r in done]),
    ]
    for r in done:
        if not_clean(r.machine_state):
            blocks.append(
                Note(
                    "; ".join(r.machine_state.warnings if r.machine_state else [])
                    + ". Its timings may describe the machine as much as the model.",
                    title=f"Warning: {r.model} ran on a machine that was not clean:",
                )
            )
    return blocks


def sampling_items(r: ModelResult) -> list[str]:
    """A model section's facts: why its timed runs stopped, its processes, its tails."""
    lines = []
    precision = r.precision
    if precision:
        reached = precision.reached_pct
        lines.append(
            f"Timed runs: --precision {precision.target_pct:g}%, {STOPPED_BY[precision.stopped_by]} "
            f"after {precision.runs} runs in {precision.seconds:.1f} s; the median's interval reached "
            + (f"+-{reached:.2f}%" if reached is not None else "no interval")
        )
    if r.processes:
        method = r.latency_interval
        lines.append(
            f"{len(r.processes)} processes, runs pooled; the median's 95% interval is "
            f"{method.method if method else 'n/a'}: {method.why if method else ''}"
        )
        lines.append(
            "Per-process end-to-end medians: "
            + ", ".join(
                f"#{p.process} {ms(p.median)} ms ({p.n} runs"
                + (f", {STOPPED_BY.get(p.stopped_by or '', p.stopped_by)}" if p.stopped_by != "fixed" else "")
                + ")"
                for p in r.processes or []
                if p.median is not None
            )
        )
    tails = r.latency_tails
    if tails:
        lines.append(
            "Tails (end to end, distribution-free 95% intervals): "
            + "; ".join(f"{name} {tail.text()}" for name, tail in tails.items())
        )
    return lines
