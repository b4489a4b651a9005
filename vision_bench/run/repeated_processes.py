"""--processes K (pyperf's idea): one model in K fresh workers one after another, each with its own
load, cold start, warm-up and timed runs; their timed runs pooled into one record whose medians'
intervals account for the spread between processes, with the per-process medians beside them."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..common import log
from ..measure.machine_state import merge_guards
from ..measure.stopping_rule import process_interval
from ..measure.timed_runs import summarize_runs
from ..records.measurement import GuardRecord, LatencyInterval, LatencyStats, ProcessSummary, RunKind, RunRecord
from ..records.model_result import ModelResult
from ..settings import RunContext
from .model_pass import new_result
from .worker_processes import run_in_worker


def run_processes(cls, ctx: RunContext, result: ModelResult) -> None:
    """Fill `result` from K workers: the first does everything (FLOPs, dissection, ...), the later
    ones only load and time the model. A failed worker ends the model with its record."""
    count = ctx.settings.processes
    records = []
    for index in range(count):
        log("INFO", f"{cls.MODEL_NAME}: process {index + 1} of {count}")
        record = result if index == 0 else new_result(cls, ctx)
        wctx = dataclasses.replace(ctx, timing_only=index > 0)
        run_in_worker(cls, wctx, record, part=index + 1)
        records.append(record)
        if record.status != "complete":
            break
    if len(records) > 1:
        pool_processes(result, records, ctx.settings.discard_throttled)
    if result is not records[-1]:  # a later process failed: the model did, with that process's error
        result.status, result.error = records[-1].status, records[-1].error


def process_summary(index: int, record: ModelResult) -> ProcessSummary:
    e2e = record.latency_end_to_end or LatencyStats()
    precision = record.precision
    cold_start = record.cold_start
    return ProcessSummary(
        process=index,
        pid=record.worker.pid if record.worker else None,
        status=record.status,
        median=e2e.median,
        ci95_low=e2e.ci95_low,
        ci95_high=e2e.ci95_high,
        n=e2e.n,
        forward_median=(record.latency_forward or LatencyStats()).median,
        load_seconds=record.load_seconds,
        cold_start_s=cold_start.total_s if cold_start else None,
        stopped_by=precision.stopped_by if precision else "fixed",
        reached_pct=precision.reached_pct if precision else None,
    )


def pool_processes(result: ModelResult, records: list[ModelResult], discard_flagged: bool) -> None:
    """The first record, its runs replaced by every process's (each marked with its process), the
    statistics recomputed over the pool, and the medians' intervals over the process medians."""
    result.processes = [process_summary(i, r) for i, r in enumerate(records, 1)]
    runs: list[RunRecord] = []
    for index, record in enumerate(records, 1):
        runs += [dataclasses.replace(run, process=index) for run in record.runs or []]
    result.runs = runs
    guards: list[GuardRecord] = [r.guard for r in records if r.guard]
    if guards:
        result.guard = merge_guards(guards)
    result.phase_seconds = {
        k: sum((r.phase_seconds or {}).get(k) or 0.0 for r in records)
        for k in dict.fromkeys(k for r in records for k in (r.phase_seconds or {}))
    }
    summarize_runs(result, discard_flagged)
    result.cold_start = records[0].cold_start
    kept = [r for r in runs if r.kind == RunKind.TIMED and not r.discarded]
    for key, field in (("latency_end_to_end", "total_s"), ("latency_forward", "forward_s")):
        medians = [
            float(np.median([getattr(r, field) for r in kept if r.process == i]))
            for i in range(1, len(records) + 1)
            if any(r.process == i for r in kept)
        ]
        interval = process_interval(medians)
        if interval:
            stats: LatencyStats = getattr(result, key)
            stats.ci95_low, stats.ci95_high, stats.ci_coverage = (
                interval.ci95_low,
                interval.ci95_high,
                interval.ci_coverage,
            )
            if key == "latency_end_to_end":
                result.latency_interval = LatencyInterval(interval.method, interval.why, interval.processes)
    e2e = result.latency_end_to_end or LatencyStats()
    method = result.latency_interval.method if result.latency_interval else None
    log(
        "STATS",
        f"{result.model} over {len(records)} processes: pooled median {(e2e.median or 0.0) * 1000:.1f} ms "
        f"{e2e.interval_text()} ({method}); process medians "
        + ", ".join(f"{p.median * 1000:.1f}" for p in result.processes or [] if p.median)
        + " ms",
    )
