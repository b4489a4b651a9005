"""One model's pass, in whatever process runs it: load, cold start, warm-up, timed runs, FLOPs,
output picture, time breakdown and dissection, then its variants and sweep, filling the model's
result record as it goes."""

from __future__ import annotations

import contextlib
import time
import traceback

from ..common import UsageError, WeightsError, exception_line, format_bytes, log, seed_everything
from ..divergence.divergence_pass import measure_divergence
from ..images import load_rgb
from ..inspect.trace import beside_breakdown, file_size
from ..measure.memory import MemoryTracker, free_cached_memory, private_memory
from ..measure.timed_runs import figures_before_load, summarize_runs, time_runs
from ..phases import registered
from ..records.failure import ErrorRecord
from ..records.inspection import TraceSummary
from ..records.measurement import MemoryFigures
from ..records.model_result import ModelResult
from ..records.statuses import ModelStatus
from ..settings import RunContext
from ..sweeps.sweep_pass import measure_sweep
from ..variants.registry import REFERENCE_VARIANT
from ..variants.variant_pass import load_fresh, measure_variants


def new_result(cls, ctx) -> ModelResult:
    return ModelResult(
        model=cls.MODEL_NAME,
        cli_name=cls.CLI_NAME,
        task=cls.TASK,
        library=cls.LIBRARY,
        status=ModelStatus.RUNNING,
        phase="setup",
        weights=ctx.settings.weights,
        weights_source=None,
        nominal_input_size=cls.INPUT_SIZE,
    )


class PhaseTimer:
    """Names the phase a model is in (a failure reports it) and adds up its wall time."""

    def __init__(self, result: ModelResult, publish):
        self.result = result
        self.publish = publish

    @contextlib.contextmanager
    def __call__(self, name: str):
        registered(name)  # an undeclared phase would count as the tool's overhead: refuse it
        self.result.phase = name
        self.publish(self.result)
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.result.phase_seconds
            seconds[name] = (seconds.get(name) or 0.0) + time.perf_counter() - start


def benchmark_model(cls, ctx: RunContext, result: ModelResult, publish=lambda result: None) -> None:
    """Load, time, measure, dissect and clean up one model, filling `result` as it goes so that
    whatever was measured survives a failure in a later phase. A failure is recorded in `result`
    (status 'failed', error) after the cleanup; only interrupts propagate. `publish` receives
    the record at every phase (a worker sends it to the parent)."""
    phase = PhaseTimer(result, publish)
    context = cuda_context_bytes(ctx.device) if ctx.device.type == "cuda" else None
    tracker = MemoryTracker(ctx.device)
    tracker.reset_peak()  # a model that fails while loading reports its own peak, not an earlier one's
    memory: MemoryFigures = figures_before_load(tracker, ctx.device)
    memory.cuda_context_bytes = context
    result.memory = memory
    log(
        "MEMORY",
        f"Before load: {format_bytes(memory.cpu_rss_before_load_bytes)} resident"
        + (
            f", {format_bytes(memory.cpu_private_before_load_bytes)} of it private"
            if memory.cpu_private_before_load_bytes is not None
            else ""
        ),
    )

    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    result.config = bench.run_config()
    result.allocator = ctx.settings.allocator
    try:
        measure_model(bench, ctx, result, tracker, phase)
        result.status = ModelStatus.COMPLETE
    except Exception as exc:
        record_failure(result, exc, tracker)
        # Leaving this block drops the exception and its frames, which hold the inputs and
        # outputs of the failing call: the cleanup below must not see them alive.
    finally:
        tracker.stop_sampling()
        result.phase_reached = result.phase
        with phase("cleanup"):
            log("CLEANUP", "Releasing the model and clearing caches...")
            bench.release()
            del bench
            release_error = free_cached_memory(ctx.device)
        if release_error:
            memory.cleanup_error = release_error
    memory.cpu_rss_after_cleanup_bytes = tracker.rss()
    if ctx.device.type == "cuda" and not release_error:
        memory.cuda_allocated_after_cleanup_bytes = tracker.cuda_allocated()
    log("MEMORY", f"After cleanup: {format_bytes(memory.cpu_rss_after_cleanup_bytes)} resident")
    result.phase = None
    publish(result)


def measure_model(bench, ctx: RunContext, result: ModelResult, tracker, phase) -> None:
    """The measured phases. Everything they hold (images, predictions) is local here, so it is
    gone when this returns or raises, before the cleanup reads the memory figures."""
    load_model(bench, ctx, result, tracker, phase)
    first_image = load_rgb(ctx.images[0])
    first_prediction = time_model(bench, ctx, result, tracker, phase, first_image)
    if ctx.timing_only:  # a later process of --processes: its timed runs are what counts
        return
    with phase("flops"):
        result.parameters = bench.count_parameters()
        flops, shape = bench.count_flops_and_input(first_image)
        result.flops, result.gflops, result.input_shape = flops, flops / 1e9, shape
    log("STATS", f"{result.parameters:,} parameters, {result.gflops:.2f} GFLOPs at input {shape}")

    with phase("output"):
        result.prediction_summary = bench.summarize_prediction(first_prediction)
        picture = ctx.assets_dir / f"{bench.MODEL_NAME}_output.png"
        with bench.progress("output picture", through_network=False):
            bench.render_prediction(first_image, first_prediction, picture)
        if picture.exists():
            result.output_image = str(picture.relative_to(ctx.results_dir))
    del first_prediction

    with phase("time_breakdown"):
        result.time_breakdown = bench.profile_time(first_image)
    if ctx.settings.trace:
        with phase("trace"):
            result.trace = trace_model(bench, ctx, result, first_image)
    dissect_model(bench, ctx, result, phase, first_image)
    measure_extras(bench, ctx, result, tracker, phase)


def load_model(bench, ctx: RunContext, result: ModelResult, tracker, phase) -> None:
    """The load phase, its time and the memory after it."""
    memory = result.memory
    assert memory is not None  # benchmark_model set it
    with phase("load"):
        log("LOAD", f"Loading {bench.MODEL_NAME} ({ctx.settings.weights} weights) to {ctx.device}...")
        start = time.perf_counter()
        with bench.progress("load", through_network=False):
            result.weights_source = bench.load()
        bench.sync()
        result.load_seconds = time.perf_counter() - start
    result.dtype = bench.compute_dtype()
    memory.peak_during_load = tracker.peak_reading()
    memory.cpu_rss_after_load_bytes = tracker.rss()
    if ctx.device.type == "cuda":
        memory.cuda_allocated_after_load_bytes = tracker.cuda_allocated()
    log("LOAD", f"Loaded in {result.load_seconds:.2f}s: {result.weights_source}")
    log(
        "MEMORY",
        f"After load: {format_bytes(memory.cpu_rss_after_load_bytes)} resident "
        f"(+{format_bytes(memory.cpu_rss_after_load_bytes - (memory.cpu_rss_before_load_bytes or 0))})"
        + (
            f", CUDA allocated {format_bytes(memory.cuda_allocated_after_load_bytes)}"
            if ctx.device.type == "cuda"
            else ""
        ),
    )


def time_model(bench, ctx: RunContext, result: ModelResult, tracker, phase, first_image):
    """The cold start, warm-up and timed runs, their statistics and peak memory; returns the cold
    start's prediction."""
    import torch

    memory = result.memory
    assert memory is not None  # benchmark_model set it
    tracker.reset_peak()
    first_prediction = time_runs(bench, ctx, result, phase, first_image)
    memory.add_peak(tracker.peak_reading())
    memory.set_private_peak(private_memory())
    result.torch_threads = torch.get_num_threads()
    summarize_runs(result, discard_flagged=ctx.settings.discard_throttled)
    memory.set_headline(ctx.device.type == "cuda")
    e2e, cold = result.latency_end_to_end, result.cold_start
    assert e2e is not None and cold is not None and e2e.median is not None and e2e.p90 is not None
    log(
        "STATS",
        f"Cold start {cold.total_s * 1000:.1f} ms; timed end to end over "
        f"{e2e.n} runs: median {e2e.median * 1000:.1f} ms {e2e.interval_text()}, "
        f"p90 {e2e.p90 * 1000:.1f} ms, {result.fps:.2f} FPS",
    )
    log("MEMORY", f"Peak while running: {format_bytes(memory.peak_bytes)} ({memory.peak_kind})")
    return first_prediction


def dissect_model(bench, ctx: RunContext, result: ModelResult, phase, first_image) -> None:
    """Every leaf module's calls on the first image: statistics, and with files unless --no-dissect."""
    dissect = ctx.settings.dissect
    with phase("dissection"):
        folder = ctx.viz_dir / bench.MODEL_NAME
        log(
            "DISSECT",
            f"Starting layer dissection on {ctx.images[0].name}"
            + ("" if dissect else " (statistics only: --no-dissect writes no files)"),
        )
        summary = result.dissection = bench.dissect_layers(first_image, folder, write_files=dissect)
    log(
        "DISSECT",
        f"{summary.records} records from {summary.leaf_modules} leaf modules, "
        f"{summary.png_files} PNG and {summary.npy_files} NPY files in {summary.seconds:.1f}s "
        f"-> {folder}",
    )
    if summary.writer_errors:
        log("WARNING", f"{len(summary.writer_errors)} layer files failed to write: {summary.writer_errors[0]}")


def measure_extras(bench, ctx: RunContext, result: ModelResult, tracker, phase) -> None:
    """After the model's own pass: its variants (and their divergence), then its sweep."""
    settings = ctx.settings
    variants = settings.variants or [REFERENCE_VARIANT]
    if len(variants) > 1:
        with phase("variants"):
            reference_outputs = measure_variants(bench, ctx, result, tracker, variants[1:])
        if settings.divergence:
            with phase("divergence"):
                measure_divergence(type(bench), ctx, result, tracker, variants[1:], reference_outputs, phase.publish)

    if settings.batch_sizes or settings.input_sizes:
        with phase("sweep"):  # last: a worker killed at a point (out of memory) has measured all the rest
            if len(variants) > 1:  # the variants released the model: a fresh instance, the same weights
                bench = load_fresh(type(bench), ctx)
            measure_sweep(bench, ctx, result, tracker, phase.publish)


def trace_model(bench, ctx: RunContext, result: ModelResult, image) -> TraceSummary:
    """--trace: the profiler trace of one more warm pass, its summary beside the hook-based
    breakdown, and the pass's own overhead against the timed median."""
    path = ctx.assets_dir / f"{bench.MODEL_NAME}_trace.json.gz"
    stacks = ctx.settings.trace_stacks
    log("TRACE", f"One more warm pass under torch.profiler (shapes{', stacks' if stacks else ''}) -> {path.name}")
    trace = bench.record_trace(image, path, stacks=stacks)
    trace.file = str(path.relative_to(ctx.results_dir))
    beside_breakdown(trace, result.time_breakdown)
    median = result.latency_end_to_end.median if result.latency_end_to_end else None
    trace.timed_median_s = median
    trace.overhead_ratio = trace.pass_wall_s / median if median else None
    log(
        "TRACE",
        f"{file_size(trace.bytes)}, {trace.events} events, {trace.module_ranges} module ranges "
        f"({trace.leaf_ranges} leaf calls); traced pass {trace.pass_wall_s * 1000:.1f} ms against the "
        f"timed median {(median or 0.0) * 1000:.1f} ms",
    )
    return trace


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


def record_failure(result: ModelResult, exc: Exception, tracker) -> None:
    """The error, its phase and the memory figures at that moment, as plain data (no reference
    to the exception survives)."""
    phase = result.phase
    result.status = ModelStatus.FAILED
    error = result.error = ErrorRecord(type(exc).__name__, str(exc), phase)
    if result.memory is not None:
        result.memory.at_failure = tracker.safe_peak_reading()
    log("ERROR", f"{result.model} failed during {phase}: {exception_line(exc)}")
    if not isinstance(exc, (WeightsError, UsageError)):
        error.traceback = traceback.format_exc()
        traceback.print_exc()
