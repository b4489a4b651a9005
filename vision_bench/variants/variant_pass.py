"""A model's variants (--variants) in the process that runs it: each in a fresh instance, measured
like the reference, its outputs checked against the reference's."""

from __future__ import annotations

import contextlib
import time
import traceback

from ..common import VariantUnsupported, exception_line, log, seed_everything
from ..measure.memory import free_cached_memory, private_memory
from ..measure.timed_runs import (
    memory_before_load,
    run_timed_phases,
    set_headline_memory,
    set_private_peak,
    summarize_latency,
)
from ..models.images import load_rgb
from ..records import VariantStatus
from ..records.codec import encode
from ..records.model_result import ModelResult
from ..records.variants import VARIANT_FIELDS, VariantResult
from .output_parity import compare_outputs, parity_outputs
from .registry import REFERENCE_VARIANT, get_variant, prepare_variant


def load_fresh(cls, ctx):
    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    bench.load()
    return bench


@contextlib.contextmanager
def variant_attempt(record, model: str, variant: str, tag: str, device):
    """One variant's attempt: a VariantUnsupported makes its record 'unsupported', any other error
    'failed' (with the traceback), never the model's or the run's; the instance it put in the yielded
    dict under "bench" is released either way. `record` is a VariantResult (or --divergence's entry)."""
    held: dict = {}
    try:
        yield held
    except VariantUnsupported as exc:
        mark(record, status=VariantStatus.UNSUPPORTED, reason=str(exc))
        log(tag, f"{model} {variant}: unsupported: {exc}")
    except Exception as exc:
        mark(record, status=VariantStatus.FAILED, reason=exception_line(exc), traceback=traceback.format_exc())
        log("WARNING", f"{model} {variant} failed: {exception_line(exc)}")
    finally:
        if held.get("bench") is not None:
            held.pop("bench").release()
        free_cached_memory(device)


def mark(record, **fields) -> None:
    """Set a record's fields (a record's attributes, or the keys of an entry still a dict)."""
    if isinstance(record, dict):
        record.update(fields)
    else:
        for name, value in fields.items():
            setattr(record, name, value)


def measure_variants(bench, ctx, result: ModelResult, tracker, variants: list[str]) -> list[dict]:
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
        with variant_attempt(record, bench.MODEL_NAME, variant, "VARIANT", ctx.device) as held:
            held["bench"] = variant_bench = measure_variant(type(bench), variant, ctx, record, tracker, images)
            record.parity = compare_outputs(variant_bench, variant, reference, parity_outputs(variant_bench, images))
            add_speedups(record, rows[0])
            record.status = VariantStatus.COMPLETE
            log("VARIANT", variant_line(record))
            del variant_bench
    return reference


def measure_variant(cls, variant: str, ctx, record: VariantResult, tracker, images: list):
    """Load, prepare (export, compile, cast), then the cold start, warm-up and timed runs: measured in
    the dict the timed phases fill (the model pass's shape), kept in `record` as they come (what a
    failure leaves measured stays in it)."""
    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    tracker.reset_peak()
    memory = record.memory = memory_before_load(tracker, ctx.device)
    timed = {"runs": record.runs, "memory": memory}
    start = time.perf_counter()
    bench.load()
    record.details = prepare_variant(bench, variant, images)
    record.prepare_seconds = time.perf_counter() - start
    try:
        run_timed_phases(bench, ctx, timed, lambda name: contextlib.nullcontext(), images[0][1], label=f"[{variant}] ")
        memory.update(tracker.peak())
        set_private_peak(memory, private_memory())
        summarize_latency(timed, discard_flagged=ctx.settings.discard_throttled)
        set_headline_memory(timed, ctx.device)
    finally:
        keep_measured(record, timed)
    return bench


def keep_measured(record: VariantResult, timed: dict) -> None:
    """What the timed phases (measure/timed_runs.py, shared with the model's own pass and the sweep
    points) left in the dict they fill, as the record's fields of the same names."""
    for name in VARIANT_FIELDS & timed.keys():
        setattr(record, name, timed[name])


def reference_row(result: ModelResult) -> VariantResult:
    """The reference's row of the variants table: its figures as measured above, not again."""
    return VariantResult(
        variant=REFERENCE_VARIANT,
        status=VariantStatus.COMPLETE,
        description=get_variant(REFERENCE_VARIANT).description,
        reference=True,
        speedup_forward=1.0,
        speedup_end_to_end=1.0,
        latency_end_to_end=encode(result.latency_end_to_end),
        latency_forward=encode(result.latency_forward),
        cold_start=encode(result.cold_start),
        fps=result.fps,
        memory={k: getattr(result.memory, k) for k in ("peak_bytes", "peak_kind", "peak_over_baseline_bytes")},
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
        f"{record.variant}: forward median {forward * 1000:.1f} ms ({record.speedup_forward:.2f}x "
        f"the reference), parity {parity.verdict}"
        + (
            f" (worst normalised error {worst.normalised_error:.3g} in {worst.worst_part})"
            if worst.normalised_error is not None
            else ""
        )
        + (f": {'; '.join(parity.reasons[:3])}" if parity.reasons else "")
    )
