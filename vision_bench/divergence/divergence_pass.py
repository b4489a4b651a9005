"""--divergence in the process that runs a model: for each variant, a fresh instance of the model
through the divergence passes (divergence.run_divergence), and for a half-precision variant that
fails parity, the smallest set of modules kept in fp32 that passes, timed and checked like a variant."""

from __future__ import annotations

import contextlib
import time

from ..common import exception_line, format_bytes, log
from ..images import load_rgb
from ..measure.memory import free_cached_memory
from ..measure.timed_runs import latency_summary, time_runs
from ..records import SuggestionStatus, VariantStatus
from ..records.divergence import (
    AnyDivergenceEntry,
    DivergenceEntry,
    DivergenceNotCompared,
    PassMemory,
    PlainVariant,
    SetTried,
    Suggestion,
)
from ..records.measurement import LatencyStats, TimedWindow
from ..records.model_result import ModelResult
from ..records.parity_figures import ImageOutputs
from ..records.variants import ParityRecord, VariantResult
from ..variants.output_parity import compare_outputs, parity_outputs
from ..variants.registry import get_variant, prepare_variant
from ..variants.variant_pass import load_fresh, ratio, variant_attempt
from .layer_passes import (
    candidate_modules,
    fp32_forward,
    install_overrides,
    log_culprit,
    prefix_sizes,
    remove_overrides,
    run_divergence,
)
from .onnx_intermediates import ExportedVariant


def hooked_variant(bench, variant: str, pictures: list | None = None):
    """The divergence passes' view of `variant` (its class in the registry says how it is hooked, or why
    it cannot be): how it runs the model and one leaf, and its tolerance. An exported variant gets the
    run's `pictures`, which an INT8 variant calibrated on in the variants pass."""
    hooked = get_variant(variant).hooked(bench)
    if isinstance(hooked, ExportedVariant) and pictures:
        hooked.pictures = pictures
    return hooked


def measure_divergence(
    cls,
    ctx,
    result: ModelResult,
    tracker,
    variants: list[str],
    reference_outputs: list[ImageOutputs],
    publish=lambda result: None,
) -> None:
    """One entry per variant in result.divergence; a variant that cannot be compared says why, and
    the others go on."""
    images = [(path, load_rgb(path)) for path in ctx.images]
    entries: list[AnyDivergenceEntry] = []
    result.divergence = entries
    plain_records = {v.variant: v for v in result.variants or []}
    for variant in variants:
        entries.append(DivergenceNotCompared(variant, VariantStatus.RUNNING, image=images[0][0].name))
        position = len(entries) - 1
        publish(result)
        log("DIVERGE", f"{cls.MODEL_NAME} {variant}: every leaf call against torch-fp32 on {images[0][0].name}")
        with variant_attempt(entries, position, cls.MODEL_NAME, f"{variant} divergence", "DIVERGE", ctx.device) as held:
            held.bench = bench = load_fresh(cls, ctx)
            entry = compare_layers(
                bench,
                hooked_variant(bench, variant, [image for _, image in images]),
                ctx,
                tracker,
                images[0],
                result,
                plain_records.get(variant),
            )
            entries[position] = entry
            held.bench = None
            bench.release()
            del bench
            free_cached_memory(ctx.device)
            entry.status = VariantStatus.COMPLETE
            if get_variant(variant).half_precision:
                try:
                    entry.suggestion = suggest_fp32_set(
                        cls, ctx, variant, entry, plain_records.get(variant), reference_outputs, images, result
                    )
                except Exception as exc:  # noqa: BLE001  (the comparison stands; only its suggestion failed)
                    entry.suggestion = Suggestion(SuggestionStatus.FAILED, reason=exception_line(exc))
                    log("WARNING", f"{cls.MODEL_NAME} {variant}: no suggestion: {exception_line(exc)}")
    publish(result)


def median_of(latency: LatencyStats | None) -> float | None:
    """A timed median (seconds); None when not measured."""
    return latency.median if latency is not None else None


def compare_layers(
    bench, hooked, ctx, tracker, image: tuple, result: ModelResult, plain: VariantResult | None
) -> DivergenceEntry:
    """The two passes on `bench` (`image`: its path and pixels), their peak memory, and their time in
    forward passes: the reference pass against the reference's timed end-to-end median, the variant and
    shadow calls against the variant's."""
    tracker.reset_peak()
    rss_before = tracker.rss()
    entry = run_divergence(bench, hooked, image[1], scratch=ctx.results_dir, progress=lambda what: bench.progress(what))
    entry.image = image[0].name
    memory = tracker.peak_reading()
    entry.memory = PassMemory(
        peak_bytes=memory.cpu_peak_rss_bytes
        if memory.cuda_peak_allocated_bytes is None
        else memory.cuda_peak_allocated_bytes,
        peak_kind="CUDA peak allocated" if ctx.device.type == "cuda" else "CPU peak resident set",
        rss_before_bytes=rss_before,
    )
    passes = entry.passes
    passes.set_medians(median_of(result.latency_end_to_end), plain.end_to_end_median if plain else None)
    log_culprit(bench.MODEL_NAME, entry)
    log(
        "DIVERGE",
        f"{entry.compared} of {len(entry.records)} records compared; passes: reference "
        f"{passes.reference_s:.2f} s, shadow {passes.shadow_s:.2f} s, variant {passes.variant_s:.2f} s"
        + (f" ({passes.forward_equivalents:.2f} forward passes)" if passes.forward_equivalents else "")
        + f"; {format_bytes(entry.spilled_bytes)} spilled; peak {format_bytes(entry.memory.peak_bytes)}",
    )
    return entry


def plain_variant(plain: VariantResult) -> PlainVariant:
    """The variants pass's record of the variant, as the suggestion compares it."""
    assert plain.parity is not None  # suggest_fp32_set checked it
    return PlainVariant(plain.speedup_forward, plain.parity.verdict, plain.parity.worst)


def first_passing_set(
    bench, variant: str, candidates: list[str], reference: list[ImageOutputs], images: list
) -> tuple[list[SetTried], ParityRecord | None, list[str]]:
    """(the sets tried, the parity of the first that passes or None, the modules in fp32 now): the
    candidates' prefixes of 1, 2, 3, 5, 8, ... modules kept in fp32, one parity check on every image each."""
    tried: list[SetTried] = []
    installed: list[str] = []
    for size in prefix_sizes(len(candidates)):
        remove_overrides(bench.network(), installed)
        installed = candidates[:size]
        install_overrides(bench.network(), dict.fromkeys(installed, fp32_forward))
        parity = compare_outputs(bench, variant, reference, parity_outputs(bench, images))
        tried.append(SetTried(size, parity.verdict, parity.worst))
        log("DIVERGE", f"{variant} with {size} module(s) in fp32: parity {parity.verdict}")
        if parity.passes:
            return tried, parity, installed
    return tried, None, installed


def no_passing_set(
    entry: DivergenceEntry, candidates: list[str], tried: list[SetTried], measured: PlainVariant
) -> Suggestion:
    """The suggestion when even every candidate kept in fp32 leaves parity failing, saying which they were."""
    return Suggestion(
        SuggestionStatus.NO_SMALL_SET,
        modules=candidates,
        tried=tried,
        plain=measured,
        reason=f"with all {len(candidates)} candidate modules in fp32 (those whose own error "
        + (
            "passes the tolerance"
            if entry.over_tolerance
            else "is largest: none passes the tolerance, the error builds up over many layers"
        )
        + ") parity still fails",
    )


def log_passing_set(variant: str, installed: list[str], suggestion: Suggestion, measured: PlainVariant) -> None:
    """One line on the set that passes: its modules, its speed-up beside the plain variant's."""
    log(
        "DIVERGE",
        f"{variant} with {len(installed)} module(s) in fp32 ({', '.join(installed[:3])}"
        f"{', ...' if len(installed) > 3 else ''}): {suggestion.speedup_forward or 0:.2f}x the "
        f"reference's forward, parity pass (plain {variant}: {measured.speedup_forward or 0:.2f}x, "
        f"{measured.verdict})",
    )


def suggest_fp32_set(
    cls,
    ctx,
    variant: str,
    entry: DivergenceEntry,
    plain: VariantResult | None,
    reference: list[ImageOutputs],
    images: list,
    result: ModelResult,
) -> Suggestion:
    """The fewest modules, worst own error first (1, 2, 3, 5, 8, ... of them), that bring the variant's
    parity to a pass when kept in fp32; that set timed like a variant. Each try is one parity check on
    every image (no timing); the first set that passes is the suggestion."""
    if not plain or not plain.complete or plain.parity is None:
        return Suggestion(
            SuggestionStatus.SKIPPED, reason=f"the plain {variant} was not measured: nothing to compare a set with"
        )
    measured = plain_variant(plain)
    if plain.parity.passes:
        return Suggestion(SuggestionStatus.NOT_NEEDED, reason=f"the plain {variant} passes parity", plain=measured)
    candidates = candidate_modules(entry.records + entry.ops_records, entry.tolerance)
    if not candidates:
        return Suggestion(SuggestionStatus.NO_SMALL_SET, reason="no record has an own error to rank", plain=measured)
    bench = load_fresh(cls, ctx)
    try:
        prepare_variant(bench, variant, images)
        tried, chosen, installed = first_passing_set(bench, variant, candidates, reference, images)
        if chosen is None:
            return no_passing_set(entry, candidates, tried, measured)
        suggestion = time_fp32_set(bench, ctx, variant, installed, images, result)
        suggestion.tried, suggestion.plain = tried, measured
        suggestion.parity = chosen.headline()
        log_passing_set(variant, installed, suggestion, measured)
        return suggestion
    finally:
        bench.release()
        free_cached_memory(ctx.device)


def time_fp32_set(bench, ctx, variant: str, installed: list[str], images: list, result: ModelResult) -> Suggestion:
    """The variant with `installed` kept in fp32, timed like a variant (the measure family's runs)."""
    window = TimedWindow()
    label = f"[{variant} + {len(installed)} in fp32] "
    start = time.perf_counter()
    time_runs(bench, ctx, window, lambda name: contextlib.nullcontext(), images[0][1], label=label)
    timed = latency_summary(window.runs, guard=None)  # the guard's record gives the machine state, not kept here
    return Suggestion(
        SuggestionStatus.PASSES,
        modules=installed,
        latency_forward=timed.latency_forward,
        latency_end_to_end=timed.latency_end_to_end,
        speedup_forward=ratio(median_of(result.latency_forward), timed.latency_forward.median),
        timing_seconds=time.perf_counter() - start,
    )
