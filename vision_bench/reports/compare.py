"""--compare: later runs against a base run, model by model, with a significance test, as
Markdown, HTML and terminal lines, and the --fail-if-slower gate."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

from ..common import EXIT_FAILED, EXIT_OK, UsageError, atomic_write_text, get_timestamp, log, ms
from ..document.blocks import Block, BulletList, Heading, Note, Paragraph, Table
from ..measure.sampling_report import not_clean, state_text, throttled_in_statistics
from ..measure.stats import (
    EXACT_SHIFT_MAX_PAIRS,
    EXACT_TEST_MAX_SIDE,
    EXACT_TEST_MAX_SPLITS,
    MIN_RUNS_FOR_CI,
    SHIFT_METHOD,
    latency_stats,
    mann_whitney_p,
    shift_estimate,
)
from ..records.codec import known
from ..records.measurement import LatencyStats
from ..records.model_result import ModelResult
from ..records.run_document import RunDocument, read_document
from ..settings import CompareOptions
from .render_html import render_html
from .render_markdown import render_markdown
from .report_model import SYSTEM_IDENTITY
from .results_file import model_key, read_results, setting, timed_seconds

TOO_FEW = "too few runs to tell"


@dataclass(frozen=True)
class ShiftEstimate:
    """measure.stats.shift_estimate: how much later new's times are than base's (new - base, in
    seconds) with its 95% interval (low/high None when the run counts allow none)."""

    shift: float
    low: float | None
    high: float | None
    coverage: float | None = None  # the interval's exact coverage
    pairs: int = 0  # the pairwise differences it is the median of
    smallest_p: float = 1.0  # the smallest two-sided p value the run counts allow


@dataclass(frozen=True)
class RelativeShift:
    """A shift and its interval in percent of the base median."""

    shift: float
    low: float | None
    high: float | None


@dataclass
class ModelComparison:
    """One model on both sides of a comparison (a row of its tables); the pairs are [base, new]."""

    key: str  # results_file.model_key
    model: str
    base: LatencyStats  # the end-to-end statistics of the timed runs, each side
    new: LatencyStats
    shift: ShiftEstimate | None  # the shift in seconds and its 95% interval
    shift_pct: RelativeShift | None  # the same in percent of the base median (None: base median 0)
    p: float | None  # the Mann-Whitney U test's p value
    verdict: str  # slower, faster, no significant change, too few runs, or REFUSED (...)
    refused: bool  # throttled runs in either side's statistics: the gate cannot judge it
    machine_state: list  # [base, new] MachineState (or None)
    peak_bytes: list
    status: list
    parameters: list
    gflops: list
    dtype: list
    different_model: list[str]  # what of the network or its input changed (parameters, FLOPs, input shape)


@dataclass
class Comparison:
    """One later results file against the base: what differs, the warnings, the models."""

    base: RunDocument  # the two results documents
    new: RunDocument
    differences: list  # [label, base value, new value] per differing setting
    warnings: list[str]
    base_all: dict[str, ModelResult]  # every model by model_key, also those that did not run
    new_all: dict[str, ModelResult]
    models: list[ModelComparison]  # the models on both sides
    base_only: list[str]
    new_only: list[str]


REFUSED = "no verdict: throttled, shared or busy runs"
SIGNIFICANCE_METHOD = (
    "two-sided Mann-Whitney U test on the timed runs' end-to-end times of both sides, 5% level "
    f"(exact permutation distribution of U when a side has {EXACT_TEST_MAX_SIDE} runs or fewer and the splits "
    f"of all runs into two sides number {EXACT_TEST_MAX_SPLITS:,} or fewer, "
    "normal approximation with tie and continuity corrections otherwise); no assumption about the distribution of times"
)
# What is compared at the top: (label, where to read it). Differences here explain differences below.
COMPARED_SETTINGS = [
    ("GPU", "system", "gpu"),
    ("CPU", "system", "cpu"),
    ("CPU model", "system", "cpu_model"),
    ("CPU instruction sets", "system", "cpu_features"),
    ("CPU cores", "system", "cpu_count"),
    ("NVIDIA driver", "system", "cuda_driver_version"),
    ("CUDA", "system", "cuda_version"),
    ("cuDNN", "system", "cudnn_version"),
    ("PyTorch", "system", "torch"),
    ("transformers", "system", "transformers"),
    ("ultralytics", "system", "ultralytics"),
    ("Python", "system", "python"),
    ("OS", "system", "os"),
    ("default dtype", "system", "default_dtype"),
    ("matmul TF32", "system", "matmul_allow_tf32"),
    ("cuDNN TF32", "system", "cudnn_allow_tf32"),
    ("device", "config", "device"),
    ("torch threads", "system", "torch_threads"),
    ("weights", "config", "weights"),
    ("timed runs per image", "config", "runs_per_image"),
    ("warm-up rounds", "config", "warmup_rounds"),
    ("isolation", "config", "isolation"),
    ("seed", "config", "seed"),
    ("--precision %", "config", "precision_pct"),
    ("processes", "config", "processes"),
    ("--discard-throttled", "config", "discard_throttled"),
]


def compare_model(base: ModelResult, new: ModelResult) -> ModelComparison:
    """One model on both sides: the shift of its end-to-end times with its interval and verdict,
    memory, size and status."""
    a, b = timed_seconds(base), timed_seconds(new)
    sa, sb = latency_stats(a), latency_stats(b)
    estimate = shift_estimate(a, b)
    shift = None if estimate is None else ShiftEstimate(**estimate)
    peaks = [r.memory.peak_bytes if r.memory else None for r in (base, new)]
    changed = [
        label
        for label, key in (("parameters", "parameters"), ("FLOPs", "flops"), ("input shape", "input_shape"))
        if getattr(base, key) is not None and getattr(new, key) is not None and getattr(base, key) != getattr(new, key)
    ]
    throttled = [side for side, r in (("base", base), ("new", new)) if throttled_in_statistics(r)]
    return ModelComparison(
        key=model_key(base),
        model=base.model,
        base=sa,
        new=sb,
        shift=shift,
        shift_pct=relative_shift(shift, sa.median),
        p=mann_whitney_p(a, b) if a and b else None,
        verdict=f"{REFUSED} ({' and '.join(throttled)})" if throttled else shift_verdict(shift),
        refused=bool(throttled),
        machine_state=[base.machine_state, new.machine_state],
        peak_bytes=peaks,
        status=[base.status, new.status],
        parameters=[base.parameters, new.parameters],
        gflops=[base.gflops, new.gflops],
        dtype=[base.dtype, new.dtype],
        different_model=changed,
    )


def shift_verdict(shift: ShiftEstimate | None) -> str:
    """Direction and significance from one statistic: where the shift's 95% interval lies."""
    if shift is None:
        return "not compared"
    if shift.low is None or shift.high is None:
        return TOO_FEW
    if shift.low > 0:
        return "slower"
    if shift.high < 0:
        return "faster"
    return "no significant change"


def relative_shift(shift: ShiftEstimate | None, base_median: float | None) -> RelativeShift | None:
    """The shift and its interval in percent of the base median (None where base's median is 0)."""
    if shift is None or not base_median:
        return None
    pct = lambda v: None if v is None else v / base_median * 100.0
    return RelativeShift(shift=shift.shift / base_median * 100.0, low=pct(shift.low), high=pct(shift.high))


def shift_text(row: ModelComparison) -> str:
    """'+4.1% [+2.3, +5.9]', or why there is no figure."""
    shift, pct = row.shift, row.shift_pct
    if shift is None:
        return "n/a"
    if pct is None:
        return f"{shift.shift * 1000:+.2f} ms (base median 0)"
    if pct.low is None or pct.high is None:
        return f"{pct.shift:+.1f}% (no 95% interval: smallest p {shift.smallest_p:.2g})"
    return f"{pct.shift:+.1f}% [{pct.low:+.1f}, {pct.high:+.1f}]"


def compare_pair(base: RunDocument | dict, new: RunDocument | dict) -> Comparison:
    """Everything one comparison shows: setting differences, warnings, the models side by side (a
    document built by hand goes through the reader)."""
    base, new = read_document(base), read_document(new)
    base_models = {model_key(r): r for r in base.models if r.status != "not run"}
    new_models = {model_key(r): r for r in new.models if r.status != "not run"}
    common = [k for k in base_models if k in new_models]
    differences = []
    for label, where, key in COMPARED_SETTINGS:
        values = [setting(data, None, where, key) for data in (base, new)]
        if values[0] != values[1]:
            differences.append([label, *("none" if v is None else v for v in values)])
    images = [sorted(Path(p).name for p in data.images) for data in (base, new)]
    if images[0] != images[1]:
        differences.append(["images", ", ".join(images[0]), ", ".join(images[1])])
    for k in common:  # each model's own settings (its run_config: the options it ran with, ...)
        a, b = base_models[k].config or {}, new_models[k].config or {}
        for key in dict.fromkeys([*a, *b]):
            if a.get(key) != b.get(key):
                differences.append(
                    [f"{base_models[k].model} {key}", *("none" if v is None else v for v in (a.get(key), b.get(key)))]
                )
    warnings = [w for w in [machine_warning(base, new)] if w]
    reported = {key for label, _, key in COMPARED_SETTINGS if label in {d[0] for d in differences}}
    for k in common:
        # Merged files and --devices runs keep a system per model: a model can move where its file did not.
        moved = [
            f"{key} {setting(base, base_models[k], 'system', key)} -> {setting(new, new_models[k], 'system', key)}"
            for key in SYSTEM_IDENTITY
            if setting(base, base_models[k], "system", key) != setting(new, new_models[k], "system", key)
            and key not in reported
        ]
        devices = [base_models[k].device, new_models[k].device]
        if devices[0] != devices[1] and None not in devices:
            moved.append(f"device {devices[0]} -> {devices[1]}")
        if moved and any(getattr(base_models[k], x) or getattr(new_models[k], x) for x in ("system", "device")):
            warnings.append(f"{base_models[k].model} ran on a different system or device: {'; '.join(moved)}.")
        weights = [base_models[k].weights, new_models[k].weights]
        if weights[0] != weights[1]:
            warnings.append(
                f"{base_models[k].model}: {weights[0]} weights in base, {weights[1]} in new. Random "
                "weights change what postprocessing does (e.g. how many boxes survive), so the "
                "end-to-end times are not comparable."
            )
    return Comparison(
        base=base,
        new=new,
        differences=differences,
        warnings=warnings,
        base_all={model_key(r): r for r in base.models},
        new_all={model_key(r): r for r in new.models},
        models=[compare_model(base_models[k], new_models[k]) for k in common],
        base_only=[base_models[k].model for k in base_models if k not in new_models],
        new_only=[new_models[k].model for k in new_models if k not in base_models],
    )


def machine_warning(base: RunDocument, new: RunDocument) -> str | None:
    """One line when the two runs were on different CPUs (by name, when both files name it) or GPUs:
    their figures then compare machines as much as code."""
    changed = []
    for label, key in (("CPU", "cpu_model"), ("GPU", "gpu")):
        before, after = setting(base, None, "system", key), setting(new, None, "system", key)
        if before != after and (key == "gpu" or None not in (before, after)):
            changed.append(f"{label} {before or 'none'} -> {after or 'none'}")
    if not changed:
        return None
    return f"The two runs were on different CPUs or GPUs ({'; '.join(changed)}): the shifts below compare machines too."


def slower_than(row: ModelComparison, pct: float) -> bool:
    """The gate: the data show a slowdown larger than pct%, i.e. the interval's lower bound is above it."""
    if row.verdict != "slower":
        return False
    low = row.shift_pct.low if row.shift_pct else None
    return row.shift_pct is None or (low is not None and low > pct)


def cannot_judge(model: str, verdict: str, run: str) -> str:
    """The gate's failure for a model whose statistics hold throttled, shared or busy runs (--history's too)."""
    return f"{model}: the gate cannot judge it, {verdict} in {run} (rerun on a quiet machine, or --discard-throttled)"


def missing_error(line: str, run: str, allowed: bool) -> tuple[str, str]:
    """(level, message) for a model that completed in the base and not in the new run (--history's too)."""
    if allowed:
        return "WARNING", f"{line} (allowed by --allow-missing)"
    return "ERROR", f"{line} (in {run}; --allow-missing accepts it)"


def not_completed_in_new(pair: Comparison) -> list[str]:
    """Models that completed in base and did not in new (failed, timed out, interrupted, not run,
    missing, or without timed runs): each a gate failure of its own unless --allow-missing."""
    lines = []
    for key, r in pair.base_all.items():
        if r.status != "complete" or not timed_seconds(r):
            continue
        other = pair.new_all.get(key)
        if other is None:
            reason = "missing in new"
        elif other.status != "complete":
            error = other.error
            reason = f"{other.status} in new" + (error.in_words if error else "")
        elif not timed_seconds(other):
            reason = "no timed runs in new"
        else:
            continue
        lines.append(f"{r.model}: completed in base, {reason}")
    return lines


def change_text(before, after, fmt) -> str:
    if before is None and after is None:
        return "n/a"
    if before == after:
        return fmt(after)
    numeric = isinstance(before, (int, float)) and isinstance(after, (int, float)) and before
    change = f" ({(after / before - 1) * 100:+.1f}%)" if numeric else ""
    return f"{fmt(before)} -> {fmt(after)}{change}"


def median_text(stats: LatencyStats) -> str:
    """A median in ms with its 95% interval, short enough for a table cell."""
    if stats.ci95_low is None:
        return f"{ms(stats.median)} (no interval: {stats.n or 0} runs)"
    return f"{ms(stats.median)} {stats.interval_text()}"


def comparison_blocks(pairs: list[Comparison], paths: list[Path], options: CompareOptions) -> list[Block]:
    """The comparison as report blocks (rendered as Markdown and as HTML): how to read it, then each
    later file against the base."""
    blocks = intro_blocks(pairs, paths, options)
    for pair, path in zip(pairs, paths[1:]):
        blocks += pair_blocks(pair, path, options)
    return blocks


def intro_blocks(pairs: list[Comparison], paths: list[Path], options: CompareOptions) -> list[Block]:
    blocks: list[Block] = [
        Heading(1, "Benchmark comparison"),
        Paragraph(f"Base: `{paths[0]}` (run `{known(pairs[0].base.run_id)}`)."),
        Paragraph(
            f"Change: {SHIFT_METHOD.format(exact=EXACT_SHIFT_MAX_PAIRS)}, in percent of the base median. The "
            "verdict is **slower** or **faster** when that interval excludes 0, which is the U test at 5% "
            f"({SIGNIFICANCE_METHOD}); its p value is in the table. When the run counts cannot reach 5% at all "
            f"(3 runs a side: the smallest p is 0.1) the verdict is **{TOO_FEW}**. Medians in ms with their "
            f"95% interval in brackets (it needs {MIN_RUNS_FOR_CI} timed runs or more)."
        ),
    ]
    if options.fail_if_slower is not None:
        gate = f"{options.fail_if_slower:g}"
        blocks.append(
            Paragraph(
                f"Gate: `--fail-if-slower {gate}` fails on a model whose slowdown is larger than {gate}% with 95% "
                f"confidence (the interval's lower bound is above {gate}%). A model with runs the machine-state "
                f"guard flagged throttled, shared or busy (other processes used the CPU) in the statistics of either side gets **{REFUSED}** and fails "
                "the gate too: its times may describe the machine, not the model."
            )
        )
    if not options.allow_missing:
        blocks.append(
            Paragraph(
                "A model that completed in base and did not complete in new (failed, timed out, missing, "
                "no timed runs) fails the comparison (exit 1) unless `--allow-missing` is given."
            )
        )
    return blocks


def pair_blocks(pair: Comparison, path: Path, options: CompareOptions) -> list[Block]:
    """One later file against the base: its warnings, what differs, and the models' tables."""
    blocks: list[Block] = [Heading(2, f"New: run `{known(pair.new.run_id)}`"), Paragraph(f"File `{path}`.")]
    blocks += [Note(w, title="Warning:") for w in pair.warnings]
    allowed = " (allowed)" if options.allow_missing else ""
    blocks += [Note(f"{line}.", title=f"Not completed in new{allowed}:") for line in not_completed_in_new(pair)]
    blocks.append(Heading(3, "What differs between the runs"))
    if pair.differences:
        blocks.append(Table(["setting", "base", "new"], [[label, a, b] for label, a, b in pair.differences]))
    else:
        compared = ", ".join(label for label, _, _ in COMPARED_SETTINGS)
        blocks.append(
            Paragraph(f"Nothing: same system, library versions, device, weights and settings ({compared}, images).")
        )
    rows = pair.models
    verdicts = collections.Counter(r.verdict for r in rows)
    one_side = len(pair.base_only) + len(pair.new_only)
    blocks.append(
        Paragraph(
            f"{len(rows)} model(s) on both sides: "
            + (", ".join(f"{n} {v}" for v, n in verdicts.items()) or "none")
            + "."
            + (f" On one side only: {one_side}." if one_side else "")
        )
    )
    if rows:
        blocks += model_tables(rows, options) + model_notes(rows)
    if one_side:
        only = [f"Base only: {', '.join(pair.base_only)}"] if pair.base_only else []
        only += [f"New only: {', '.join(pair.new_only)}"] if pair.new_only else []
        blocks += [Heading(3, "Models on one side only"), BulletList(only)]
    return blocks


def model_tables(rows: list[ModelComparison], options: CompareOptions) -> list[Block]:
    """Latency, machine state, and memory, size and status: a row a model in each."""

    def mb(value):
        return "n/a" if value is None else f"{value / 1024**2:.0f} MB"

    def verdict(r: ModelComparison) -> str:
        gate = options.fail_if_slower
        return f"**{r.verdict}**" + (" (fails the gate)" if gate is not None and slower_than(r, gate) else "")

    latency_headers = ["model", "base median ms [95% CI]", "new median ms [95% CI]", "change [95% CI]", "runs", "p"]
    return [
        Heading(3, "Latency (end to end, timed runs)"),
        Table(
            [*latency_headers, "verdict"],
            [
                [
                    r.model,
                    median_text(r.base),
                    median_text(r.new),
                    shift_text(r),
                    f"{r.base.n} / {r.new.n}",
                    "n/a" if r.p is None else f"{r.p:.3g}",
                    verdict(r),
                ]
                for r in rows
            ],
        ),
        Heading(3, "Machine state (timed runs)"),
        Table(["model", "base", "new"], [[r.model, *map(state_text, r.machine_state)] for r in rows]),
        Heading(3, "Memory, size and status"),
        Table(
            ["model", "peak memory", "parameters", "GFLOPs", "compute dtype", "status"],
            [
                [
                    r.model,
                    change_text(r.peak_bytes[0], r.peak_bytes[1], mb),
                    change_text(r.parameters[0], r.parameters[1], lambda v: "n/a" if v is None else f"{v:,}"),
                    change_text(r.gflops[0], r.gflops[1], lambda v: "n/a" if v is None else f"{v:.2f}"),
                    change_text(r.dtype[0], r.dtype[1], str),
                    change_text(r.status[0], r.status[1], str),
                ]
                for r in rows
            ],
        ),
    ]


def model_notes(rows: list[ModelComparison]) -> list[Block]:
    """A model whose network or input changed, and the status changes."""
    blocks: list[Block] = [
        Note(
            f"{r.model}'s {', '.join(r.different_model)} changed, so the two sides did not run the same "
            "network on the same input; its timings are not a like-for-like comparison.",
            title="Different model:",
        )
        for r in rows
        if r.different_model
    ]
    changes = [f"Status change: {r.model} {r.status[0]} -> {r.status[1]}." for r in rows if r.status[0] != r.status[1]]
    return blocks + ([BulletList(changes)] if changes else [])


def comparison_markdown(pairs: list[Comparison], paths: list[Path], options: CompareOptions) -> str:
    return render_markdown(comparison_blocks(pairs, paths, options)) + "\n"


def comparison_html(pairs: list[Comparison], paths: list[Path], options: CompareOptions) -> str:
    """The same blocks as comparison_markdown, in the HTML report's page and style."""
    return render_html(comparison_blocks(pairs, paths, options), f"Benchmark comparison {paths[0].name}")


COMPARISON_RENDERERS = {"md": comparison_markdown, "html": comparison_html}


def unique_output(results_dir: Path, stem: str) -> tuple[str, Path]:
    """A run id (timestamp, _2, _3...) whose output name is free."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = get_timestamp()
    for attempt in range(1, 1000):
        run_id = stamp if attempt == 1 else f"{stamp}_{attempt}"
        if not list(results_dir.glob(f"{stem}_{run_id}.*")):
            return run_id, results_dir / f"{stem}_{run_id}"
    raise UsageError(f"--output-dir: no free file name for {stem} in {results_dir}")


def compare_results(paths: list[Path], options: CompareOptions) -> int:
    """--compare BASE NEW [MORE]: each later file against the first. Exit 1 when --fail-if-slower
    trips or a model that completed in base did not in new (unless --allow-missing), else 0
    (2 for unreadable or invalid files, raised as UsageError before anything is written)."""
    if len(paths) < 2:
        raise UsageError("--compare needs two or more result files: BASE.json NEW.json [MORE.json ...]")
    files = [read_results(p, "--compare") for p in paths]
    pairs = [compare_pair(files[0], new) for new in files[1:]]
    run_id, stem = unique_output(options.output_dir.expanduser() / "results", "comparison")
    written = []
    for suffix, render in COMPARISON_RENDERERS.items():
        target = stem.with_suffix(f".{suffix}")
        atomic_write_text(target, render(pairs, paths, options))
        written.append(target)
    gate_failed, missing = [], []
    for pair, path in zip(pairs, paths[1:]):
        print(f"Base {known(files[0].run_id)} -> new {known(pair.new.run_id)} ({path})")
        for label, a, b in pair.differences:
            print(f"  differs: {label}: {a} -> {b}")
        for w in pair.warnings:
            log("WARNING", w)
        print(f"  {'model':<24} {'base ms':>10} {'new ms':>10} {'change [95% CI]':>24} {'p':>8}  verdict")
        for r in pair.models:
            p = "n/a" if r.p is None else f"{r.p:.3g}"
            print(
                f"  {r.model:<24} {ms(r.base.median):>10} {ms(r.new.median):>10} {shift_text(r):>24} "
                f"{p:>8}  {r.verdict}"
                + ("" if r.status[0] == r.status[1] else f" (status {r.status[0]} -> {r.status[1]})")
                + (" (different model: " + ", ".join(r.different_model) + ")" if r.different_model else "")
            )
            if options.fail_if_slower is not None and slower_than(r, options.fail_if_slower):
                gate_failed.append(f"{r.model} {shift_text(r)} slower in {known(pair.new.run_id)}")
            for side, state in zip(("base", "new"), r.machine_state):
                if not_clean(state):
                    log("WARNING", f"{r.model} machine state in {side}: " + "; ".join(state.warnings))
            if options.fail_if_slower is not None and r.refused and not slower_than(r, options.fail_if_slower):
                gate_failed.append(cannot_judge(r.model, r.verdict, known(pair.new.run_id)))
        for line in not_completed_in_new(pair):
            log(*missing_error(line, known(pair.new.run_id), options.allow_missing))
            if not options.allow_missing:
                missing.append(line)
        for side, names in (("base", pair.base_only), ("new", pair.new_only)):
            if names:
                print(f"  only in {side}: {', '.join(names)}")
    for target in written:
        print(f"Comparison: {target}")
    if gate_failed:
        log("ERROR", f"--fail-if-slower {options.fail_if_slower:g}: " + "; ".join(gate_failed))
    if missing:
        log("ERROR", f"{len(missing)} model(s) completed in base and not in new: the comparison fails")
    return EXIT_FAILED if gate_failed or missing else EXIT_OK
