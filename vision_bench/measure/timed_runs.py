"""The timed part of a model's pass, shared by the reference, its variants and the sweep points: the
cold start, warm-up and timed runs (a fixed --runs or --precision's stopping rule, the machine-state
guard at every run), their statistics, and the memory figures of the window."""

from __future__ import annotations

import numpy as np

from ..common import log
from ..models.images import load_rgb
from .machine_state import MachineGuard, summarize_state
from .memory import private_memory
from .stats import latency_stats, tail_stats
from .stopping_rule import STOPPED_BY, StoppingRule


def run_timed_phases(bench, ctx, record: dict, phase, first_image, label: str = ""):
    """The cold start on the first image, the warm-up rounds and the timed runs over all images,
    each run appended to record['runs'] (marked with its kind); returns the cold start's prediction.
    Timed runs are a fixed --runs per image, or with --precision rounds over the images until the
    stopping rule says (record['precision'] says why); the machine-state guard samples at every
    timed run's boundaries (record['guard']). `phase(name)` names each phase; `label` prefixes the
    log lines (a variant's name)."""
    settings, runs = ctx.settings, record["runs"]
    rule = stopping_rule(settings)
    total = (
        f"max {1 + settings.warmup * len(ctx.images) + rule.max_runs}"
        if rule
        else 1 + (settings.warmup + settings.runs) * len(ctx.images)
    )

    def run(path, image, kind):
        prediction, seconds, phases = bench.timed_run(image)
        runs.append(
            {
                "image": path.name,
                "image_size": [image.width, image.height],
                "kind": kind,
                "cold": kind == "cold",
                "total_s": seconds,
                **{f"{k}_s": v for k, v in phases.items()},
            }
        )
        log(
            f"INFER {len(runs)}/{total}",
            f"{label}{path.name} | {seconds * 1000:.1f} ms end to end, forward {phases['forward'] * 1000:.1f} ms"
            + {"cold": " (cold start)", "warmup": " (warm-up)", "timed": ""}[kind],
        )
        return prediction

    # One progress reporter a phase, not a run: no thread is started between two timed runs.
    def runs_done():
        return f"run {len(runs) + 1} of {total}"

    with phase("cold_start"), bench.progress(f"{label}cold start", through_network=False, detail=runs_done):
        first_prediction = run(ctx.images[0], first_image, "cold")
    images = [(path, first_image if path == ctx.images[0] else load_rgb(path)) for path in ctx.images]
    with phase("warmup"), bench.progress(f"{label}warmup runs", through_network=False, detail=runs_done):
        for path, image in images:
            for _ in range(settings.warmup):
                run(path, image, "warmup")
    guard = MachineGuard(ctx.device)
    try:
        with phase("timed"), bench.progress(f"{label}timed runs", through_network=False, detail=runs_done):
            guard.begin()
            if rule:
                rule.start()
            while True:
                for path, image in images:
                    for _ in range(1 if rule else settings.runs):
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
        log(
            "STATS",
            f"{label}--precision {rule.precision_pct:g}%: {STOPPED_BY[stopped_by]} after "
            f"{record['precision']['runs']} timed runs in {record['precision']['seconds']:.1f} s (interval "
            + (f"within +-{reached:.2f}% of the median)" if reached is not None else "not estimable)"),
        )
    return first_prediction


def stopping_rule(settings) -> StoppingRule | None:
    """--precision's rule, its time cap shared by the model's --processes; None for a fixed --runs."""
    if settings.precision is None:
        return None
    return StoppingRule(settings.precision, max_seconds=settings.max_time / max(settings.processes, 1))


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
    result["latency_phases_median"] = {
        p: (float(np.median([r[f"{p}_s"] for r in timed])) if timed else None)
        for p in ("preprocess", "forward", "postprocess")
    }
    median = result["latency_end_to_end"]["median"]
    result["fps"] = 1.0 / median if median else None
    guard = result.get("guard")
    if guard:
        result["machine_state"] = summarize_state(
            guard["static"], timed_all, guard["cost_s"], guard["samples"], median, discarded=len(timed_all) - len(timed)
        )
        if discard_flagged and flagged and not len(timed_all) - len(timed):
            result["machine_state"]["warnings"].append(
                "--discard-throttled: every timed run was flagged; none was discarded"
            )
    # Per image: the first run it got (cold start or first warm-up: a new input shape builds new
    # kernels on CPU and GPU alike), its warm-up runs, and the statistics of its timed runs.
    per_image = {}
    for name in dict.fromkeys(r["image"] for r in runs):
        mine = [r for r in runs if r["image"] == name]
        mine_timed = [r for r in mine if id(r) in kept]
        per_image[name] = {
            "image_size": mine[0]["image_size"],
            "first_run_s": mine[0]["total_s"],
            "first_is_cold_start": mine[0]["cold"],
            "warmup_s": [r["total_s"] for r in mine if r.get("kind") == "warmup"],
            "steady": latency_stats([r["total_s"] for r in mine_timed]),
        }
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
