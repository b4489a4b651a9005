"""The timed part of a model's pass, shared by the reference, its variants and the sweep points: the
cold start, warm-up and timed runs (a fixed --runs or --precision's stopping rule, the machine-state
guard at every run), their statistics, and the memory figures of the window, as records
(records/measurement.py): `time_runs`/`time_window` fill a record's runs, guard and precision,
`latency_summary` makes their statistics, MemoryFigures the memory figures."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..common import log
from ..images import load_rgb
from ..records.measurement import (
    PHASES,
    GuardRecord,
    ImageLatency,
    LatencyStats,
    LatencyTails,
    MachineState,
    MemoryFigures,
    PhaseMedians,
    PrecisionRecord,
    RunKind,
    RunRecord,
)
from .machine_state import MachineGuard, summarize_state
from .memory import private_memory
from .stats import latency_stats, tail_stats
from .stopping_rule import STOPPED_BY, StoppingRule


def time_runs(bench, ctx, window, phase, first_image, label: str = ""):
    """The cold start on the first image, the warm-up rounds and the timed runs over all images,
    each run appended to `window.runs` (marked with its kind) as it ends; returns the cold start's
    prediction. `window` is any record with `runs`, `guard` and `precision` (a ModelResult, a
    VariantResult, a SweepPoint, a TimedWindow): what a failure leaves stays in it. Timed runs are a
    fixed --runs per image, or with --precision rounds over the images until the stopping rule says
    (`window.precision` says why); the machine-state guard samples at every timed run's boundaries
    (`window.guard`, also set on a failure). `phase(name)` names each phase; `label` prefixes the log
    lines (a variant's name)."""
    runs: list[RunRecord] = window.runs
    settings = ctx.settings
    rule = stopping_rule(settings)
    total = (
        f"max {1 + settings.warmup * len(ctx.images) + rule.max_runs}"
        if rule
        else 1 + (settings.warmup + settings.runs) * len(ctx.images)
    )

    def run(path, image, kind: RunKind):
        return time_one_run(bench, runs, path, image, kind, f"{len(runs) + 1}/{total}", label)

    # One progress reporter a phase, not a run: no thread is started between two timed runs.
    def runs_done():
        return f"run {len(runs) + 1} of {total}"

    with phase("cold_start"), bench.progress(f"{label}cold start", through_network=False, detail=runs_done):
        first_prediction = run(ctx.images[0], first_image, RunKind.COLD)
    images = [(path, first_image if path == ctx.images[0] else load_rgb(path)) for path in ctx.images]
    with phase("warmup"), bench.progress(f"{label}warmup runs", through_network=False, detail=runs_done):
        for path, image in images:
            for _ in range(settings.warmup):
                run(path, image, RunKind.WARMUP)
    limit = settings.busy_limit_pct
    guard = MachineGuard(ctx.device, busy_limit=None if limit is None else limit / 100)
    try:
        with phase("timed"), bench.progress(f"{label}timed runs", through_network=False, detail=runs_done):
            stopped_by = timed_rounds(images, run, runs, guard, rule, settings.runs)
    finally:
        guard.close()
        window.guard = guard.record()
    if rule:
        precision = rule.record(timed_seconds(runs), stopped_by)
        window.precision = precision
        log_precision(precision, label)
    return first_prediction


def time_one_run(bench, runs: list[RunRecord], path, image, kind: RunKind, count: str, label: str):
    """One run through the pipeline, appended to `runs` and logged as run `count`; its prediction."""
    prediction, seconds, phases = bench.timed_run(image)
    record = RunRecord(
        image=path.name,
        image_size=[image.width, image.height],
        kind=kind,
        cold=kind == RunKind.COLD,
        total_s=seconds,
        **{f"{k}_s": phases.get(k) for k in PHASES},
    )
    runs.append(record)
    log(
        f"INFER {count}",
        f"{label}{path.name} | {seconds * 1000:.1f} ms end to end, forward {(record.forward_s or 0.0) * 1000:.1f} ms"
        + {RunKind.COLD: " (cold start)", RunKind.WARMUP: " (warm-up)", RunKind.TIMED: ""}[kind],
    )
    return prediction


def timed_rounds(images: list, run, runs: list[RunRecord], guard, rule, runs_per_image: int) -> str:
    """Rounds over the images (a fixed count a image, or one run a image a round until the stopping
    rule says), the guard sampling at every run's boundaries; returns what stopped them."""
    guard.begin()
    if rule:
        rule.start()
    while True:
        for path, image in images:
            for _ in range(1 if rule else runs_per_image):
                run(path, image, RunKind.TIMED)
                runs[-1].state = guard.after_run()
        stopped_by = rule.reason(timed_seconds(runs)) if rule else "fixed"
        if stopped_by:
            return stopped_by


def log_precision(precision: PrecisionRecord, label: str) -> None:
    reached = precision.reached_pct
    log(
        "STATS",
        f"{label}--precision {precision.target_pct:g}%: {STOPPED_BY[precision.stopped_by]} after "
        f"{precision.runs} timed runs in {precision.seconds:.1f} s (interval "
        + (f"within +-{reached:.2f}% of the median)" if reached is not None else "not estimable)"),
    )


def timed_seconds(runs: list[RunRecord]) -> list[float]:
    return [r.total_s for r in runs if r.kind == RunKind.TIMED]


def stopping_rule(settings) -> StoppingRule | None:
    """--precision's rule, its time cap shared by the model's --processes; None for a fixed --runs."""
    if settings.precision is None:
        return None
    return StoppingRule(settings.precision, max_seconds=settings.max_time / max(settings.processes, 1))


@dataclasses.dataclass
class LatencySummary:
    """The headline statistics of a window's runs, as a model result holds them under its keys."""

    cold_start: RunRecord | None
    latency_end_to_end: LatencyStats
    latency_forward: LatencyStats
    latency_tails: LatencyTails
    latency_phases_median: PhaseMedians
    fps: float | None
    machine_state: MachineState | None  # None without a guard record
    latency_per_image: dict[str, ImageLatency]

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) of the result's keys; no machine_state key without one."""
        pairs = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        return [(key, value) for key, value in pairs if key != "machine_state" or value is not None]


def latency_summary(runs: list[RunRecord], guard: GuardRecord | None, discard_flagged: bool = False) -> LatencySummary:
    """Headline statistics from the timed runs only; the cold start and warm-up runs stay in the runs,
    marked, and in the per-image table. With `discard_flagged` (--discard-throttled) timed runs the
    guard flagged throttled, shared or busy are marked 'discarded' and left out (unless that would leave
    none: then all stay, and the machine state says so)."""
    timed_all = [r for r in runs if r.kind == RunKind.TIMED]
    for r in timed_all:
        r.discarded = None
    flagged = [r for r in timed_all if r.flagged]
    if discard_flagged and len(flagged) < len(timed_all):
        for r in flagged:
            r.discarded = True
    timed = [r for r in timed_all if not r.discarded]
    e2e = latency_stats([r.total_s for r in timed])
    state = None
    if guard:
        state = summarize_state(guard, timed_all, e2e.median, discarded=len(timed_all) - len(timed))
        if discard_flagged and flagged and not len(timed_all) - len(timed):
            state.warnings.append("--discard-throttled: every timed run was flagged; none was discarded")
    return LatencySummary(
        cold_start=runs[0],
        latency_end_to_end=e2e,
        latency_forward=latency_stats([r.forward_s for r in timed if r.forward_s is not None]),
        latency_tails=tail_stats([r.total_s for r in timed]),
        latency_phases_median=PhaseMedians(
            **{p: (float(np.median([r.phase_s(p) for r in timed])) if timed else None) for p in PHASES}
        ),
        fps=1.0 / e2e.median if e2e.median else None,
        machine_state=state,
        latency_per_image=per_image_latency(runs, {id(r) for r in timed}),
    )


def per_image_latency(runs: list[RunRecord], kept: set[int]) -> dict[str, ImageLatency]:
    """Per image: the first run it got (cold start or first warm-up: a new input shape builds new
    kernels on CPU and GPU alike), its warm-up runs, and the statistics of its timed runs (`kept`:
    the ids of the runs in the statistics)."""
    per_image = {}
    for name in dict.fromkeys(r.image for r in runs):
        mine = [r for r in runs if r.image == name]
        per_image[name] = ImageLatency(
            image_size=mine[0].image_size,
            first_run_s=mine[0].total_s,
            first_is_cold_start=mine[0].cold,
            warmup_s=[r.total_s for r in mine if r.kind == RunKind.WARMUP],
            steady=latency_stats([r.total_s for r in mine if id(r) in kept]),
        )
    return per_image


def summarize_runs(result, discard_flagged: bool = False) -> None:
    """A model result's (ModelResult's) headline statistics from its runs, stored in its fields."""
    for key, value in latency_summary(result.runs, result.guard, discard_flagged).items():
        setattr(result, key, value)


def figures_before_load(tracker, device) -> MemoryFigures:
    """What the process holds just before a model loads: the baseline of the model's own share."""
    private = private_memory()
    return MemoryFigures(
        cpu_rss_before_load_bytes=tracker.rss(),
        cpu_private_before_load_bytes=private.uss if private else None,
        cuda_allocated_before_load_bytes=tracker.cuda_allocated() if device.type == "cuda" else None,
    )
