"""A model's batch and input-size sweep (--batch-sizes, --input-sizes) in the process that runs it:
point after point, each with its own warm-up, timed runs, peak memory and FLOPs; a point that runs out
of memory ends the worker so that a fresh one goes on from the next."""

from __future__ import annotations

import contextlib
import dataclasses
import time

from ..common import exception_line, format_bytes, log, ms
from ..images import load_rgb
from ..measure.memory import MemoryTracker, apply_memory_limit, free_cached_memory, memory_limit, return_free_heap
from ..measure.timed_runs import latency_summary, time_runs
from ..records import SweepPointStatus
from ..records.measurement import LatencyStats
from ..records.model_result import ModelResult
from ..records.sweep import PointMemory, SweepPoint, SweepRecord
from ..variants.variant_pass import load_fresh
from .sweep_plan import BatchCall, finish_sweep, is_out_of_memory, new_sweep, next_point, point_record, throughput


def measure_sweep(bench, ctx, result: ModelResult, tracker, publish) -> None:
    """--batch-sizes / --input-sizes: point after point (sweeps.next_point) in this worker, each with
    its own warm-up and timed runs. The record is published before every point, so that if the worker
    dies at one (the OOM killer, --memory-limit) the parent marks that point `oom` and a fresh worker
    goes on from the next (resume_sweep)."""
    sweep: SweepRecord | None = result.sweep
    if sweep is None:
        sweep = result.sweep = new_sweep(type(bench), ctx.settings, memory_limit(ctx.settings.memory_limit, ctx.device))
    for dimension, reason in sweep.unsupported.items():
        log("SWEEP", f"{bench.MODEL_NAME}: {dimension} unsupported: {reason}")
    image = load_rgb(ctx.images[0])
    flops: dict = {}
    sweep.fresh_worker_next = None
    start = time.perf_counter() - sweep.seconds
    while (step := next_point(sweep, time.perf_counter() - start)) is not None:
        point = point_record(*step)
        sweep.points.append(point)
        sweep.seconds = time.perf_counter() - start
        publish(result)
        measure_point(bench, ctx, point, tracker, image, flops)
        sweep.seconds = time.perf_counter() - start
        if point.status == SweepPointStatus.OOM and ctx.settings.memory_limit and ctx.in_worker:
            # What the failed attempt left in the heap would count against the limit at the next point
            # (measured: yolo11n-detect's edge two batches below the memory model's prediction): the
            # next point starts in a fresh worker (workers.run_in_worker), as the first ones did.
            sweep.fresh_worker_next = True
            return
    finish_sweep(sweep)
    publish(result)


def measure_point(bench, ctx, point: SweepPoint, tracker, image, flops: dict) -> None:
    """One sweep point: the batch (the first image, repeated) at the point's input size, a first
    run, max(1, --warmup) warm-up runs and --runs timed runs, its peak memory, FLOPs per image (counted
    at batch 1 of the size). An out-of-memory error makes it an `oom` point, any other a `failed` one."""
    batch, size = point.batch, point.input_size
    label = f"[{point.dimension} {point.value}{' bisect' if point.bisect else ''}] "
    log("SWEEP", f"{bench.MODEL_NAME} {label}batch {batch}, input size {size or 'nominal'}")
    limit = ctx.settings.memory_limit
    if limit:
        # The freed heap stays resident: trimmed, the worker could touch it again without growing its
        # data size, past the limit unseen (measured: yolo11n-detect's batch 16 ran 150 MB over it).
        free_cached_memory(ctx.device)
        apply_memory_limit(limit, ctx.device)
    else:
        return_free_heap()
        free_cached_memory(ctx.device)
    # A sweep point is a fixed --runs on the first image: --precision is for the headline figure.
    point_settings = dataclasses.replace(ctx.settings, warmup=max(1, ctx.settings.warmup), precision=None)
    point_ctx = dataclasses.replace(ctx, images=ctx.images[:1], settings=point_settings)
    tracker.reset_peak()
    rss_start = tracker.rss()
    try:
        # The runs and the guard go into the point as they come: what a failure leaves stays in it.
        time_runs(
            BatchCall(bench, [image] * batch, size, quiet=bool(limit)),
            point_ctx,
            point,
            lambda name: contextlib.nullcontext(),
            image,
            label=label,
        )
        take_timed_figures(point)
        point.throughput = throughput(point.latency_end_to_end or LatencyStats(), batch)
        if size not in flops:
            count, shape = bench.count_flops_and_input(image, run=lambda: bench.run_batch([image], size))
            flops[size] = (count, shape)
        count, shape = flops[size]
        point.flops_per_image = count
        point.input_shape = [batch] + list(shape[1:]) if shape else None
        point.pixels = shape[-2] * shape[-1] if shape and len(shape) == 4 else None
        point.status = SweepPointStatus.OK
    except Exception as exc:
        oom = is_out_of_memory(exc, limited=bool(limit))
        point.status = SweepPointStatus.OOM if oom else SweepPointStatus.FAILED
        point.reason = exception_line(exc)
        log("SWEEP" if oom else "WARNING", f"{bench.MODEL_NAME} {label}{point.status}: {point.reason}")
    point.memory = PointMemory.measured(rss_start, tracker.safe_peak_reading())
    if point.ok and point.throughput:
        log(
            "SWEEP",
            f"{label}{ms(point.median_s)} ms a batch {point.latency_end_to_end.interval_text() if point.latency_end_to_end else ''}, "
            f"{point.throughput.median:.2f} images/s, peak {format_bytes(point.memory.peak_bytes)}",
        )


TIMED_FIGURES = ("latency_end_to_end", "latency_forward", "latency_tails", "latency_phases_median", "machine_state")


def take_timed_figures(point: SweepPoint) -> None:
    """The statistics of the point's runs it keeps (not the headline's fps, cold start, per-image table)."""
    summary = latency_summary(point.runs, point.guard)
    for name in TIMED_FIGURES:
        setattr(point, name, getattr(summary, name))


def resume_sweep(cls, ctx, result: ModelResult, publish) -> None:
    """In a fresh worker: the model loads again and its sweep goes on from the point after the one
    its previous worker died at; nothing else is measured again."""
    tracker = MemoryTracker(ctx.device)
    bench = None
    try:
        bench = load_fresh(cls, ctx)
        measure_sweep(bench, ctx, result, tracker, publish)
    except Exception as exc:
        if result.sweep is not None:
            result.sweep.error = exception_line(exc)
        log("ERROR", f"{cls.MODEL_NAME}: the sweep could not go on: {exception_line(exc)}")
    finally:
        tracker.stop_sampling()
        if bench is not None:
            bench.release()
        free_cached_memory(ctx.device)
    result.phase = None
    publish(result)
