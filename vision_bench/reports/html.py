"""The HTML report: one offline page with sortable tables and a layer explorer. The styles and
script live in report_page.html beside this file, read at write time.

Text reaches the page only through html.escape (Python) or textContent (script); the layer
records travel as JSON in a script element with every "<" escaped, so no name can close it.
Pictures are referenced relative to results/, so results/ and viz/ can be moved together."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..common import ms, strict_json
from ..divergence.divergence_report import DIVERGENCE_HEADERS, INTRO, divergence_blocks, explorer_overlay
from ..inspect.trace import TRACE_OPEN_HINT
from ..inspect.trace_report import (
    BLOCK_HEADERS,
    OPERATOR_HEADERS,
    block_caption,
    block_rows,
    operator_tables,
    trace_link,
    trace_sentences,
)
from ..phases import phase_label
from ..sweeps.sweep_report import SWEEP_HEADERS, summary_line, sweep_charts, sweep_notes, sweep_rows
from ..variants.variants_report import VARIANT_HEADERS, variant_notes, variant_rows
from .findings import findings
from .markdown import SUMMARY_CHARTS, failure_memory, memory_note
from .results_file import report_paths

PAGE_TEMPLATE = Path(__file__).with_name("report_page.html")


def render_page(title: str, body: str, data: str) -> str:
    """The page template (styles and the explorer's script, read at write time) with its three slots filled.
    `title` and `body` must be escaped HTML already; `data` is the explorers' JSON."""
    import re

    parts = {"title": title, "body": body, "data": data}
    return re.sub(r"@@(\w+)@@", lambda m: parts[m.group(1)], PAGE_TEMPLATE.read_text(encoding="utf-8"))


def html_text(value) -> str:
    import html

    return "n/a" if value is None else html.escape(str(value))


def html_url(path: str) -> str:
    """A relative path as a URL (forward slashes, percent-encoded), escaped for an attribute."""
    from urllib.parse import quote

    return html_text(quote(Path(path).as_posix()))


def html_num(value, show=lambda v: f"{v:.2f}") -> tuple:
    """A number cell: shown text and the value the summary table sorts by."""
    return ("n/a", None) if value is None else (show(value), value)


def html_ms_ci(stats: dict) -> str:
    """Median ms, with its 95% interval when the runner computed one."""
    text = ms(stats.get("median"))
    if stats.get("ci95_low") is not None and stats.get("ci95_high") is not None:
        text += f" [{ms(stats['ci95_low'])}-{ms(stats['ci95_high'])}]"
    return text


def html_table(headers: list, rows: list[list], sortable: bool = False) -> str:
    """A cell is a value shown as text, or a (text, sort value) pair from html_num."""

    def cell(c):
        if isinstance(c, tuple):
            return f'<td data-sort="{html_text("" if c[1] is None else c[1])}">{html_text(c[0])}</td>'
        return f"<td>{html_text(c)}</td>"

    head = "".join(f"<th>{html_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table{" class=sortable" if sortable else ""}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def html_explorer_records(dissection: dict) -> tuple[list[dict], str | None]:
    """Every record of the model's layers_metadata.json (the result JSON keeps only a digest),
    or why they are missing."""
    import re

    if not dissection.get("folder"):
        return [], "no dissection folder recorded"
    path = Path(dissection["folder"]) / "layers_metadata.json"
    try:
        records = json.loads(path.read_text(encoding="utf-8")).get("records") or {}
    except (OSError, ValueError) as exc:
        return [], f"layer records not readable ({type(exc).__name__}: {path})"
    out = []
    for r in sorted(records.values() if isinstance(records, dict) else records, key=lambda r: r.get("index", 0)):
        rec = dict(r)
        grid = re.search(r"(\d+)x(\d+) grid", r.get("reshaped") or "")
        if grid and len(r.get("shape") or []) == 3:  # (B, tokens, C) drawn as (C, h, w)
            rec["reshaped_shape"] = [r["shape"][2], int(grid[1]), int(grid[2])]
        out.append(rec)
    return out, None


def trace_html(r: dict) -> str:
    """The model's profiler trace (--trace): its link, what it holds, and its summary tables."""
    link = trace_link(r)
    if not link:
        return ""
    out = [
        f'<h3>Profiler trace</h3><p>Trace: <a href="{html_url(link[1])}">{html_text(link[0])}</a>. '
        f"{html_text(TRACE_OPEN_HINT)}</p><ul>"
        + "".join(f"<li>{html_text(s)}</li>" for s in trace_sentences(r))
        + f"</ul><p>{html_text(block_caption(r))}</p>"
        + html_table(BLOCK_HEADERS, block_rows(r))
        + "<div class=pair>"
    ]
    out += [
        f"<div><p>{html_text(caption)}</p>{html_table(OPERATOR_HEADERS, rows)}</div>"
        for caption, rows in operator_tables(r)
    ]
    return "".join(out) + "</div>"


def code_text(text: str) -> str:
    """Escaped text whose `quoted` parts (module paths) are shown as code."""
    import re

    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html_text(text))


def divergence_html(r: dict, ctx) -> str:
    """Per variant: the first divergent layer, the largest own errors, the passes' cost, the suggestion, the chart."""
    out = [
        f"<h3>Where the variants diverge</h3><p class=meta>{html_text(INTRO)}"
        + (" The layer explorer below colours its records by these errors." if r.get("dissection") else "")
        + "</p>"
    ]
    for block in divergence_blocks(r, ctx.assets_dir):
        first, *rest = block["sentences"]
        out.append(f"<h4>{html_text(block['variant'])}</h4><p>{code_text(first)}</p>")
        if block["rows"]:
            out.append("<p>Largest own errors:</p>" + html_table(DIVERGENCE_HEADERS, block["rows"]))
        items = [code_text(s) for s in rest]
        if block["modules"]:
            items.append("Kept in fp32: " + ", ".join(f"<code>{html_text(m)}</code>" for m in block["modules"]))
        out.append("<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>" if items else "")
        if block["chart"]:
            out.append(
                f'<div class="charts"><img src="{html_url(ctx.assets_dir.name + "/" + block["chart"][0])}" '
                f'alt="{html_text(block["chart"][1])}"></div>'
            )
    return "".join(out)


def html_model_section(r: dict, position: int, ctx, explorers: list[dict]) -> str:
    name = r.get("model", "?")
    out = [
        f'<section id="model-{position}"><h2>{html_text(name)}</h2><ul>',
        f"<li>Status: {html_text(r.get('status'))}; weights: {html_text(r.get('weights_source') or r.get('weights'))}</li>",
        f"<li>Input the network received: {html_text(r.get('input_shape'))} (nominal size "
        f"{html_text(r.get('nominal_input_size'))})</li>",
    ]
    if r.get("config"):
        out.append("<li>Settings: " + html_text(", ".join(f"{k}={v}" for k, v in r["config"].items())) + "</li>")
    kinds = [run.get("kind") or ("cold" if run.get("cold") else "timed") for run in r.get("runs") or []]
    if kinds:
        out.append(
            f"<li>Runs: {kinds.count('cold')} cold start, {kinds.count('warmup')} warm-up (not in the "
            f"statistics), {kinds.count('timed')} timed</li>"
        )
    phases = r.get("latency_phases_median") or {}
    if phases.get("forward") is not None:
        out.append(
            f"<li>Timed medians: preprocess {ms(phases.get('preprocess'))} ms, forward {ms(phases['forward'])} ms, "
            f"postprocess {ms(phases.get('postprocess'))} ms; cold start "
            f"{ms((r.get('cold_start') or {}).get('total_s'))} ms</li>"
        )
    if r.get("phase_seconds"):
        out.append(
            "<li>Wall time by phase: "
            + html_text(
                ", ".join(f"{phase_label(k)} {v:.1f} s" for k, v in r["phase_seconds"].items() if v is not None)
            )
            + "</li>"
        )
    if r.get("worker"):
        out.append("<li>Worker process: " + html_text(", ".join(f"{k} {v}" for k, v in r["worker"].items())) + "</li>")
    out.append("</ul>")
    per_image = r.get("latency_per_image") or {}
    if per_image:
        out.append(
            html_table(
                ["image", "size", "first run ms", "then: median ms [95% interval]", "p90 ms", "CoV", "runs"],
                [
                    [
                        img_name,
                        "x".join(map(str, img.get("image_size") or [])),
                        ms(img.get("first_run_s")) + (" (cold start)" if img.get("first_is_cold_start") else ""),
                        html_ms_ci(img.get("steady") or {}),
                        ms((img.get("steady") or {}).get("p90")),
                        html_num((img.get("steady") or {}).get("cov"), lambda v: f"{v * 100:.1f}%"),
                        (img.get("steady") or {}).get("n", 0) + 1,
                    ]
                    for img_name, img in per_image.items()
                ],
            )
        )
    if r.get("output_image"):
        summary = r.get("prediction_summary") or {}
        out.append(
            f'<h3>What it produced (first image)</h3><div class="output"><img src="{html_url(r["output_image"])}" '
            f'alt="{html_text(name)} output"></div>'
        )
        if summary:
            out.append(
                "<p>"
                + html_text(", ".join(f"{k}: {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in summary.items()))
                + "</p>"
            )
        if r.get("weights") == "random":
            out.append(
                '<p class="meta">Random weights: this output shows the pipeline works, not what the model can do.</p>'
            )
    if r.get("variants"):
        out.append(
            "<h3>Variants</h3><p>Each variant loaded afresh (same weights), timed like the reference, then "
            "run once more per image to compare its outputs with torch-fp32's (normalised error: "
            "max|a-b| / max|b| of the raw output, per part, worst part shown).</p>"
            + html_table(VARIANT_HEADERS, variant_rows(r))
            + "".join(f"<p class=meta>{html_text(note.replace('`', ''))}</p>" for note in variant_notes(r))
        )
    if r.get("divergence"):
        out.append(divergence_html(r, ctx))
    if r.get("sweep"):
        out.append(
            "<h3>How cost grows</h3>"
            + (f"<p>{html_text(summary_line(r))}</p>" if summary_line(r) else "")
            + html_table(SWEEP_HEADERS, sweep_rows(r))
            + "".join(f"<p class=meta>{html_text(note)}</p>" for note in sweep_notes(r))
            + '<div class="charts">'
            + "".join(
                f'<img src="{html_url(ctx.assets_dir.name + "/" + f)}" alt="{html_text(alt)}">'
                for f, alt in sweep_charts(r, ctx.assets_dir)
            )
            + "</div>"
        )
    tb = r.get("time_breakdown")
    if tb:
        out.append(
            f"<h3>Where the time goes</h3><p>One profiled pass (not a timed run), forward "
            f"{tb.get('forward_ms', 0):.1f} ms with timing hooks on every module.</p><div class=pair><div>"
        )
        out.append(
            html_table(
                ["block", "ms", "share"],
                [
                    [
                        b["block"],
                        html_num(b["ms"], lambda v: f"{v:.1f}"),
                        html_num(b["share"], lambda v: f"{v * 100:.1f}%"),
                    ]
                    for b in tb.get("blocks", [])
                ],
            )
        )
        out.append(
            "</div><div>"
            + html_table(
                ["most expensive leaf module", "type", "calls", "ms", "share"],
                [
                    [
                        t["name"],
                        t["type"],
                        t["calls"],
                        html_num(t["ms"], lambda v: f"{v:.1f}"),
                        html_num(t["share"], lambda v: f"{v * 100:.1f}%"),
                    ]
                    for t in tb.get("top_leaves", [])
                ],
            )
            + "</div></div>"
        )
    out.append(trace_html(r))
    d = r.get("dissection")
    if d:
        link = os.path.relpath(d["folder"], ctx.results_dir) if d.get("folder") else ""
        out.append(
            f"<h3>Inside the model</h3><p>{html_text(d.get('records'))} records (every call of "
            f"{html_text(d.get('leaf_modules'))} leaf modules) in one pass of {d.get('seconds') or 0:.1f} s; "
            f"{html_text(d.get('png_files'))} PNG and {html_text(d.get('npy_files'))} NPY files in "
            f'<a href="{html_url(link)}/">{html_text(link)}</a>. NaN in {html_text(d.get("nan_records"))} '
            f"records, Inf in {html_text(d.get('inf_records'))}.</p><p>Layer types: "
            + html_text(", ".join(f"{t} {n}" for t, n in (d.get("type_counts") or {}).items()))
            + "</p>"
        )
        if r.get("weights") == "random":
            out.append(
                '<p class="meta">Random weights: these statistics describe the initialisation, not a trained model.</p>'
            )
        out.append(
            "<div class=pair><div><h3>Widest activation range</h3>"
            + html_table(
                ["#", "module", "call", "type", "min", "max"],
                [
                    [w["index"], w["name"], w["call"], w["type"], f"{w['range'][0]:.4g}", f"{w['range'][1]:.4g}"]
                    for w in d.get("widest_range", [])
                ],
            )
            + "</div><div><h3>Highest fraction of exact zeros</h3>"
            + html_table(
                ["#", "module", "call", "type", "zeros"],
                [
                    [z["index"], z["name"], z["call"], z["type"], f"{z['zero_fraction'] * 100:.1f}%"]
                    for z in d.get("most_zeros", [])
                ],
            )
            + "</div></div>"
        )
        records, problem = html_explorer_records(d)
        out.append(f"<h3>Layer explorer: {html_text(name)}</h3>")
        if records:
            out.append(
                f'<div class="explorer" id="explorer-{len(explorers)}" tabindex="0"></div>'
                "<noscript><p>The layer explorer needs JavaScript.</p></noscript>"
            )
            explorers.append(
                {
                    "model": name,
                    "base": (Path(link).as_posix() + "/") if link else "",
                    "records": records,
                    "divergence": explorer_overlay(r, records),
                }
            )
        else:
            out.append(f'<p class="meta">{html_text(problem or "no records")}</p>')
    return "".join(out) + "</section>"


def html_report(data: dict, ctx) -> str:
    """The report as one offline HTML page, rewritten after every model like the others."""
    results = data.get("models") or []
    shown = [r for r in results if r.get("status") != "not run"]
    system, config = data.get("system") or {}, data.get("config") or {}
    body = ['<nav><a href="#summary">Summary</a><a href="#charts">Charts</a><a href="#findings">Findings</a>']
    sections = [r for r in shown if r.get("cold_start") and r.get("status") != "running"]  # something measured
    body += [f'<a href="#model-{i}">{html_text(r.get("model"))}</a>' for i, r in enumerate(sections)]
    body.append(
        f"</nav><main><h1>Vision model benchmark report</h1><p class=meta>Run <code>{html_text(data.get('run_id'))}"
        f"</code>, started {html_text(data.get('started'))}, {data.get('total_seconds') or 0:.0f} s so far, status "
        f"<b>{html_text(data.get('status'))}</b>. Command: <code>{html_text(data.get('command'))}</code></p>"
    )
    random_models = [r.get("model") for r in shown if r.get("weights") == "random"]
    if random_models:
        body.append(
            f'<p class="warn"><b>Warning: random weights.</b> {html_text(", ".join(random_models))} ran with '
            "randomly initialised weights. Timing, memory, FLOPs and the dissection mechanics are valid; the "
            "task outputs and the activation statistics of these models are not meaningful.</p>"
        )
    if data.get("status") != "complete":
        body.append(
            f'<p class="warn"><b>Run {html_text(data.get("status"))}.</b> Not complete: '
            + html_text(
                ", ".join(f"{r.get('model')} ({r.get('status')})" for r in results if r.get("status") != "complete")
            )
            + ". The figures below are those of the models that finished; this page is rewritten after every model.</p>"
        )

    body.append(
        "<div class=pair><div><h2>System</h2>"
        + html_table(
            ["property", "value"],
            [
                [k, system.get(k)]
                for k in (
                    "os",
                    "python",
                    "torch",
                    "transformers",
                    "ultralytics",
                    "cuda_version",
                    "gpu",
                    "cpu",
                    "cpu_count",
                    "torch_threads",
                    "device",
                )
                if k in system
            ],
        )
        + "</div>"
    )
    settings = [["images", ", ".join(Path(p).name for p in data.get("images") or [])]] + [
        [k, config.get(k)]
        for k in (
            "image_source",
            "runs_per_image",
            "warmup_rounds",
            "seed",
            "weights",
            "device",
            "torch_threads",
            "isolation",
            "dissect_files",
            *(config.get("model_options") or {}),  # the options the models declare
            "keep_going",
        )
        if k in config
    ]
    if data.get("phase_totals"):
        settings.append(
            [
                "wall time by phase",
                ", ".join(f"{k} {v:.1f} s" for k, v in data["phase_totals"].items() if isinstance(v, (int, float))),
            ]
        )
    body.append("<div><h2>Configuration</h2>" + html_table(["setting", "value"], settings) + "</div></div>")

    kind = next((r["memory"]["peak_kind"] for r in shown if (r.get("memory") or {}).get("peak_kind")), "peak memory")
    rows = []
    for r in shown:
        e2e, mem = r.get("latency_end_to_end") or {}, r.get("memory") or {}
        peak = mem.get("peak_bytes")
        rows.append(
            [
                r.get("model"),
                r.get("weights"),
                r.get("status"),
                html_num(r.get("load_seconds")),
                html_num((r.get("cold_start") or {}).get("total_s"), ms),
                (html_ms_ci(e2e), e2e.get("median")),
                html_num(e2e.get("p90"), ms),
                html_num((r.get("latency_forward") or {}).get("median"), ms),
                html_num(e2e.get("cov"), lambda v: f"{v * 100:.1f}%"),
                html_num(r.get("fps")),
                (f"{peak / 1024**2:.0f} (+{(mem.get('peak_over_baseline_bytes') or 0) / 1024**2:.0f})", peak)
                if peak
                else ("n/a", None),
                html_num(r.get("parameters"), lambda v: f"{v:,}"),
                html_num(r.get("gflops")),
                "x".join(map(str, r.get("input_shape") or [])) or "n/a",
                html_num((r.get("dissection") or {}).get("records"), str),
                html_num(e2e.get("n"), str),
            ]
        )
    body.append(
        '<h2 id="summary">Summary</h2>'
        + html_table(
            [
                "model",
                "weights",
                "status",
                "load s",
                "cold start ms",
                "end-to-end median ms [95% interval]",
                "p90 ms",
                "forward median ms",
                "CoV",
                "FPS",
                f"peak memory MB ({kind})",
                "params",
                "GFLOPs",
                "input shape",
                "layers dissected",
                "timed runs",
            ],
            rows,
            sortable=True,
        )
        + "<p class=meta>Click a column to sort. End to end = preprocess + forward + postprocess; FPS = 1 / its "
        "median. GFLOPs count 2 per multiply-add. " + html_text(memory_note(results)) + "</p>"
    )

    charts = [(f, alt) for f, alt, _ in SUMMARY_CHARTS if (ctx.assets_dir / f).exists()]
    body.append(
        '<h2 id="charts">Charts</h2><div class="charts">'
        + "".join(f'<img src="{html_url(ctx.assets_dir.name + "/" + f)}" alt="{html_text(alt)}">' for f, alt in charts)
        + ("" if charts else "<p>No charts yet: they are drawn when the run ends.</p>")
        + "</div>"
    )
    found = findings(results)
    body.append(
        '<h2 id="findings">Findings</h2><ul>'
        + "".join(f"<li>{html_text(f)}</li>" for f in found)
        + ("" if found else "<li>Too few finished models to compare.</li>")
        + "</ul>"
    )

    failed = [r for r in results if r.get("status") not in ("complete", "not run", "running")]
    if failed:
        body.append('<h2 id="failures">Failed or interrupted models</h2>')
        for r in failed:
            error = r.get("error") or {}
            tail = error.get("output_tail")
            body.append(
                f'<div class="fail"><b>{html_text(r.get("model"))}</b>: {html_text(r.get("status"))} in phase '
                f"{html_text(error.get('phase') or r.get('phase_reached') or r.get('phase'))}. "
                f"{html_text((error.get('type', '') + ': ' + error.get('message', '')).strip(': '))}<br>"
                f"Memory: {html_text(failure_memory(r))}"
                + (
                    f"<details><summary>last output</summary><pre>{html_text(tail if isinstance(tail, str) else chr(10).join(tail))}"
                    "</pre></details>"
                    if tail
                    else ""
                )
                + "</div>"
            )

    explorers: list[dict] = []
    body += [html_model_section(r, i, ctx, explorers) for i, r in enumerate(sections)]
    paths = report_paths(ctx)
    body.append(
        "<h2>Where the files are</h2><ul>"
        + "".join(
            f'<li>{html_text(label)}: <a href="{html_url(paths[key].name)}">{html_text(paths[key].name)}</a></li>'
            for key, label in (
                ("json", "JSON (every run's time)"),
                ("csv", "CSV (one row a model)"),
                ("md", "Markdown report"),
            )
        )
        + f"<li>Layer folders: {html_text(ctx.viz_dir)}/&lt;MODEL_NAME&gt;/</li></ul></main>"
    )
    # Every "<" escaped as \u003c: the JSON cannot end its script element or open a comment in it.
    payload = json.dumps(strict_json({"explorers": explorers}), allow_nan=False).replace("<", "\\u003c")
    return render_page(html_text(f"Benchmark report {data.get('run_id', '')}"), "\n".join(body), payload)
