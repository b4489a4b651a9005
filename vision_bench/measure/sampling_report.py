"""Report text for how far to trust a model's timing: the machine state the guard saw (the run's
summary in one line, per-model lines only where a model's state differs, each model's detail in
its section, --compare), the --precision stop, the --processes medians and the tail percentiles."""

from __future__ import annotations

import dataclasses
import re

from ..common import ms
from ..document.blocks import Block, BulletList, Note, Paragraph
from ..records.measurement import FlagCounts, MachineState, RunKind, RunRecord
from ..records.model_result import ModelResult
from .cpu_share import largest_shares
from .machine_state import FLAGS, percent_range, spread, state_warnings
from .stopping_rule import STOPPED_BY

CLEAN = "machine clean during all timed runs"


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
        f"{state.flagged.throttled} throttled, {state.flagged.shared} shared"
        + ("" if state.flagged.busy is None else f", {state.flagged.busy} busy")
        + " of "
        f"{state.runs_sampled} timed runs" + (f" ({state.discarded} discarded)" if state.discarded else "")
    ]
    if state.other_cpu_share_window is not None:
        parts.append(
            f"other processes used {state.other_cpu_share_window * 100:.0f}% of the CPU time"
            + (f" (runs {percent_range(state.other_cpu_share)})" if state.other_cpu_share else "")
            + (
                f", the tool's own processes {state.own_cpu_share_window * 100:.0f}%"
                if state.own_cpu_share_window is not None
                else ""
            )
        )
    for key, unit, digits in (
        ("sm_clock_mhz", "MHz SM", 0),
        ("mem_clock_mhz", "MHz memory", 0),
        ("temperature_c", "C", 0),
        ("power_w", "W", 0),
        ("cpu_freq_mhz", "MHz CPU", 0),
    ):
        text = fmt_range(getattr(state, key), unit, digits)
        if text:
            parts.append(text)
    load = fmt_range(state.load1, "", 1)
    if load:
        parts.append(f"load average {load.strip()} (context: it counts the tool's own threads)")
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
    """Runs flagged throttled, shared or busy that count in the statistics (not left out by --discard-throttled)."""
    return flagged_in_statistics(r.runs)


def flagged_in_statistics(runs: list[RunRecord] | None) -> bool:
    """throttled_in_statistics of a model's or a variant's runs."""
    return any(run.flagged and not run.discarded for run in runs or [] if run.kind == RunKind.TIMED)


def machine_state_blocks(results: list[ModelResult]) -> list[Block]:
    """The run's machine state: its summary line, a line per model whose state differs, and one
    warning when any model's was not clean (each model's detail is in its own section)."""
    lines = machine_state_summary(results)
    if not lines:
        return []
    blocks: list[Block] = [Paragraph(f"Machine state during the timed runs: {lines[0]}.")]
    if lines[1:]:
        blocks.append(BulletList(lines[1:]))
    if any(not_clean(r.machine_state) for r in results):
        blocks.append(
            Note(
                "the timings of the models it names may describe the machine as much as the models (rerun on a "
                "quiet machine, or --discard-throttled leaves the flagged runs out).",
                title="Warning: the machine was not clean during timed runs:",
            )
        )
    return blocks


def machine_state_summary(results: list[ModelResult]) -> list[str]:
    """The run's machine state in words: one line when every model's state agrees ('machine clean
    during all timed runs', or what made it not clean, figures pooled over the models: the share of
    the CPU time other processes used and the busiest of them), else the line of the most common
    state followed by a line per model whose state differs. Empty when no model has one."""
    done = [r for r in results if r.machine_state]
    groups: dict[tuple, list[ModelResult]] = {}
    for r in done:
        groups.setdefault(condition(r.machine_state), []).append(r)
    if not groups:
        return []
    common = max(groups.values(), key=len)
    states = [r.machine_state for r in common if r.machine_state]
    if len(groups) == 1:
        return [
            CLEAN if states[0].clean else f"machine not clean during the timed runs of every model: {describe(states)}"
        ]
    first = (
        f"machine clean during the timed runs of {len(common)} of {len(done)} models"
        if states[0].clean
        else f"machine not clean during the timed runs of {len(common)} of {len(done)} models: {describe(states)}"
    )
    return [first] + [
        f"{r.model}: {'clean' if r.machine_state.clean else 'not clean: ' + describe([r.machine_state])}"
        for r in done
        if r not in common and r.machine_state
    ]


RUN_COUNT_WARNING = re.compile(r"\d+ of \d+ timed runs ")


def extra_warnings(state: MachineState) -> list[str]:
    """A state's warnings its flags and readings do not give (a file written by an earlier version, or
    --discard-throttled's every-run-flagged)."""
    own = state_warnings(state)
    # "N of M timed runs ..." lines are recomputed from the flags (state_warnings): an older file's
    # wording of the same count would name it twice.
    return [w for w in state.warnings if w not in own and not RUN_COUNT_WARNING.match(w)]


def condition(state: MachineState | None) -> tuple:
    """What makes two models' machine states agree: clean or not, and for what reasons (not the figures)."""
    if state is None:
        return ()
    flagged = tuple(flag for flag in FLAGS if getattr(state.flagged, flag))
    governors = tuple(g for g in state.governors or () if g != "performance")
    extras = tuple(re.sub(r"[\d.]+", "#", w.split(":")[0]) for w in extra_warnings(state))
    return (state.clean, flagged, governors, (state.nvml or "ok") != "ok", extras)


def describe(states: list[MachineState]) -> str:
    """Why these models' machine states were not clean, figures pooled over them."""
    pooled = dataclasses.replace(
        states[0],
        runs_sampled=sum(s.runs_sampled for s in states),
        flagged=FlagCounts(**{flag: sum(getattr(s.flagged, flag) or 0 for s in states) for flag in FLAGS}),
        other_cpu_share=spread([x for s in states for x in s.other_cpu_share or ()]),
        busiest=largest_shares(p for s in states for p in s.busiest or ()),
        throttle_reasons=sorted({x for s in states for x in s.throttle_reasons}),
        other_pids=sorted({x for s in states for x in s.other_pids}),
    )
    texts = state_warnings(pooled) + [w for s in states for w in extra_warnings(s)]
    return "; ".join(dict.fromkeys(texts))


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
    if r.machine_state:
        lines.append(f"Machine state during the timed runs: {state_text(r.machine_state)}")
    tails = r.latency_tails
    if tails:
        lines.append(
            "Tails (end to end, distribution-free 95% intervals): "
            + "; ".join(f"{name} {tail.text()}" for name, tail in tails.items())
        )
    return lines
