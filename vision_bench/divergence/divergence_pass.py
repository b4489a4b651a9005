"""--divergence in the process that runs a model: for each variant, a fresh instance of the model
through the divergence passes (divergence.run_divergence), and for a half-precision variant that
fails parity, the smallest set of modules kept in fp32 that passes, timed and checked like a variant."""

from __future__ import annotations

import contextlib
import time

from ..common import exception_line, format_bytes, log
from ..measure.memory import free_cached_memory
from ..measure.timed_runs import run_timed_phases, summarize_latency
from ..models.images import load_rgb
from ..records import ParityVerdict, SuggestionStatus, VariantStatus
from ..variants.output_parity import compare_outputs, parity_outputs
from ..variants.registry import get_variant, prepare_variant
from ..variants.variant_pass import load_fresh, variant_attempt
from .layer_passes import (
    candidate_modules,
    fp32_forward,
    install_overrides,
    log_culprit,
    prefix_sizes,
    remove_overrides,
    run_divergence,
)


def hooked_variant(bench, variant: str):
    """The divergence passes' view of `variant` (its class in the registry says how it is hooked, or why
    it cannot be): how it runs the model and one leaf, and its tolerance."""
    return get_variant(variant).hooked(bench)


def measure_divergence(
    cls, ctx, result: dict, tracker, variants: list[str], reference_outputs: list[dict], publish=lambda result: None
) -> None:
    """One entry per variant in result['divergence']; a variant that cannot be compared says why, and
    the others go on."""
    images = [(path, load_rgb(path)) for path in ctx.images]
    entries = result["divergence"] = []
    plain_records = {v["variant"]: v for v in result.get("variants") or []}
    for variant in variants:
        entry = {"variant": variant, "status": VariantStatus.RUNNING, "image": images[0][0].name}
        entries.append(entry)
        publish(result)
        log("DIVERGE", f"{cls.MODEL_NAME} {variant}: every leaf call against torch-fp32 on {images[0][0].name}")
        with variant_attempt(entry, cls.MODEL_NAME, f"{variant} divergence", "DIVERGE", ctx.device) as held:
            held["bench"] = bench = load_fresh(cls, ctx)
            compare_layers(
                bench,
                hooked_variant(bench, variant),
                ctx,
                entry,
                tracker,
                images[0][1],
                result,
                plain_records.get(variant),
            )
            held.pop("bench").release()
            del bench
            free_cached_memory(ctx.device)
            entry["status"] = VariantStatus.COMPLETE
            if get_variant(variant).half_precision:
                try:
                    entry["suggestion"] = suggest_fp32_set(
                        cls, ctx, variant, entry, plain_records.get(variant), reference_outputs, images, result
                    )
                except Exception as exc:  # noqa: BLE001  (the comparison stands; only its suggestion failed)
                    entry["suggestion"] = {"status": SuggestionStatus.FAILED, "reason": exception_line(exc)}
                    log("WARNING", f"{cls.MODEL_NAME} {variant}: no suggestion: {exception_line(exc)}")
    publish(result)


def compare_layers(bench, hooked, ctx, entry: dict, tracker, image, result: dict, plain: dict | None) -> None:
    """The two passes on `bench`, their peak memory, and their time in forward passes: the reference pass
    against the reference's timed end-to-end median, the variant and shadow calls against the variant's."""
    tracker.reset_peak()
    rss_before = tracker.rss()
    entry.update(
        run_divergence(bench, hooked, image, scratch=ctx.results_dir, progress=lambda what: bench.progress(what))
    )
    memory = tracker.peak()
    entry["memory"] = {
        "peak_bytes": memory.get("cuda_peak_allocated_bytes", memory["cpu_peak_rss_bytes"]),
        "peak_kind": "CUDA peak allocated" if ctx.device.type == "cuda" else "CPU peak resident set",
        "rss_before_bytes": rss_before,
    }
    passes = entry["passes"]
    reference_median = result["latency_end_to_end"].median if result.get("latency_end_to_end") else None
    variant_median = ((plain or {}).get("latency_end_to_end") or {}).get("median")
    passes["reference_median_s"], passes["variant_median_s"] = reference_median, variant_median
    if reference_median and variant_median:
        passes["forward_equivalents"] = (
            passes["reference_s"] / reference_median + (passes["variant_s"] + passes["shadow_s"]) / variant_median
        )
    log_culprit(bench.MODEL_NAME, entry)
    log(
        "DIVERGE",
        f"{entry['compared']} of {len(entry['records'])} records compared; passes: reference "
        f"{passes['reference_s']:.2f} s, shadow {passes['shadow_s']:.2f} s, variant {passes['variant_s']:.2f} s"
        + (f" ({passes['forward_equivalents']:.2f} forward passes)" if passes.get("forward_equivalents") else "")
        + f"; {format_bytes(entry['spilled_bytes'])} spilled; peak {format_bytes(entry['memory']['peak_bytes'])}",
    )


def suggest_fp32_set(
    cls, ctx, variant: str, entry: dict, plain: dict | None, reference: list[dict], images: list, result: dict
) -> dict:
    """The fewest modules, worst own error first (1, 2, 3, 5, 8, ... of them), that bring the variant's
    parity to a pass when kept in fp32; that set timed like a variant. Each try is one parity check on
    every image (no timing); the first set that passes is the suggestion."""
    if not plain or plain.get("status") != VariantStatus.COMPLETE:
        return {
            "status": SuggestionStatus.SKIPPED,
            "reason": f"the plain {variant} was not measured: nothing to compare a set with",
        }
    out = {
        "plain": {
            "speedup_forward": plain.get("speedup_forward"),
            "verdict": plain["parity"]["verdict"],
            "worst": plain["parity"]["worst"],
        }
    }
    if plain["parity"]["verdict"] == ParityVerdict.PASS:
        return {"status": SuggestionStatus.NOT_NEEDED, "reason": f"the plain {variant} passes parity", **out}
    candidates = candidate_modules(entry["records"] + entry.get("ops_records", []), entry["tolerance"])
    if not candidates:
        return {"status": SuggestionStatus.NO_SMALL_SET, "reason": "no record has an own error to rank", **out}
    bench = load_fresh(cls, ctx)
    try:
        prepare_variant(bench, variant, images)
        tried, chosen, installed = [], None, []
        for size in prefix_sizes(len(candidates)):
            remove_overrides(bench.network(), installed)
            installed = candidates[:size]
            install_overrides(bench.network(), dict.fromkeys(installed, fp32_forward))
            parity = compare_outputs(bench, variant, reference, parity_outputs(bench, images))
            tried.append({"modules": size, "verdict": parity["verdict"], "worst": parity["worst"]})
            log("DIVERGE", f"{variant} with {size} module(s) in fp32: parity {parity['verdict']}")
            if parity["verdict"] == ParityVerdict.PASS:
                chosen = parity
                break
        if chosen is None:
            return {
                "status": SuggestionStatus.NO_SMALL_SET,
                "modules": candidates,
                "tried": tried,
                **out,
                "reason": f"with all {len(candidates)} candidate modules in fp32 (those whose own error "
                + (
                    "passes the tolerance"
                    if entry["over_tolerance"]
                    else "is largest: none passes the tolerance, the error builds up over many layers"
                )
                + ") parity still fails",
            }
        record = {"runs": []}
        label = f"[{variant} + {len(installed)} in fp32] "
        start = time.perf_counter()
        run_timed_phases(bench, ctx, record, lambda name: contextlib.nullcontext(), images[0][1], label=label)
        summarize_latency(record)
        reference_median = result["latency_forward"].median if result.get("latency_forward") else None
        mine = record["latency_forward"]["median"]
        suggestion = {
            "status": SuggestionStatus.PASSES,
            "modules": installed,
            "tried": tried,
            **out,
            "latency_forward": record["latency_forward"],
            "latency_end_to_end": record["latency_end_to_end"],
            "speedup_forward": reference_median / mine if reference_median and mine else None,
            "parity": {k: chosen[k] for k in ("verdict", "reasons", "worst")},
            "timing_seconds": time.perf_counter() - start,
        }
        log(
            "DIVERGE",
            f"{variant} with {len(installed)} module(s) in fp32 ({', '.join(installed[:3])}"
            f"{', ...' if len(installed) > 3 else ''}): {suggestion['speedup_forward'] or 0:.2f}x the "
            f"reference's forward, parity pass (plain {variant}: {out['plain']['speedup_forward'] or 0:.2f}x, "
            f"{out['plain']['verdict']})",
        )
        return suggestion
    finally:
        bench.release()
        free_cached_memory(ctx.device)
