"""The report model of a run: every section of the report built once, as blocks (blocks.py), from
the results data; render_markdown.py and render_html.py write them out. The run-wide sections live
here (header, the verdict's place, Summary, machine state, placement, Charts, Findings, the run's time,
failures, the contents of the models' sections, and the appendix: System, Configuration, files); a
model's own section in model_report.py, the verdict in verdict.py."""

from __future__ import annotations

import json
from pathlib import Path

from ..common import format_bytes
from ..document.blocks import Block, BulletList, Contents, Details, Figure, Heading, Note, Paragraph, Table
from ..document.charts import latency_chart, memory_chart
from ..measure.environment import ARM_FEATURES, X86_FEATURES
from ..measure.sampling_report import machine_state_blocks
from ..measure.stats import CI_METHOD
from ..records.codec import ABSENT, from_json, known
from ..records.measurement import MemoryFigures, PeakReading
from ..records.model_result import ModelResult
from ..records.run_config import RunConfig, SourceState, SystemInfo
from ..records.run_document import RunDocument, read_document
from ..sweeps.sweep_report import summary_line
from .findings import findings
from .model_report import model_blocks
from .results_file import report_paths
from .run_time import run_time_blocks
from .summary_table import summary_blocks
from .verdict import took_text, verdict_blocks

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
SUMMARY_CHARTS = [
    ("latency.png", "Latency per model", latency_chart),
    ("memory_vs_params.png", "Peak memory against parameters", memory_chart),
]


def draw_summary_charts(data: RunDocument | dict, assets: Path) -> None:
    """The run's summary charts, drawn once when it ends; a chart with nothing to show is removed."""
    models = read_document(data).models
    for name, _, draw in SUMMARY_CHARTS:
        if not draw(models, assets / name):
            (assets / name).unlink(missing_ok=True)


def build_report(data: RunDocument | dict, ctx) -> list[Block]:
    """The whole report of a run (or of a merge; a document built by hand too): the answer first (the
    verdict, then the Summary and what qualifies it), then each model's details, then the appendix
    (System, Configuration, the files)."""
    data = read_document(data)
    results = data.models
    sections = [r for r in results if r.cold_start and r.status != "running"]  # something measured
    blocks = header_blocks(data) + verdict_blocks(data)
    blocks += summary_blocks(results) + swept_blocks(sections) + machine_state_section(results)
    blocks += placement_blocks(data) + chart_blocks(data, ctx) + findings_blocks(results)
    blocks += run_time_blocks(data) + failure_blocks(results) + model_contents(sections)
    blocks += [model_blocks(r, i, ctx) for i, r in enumerate(sections)] + failure_tail_blocks(results)
    return blocks + system_blocks(data) + configuration_blocks(data) + files_blocks(ctx)


def header_blocks(data: RunDocument) -> list[Block]:
    """The title and the run's identity; what it found is the verdict's."""
    return [
        Heading(1, "Vision model benchmark report"),
        Paragraph(
            f"Run `{known(data.run_id)}`"
            + (f" ({data.label})" if data.label else "")
            + (f" from commit `{data.source[0].short_text()}`" if data.source else "")
            + f", started {known(data.started)}, {took_text(data)}, status "
            f"{known(data.status)}. Command: `{known(data.command)}`"
        ),
    ]


def machine_state_section(results: list[ModelResult]) -> list[Block]:
    """What the machine-state guard saw, right after the Summary whose timings it qualifies."""
    blocks = machine_state_blocks(results)
    return [Heading(2, "Machine state", "machine-state"), *blocks] if blocks else []


def model_contents(sections: list[ModelResult]) -> list[Block]:
    """The list of the models' own sections, which follow every run-wide section."""
    if not sections:
        return []
    return [
        Heading(2, "Per-model details", "models"),
        Contents([(r.model or "?", f"model-{i}") for i, r in enumerate(sections)]),
    ]


def system_blocks(data: RunDocument) -> list[Block]:
    s = data.system
    rows: list[list] = [
        ["OS", known(s.os)],
        ["Python", known(s.python)],
        ["PyTorch", known(s.torch)],
        ["transformers", known(s.transformers)],
        ["ultralytics", known(s.ultralytics)],
        ["CUDA", known(s.cuda_version) if s.cuda_available else "not available"],
        ["GPU", s.gpu or "none"],
        ["CPU", cpu_text(s)],
        ["CPU instruction sets", features_text(s)],
        ["device", known(s.device)],
        ["numeric settings", numeric_settings_text(s)],
    ]
    rows += [[f"commit ({state.role})", source_text(state)] for state in data.source or []]
    if data.label:
        rows.append(["label (--label)", data.label])
    return [Heading(2, "System", "system"), Table(["property", "value"], rows)]


def source_text(state: SourceState) -> str:
    """'`1a2b3c4` dirty, branch main: the subject (in /repo)'."""
    short, _, dirty = state.short_text().partition(" ")
    return (
        f"`{short}`"
        + (" dirty (tracked files changed since the commit)" if dirty else "")
        + (f", branch {state.branch}" if state.branch and state.branch != "HEAD" else "")
        + (f": {state.subject}" if state.subject else "")
        + f" (in `{state.folder}`)"
    )


def cpu_text(s: SystemInfo) -> str:
    """The CPU by name with its cores and threads (files written before they were recorded: the
    architecture and the logical count)."""
    name = known(s.cpu_model) or known(s.cpu)
    cores, threads = known(s.cpu_cores), known(s.cpu_threads)
    counts = f"{cores} cores, {threads} threads" if cores and threads else f"{known(s.cpu_count)} logical cores"
    usable = known(s.cpu_count)
    extra = f" ({usable} usable)" if threads and usable and usable != threads else ""
    return f"{name}, {counts}{extra}; torch threads {known(s.torch_threads)}"


def features_text(s: SystemInfo) -> str:
    """Which of the instruction sets that decide the variants' speed the CPU has, and which it lacks."""
    features = known(s.cpu_features)
    if features is None:
        return "not recorded"
    family = next((f for f in (X86_FEATURES, ARM_FEATURES) if set(f) & set(features)), ())
    lacking = [f for f in family if f not in features]
    return (", ".join(features) or "none of those that matter") + (f" (not: {', '.join(lacking)})" if lacking else "")


def timing_procedure(c: RunConfig) -> str:
    """How each model was timed, in one sentence."""
    warmup = 0 if c.warmup_rounds is ABSENT else c.warmup_rounds
    return (
        f"Each model: one cold-start run, then {warmup} warm-up round(s) over all images, "
        + (
            f"then timed rounds over the images until the median's 95% interval was within "
            f"+-{c.precision_pct:g}% (at most {c.max_time_s:g} s)"
            if c.precision_pct
            else f"then {known(c.runs_per_image)} timed run(s) per image"
        )
        + (f", in each of {c.processes} fresh processes (runs pooled)" if (c.processes or 1) > 1 else "")
        + (
            "; runs the guard flagged throttled, shared or busy are left out (--discard-throttled)"
            if c.discard_throttled
            else ""
        )
        + "; the latency statistics come from the timed runs "
        "only, each median with its 95% interval ("
        + str(CI_METHOD if c.latency_interval is ABSENT else c.latency_interval)
        + ")"
    )


def isolation_text(c: RunConfig, results: list[ModelResult]) -> str:
    allocator = ", ".join(
        sorted(
            {
                f"{format_bytes(a.trim_threshold_bytes)} trim, {format_bytes(a.mmap_threshold_bytes)} mmap threshold"
                for a in (r.allocator for r in results)
                if a
            }
        )
    )
    return (
        "Isolation: "
        + (
            "each model in a fresh worker process (forked from a server that imported the "
            "libraries), so no model's figures depend on the models before it"
            if c.isolation == "process"
            else "all models in this one process"
        )
        + "; freed memory kept by the allocator: "
        + (allocator or "no (default glibc)")
    )


def configuration_blocks(data: RunDocument) -> list[Block]:
    c, results, images = data.config, data.models, data.images
    items = [
        f"Images ({len(images)}, from {known(c.image_source)}): " + ", ".join(f"`{Path(p).name}`" for p in images),
        timing_procedure(c),
        isolation_text(c, results),
        f"Seed {known(c.seed)}; weights: {known(c.weights)}; device {known(c.device)}; torch CPU threads "
        f"{known(c.torch_threads)} (pinned for every model)",
        "Models' own settings: "
        + (
            "; ".join(f"{r.model}: " + ", ".join(f"{k}={v}" for k, v in r.config.items()) for r in results if r.config)
            or "none"
        ),
    ]
    if c.dissect_files is not ABSENT or c.keep_going is not ABSENT:
        items.append(
            f"Layer files written: {known(c.dissect_files)}; keep going after a failure: {known(c.keep_going)}"
        )
    return [Heading(2, "Configuration", "configuration"), BulletList(items)]


def swept_blocks(done: list[ModelResult]) -> list[Block]:
    swept = [line for line in map(summary_line, done) if line]
    if not swept:
        return []
    return [Paragraph("How cost grows (--batch-sizes, --input-sizes; details per model below):"), BulletList(swept)]


def chart_blocks(data: RunDocument, ctx) -> list[Block]:
    # The summary charts change with every model but are drawn once, when the run ends (by
    # draw_summary_charts, before the wall time is stamped): drawing them after every model cost
    # 0.3-0.6 s a model in the parent, the tool's own overhead.
    heading = Heading(2, "Charts", "charts")
    if data.status == "running":
        return [heading, Paragraph("No charts yet: they are drawn when the run ends.")]
    charts: list[Block] = [
        Figure(f"{ctx.assets_dir.name}/{name}", alt)
        for name, alt, _ in SUMMARY_CHARTS
        if (ctx.assets_dir / name).exists()
    ]
    return [heading] + charts if charts else []


def findings_blocks(results: list[ModelResult]) -> list[Block]:
    return [
        Heading(2, "Findings", "findings"),
        BulletList(findings(results) or ["Too few finished models to compare."]),
    ]


def placement_blocks(data: RunDocument) -> list[Block]:
    """Where each model ran, when that is not one device of one system: --devices runs and
    merged shards. A table mixing systems says so, since its rows are not comparable as they stand."""
    results = [r for r in data.models if r.status != "not run"]
    if not any(r.device or r.system or r.source_file for r in results):
        return []
    blocks: list[Block] = []
    if data.merged_from:
        blocks.append(
            Paragraph(
                f"Merged from {len(data.merged_from)} result files: "
                + ", ".join(f"`{m.file}` ({m.status})" for m in data.merged_from)
                + "."
            )
        )
    shards = data.shards
    if shards:
        missing = ", ".join(str(k) for k in shards.missing)
        blocks.append(
            Paragraph(
                f"Shards of one job array (--shard I/{shards.count}): {len(shards.present)} of "
                f"{shards.count} wrote results"
                + (f"; no results from shard {missing} (see the failed models below)" if missing else "")
                + "."
            )
        )
    return blocks + mixed_blocks(data, results) + [placement_table(data, results)]


def mixed_blocks(data: RunDocument, results: list[ModelResult]) -> list[Block]:
    """Warnings when the models ran on different systems or with different settings."""
    blocks: list[Block] = []
    systems = {
        json.dumps({k: (r.system or data.system).value(k) for k in SYSTEM_IDENTITY}, sort_keys=True) for r in results
    }
    if len(systems) > 1:
        blocks.append(
            Note(
                "These models ran on different systems (GPU, CPU or library versions differ, see the table "
                "below); compare their figures with that in mind.",
                title="Mixed systems.",
            )
        )
    config = lambda r: r.run_config or data.config
    differing = [k for k in SETTINGS_IDENTITY if len({json.dumps(config(r).value(k)) for r in results}) > 1]
    if differing:
        blocks.append(
            Note(
                f"The parts ran with different {', '.join(differing)}: "
                + "; ".join(f"{r.model} " + ", ".join(f"{k}={config(r).value(k)}" for k in differing) for r in results)
                + ".",
                title="Mixed settings.",
            )
        )
    return blocks


def placement_table(data: RunDocument, results: list[ModelResult]) -> Table:
    rows = []
    for r in results:
        if r.status_in_shard == "missing":  # its shard wrote nothing: it ran nowhere
            continue
        s = r.system or data.system
        slot = f" (worker {r.device_slot})" if r.device_slot is not None else ""
        rows.append(
            [
                r.model,
                (r.device or s.device or "unknown device") + slot,
                s.gpu or known(s.cpu),
                f"torch {known(s.torch)}",
                f"`{r.source_run_id or known(data.run_id)}`",
            ]
        )
    return Table(["model", "device", "GPU or CPU", "torch", "run"], rows, caption="Where each model ran:")


def failure_memory(r: ModelResult) -> str:
    """Memory figures known when a model stopped: what a user needs to judge an OOM."""
    memory = r.memory or MemoryFigures()
    at = memory.at_failure or PeakReading()
    either = lambda cuda, cpu: cuda if cuda is not None else cpu
    parts = [
        f"{label} {format_bytes(value)}"
        for label, value in (
            ("before load", either(memory.cuda_allocated_before_load_bytes, memory.cpu_rss_before_load_bytes)),
            ("after load", either(memory.cuda_allocated_after_load_bytes, memory.cpu_rss_after_load_bytes)),
            ("peak at failure", either(at.cuda_peak_allocated_bytes, at.cpu_peak_rss_bytes)),
        )
        if value
    ]
    return ", ".join(parts) or "n/a"


def failure_blocks(results: list[ModelResult]) -> list[Block]:
    """The models that stopped: status, phase, error, memory, and the worker's last output."""
    failed = [r for r in results if r.status not in ("complete", "not run", "running")]
    if not failed:
        return []
    rows = []
    for r in failed:
        error = r.error
        message = error.text if error else ""
        phase = (error.phase if error else None) or r.phase_reached or r.phase
        rows.append([r.model, r.status, phase, message, failure_memory(r)])
    tails = " Their workers' last output is after the models' sections." if failure_tail_blocks(results) else ""
    return [
        Heading(2, "Failed or interrupted models", "failures"),
        Table(["model", "status", "phase", "error", "memory"], rows, kind="fail"),
        Note(f"A model that measured something before it stopped has its section below too.{tails}"),
    ]


def failure_tail_blocks(results: list[ModelResult]) -> list[Block]:
    """The stopped models' last output (folded on the page), after every summary: it can run to pages."""
    tails = [
        Details(f"Last output of {r.model}", tail if isinstance(tail, str) else "\n".join(tail))
        for r in results
        if r.status not in ("complete", "not run", "running") and r.error and (tail := r.error.output_tail)
    ]
    return [Heading(2, "Last output of the stopped models", "failure-output"), *tails] if tails else []


def files_blocks(ctx) -> list[Block]:
    paths = report_paths(ctx)
    items = [
        f"{label}: [`{paths[key].name}`]({paths[key].name})"
        for key, label in (
            ("json", "JSON (every run's time)"),
            ("csv", "CSV (one row a model)"),
            ("md", "Markdown report"),
            ("html", "HTML report with a layer explorer (open it in a browser)"),
        )
    ]
    items.append(f"Layer folders: `{ctx.viz_dir}/<MODEL_NAME>/` (layer_NNN.png, layer_NNN.npy, layers_metadata.json)")
    return [Heading(2, "Where the files are", "files"), BulletList(items)]


def numeric_settings_text(s: SystemInfo | dict) -> str:
    """The system's numeric settings in one table cell (a system read from JSON, or one built by
    hand); results written before they were recorded give "not recorded"."""
    if isinstance(s, dict):
        s = from_json(SystemInfo, s)
    if s.matmul_allow_tf32 is ABSENT:
        return "not recorded"

    def on_off(flag) -> str:
        return "n/a" if flag is None else ("on" if flag else "off")

    cudnn = s.cudnn_version
    if isinstance(cudnn, int) and cudnn > 0:  # cuDNN 9 encodes 9.24.0 as 92400, cuDNN 8 encodes 8.9.2 as 8902
        major_unit = 10000 if cudnn >= 10000 else 1000
        cudnn_text = f"{cudnn // major_unit}.{cudnn % major_unit // 100}.{cudnn % 100}"
    else:
        cudnn_text = "n/a"
    return (
        f"default dtype {known(s.default_dtype)}; matmul TF32 {on_off(known(s.matmul_allow_tf32))} "
        f"(float32 matmul precision {known(s.float32_matmul_precision)}); cuDNN TF32 "
        f"{on_off(known(s.cudnn_allow_tf32))}; cudnn.benchmark {on_off(known(s.cudnn_benchmark))}; "
        f"cudnn.deterministic {on_off(known(s.cudnn_deterministic))}; cuDNN {cudnn_text}; "
        f"driver {known(s.cuda_driver_version) or 'n/a'}"
    )
