"""One model's pass, in whatever process runs it: load, cold start, warm-up, timed runs, FLOPs,
output picture, time breakdown and dissection, filling the model's result record as it goes."""
from __future__ import annotations

import contextlib
import time
import traceback
from datetime import datetime

import numpy as np

from .common import UsageError, VariantUnsupported, WeightsError, exception_line, format_bytes, log, ms, seed_everything
from .dissection import dissection_digest
from .environment import system_info
from .images import load_rgb
from .machine_state import MachineGuard, summarize_state
from .memory import MemoryTracker, apply_memory_limit, free_cached_memory, memory_limit, private_memory, return_free_heap
from .sampling import STOPPED_BY, StoppingRule
from .stats import format_interval, latency_stats, tail_stats
from .sweeps import BatchCall, finish_sweep, is_out_of_memory, new_sweep, next_point, point_record, throughput
from .trace import beside_breakdown, file_size
from .variants import REFERENCE_VARIANT, VARIANTS, compare_outputs, parity_outputs, prepare_variant


class RunContext:
    """What every model's pass needs: the settings, the paths, and the results so far."""

    def __init__(self, args, device, images, image_source, run_id, paths, started: datetime | None = None):
        self.args = args
        self.device = device
        self.images = images
        self.image_source = image_source
        self.run_id = run_id
        self.results_dir, self.viz_dir, self.assets_dir = paths
        self.started = started or datetime.now()   # main() passes its own start: start-up is overhead too
        self.results: list[dict] = []
        self.status = "running"
        self.system = system_info(device)

    def __getstate__(self):
        # A worker gets the settings and paths, not the other models' results (nor --devices' stop event).
        return {**vars(self), "results": [], "stop_event": None}


def new_result(cls, ctx) -> dict:
    return {"model": cls.MODEL_NAME, "cli_name": cls.CLI_NAME, "task": cls.TASK, "library": cls.LIBRARY,
            "status": "running", "phase": "setup", "weights": ctx.args.weights, "weights_source": None,
            "nominal_input_size": cls.INPUT_SIZE, "runs": [], "phase_seconds": {}}


class PhaseTimer:
    """Names the phase a model is in (a failure reports it) and adds up its wall time."""

    def __init__(self, result: dict, publish):
        self.result = result
        self.publish = publish

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.result["phase"] = name
        self.publish(self.result)
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.result.setdefault("phase_seconds", {})
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def benchmark_model(cls, ctx: RunContext, result: dict, publish=lambda result: None) -> None:
    """Load, time, measure, dissect and clean up one model, filling `result` as it goes so that
    whatever was measured survives a failure in a later phase. A failure is recorded in `result`
    (status 'failed', error) after the cleanup; only interrupts propagate. `publish` receives
    the record at every phase (a worker sends it to the parent)."""
    phase = PhaseTimer(result, publish)
    if ctx.device.type == "cuda":
        result["memory"] = {"cuda_context_bytes": cuda_context_bytes(ctx.device)}
    tracker = MemoryTracker(ctx.device)
    tracker.reset_peak()  # a model that fails while loading reports its own peak, not an earlier one's
    memory = result.setdefault("memory", {})
    memory.update(memory_before_load(tracker, ctx.device))
    log("MEMORY", f"Before load: {format_bytes(memory['cpu_rss_before_load_bytes'])} resident"
        + (f", {format_bytes(memory['cpu_private_before_load_bytes'])} of it private"
           if memory.get("cpu_private_before_load_bytes") is not None else ""))

    seed_everything(ctx.args.seed)
    bench = cls(ctx.device, weights=ctx.args.weights, models_dir=ctx.args.models_dir, sam_prompt=ctx.args.sam_prompt)
    result["config"] = bench.run_config()
    result["allocator"] = getattr(ctx.args, "allocator", None)
    try:
        measure_model(bench, ctx, result, tracker, phase)
        result["status"] = "complete"
    except Exception as exc:
        record_failure(result, exc, tracker)
        # Leaving this block drops the exception and its frames, which hold the inputs and
        # outputs of the failing call: the cleanup below must not see them alive.
    finally:
        tracker.stop_sampling()
        result["phase_reached"] = result["phase"]
        with phase("cleanup"):
            log("CLEANUP", "Releasing the model and clearing caches...")
            bench.release()
            del bench
            release_error = free_cached_memory(ctx.device)
        if release_error:
            memory["cleanup_error"] = release_error
    memory["cpu_rss_after_cleanup_bytes"] = tracker.rss()
    if ctx.device.type == "cuda" and not release_error:
        memory["cuda_allocated_after_cleanup_bytes"] = tracker.cuda_allocated()
    log("MEMORY", f"After cleanup: {format_bytes(memory['cpu_rss_after_cleanup_bytes'])} resident")
    result["phase"] = None
    publish(result)


def measure_model(bench, ctx: RunContext, result: dict, tracker, phase) -> None:
    """The measured phases. Everything they hold (images, predictions) is local here, so it is
    gone when this returns or raises, before the cleanup reads the memory figures."""
    import torch
    args, memory = ctx.args, result["memory"]
    with phase("load"):
        log("LOAD", f"Loading {bench.MODEL_NAME} ({args.weights} weights) to {ctx.device}...")
        start = time.perf_counter()
        with bench.progress("load", through_network=False):
            result["weights_source"] = bench.load()
        bench.sync()
        result["load_seconds"] = time.perf_counter() - start
    result["dtype"] = bench.compute_dtype()
    memory["peak_during_load"] = tracker.peak()
    memory["cpu_rss_after_load_bytes"] = tracker.rss()
    if ctx.device.type == "cuda":
        memory["cuda_allocated_after_load_bytes"] = tracker.cuda_allocated()
    log("LOAD", f"Loaded in {result['load_seconds']:.2f}s: {result['weights_source']}")
    log("MEMORY", f"After load: {format_bytes(memory['cpu_rss_after_load_bytes'])} resident "
                  f"(+{format_bytes(memory['cpu_rss_after_load_bytes'] - memory['cpu_rss_before_load_bytes'])})"
        + (f", CUDA allocated {format_bytes(memory['cuda_allocated_after_load_bytes'])}"
           if ctx.device.type == "cuda" else ""))

    tracker.reset_peak()
    first_image = load_rgb(ctx.images[0])
    first_prediction = run_timed_phases(bench, ctx, result, phase, first_image)
    memory.update(tracker.peak())
    set_private_peak(memory, private_memory())
    result["torch_threads"] = torch.get_num_threads()
    summarize_latency(result, discard_flagged=getattr(args, "discard_throttled", False))
    set_headline_memory(result, ctx.device)
    e2e = result["latency_end_to_end"]
    log("STATS", f"Cold start {result['cold_start']['total_s'] * 1000:.1f} ms; timed end to end over "
                 f"{e2e['n']} runs: median {e2e['median'] * 1000:.1f} ms {format_interval(e2e)}, "
                 f"p90 {e2e['p90'] * 1000:.1f} ms, {result['fps']:.2f} FPS")
    log("MEMORY", f"Peak while running: {format_bytes(memory['peak_bytes'])} ({memory['peak_kind']})")
    if getattr(ctx, "timing_only", False):   # a later process of --processes: its timed runs are what counts
        return

    with phase("flops"):
        result["parameters"] = bench.count_parameters()
        flops, shape = bench.count_flops_and_input(first_image)
        result["flops"], result["gflops"], result["input_shape"] = flops, flops / 1e9, shape
    log("STATS", f"{result['parameters']:,} parameters, {result['gflops']:.2f} GFLOPs at input {shape}")

    with phase("output"):
        result["prediction_summary"] = bench.summarize_prediction(first_prediction)
        picture = ctx.assets_dir / f"{bench.MODEL_NAME}_output.png"
        with bench.progress("output picture", through_network=False):
            bench.render_prediction(first_image, first_prediction, picture)
        if picture.exists():
            result["output_image"] = str(picture.relative_to(ctx.results_dir))
    del first_prediction

    with phase("time_breakdown"):
        result["time_breakdown"] = bench.profile_time(first_image)

    if getattr(args, "trace", False):
        with phase("trace"):
            result["trace"] = trace_model(bench, ctx, result, first_image)

    with phase("dissection"):
        folder = ctx.viz_dir / bench.MODEL_NAME
        log("DISSECT", f"Starting layer dissection on {ctx.images[0].name}"
            + ("" if args.dissect else " (statistics only: --no-dissect writes no files)"))
        summary = bench.dissect_layers(first_image, folder, write_files=args.dissect)
        records = summary.pop("records_list")
        result["dissection"] = {**summary, "folder": str(folder), **dissection_digest(records)}
    log("DISSECT", f"{summary['records']} records from {summary['leaf_modules']} leaf modules, "
                   f"{summary['png_files']} PNG and {summary['npy_files']} NPY files in {summary['seconds']:.1f}s "
                   f"-> {folder}")
    if summary["writer_errors"]:
        log("WARNING", f"{len(summary['writer_errors'])} layer files failed to write: {summary['writer_errors'][0]}")

    variants = getattr(args, "variants", None) or [REFERENCE_VARIANT]
    if len(variants) > 1:
        with phase("variants"):
            measure_variants(bench, ctx, result, tracker, variants[1:])

    if getattr(args, "batch_sizes", None) or getattr(args, "input_sizes", None):
        with phase("sweep"):   # last: a worker killed at a point (out of memory) has measured all the rest
            if len(variants) > 1:  # the variants released the model: a fresh instance, the same weights
                bench = load_fresh(type(bench), ctx)
            measure_sweep(bench, ctx, result, tracker, phase.publish)


def load_fresh(cls, ctx: RunContext):
    seed_everything(ctx.args.seed)
    bench = cls(ctx.device, weights=ctx.args.weights, models_dir=ctx.args.models_dir, sam_prompt=ctx.args.sam_prompt)
    bench.load()
    return bench


def measure_sweep(bench, ctx: RunContext, result: dict, tracker, publish) -> None:
    """--batch-sizes / --input-sizes: point after point (sweeps.next_point) in this worker, each with
    its own warm-up and timed runs. The record is published before every point, so that if the worker
    dies at one (the OOM killer, --memory-limit) the parent marks that point `oom` and a fresh worker
    goes on from the next (resume_sweep)."""
    sweep = result.get("sweep")
    if sweep is None:
        sweep = result["sweep"] = new_sweep(type(bench), ctx.args, memory_limit(ctx.args.memory_limit, ctx.device))
    for dimension, reason in sweep["unsupported"].items():
        log("SWEEP", f"{bench.MODEL_NAME}: {dimension} unsupported: {reason}")
    image = load_rgb(ctx.images[0])
    flops: dict = {}
    sweep.pop("fresh_worker_next", None)
    start = time.perf_counter() - sweep["seconds"]
    while (step := next_point(sweep, time.perf_counter() - start)) is not None:
        point = point_record(*step)
        sweep["points"].append(point)
        sweep["seconds"] = time.perf_counter() - start
        publish(result)
        measure_point(bench, ctx, point, tracker, image, flops)
        sweep["seconds"] = time.perf_counter() - start
        if point["status"] == "oom" and ctx.args.memory_limit and getattr(ctx, "in_worker", False):
            # What the failed attempt left in the heap would count against the limit at the next point
            # (measured: yolo11n-detect's edge two batches below the memory model's prediction): the
            # next point starts in a fresh worker (workers.run_in_worker), as the first ones did.
            sweep["fresh_worker_next"] = True
            return
    finish_sweep(sweep)
    publish(result)


def measure_point(bench, ctx: RunContext, point: dict, tracker, image, flops: dict) -> None:
    """One sweep point: the batch (the first image, repeated) at the point's input size, a first
    run, max(1, --warmup) warm-up runs and --runs timed runs, its peak memory, FLOPs per image (counted
    at batch 1 of the size). An out-of-memory error makes it an `oom` point, any other a `failed` one."""
    import copy
    batch, size = point["batch"], point["input_size"]
    label = f"[{point['dimension']} {point['value']}{' bisect' if point['bisect'] else ''}] "
    log("SWEEP", f"{bench.MODEL_NAME} {label}batch {batch}, input size {size or 'nominal'}")
    if ctx.args.memory_limit:
        # The freed heap stays resident: trimmed, the worker could touch it again without growing its
        # data size, past the limit unseen (measured: yolo11n-detect's batch 16 ran 150 MB over it).
        free_cached_memory(ctx.device)
        apply_memory_limit(ctx.args.memory_limit, ctx.device)
    else:
        return_free_heap()
        free_cached_memory(ctx.device)
    point_ctx = copy.copy(ctx)
    point_ctx.images = ctx.images[:1]
    point_ctx.args = copy.copy(ctx.args)
    point_ctx.args.warmup = max(1, ctx.args.warmup)
    point_ctx.args.precision = None   # a sweep point is a fixed --runs: --precision is for the headline figure
    tracker.reset_peak()
    memory = point["memory"] = {"cpu_rss_start_bytes": tracker.rss()}
    try:
        run_timed_phases(BatchCall(bench, [image] * batch, size, quiet=bool(ctx.args.memory_limit)), point_ctx, point,
                         lambda name: contextlib.nullcontext(), image, label=label)
        summarize_latency(point)
        for key in ("fps", "latency_per_image", "cold_start"):
            point.pop(key)
        point["throughput"] = throughput(point["latency_end_to_end"], batch)
        if size not in flops:
            count, shape = bench.count_flops_and_input(image, run=lambda: bench.run_batch([image], size))
            flops[size] = (count, shape)
        count, shape = flops[size]
        point["flops_per_image"] = count
        point["input_shape"] = [batch] + list(shape[1:]) if shape else None
        point["pixels"] = shape[-2] * shape[-1] if shape and len(shape) == 4 else None
        point["status"] = "ok"
    except Exception as exc:
        point["status"] = "oom" if is_out_of_memory(exc, limited=bool(ctx.args.memory_limit)) else "failed"
        point["reason"] = exception_line(exc)
        log("SWEEP" if point["status"] == "oom" else "WARNING", f"{bench.MODEL_NAME} {label}{point['status']}: "
                                                               f"{point['reason']}")
    memory.update(tracker.safe_peak())
    memory["peak_bytes"] = memory.get("cuda_peak_allocated_bytes", memory["cpu_peak_rss_bytes"])
    memory["cpu_peak_growth_bytes"] = memory["cpu_peak_rss_bytes"] - memory["cpu_rss_start_bytes"]
    if point["status"] == "ok":
        t = point["throughput"]
        log("SWEEP", f"{label}{ms(point['latency_end_to_end']['median'])} ms a batch "
                     f"{format_interval(point['latency_end_to_end'])}, {t['median']:.2f} images/s, peak "
                     f"{format_bytes(memory['peak_bytes'])}")


def resume_sweep(cls, ctx: RunContext, result: dict, publish) -> None:
    """In a fresh worker: the model loads again and its sweep goes on from the point after the one
    its previous worker died at; nothing else is measured again."""
    tracker = MemoryTracker(ctx.device)
    bench = None
    try:
        bench = load_fresh(cls, ctx)
        measure_sweep(bench, ctx, result, tracker, publish)
    except Exception as exc:
        result["sweep"]["error"] = exception_line(exc)
        log("ERROR", f"{cls.MODEL_NAME}: the sweep could not go on: {exception_line(exc)}")
    finally:
        tracker.stop_sampling()
        if bench is not None:
            bench.release()
        free_cached_memory(ctx.device)
    result["phase"] = None
    publish(result)


def trace_model(bench, ctx: RunContext, result: dict, image) -> dict:
    """--trace: the profiler trace of one more warm pass, its summary beside the hook-based
    breakdown, and the pass's own overhead against the timed median."""
    path = ctx.assets_dir / f"{bench.MODEL_NAME}_trace.json.gz"
    stacks = getattr(ctx.args, "trace_stacks", False)
    log("TRACE", f"One more warm pass under torch.profiler (shapes{', stacks' if stacks else ''}) -> {path.name}")
    trace = bench.record_trace(image, path, stacks=stacks)
    trace["file"] = str(path.relative_to(ctx.results_dir))
    beside_breakdown(trace, result.get("time_breakdown"))
    median = result["latency_end_to_end"]["median"]
    trace["timed_median_s"] = median
    trace["overhead_ratio"] = trace["pass_wall_s"] / median if median else None
    log("TRACE", f"{file_size(trace['bytes'])}, {trace['events']} events, {trace['module_ranges']} module ranges "
                 f"({trace['leaf_ranges']} leaf calls); traced pass {trace['pass_wall_s'] * 1000:.1f} ms against the "
                 f"timed median {median * 1000:.1f} ms")
    return trace


def measure_variants(bench, ctx: RunContext, result: dict, tracker, variants: list[str]) -> None:
    """Each variant in a fresh instance of the model (same seed, so the same weights), measured
    like the reference and checked against its outputs. A variant that cannot run is a row marked
    'unsupported' or 'failed' with its reason; the model and the run go on."""
    images = [(path, load_rgb(path)) for path in ctx.images]
    log("VARIANT", f"{bench.MODEL_NAME}: reference outputs (torch-fp32) on {len(images)} image(s) for parity")
    reference = parity_outputs(bench, images)
    result["variants"] = [reference_row(result)]
    bench.release()                     # each variant's memory is its own, not the reference's too
    free_cached_memory(ctx.device)
    for variant in variants:
        record = {"variant": variant, "status": "running", "description": VARIANTS[variant], "runs": []}
        result["variants"].append(record)
        log("VARIANT", f"{bench.MODEL_NAME} as {variant}: {VARIANTS[variant]}")
        variant_bench = None
        try:
            variant_bench = measure_variant(type(bench), variant, ctx, record, tracker, images)
            record["parity"] = compare_outputs(variant_bench, variant, reference, parity_outputs(variant_bench, images))
            add_speedups(record, result)
            record["status"] = "complete"
            log("VARIANT", variant_line(record))
        except VariantUnsupported as exc:
            record.update(status="unsupported", reason=str(exc))
            log("VARIANT", f"{variant}: unsupported: {exc}")
        except Exception as exc:      # one variant's failure is its row's, never the run's
            record.update(status="failed", reason=exception_line(exc), traceback=traceback.format_exc())
            log("WARNING", f"{bench.MODEL_NAME} {variant} failed: {exception_line(exc)}")
        finally:
            if variant_bench is not None:
                variant_bench.release()
            del variant_bench
            free_cached_memory(ctx.device)


def measure_variant(cls, variant: str, ctx: RunContext, record: dict, tracker, images: list):
    """Load, prepare (export, compile, cast), then the cold start, warm-up and timed runs."""
    args = ctx.args
    seed_everything(args.seed)
    bench = cls(ctx.device, weights=args.weights, models_dir=args.models_dir, sam_prompt=args.sam_prompt)
    tracker.reset_peak()
    record["memory"] = memory_before_load(tracker, ctx.device)
    start = time.perf_counter()
    bench.load()
    record["details"] = prepare_variant(bench, variant, images)
    record["prepare_seconds"] = time.perf_counter() - start
    run_timed_phases(bench, ctx, record, lambda name: contextlib.nullcontext(), images[0][1],
                     label=f"[{variant}] ")
    record["memory"].update(tracker.peak())
    set_private_peak(record["memory"], private_memory())
    summarize_latency(record, discard_flagged=getattr(args, "discard_throttled", False))
    set_headline_memory(record, ctx.device)
    return bench


def reference_row(result: dict) -> dict:
    """The reference's row of the variants table: its figures as measured above, not again."""
    return {"variant": REFERENCE_VARIANT, "status": "complete", "description": VARIANTS[REFERENCE_VARIANT],
            "reference": True, "speedup_forward": 1.0, "speedup_end_to_end": 1.0,
            **{k: result.get(k) for k in ("latency_end_to_end", "latency_forward", "cold_start", "fps")},
            "memory": {k: result["memory"].get(k) for k in ("peak_bytes", "peak_kind", "peak_over_baseline_bytes")}}


def add_speedups(record: dict, result: dict) -> None:
    for key, name in (("latency_forward", "speedup_forward"), ("latency_end_to_end", "speedup_end_to_end")):
        ref, mine = (result.get(key) or {}).get("median"), (record.get(key) or {}).get("median")
        record[name] = ref / mine if ref and mine else None


def variant_line(record: dict) -> str:
    forward = record["latency_forward"]["median"]
    parity = record["parity"]
    worst = parity["worst"]
    return (f"{record['variant']}: forward median {forward * 1000:.1f} ms ({record['speedup_forward']:.2f}x "
            f"the reference), parity {parity['verdict']}"
            + (f" (worst normalised error {worst.get('normalised_error'):.3g} in {worst.get('worst_part')})"
               if worst.get("normalised_error") is not None else "")
            + (f": {'; '.join(parity['reasons'][:3])}" if parity["reasons"] else ""))


def run_timed_phases(bench, ctx: RunContext, record: dict, phase, first_image, label: str = ""):
    """The cold start on the first image, the warm-up rounds and the timed runs over all images,
    each run appended to record['runs'] (marked with its kind); returns the cold start's prediction.
    Timed runs are a fixed --runs per image, or with --precision rounds over the images until the
    stopping rule says (record['precision'] says why); the machine-state guard samples at every
    timed run's boundaries (record['guard']). `phase(name)` names each phase; `label` prefixes the
    log lines (a variant's name)."""
    args, runs = ctx.args, record["runs"]
    rule = stopping_rule(args)
    total = f"max {1 + args.warmup * len(ctx.images) + rule.max_runs}" if rule else \
        1 + (args.warmup + args.runs) * len(ctx.images)

    def run(path, image, kind):
        prediction, seconds, phases = bench.timed_run(image)
        runs.append({"image": path.name, "image_size": [image.width, image.height], "kind": kind,
                     "cold": kind == "cold", "total_s": seconds, **{f"{k}_s": v for k, v in phases.items()}})
        log(f"INFER {len(runs)}/{total}",
            f"{label}{path.name} | {seconds * 1000:.1f} ms end to end, forward {phases['forward'] * 1000:.1f} ms"
            + {"cold": " (cold start)", "warmup": " (warm-up)", "timed": ""}[kind])
        return prediction

    # One progress reporter a phase, not a run: no thread is started between two timed runs.
    def runs_done():
        return f"run {len(runs) + 1} of {total}"

    with phase("cold_start"), bench.progress(f"{label}cold start", through_network=False, detail=runs_done):
        first_prediction = run(ctx.images[0], first_image, "cold")
    images = [(path, first_image if path == ctx.images[0] else load_rgb(path)) for path in ctx.images]
    with phase("warmup"), bench.progress(f"{label}warmup runs", through_network=False, detail=runs_done):
        for path, image in images:
            for _ in range(args.warmup):
                run(path, image, "warmup")
    guard = MachineGuard(ctx.device)
    try:
        with phase("timed"), bench.progress(f"{label}timed runs", through_network=False, detail=runs_done):
            guard.begin()
            if rule:
                rule.start()
            while True:
                for path, image in images:
                    for _ in range(1 if rule else args.runs):
                        run(path, image, "timed")
                        runs[-1]["state"] = guard.after_run()
                stopped_by = rule.reason([r["total_s"] for r in runs if r["kind"] == "timed"]) if rule else "fixed"
                if stopped_by:
                    break
    finally:
        guard.close()
        record["guard"] = {"static": guard.static, "cost_s": guard.cost_s, "samples": guard.samples}
    if rule:
        record["precision"] = rule.record([r["total_s"] for r in runs if r["kind"] == "timed"], stopped_by)
        reached = record["precision"]["reached_pct"]
        log("STATS", f"{label}--precision {rule.precision_pct:g}%: {STOPPED_BY[stopped_by]} after "
                     f"{record['precision']['runs']} timed runs in {record['precision']['seconds']:.1f} s (interval "
                     + (f"within +-{reached:.2f}% of the median)" if reached is not None else "not estimable)"))
    return first_prediction


def stopping_rule(args) -> StoppingRule | None:
    """--precision's rule, its time cap shared by the model's --processes; None for a fixed --runs."""
    if getattr(args, "precision", None) is None:
        return None
    return StoppingRule(args.precision, max_seconds=args.max_time / max(getattr(args, "processes", 1), 1))


def cuda_context_bytes(device) -> int | None:
    """Device memory the CUDA context itself takes (kernels, cuBLAS/cuDNN handles are extra):
    used memory on the device (NVML, which creates no context) before and after creating it. In
    a fresh worker this is the first CUDA call; None when NVML is unavailable or the context
    already exists."""
    import torch
    try:
        if torch.cuda.is_initialized():
            return None
        before = torch.cuda.device_memory_used(device)
        torch.cuda.init()
        torch.zeros(1, device=device)  # the context is created lazily, on the first allocation
        torch.cuda.synchronize(device)
        return torch.cuda.device_memory_used(device) - before
    except Exception:
        return None


def record_failure(result: dict, exc: Exception, tracker) -> None:
    """The error, its phase and the memory figures at that moment, as plain data (no reference
    to the exception survives)."""
    phase = result["phase"]
    result["status"] = "failed"
    result["error"] = {"type": type(exc).__name__, "message": str(exc), "phase": phase}
    result["memory"]["at_failure"] = tracker.safe_peak()
    log("ERROR", f"{result['model']} failed during {phase}: {exception_line(exc)}")
    if not isinstance(exc, (WeightsError, UsageError)):
        result["error"]["traceback"] = traceback.format_exc()
        traceback.print_exc()


def summarize_latency(result: dict, discard_flagged: bool = False) -> None:
    """Headline statistics from the timed runs only; the cold start and warm-up runs stay in
    result['runs'], marked, and in the per-image table. With `discard_flagged` (--discard-throttled)
    timed runs the guard flagged throttled or shared are marked 'discarded' and left out (unless
    that would leave none: then all stay, and the machine state says so)."""
    runs = result["runs"]
    result["cold_start"] = runs[0]
    timed_all = [r for r in runs if r["kind"] == "timed"]
    for r in timed_all:
        r.pop("discarded", None)
    flagged = [r for r in timed_all if (r.get("state") or {}).get("flags")]
    if discard_flagged and len(flagged) < len(timed_all):
        for r in flagged:
            r["discarded"] = True
    timed = [r for r in timed_all if not r.get("discarded")]
    kept = {id(r) for r in timed}
    result["latency_end_to_end"] = latency_stats([r["total_s"] for r in timed])
    result["latency_forward"] = latency_stats([r["forward_s"] for r in timed])
    result["latency_tails"] = tail_stats([r["total_s"] for r in timed])
    result["latency_phases_median"] = {p: (float(np.median([r[f"{p}_s"] for r in timed])) if timed else None)
                                       for p in ("preprocess", "forward", "postprocess")}
    median = result["latency_end_to_end"]["median"]
    result["fps"] = 1.0 / median if median else None
    guard = result.get("guard")
    if guard:
        result["machine_state"] = summarize_state(guard["static"], timed_all, guard["cost_s"], guard["samples"], median,
                                                  discarded=len(timed_all) - len(timed))
        if discard_flagged and flagged and not len(timed_all) - len(timed):
            result["machine_state"]["warnings"].append("--discard-throttled: every timed run was flagged; none was "
                                                       "discarded")
    # Per image: the first run it got (cold start or first warm-up: a new input shape builds new
    # kernels on CPU and GPU alike), its warm-up runs, and the statistics of its timed runs.
    per_image = {}
    for name in dict.fromkeys(r["image"] for r in runs):
        mine = [r for r in runs if r["image"] == name]
        mine_timed = [r for r in mine if id(r) in kept]
        per_image[name] = {"image_size": mine[0]["image_size"], "first_run_s": mine[0]["total_s"],
                           "first_is_cold_start": mine[0]["cold"],
                           "warmup_s": [r["total_s"] for r in mine if r.get("kind") == "warmup"],
                           "steady": latency_stats([r["total_s"] for r in mine_timed])}
    result["latency_per_image"] = per_image


def memory_before_load(tracker, device) -> dict:
    """What the process holds just before a model loads: the baseline of the model's own share."""
    memory = {"cpu_rss_before_load_bytes": tracker.rss()}
    private = private_memory()
    if private:
        memory["cpu_private_before_load_bytes"] = private["uss"]
    if device.type == "cuda":
        memory["cuda_allocated_before_load_bytes"] = tracker.cuda_allocated()
    return memory


def set_private_peak(memory: dict, now: dict | None) -> None:
    """The private memory (USS) at the window's peak: USS now plus what the resident set has
    given back since its peak (memory freed after a forward returned, activations: private)."""
    if now and memory.get("cpu_private_before_load_bytes") is not None:
        memory["cpu_private_peak_bytes"] = now["uss"] + max(memory["cpu_peak_rss_bytes"] - now["rss"], 0)


def set_headline_memory(result: dict, device) -> None:
    """The headline peak (what the OS or the allocator saw) and the model's own share of it: on
    CUDA the allocated growth, on the CPU the growth of the worker's private memory (USS) from
    before the load to the peak; the resident set's growth also counts library pages first
    touched by this worker though the server already holds them (kept as rss_over_baseline)."""
    memory = result["memory"]
    if device.type == "cuda":
        memory["peak_bytes"], memory["peak_kind"] = memory["cuda_peak_allocated_bytes"], "CUDA peak allocated"
    else:
        memory["peak_bytes"], memory["peak_kind"] = memory["cpu_peak_rss_bytes"], "CPU peak resident set (process)"
    memory["rss_over_baseline_bytes"] = memory["cpu_peak_rss_bytes"] - memory["cpu_rss_before_load_bytes"]
    if device.type == "cuda":
        memory["peak_over_baseline_bytes"] = memory["peak_bytes"] - memory["cuda_allocated_before_load_bytes"]
        memory["own_share_kind"] = "CUDA allocated growth"
    elif memory.get("cpu_private_peak_bytes") is not None:
        memory["peak_over_baseline_bytes"] = memory["cpu_private_peak_bytes"] - memory["cpu_private_before_load_bytes"]
        memory["own_share_kind"] = "private memory (USS) growth"
    else:
        memory["peak_over_baseline_bytes"] = memory["rss_over_baseline_bytes"]
        memory["own_share_kind"] = "resident set growth (no /proc/self/smaps_rollup)"


