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
from .output_parity import compare_outputs, parity_outputs
from .registry import REFERENCE_VARIANT, get_variant, prepare_variant


def load_fresh(cls, ctx):
    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    bench.load()
    return bench


@contextlib.contextmanager
def variant_attempt(record: dict, model: str, variant: str, tag: str, device):
    """One variant's attempt: a VariantUnsupported makes its record 'unsupported', any other error
    'failed' (with the traceback), never the model's or the run's; the instance it put in the yielded
    dict under "bench" is released either way."""
    held = {}
    try:
        yield held
    except VariantUnsupported as exc:
        record.update(status=VariantStatus.UNSUPPORTED, reason=str(exc))
        log(tag, f"{model} {variant}: unsupported: {exc}")
    except Exception as exc:
        record.update(status=VariantStatus.FAILED, reason=exception_line(exc), traceback=traceback.format_exc())
        log("WARNING", f"{model} {variant} failed: {exception_line(exc)}")
    finally:
        if held.get("bench") is not None:
            held.pop("bench").release()
        free_cached_memory(device)


def measure_variants(bench, ctx, result: dict, tracker, variants: list[str]) -> None:
    """Each variant in a fresh instance of the model (same seed, so the same weights), measured
    like the reference and checked against its outputs. A variant that cannot run is a row marked
    'unsupported' or 'failed' with its reason; the model and the run go on. Returns the reference's
    outputs (what --divergence's suggested fp32 sets are checked against)."""
    images = [(path, load_rgb(path)) for path in ctx.images]
    log("VARIANT", f"{bench.MODEL_NAME}: reference outputs (torch-fp32) on {len(images)} image(s) for parity")
    reference = parity_outputs(bench, images)
    result["variants"] = [reference_row(result)]
    bench.release()  # each variant's memory is its own, not the reference's too
    free_cached_memory(ctx.device)
    for variant in variants:
        description = get_variant(variant).description
        record = {"variant": variant, "status": VariantStatus.RUNNING, "description": description, "runs": []}
        result["variants"].append(record)
        log("VARIANT", f"{bench.MODEL_NAME} as {variant}: {description}")
        with variant_attempt(record, bench.MODEL_NAME, variant, "VARIANT", ctx.device) as held:
            held["bench"] = variant_bench = measure_variant(type(bench), variant, ctx, record, tracker, images)
            record["parity"] = compare_outputs(variant_bench, variant, reference, parity_outputs(variant_bench, images))
            add_speedups(record, result)
            record["status"] = VariantStatus.COMPLETE
            log("VARIANT", variant_line(record))
            del variant_bench
    return reference


def measure_variant(cls, variant: str, ctx, record: dict, tracker, images: list):
    """Load, prepare (export, compile, cast), then the cold start, warm-up and timed runs."""
    seed_everything(ctx.settings.seed)
    bench = cls.for_run(ctx.device, ctx.settings)
    tracker.reset_peak()
    record["memory"] = memory_before_load(tracker, ctx.device)
    start = time.perf_counter()
    bench.load()
    record["details"] = prepare_variant(bench, variant, images)
    record["prepare_seconds"] = time.perf_counter() - start
    run_timed_phases(bench, ctx, record, lambda name: contextlib.nullcontext(), images[0][1], label=f"[{variant}] ")
    record["memory"].update(tracker.peak())
    set_private_peak(record["memory"], private_memory())
    summarize_latency(record, discard_flagged=ctx.settings.discard_throttled)
    set_headline_memory(record, ctx.device)
    return bench


def reference_row(result: dict) -> dict:
    """The reference's row of the variants table: its figures as measured above, not again."""
    return {
        "variant": REFERENCE_VARIANT,
        "status": VariantStatus.COMPLETE,
        "description": get_variant(REFERENCE_VARIANT).description,
        "reference": True,
        "speedup_forward": 1.0,
        "speedup_end_to_end": 1.0,
        **{k: encode(result.get(k)) for k in ("latency_end_to_end", "latency_forward", "cold_start", "fps")},
        "memory": {k: getattr(result["memory"], k) for k in ("peak_bytes", "peak_kind", "peak_over_baseline_bytes")},
    }


def add_speedups(record: dict, result: dict) -> None:
    for key, name in (("latency_forward", "speedup_forward"), ("latency_end_to_end", "speedup_end_to_end")):
        ref, mine = result[key].median if result.get(key) else None, (record.get(key) or {}).get("median")
        record[name] = ref / mine if ref and mine else None


def variant_line(record: dict) -> str:
    forward = record["latency_forward"]["median"]
    parity = record["parity"]
    worst = parity["worst"]
    return (
        f"{record['variant']}: forward median {forward * 1000:.1f} ms ({record['speedup_forward']:.2f}x "
        f"the reference), parity {parity['verdict']}"
        + (
            f" (worst normalised error {worst.get('normalised_error'):.3g} in {worst.get('worst_part')})"
            if worst.get("normalised_error") is not None
            else ""
        )
        + (f": {'; '.join(parity['reasons'][:3])}" if parity["reasons"] else "")
    )
