"""A model's variants (--variants) in the process that runs it: each in a fresh instance, measured
like the reference, its outputs checked against the reference's."""

from __future__ import annotations

import contextlib
import copy
import time
import traceback
from typing import Any

from ..common import VariantUnsupported, exception_line, log, seed_everything
from ..images import load_rgb
from ..measure.memory import free_cached_memory, private_memory
from ..measure.timed_runs import figures_before_load, summarize_runs, time_runs
from ..records import VariantStatus
from ..records.measurement import MemoryFigures
from ..records.model_result import ModelResult
from ..records.parity_figures import ImageOutputs
from ..records.variants import VariantResult
from .output_parity import compare_outputs, parity_outputs
from .registry import REFERENCE_VARIANT, get_variant, prepare_variant
from .variants_report import relative_speed


def load_fresh(cls, ctx):
    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    bench.load()
    return bench


@contextlib.contextmanager
def variant_attempt(records: list, position: int, model: str, what: str, tag: str, device):
    """One variant's attempt (`what`: 'torch-bf16', 'torch-bf16 divergence'): a VariantUnsupported
    makes its record 'unsupported', any other error 'failed' (with the traceback), never the model's or
    the run's; the instance it put in the yielded Held under `bench` is released either way. The
    record marked is `records[position]` as it is when the attempt ends (--divergence replaces its
    entry partway through)."""
    held = Held()
    try:
        yield held
    except VariantUnsupported as exc:
        record = records[position]
        record.status, record.reason = VariantStatus.UNSUPPORTED, str(exc)
        log(tag, f"{model} {what}: unsupported: {exc}")
    except Exception as exc:
        record = records[position]
        record.status, record.reason = VariantStatus.FAILED, exception_line(exc)
        record.traceback = traceback.format_exc()
        log("WARNING", f"{model} {what} failed: {exception_line(exc)}")
    finally:
        if held.bench is not None:
            held.bench.release()
            held.bench = None
        free_cached_memory(device)


class Held:
    """The model instance a variant's attempt holds, released when the attempt ends."""

    bench: Any = None


def measure_variants(bench, ctx, result: ModelResult, tracker, variants: list[str]) -> list[ImageOutputs]:
    """Each variant in a fresh instance of the model (same seed, so the same weights), measured
    like the reference and checked against its outputs. A variant that cannot run is a row marked
    'unsupported' or 'failed' with its reason; the model and the run go on. Returns the reference's
    outputs (what --divergence's suggested fp32 sets are checked against)."""
    images = [(path, load_rgb(path)) for path in ctx.images]
    log("VARIANT", f"{bench.MODEL_NAME}: reference outputs (torch-fp32) on {len(images)} image(s) for parity")
    reference = parity_outputs(bench, images)
    rows = result.variants = [reference_row(result)]
    bench.release()  # each variant's memory is its own, not the reference's too
    free_cached_memory(ctx.device)
    for variant in variants:
        description = get_variant(variant).description
        record = VariantResult(variant=variant, status=VariantStatus.RUNNING, description=description, runs=[])
        rows.append(record)
        log("VARIANT", f"{bench.MODEL_NAME} as {variant}: {description}")
        with variant_attempt(rows, len(rows) - 1, bench.MODEL_NAME, variant, "VARIANT", ctx.device) as held:
            held.bench = variant_bench = measure_variant(type(bench), variant, ctx, record, tracker, images)
            record.parity = compare_outputs(variant_bench, variant, reference, parity_outputs(variant_bench, images))
            add_speedups(record, rows[0])
            record.status = VariantStatus.COMPLETE
            log("VARIANT", variant_line(record))
            del variant_bench
    return reference


def measure_variant(cls, variant: str, ctx, record: VariantResult, tracker, images: list):
    """Load, prepare (export, compile, cast), then the cold start, warm-up and timed runs, as the
    model's own pass times them, kept in `record` as they come (what a failure leaves measured stays
    in it)."""
    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    tracker.reset_peak()
    memory = record.memory = figures_before_load(tracker, ctx.device)
    start = time.perf_counter()
    bench.load()
    record.details = prepare_variant(bench, variant, images)
    record.prepare_seconds = time.perf_counter() - start
    assert record.runs is not None  # measure_variants made the list
    time_runs(bench, ctx, record, lambda name: contextlib.nullcontext(), images[0][1], label=f"[{variant}] ")
    memory.add_peak(tracker.peak_reading())
    memory.set_private_peak(private_memory())
    summarize_runs(record, discard_flagged=ctx.settings.discard_throttled)
    memory.set_headline(ctx.device.type == "cuda")
    return bench


def reference_row(result: ModelResult) -> VariantResult:
    """The reference's row of the variants table: its figures as measured above, not again."""
    return VariantResult(
        variant=REFERENCE_VARIANT,
        status=VariantStatus.COMPLETE,
        description=get_variant(REFERENCE_VARIANT).description,
        reference=True,
        speedup_forward=1.0,
        speedup_end_to_end=1.0,
        latency_end_to_end=copy.deepcopy(result.latency_end_to_end),
        latency_forward=copy.deepcopy(result.latency_forward),
        cold_start=copy.deepcopy(result.cold_start),
        fps=result.fps,
        memory=headline_memory(result.memory),
    )


def headline_memory(memory: MemoryFigures | None) -> MemoryFigures | None:
    """The model's headline three memory figures: the peak, its kind, the model's own share."""
    if memory is None:
        return None
    return MemoryFigures(
        peak_bytes=memory.peak_bytes,
        peak_kind=memory.peak_kind,
        peak_over_baseline_bytes=memory.peak_over_baseline_bytes,
    )


def add_speedups(record: VariantResult, reference: VariantResult) -> None:
    """The reference's medians (the model's own) over the variant's, forward and end to end."""
    record.speedup_forward = ratio(reference.forward_median, record.forward_median)
    record.speedup_end_to_end = ratio(reference.end_to_end_median, record.end_to_end_median)


def ratio(reference: float | None, mine: float | None) -> float | None:
    return reference / mine if reference and mine else None


def variant_line(record: VariantResult) -> str:
    parity, forward = record.parity, record.forward_median
    assert parity is not None and forward is not None and record.speedup_forward is not None
    worst = parity.worst
    return (
        f"{record.variant}: forward median {forward * 1000:.1f} ms "
        f"({relative_speed(record.speedup_forward, REFERENCE_VARIANT)}), parity {parity.verdict}"
        + (
            f" (worst normalised error {worst.normalised_error:.3g} in {worst.worst_part})"
            if worst.normalised_error is not None
            else ""
        )
        + (f": {'; '.join(parity.reasons[:3])}" if parity.reasons else "")
    )
