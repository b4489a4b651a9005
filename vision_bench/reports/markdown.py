"""The Markdown report, and the table and text helpers the comparison report shares."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..common import format_bytes, ms
from ..divergence.divergence_report import divergence_markdown
from ..inspect.trace_report import trace_markdown
from ..measure.sampling_report import machine_state_lines, sampling_lines
from ..measure.stats import CI_METHOD, format_interval
from ..sweeps.sweep_report import summary_line, sweep_markdown
from ..variants.variants_report import VARIANT_HEADERS, variant_notes, variant_rows
from .charts import activation_profile_chart, latency_chart, memory_chart
from .findings import findings
from .results_file import report_paths
from .run_time import run_time_section
from .tables import md_table

SYSTEM_IDENTITY = (
    "gpu",
    "cpu",
    "cpu_count",
    "os",
    "torch",
    "transformers",
    "ultralytics",
    "cuda_version",
    "cuda_driver_version",
)  # a difference here makes two runs' figures not directly comparable
SETTINGS_IDENTITY = ("runs_per_image", "warmup_rounds", "weights", "isolation", "seed", "torch_threads")


def placement_lines(data: dict) -> list[str]:
    """Where each model ran, when that is not one device of one system: --devices runs and
    merged shards. A table mixing systems says so, since its rows are not comparable as they stand."""
    results = [r for r in data["models"] if r["status"] != "not run"]
    if not any(r.get("device") or r.get("system") or r.get("source_file") for r in results):
        return []
    systems = {
        json.dumps({k: (r.get("system") or data["system"]).get(k) for k in SYSTEM_IDENTITY}, sort_keys=True)
        for r in results
    }
    lines = []
    if data.get("merged_from"):
        lines += [
            f"Merged from {len(data['merged_from'])} result files: "
            + ", ".join(f"`{m['file']}` ({m['status']})" for m in data["merged_from"])
            + ".",
            "",
        ]
    shards = data.get("shards")
    if shards:
        missing = ", ".join(str(k) for k in shards["missing"])
        lines += [
            f"Shards of one job array (--shard I/{shards['count']}): {len(shards['present'])} of {shards['count']} "
            "wrote results"
            + (f"; no results from shard {missing} (see the failed models below)" if missing else "")
            + ".",
            "",
        ]
    if len(systems) > 1:
        lines += [
            "> **Mixed systems.** These models ran on different systems (GPU, CPU or library versions "
            "differ, see the table below); compare their figures with that in mind.",
            "",
        ]
    differing = [
        k
        for k in SETTINGS_IDENTITY
        if len({json.dumps((r.get("run_config") or data["config"]).get(k)) for r in results}) > 1
    ]
    if differing:
        lines += [
            "> **Mixed settings.** The parts ran with different "
            + ", ".join(differing)
            + ": "
            + "; ".join(
                f"{r['model']} " + ", ".join(f"{k}={(r.get('run_config') or data['config']).get(k)}" for k in differing)
                for r in results
            )
            + ".",
            "",
        ]
    rows = []
    for r in results:
        if r.get("status_in_shard") == "missing":  # its shard wrote nothing: it ran nowhere
            continue
        s = r.get("system") or data["system"]
        slot = f" (worker {r['device_slot']})" if r.get("device_slot") is not None else ""
        rows.append(
            [
                r["model"],
                (r.get("device") or s.get("device") or "unknown device") + slot,
                s.get("gpu") or s.get("cpu"),
                f"torch {s.get('torch')}",
                f"`{r.get('source_run_id') or data['run_id']}`",
            ]
        )
    return lines + ["Where each model ran:", "", md_table(["model", "device", "GPU or CPU", "torch", "run"], rows), ""]


def memory_note(results: list[dict]) -> str:
    """What the peak memory column means, and what a worker held before its model loaded."""
    text = (
        "Peak memory is over the cold start, warm-up and timed runs (the load's own peak is in the JSON). On the "
        "CPU it is the resident set of the whole process, as the OS sees it; in brackets, the model's own share: "
        "the growth of its worker's private memory (USS) from just before the load to the peak. On CUDA: the "
        "allocator's peak, and in brackets its growth from before the load."
    )
    before = [
        (
            (r.get("memory") or {}).get("cpu_rss_before_load_bytes"),
            (r.get("memory") or {}).get("cpu_private_before_load_bytes"),
        )
        for r in results
        if r["status"] == "complete"
    ]
    before = [(rss, uss) for rss, uss in before if rss is not None and uss is not None]
    if before:
        rss, uss = before[0]
        text += (
            f" Before its model loaded, a worker held {rss / 2**20:.0f} MB resident, {uss / 2**20:.0f} MB of "
            "it private: the rest are the libraries the worker server imported (torch, transformers, ultralytics, "
            "OpenCV), shared with it and not the model's."
        )
    return text


SUMMARY_CHARTS = [
    ("latency.png", "Latency per model", latency_chart),
    ("memory_vs_params.png", "Peak memory against parameters", memory_chart),
]


def draw_summary_charts(data: dict, assets: Path) -> None:
    """The run's summary charts, drawn once when it ends; a chart with nothing to show is removed."""
    for name, _, draw in SUMMARY_CHARTS:
        if not draw(data["models"], assets / name):
            (assets / name).unlink(missing_ok=True)


def markdown_report(data: dict, ctx) -> str:
    results = data["models"]
    assets = ctx.assets_dir
    rel = assets.name
    lines = [
        "# Vision model benchmark report",
        "",
        f"Run `{data['run_id']}`, started {data['started']}, "
        f"{data['total_seconds']:.0f} s so far. Command: `{data['command']}`",
        "",
    ]
    random_models = [r["model"] for r in results if r["weights"] == "random" and r["status"] != "not run"]
    if random_models:
        lines += [
            f"> **Warning: random weights.** {', '.join(random_models)} ran with randomly initialised weights. "
            "Timing, memory, FLOPs and the dissection mechanics are valid; the task outputs and the activation "
            "statistics of these models are not meaningful.",
            "",
        ]
    if data["status"] != "complete":
        unfinished = [f"{r['model']} ({r['status']})" for r in results if r["status"] != "complete"]
        lines += [
            f"> **Run {data['status']}.** Not complete: {', '.join(unfinished)}. The figures below are those of "
            "the models that finished.",
            "",
        ]

    s = data["system"]
    lines += [
        "## System",
        "",
        md_table(
            ["property", "value"],
            [
                ["OS", s["os"]],
                ["Python", s["python"]],
                ["PyTorch", s["torch"]],
                ["transformers", s["transformers"]],
                ["ultralytics", s["ultralytics"]],
                ["CUDA", s["cuda_version"] if s["cuda_available"] else "not available"],
                ["GPU", s["gpu"] or "none"],
                ["CPU", f"{s['cpu']}, {s['cpu_count']} logical cores, torch threads {s['torch_threads']}"],
                ["device", s["device"]],
                ["numeric settings", numeric_settings_text(s)],
            ],
        ),
        "",
    ]
    lines += machine_state_lines(results)
    c = data["config"]
    lines += [
        "## Configuration",
        "",
        f"- Images ({len(data['images'])}, from {c['image_source']}): "
        + ", ".join(f"`{Path(p).name}`" for p in data["images"]),
        f"- Each model: one cold-start run, then {c.get('warmup_rounds', 0)} warm-up round(s) over all images, "
        + (
            f"then timed rounds over the images until the median's 95% interval was within "
            f"+-{c['precision_pct']:g}% (at most {c['max_time_s']:g} s)"
            if c.get("precision_pct")
            else f"then {c['runs_per_image']} timed run(s) per image"
        )
        + (f", in each of {c['processes']} fresh processes (runs pooled)" if (c.get("processes") or 1) > 1 else "")
        + (
            "; runs the guard flagged throttled or shared are left out (--discard-throttled)"
            if c.get("discard_throttled")
            else ""
        )
        + "; the latency statistics come from the timed runs "
        "only, each median with its 95% interval (" + c.get("latency_interval", CI_METHOD) + ")",
        "- Isolation: "
        + (
            "each model in a fresh worker process (forked from a server that imported the "
            "libraries), so no model's figures depend on the models before it"
            if c.get("isolation") == "process"
            else "all models in this one process"
        )
        + "; freed memory kept by the allocator: "
        + (
            ", ".join(
                sorted(
                    {
                        f"{format_bytes(a['trim_threshold_bytes'])} trim, "
                        f"{format_bytes(a['mmap_threshold_bytes'])} mmap threshold"
                        for a in (r.get("allocator") for r in results)
                        if a
                    }
                )
            )
            or "no (default glibc)"
        ),
        f"- Seed {c['seed']}; weights: {c['weights']}; device {c['device']}; torch CPU threads {c['torch_threads']} "
        "(pinned for every model)",
        "- Models' own settings: "
        + (
            "; ".join(
                f"{r['model']}: " + ", ".join(f"{k}={v}" for k, v in r["config"].items())
                for r in results
                if r.get("config")
            )
            or "none"
        ),
        "",
    ]

    done = [r for r in results if r.get("cold_start")]
    kind = next((r["memory"]["peak_kind"] for r in done if r.get("memory", {}).get("peak_kind")), "peak memory")
    rows = []
    for r in done:
        e2e, mem = r["latency_end_to_end"], r["memory"]
        rows.append(
            [
                r["model"],
                r["weights"],
                f"{r['load_seconds']:.2f}",
                ms(r["cold_start"]["total_s"]),
                f"{ms(e2e['median'])} {format_interval(e2e)}",
                ms(e2e["p90"]),
                ms(r["latency_forward"]["median"]),
                f"{e2e['cov'] * 100:.1f}%" if e2e["cov"] is not None else "n/a",
                f"{r['fps']:.2f}" if r.get("fps") else "n/a",
                f"{mem['peak_bytes'] / 1024**2:.0f} (+{mem['peak_over_baseline_bytes'] / 1024**2:.0f})"
                if mem.get("peak_bytes")
                else "n/a",
                f"{r['parameters']:,}" if r.get("parameters") else "n/a",
                f"{r['gflops']:.2f}" if r.get("gflops") is not None else "n/a",
                "x".join(map(str, r["input_shape"])) if r.get("input_shape") else "n/a",
                (r.get("dissection") or {}).get("records", "n/a"),
                r["status"],
            ]
        )
    lines += [
        "## Summary",
        "",
        md_table(
            [
                "model",
                "weights",
                "load s",
                "cold start ms",
                "end-to-end median ms [95% CI]",
                "p90 ms",
                "forward median ms",
                "CoV",
                "FPS",
                f"peak memory MB ({kind})",
                "params",
                "GFLOPs",
                "input shape",
                "layers dissected",
                "status",
            ],
            rows,
        ),
        "",
        "End to end = preprocess + forward + postprocess, what a pipeline pays per image; FPS = 1 / its median; "
        "timed runs only, the 95% interval of the median in brackets. "
        "GFLOPs count 2 per multiply-add (torch.utils.flop_counter) over the network's matmuls and convolutions. "
        + memory_note(results),
        "",
    ]
    swept = [line for line in map(summary_line, done) if line]
    if swept:
        lines += (
            ["How cost grows (--batch-sizes, --input-sizes; details per model below):", ""]
            + [f"- {line}" for line in swept]
            + [""]
        )
    lines += placement_lines(data)

    # The summary charts change with every model but are drawn once, when the run ends (by
    # draw_summary_charts, before the wall time is stamped): drawing them after every model cost
    # 0.3-0.6 s a model in the parent, the tool's own overhead.
    charts = []
    if data.get("status") == "running":
        lines += ["## Charts", "", "Drawn when the run ends.", ""]
    else:
        charts = [f"![{alt}]({rel}/{name})" for name, alt, _ in SUMMARY_CHARTS if (assets / name).exists()]
    if charts:
        lines += ["## Charts", ""] + [f"{c}\n" for c in charts]

    found = findings(results)
    lines += ["## Findings", ""] + ([f"- {f}" for f in found] or ["- Too few finished models to compare."]) + [""]

    lines += run_time_section(data)

    failed = [r for r in results if r["status"] in ("failed", "interrupted", "timeout")]
    if failed:
        lines += [
            "## Failed or interrupted models",
            "",
            md_table(
                ["model", "status", "phase", "error", "memory"],
                [
                    [
                        r["model"],
                        r["status"],
                        (r.get("error") or {}).get("phase") or r.get("phase_reached") or r.get("phase"),
                        ((r.get("error") or {}).get("type", "") + ": " + (r.get("error") or {}).get("message", ""))
                        .strip(": ")
                        .replace("|", "/")
                        .replace("\n", " "),
                        failure_memory(r),
                    ]
                    for r in failed
                ],
            ),
            "",
        ]

    for r in done:
        lines += model_section(r, ctx, rel)
    lines += [
        "## Where the files are",
        "",
        f"- JSON (every run's time): `{report_paths(ctx)['json'].name}`",
        f"- CSV (one row a model): `{report_paths(ctx)['csv'].name}`",
        f"- HTML report with a layer explorer (open it in a browser): `{report_paths(ctx)['html'].name}`",
        f"- Layer folders: `{ctx.viz_dir}/<MODEL_NAME>/` (layer_NNN.png, layer_NNN.npy, layers_metadata.json)",
        "",
    ]
    return "\n".join(lines)


def numeric_settings_text(s: dict) -> str:
    """The system's numeric settings in one table cell; results written before they were
    recorded give "not recorded"."""
    if "matmul_allow_tf32" not in s:
        return "not recorded"

    def on_off(flag) -> str:
        return "n/a" if flag is None else ("on" if flag else "off")

    cudnn = s.get("cudnn_version")
    if isinstance(cudnn, int) and cudnn > 0:  # cuDNN 9 encodes 9.24.0 as 92400, cuDNN 8 encodes 8.9.2 as 8902
        major_unit = 10000 if cudnn >= 10000 else 1000
        cudnn_text = f"{cudnn // major_unit}.{cudnn % major_unit // 100}.{cudnn % 100}"
    else:
        cudnn_text = "n/a"
    return (
        f"default dtype {s.get('default_dtype')}; matmul TF32 {on_off(s.get('matmul_allow_tf32'))} "
        f"(float32 matmul precision {s.get('float32_matmul_precision')}); cuDNN TF32 "
        f"{on_off(s.get('cudnn_allow_tf32'))}; cudnn.benchmark {on_off(s.get('cudnn_benchmark'))}; "
        f"cudnn.deterministic {on_off(s.get('cudnn_deterministic'))}; cuDNN {cudnn_text}; "
        f"driver {s.get('cuda_driver_version') or 'n/a'}"
    )


def failure_memory(r: dict) -> str:
    """Memory figures known when a model stopped: what a user needs to judge an OOM."""
    memory = r.get("memory") or {}
    at = memory.get("at_failure") or {}
    parts = [
        f"{label} {format_bytes(value)}"
        for label, value in (
            ("before load", memory.get("cuda_allocated_before_load_bytes", memory.get("cpu_rss_before_load_bytes"))),
            ("after load", memory.get("cuda_allocated_after_load_bytes", memory.get("cpu_rss_after_load_bytes"))),
            ("peak at failure", at.get("cuda_peak_allocated_bytes", at.get("cpu_peak_rss_bytes"))),
        )
        if value
    ]
    return ", ".join(parts) or "n/a"


def model_section(r: dict, ctx, rel: str) -> list[str]:
    lines = [
        f"## {r['model']}",
        "",
        f"- Weights: {r['weights_source']}",
        f"- Input the network received: {r.get('input_shape')} (nominal size {r['nominal_input_size']}), "
        f"computed in {r.get('dtype') or 'n/a'}",
    ]
    if (r.get("memory") or {}).get("cuda_context_bytes") is not None:
        lines.append(f"- CUDA context (apart from the model): {format_bytes(r['memory']['cuda_context_bytes'])}")
    if r.get("config"):
        lines.append("- Settings: " + ", ".join(f"{k}={v}" for k, v in r["config"].items()))
    phases = r.get("latency_phases_median") or {}
    if phases.get("forward") is not None:
        lines.append(
            f"- Timed medians: preprocess {ms(phases['preprocess'])} ms, forward {ms(phases['forward'])} ms "
            f"{format_interval(r['latency_forward'])}, postprocess {ms(phases['postprocess'])} ms; "
            f"cold start {ms(r['cold_start']['total_s'])} ms"
        )
    lines += sampling_lines(r)
    lines.append("")
    per_image = r.get("latency_per_image") or {}
    if per_image:
        lines += [
            md_table(
                [
                    "image",
                    "size",
                    "cold start ms",
                    "warm-up ms",
                    "timed median ms [95% CI]",
                    "p90 ms",
                    "CoV",
                    "timed runs",
                ],
                [
                    [
                        f"`{name}`",
                        "x".join(map(str, img["image_size"])),
                        ms(img["first_run_s"]) if img["first_is_cold_start"] else "",
                        ", ".join(ms(s) for s in img.get("warmup_s", [])) or "none",
                        f"{ms(img['steady']['median'])} {format_interval(img['steady'])}",
                        ms(img["steady"]["p90"]),
                        f"{img['steady']['cov'] * 100:.1f}%" if img["steady"]["cov"] is not None else "n/a",
                        img["steady"]["n"],
                    ]
                    for name, img in per_image.items()
                ],
            ),
            "",
        ]
    if r.get("output_image"):
        summary = r.get("prediction_summary") or {}
        lines += ["### What it produced (first image)", "", f"![{r['model']} output]({r['output_image']})", ""]
        if summary:
            lines += [
                "- " + ", ".join(f"{k}: {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in summary.items()),
                "",
            ]
        if r["weights"] == "random":
            lines += ["(Random weights: this output shows the pipeline works, not what the model can do.)", ""]
    if r.get("variants"):
        lines += [
            "### Variants",
            "",
            "Each variant loaded afresh (same weights), timed like the reference, then run "
            "once more per image to compare its outputs with torch-fp32's: the normalised error is "
            "max|a-b| / max|b| of the raw output, per part (boxes, scores, keypoints, ...), worst part shown.",
            "",
            md_table(VARIANT_HEADERS, [[c.replace("|", "/") for c in row] for row in variant_rows(r)]),
            "",
        ]
        lines += [f"- {note}" for note in variant_notes(r)] + ([""] if variant_notes(r) else [])
    if r.get("divergence"):
        lines += divergence_markdown(r, ctx)
    if r.get("sweep"):
        lines += sweep_markdown(r, ctx)
    tb = r.get("time_breakdown")
    if tb:
        lines += [
            "### Where the time goes",
            "",
            f"One profiled pass (not a timed run), forward {tb['forward_ms']:.1f} ms "
            "with timing hooks on every module.",
            "",
            md_table(
                ["block", "ms", "share"],
                [[b["block"], f"{b['ms']:.1f}", f"{b['share'] * 100:.1f}%"] for b in tb["blocks"]],
            ),
            "",
            "Ten most expensive leaf modules:",
            "",
            md_table(
                ["module", "type", "calls", "ms", "share"],
                [
                    [f"`{t['name']}`", t["type"], t["calls"], f"{t['ms']:.1f}", f"{t['share'] * 100:.1f}%"]
                    for t in tb["top_leaves"]
                ],
            ),
            "",
        ]
    lines += trace_markdown(r)
    d = r.get("dissection")
    if d:
        folder = Path(d["folder"])
        link = os.path.relpath(folder, ctx.results_dir)
        lines += [
            "### Inside the model",
            "",
            f"{d['records']} records (every call of {d['leaf_modules']} leaf modules) "
            f"in one pass of {d['seconds']:.1f} s; {d['png_files']} PNG and {d['npy_files']} NPY files in "
            f"[`{link}`]({link}/). NaN in {d['nan_records']} records, Inf in {d['inf_records']}.",
            "",
            "Layer types: " + ", ".join(f"{t} {n}" for t, n in d["type_counts"].items()),
            "",
        ]
        chart = ctx.assets_dir / f"{r['model']}_activations.png"
        if chart.exists() or activation_profile_chart(r, chart):  # a finished model's chart never changes
            lines += [f"![{r['model']} activation profile]({rel}/{chart.name})", ""]
        if r["weights"] == "random":
            lines += [
                "(Random weights: the activation statistics below describe the initialisation, not a trained model.)",
                "",
            ]
        lines += [
            "Widest activation range:",
            "",
            md_table(
                ["record", "module", "call", "type", "min", "max"],
                [
                    [w["index"], f"`{w['name']}`", w["call"], w["type"], f"{w['range'][0]:.4g}", f"{w['range'][1]:.4g}"]
                    for w in d["widest_range"]
                ],
            ),
            "",
            "Highest fraction of exact zeros:",
            "",
            md_table(
                ["record", "module", "call", "type", "zeros"],
                [
                    [z["index"], f"`{z['name']}`", z["call"], z["type"], f"{z['zero_fraction'] * 100:.1f}%"]
                    for z in d["most_zeros"]
                ],
            ),
            "",
        ]
    return lines
