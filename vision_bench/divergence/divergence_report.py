"""What the reports show of divergence (--divergence): per model and variant, the sentence naming the
first divergent layer, the table of the records with the largest own error, the passes' cost, the
suggestion (modules kept in fp32), a chart of the errors against execution order, and the figures the
HTML layer explorer lays over its records. Report blocks, written out the same in Markdown and HTML.

"Own" error: the shadow call's relative L2 (the layer fed the reference input); "inherited": the
propagated one (the whole network ran as the variant). Results written to JSON hold null for an
infinite figure; a null figure beside `non_finite` is infinite, and is shown as "inf"."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..common import format_bytes
from ..document.blocks import Block, BulletList, Figure, Heading, Paragraph, Table
from ..document.charts import plot_style
from ..records import SuggestionStatus, VariantStatus, inspection
from ..records.divergence import Brief, DivergenceEntry, ErrorFigures, LayerRecord, PlainVariant, Suggestion
from ..records.model_result import ModelResult
from ..records.variants import ParityWorst

DIVERGENCE_HEADERS = ["#", "module", "call", "type", "own error", "inherited error", "cosine (own / inherited)"]
INTRO = (
    "Each leaf module's output under the variant against the fp32 reference, call by call (matched by module "
    "path and call index), as relative L2 error ||a-b|| / ||b||. Own error: the layer run as the variant on the "
    "reference's own input (what the layer itself adds). Inherited error: the same output when the whole "
    "network ran as the variant (its own error plus everything before it). The first divergent layer is the "
    "first record, in execution order, whose own error passes the tolerance."
)
METRICS = ("relative_l2", "cosine", "max_abs", "normalised")
MODES = (("own", "shadow"), ("inherited", "propagated"))


# -- figures, whether read back from JSON (inf -> null) or still in memory -------------------------
def figure(figures: ErrorFigures | None, metric: str = "relative_l2"):
    """A figure of one mode of a record: a float, math.inf, or None when it is missing."""
    return figures.figure(metric) if figures is not None else None


def error_text(value) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.3g}"


def cosine_text(value) -> str:
    return "n/a" if value is None else f"{value:.7f}"


def complete(r: ModelResult) -> list[DivergenceEntry]:
    return [e for e in r.divergence or [] if isinstance(e, DivergenceEntry) and e.status == VariantStatus.COMPLETE]


def where(brief: Brief) -> str:
    return f"#{brief.index} `{brief.name}` (call {brief.call}, {brief.type})"


def briefed(entry: DivergenceEntry, brief: Brief) -> tuple:
    """(own, inherited) of a record the summary names: from its leaf record when there (which knows an
    infinite figure), else the summary's own figures (a null own error there is an infinite one; a
    container's own operations have no record among the leaves, and no inherited figure)."""
    record = entry.record_at(brief.index) if brief.kind == "leaf" else None
    if record is not None:
        return record.own, record.inherited
    return (math.inf if brief.own is None else brief.own), brief.inherited


# -- the sentences and the table -----------------------------------------------------------------
def largest_rise_sentence(entry: DivergenceEntry) -> str:
    """Where an exported variant's layer adds the most error: with INT8 the first record over the
    tolerance is often the second layer (its own rounding passes it), and this names the layer to look at."""
    rise = entry.onnx.largest_rise if entry.onnx else None
    if rise is None:
        return ""
    crowded = entry.compared and entry.over_tolerance > entry.compared / 2
    return (
        (" Most records are over the tolerance, so the first says little here." if crowded else "")
        + f" The largest rise of the propagated error over its inputs': `{rise.name}` (call {rise.call}), "
        f"{rise.rise:.1f}x to {rise.propagated:.3g}."
    )


def culprit_sentence(entry: DivergenceEntry) -> str:
    tol, v = entry.tolerance, entry.variant
    tol_text = "n/a" if tol is None else f"{tol:g}"
    metric = {"relative_l2": "relative L2"}.get(entry.metric, entry.metric or "relative L2")
    head = f"{v} on {entry.image or 'the first image'} (tolerance {tol_text} {metric}, {entry.level} level): "
    first, top = entry.first_divergent, entry.top_own
    counts = f"{entry.over_tolerance} of {entry.compared} compared records over the tolerance"
    if entry.culprit_by == "propagated":  # ONNX Runtime: no leaf can be run alone, no own error
        text = (
            f"no shadow calls (a leaf of the graph cannot be run alone), so the first divergent layer is the "
            f"first whose propagated error passes the tolerance: {where(first)}, "
            f"{error_text(briefed(entry, first)[1])}; {entry.over_tolerance} of "
            f"{entry.compared} compared records over it."
            if first
            else f"no shadow calls (a leaf of the graph cannot be run alone); no propagated error passes the "
            f"tolerance over the {entry.compared} records compared."
        )
        return head + text + largest_rise_sentence(entry)
    if first:
        own, inherited = briefed(entry, first)
        text = (
            f"first divergent layer {where(first)}: own error {error_text(own)} > {tol_text}, inherited "
            f"{error_text(inherited)}; {counts} by their own error."
        )
    elif top:
        own, _ = briefed(entry, top[0])
        text = (
            f"no layer's own error passes the tolerance; the largest is {error_text(own)} at {where(top[0])}; {counts}."
        )
    else:
        text = "no record has an own error (no shadow calls were made)."
    propagated = entry.first_propagated
    if propagated:
        text += f" The inherited error first passes the tolerance at {where(propagated)}."
    elif entry.compared:
        text += " No inherited error passes the tolerance."
    return head + text


def cosines(record: LayerRecord | None) -> str:
    """Own / inherited cosine of a leaf record."""
    if record is None:
        return " / ".join(["n/a"] * len(MODES))
    return " / ".join(cosine_text(figure(figures, "cosine")) for figures in (record.shadow, record.propagated))


def divergence_rows(entry: DivergenceEntry) -> list[list[str]]:
    """The records with the largest own error (the engine's top_own), one row each."""
    rows = []
    for brief in entry.top_own:
        own, inherited = briefed(entry, brief)
        rows.append(
            [
                str(brief.index),
                brief.name,
                str(brief.call),
                brief.type,
                error_text(own),
                error_text(inherited),
                cosines(entry.record_at(brief.index)),
            ]
        )
    return rows


def passes_sentence(entry: DivergenceEntry) -> str:
    p = entry.passes
    parts = [
        f"{label} {seconds:.2f} s"
        for seconds, label in (
            (p.reference_s, "fp32 reference"),
            (p.shadow_s, "shadow calls"),
            (p.variant_s, entry.variant),
            (p.spill_wait_s, "waiting on the spill"),
        )
        if seconds is not None
    ]
    fe = p.forward_equivalents
    text = (
        f"The passes took {p.total_s:.2f} s ("
        + ", ".join(parts)
        + "), "
        + (f"{fe:.1f} forward passes' worth" if fe is not None else "forward equivalents n/a")
        + f"; {format_bytes(entry.spilled_bytes)} of reference outputs spilled to disk"
    )
    mem = entry.memory
    if mem is not None and mem.peak_bytes:
        text += f"; peak memory {format_bytes(mem.peak_bytes)} ({mem.peak_kind or 'n/a'})"
    return text + "."


def speed(value, bare: bool = False) -> str:
    if value is None:
        return "speed-up n/a"
    return f"{value:.2f}x" + ("" if bare else " faster" if value >= 1 else " (slower than torch-fp32)")


def worst_text(worst: ParityWorst | None) -> str:
    """The worst figure of a try: the depth error where there is one (what fails a depth model), else the
    raw output's normalised error."""
    worst = worst or ParityWorst()
    if worst.depth_p99_relative_error is not None:
        return f", depth p99 relative error {worst.depth_p99_relative_error:.3g}"
    if worst.normalised_error is None:
        return ""
    return f", worst normalised error {worst.normalised_error:.3g} ({worst.worst_part or 'n/a'})"


def suggestion_sentence(entry: DivergenceEntry) -> str | None:
    """What keeping a few modules in fp32 does: the passing set, or why there is none."""
    s, v = entry.suggestion, entry.variant
    if s is None:
        return None
    plain = s.plain or PlainVariant()
    plain_text = f"plain {v}: {speed(plain.speedup_forward, bare=True)}, {plain.verdict or 'n/a'}"
    reason = f": {s.reason}" if s.reason else ""
    status, mods = s.status, s.modules or []
    if status == SuggestionStatus.PASSES:
        count = "this module" if len(mods) == 1 else f"these {len(mods)} modules"
        return (
            f"Suggestion: {v} with {count} in fp32: {speed(s.speedup_forward)}, parity "
            f"{s.parity.verdict if s.parity else 'n/a'} ({plain_text})."
        )
    if status == SuggestionStatus.NO_SMALL_SET:
        tried = ", ".join(f"{t.modules} ({t.verdict}{worst_text(t.worst)})" for t in s.tried or [])
        return (
            f"Suggestion: no small set of modules kept in fp32 makes {v} pass parity ({plain_text})"
            + (f"; tried sets of {tried}" if tried else "")
            + f"{reason}."
        )
    if status == SuggestionStatus.NOT_NEEDED:
        return (
            f"Suggestion: not needed, {v} as it is: {speed(plain.speedup_forward)}, parity "
            f"{plain.verdict or 'n/a'}{reason}."
        )
    return f"Suggestion {status or 'missing'}{reason}."


def level_sentence(entry: DivergenceEntry) -> str | None:
    note = entry.level_note
    if entry.level == "block" or note:
        return f"Compared at {entry.level} level" + (f": {note}" if note else ".")
    return None


def unmatched_sentence(entry: DivergenceEntry) -> str | None:
    n = entry.unmatched_count or 0
    if not n:
        return None
    shown = ", ".join(f"{u.name} (call {u.call})" for u in (entry.unmatched_in_variant or [])[:3])
    return (
        f"{n} call(s) of the variant had no reference record to compare with"
        + (f", e.g. {shown}" if shown else "")
        + "."
    )


@dataclass
class VariantPart:
    """What the report shows of one variant's entry."""

    variant: str
    sentences: list[str]  # the culprit sentence first
    rows: list[list[str]] = field(default_factory=list)  # the largest own errors
    chart: tuple[str, str] | None = None  # (file name, alt text)
    modules: list[str] = field(default_factory=list)  # kept in fp32 by a passing suggestion


def divergence_blocks(r: ModelResult, assets: Path) -> list[VariantPart]:
    """Per variant of the model: its sentences, its table's rows, the modules of a passing
    suggestion, and its chart or None. One sentence for an entry that did not complete."""
    blocks = []
    for entry in r.divergence or []:
        v = entry.variant
        if not isinstance(entry, DivergenceEntry) or entry.status != VariantStatus.COMPLETE:
            blocks.append(VariantPart(v, [f"Not compared ({entry.status}): {entry.reason or 'no reason given'}"]))
            continue
        sentences = [culprit_sentence(entry)] + [
            s
            for s in (
                level_sentence(entry),
                unmatched_sentence(entry),
                passes_sentence(entry),
                suggestion_sentence(entry),
            )
            if s
        ]
        s = entry.suggestion or Suggestion(SuggestionStatus.SKIPPED)
        path = chart_path(assets, r, v)
        chart = (
            (path.name, f"{r.model} {v}: own and inherited error against execution order")
            if path.exists() or draw_divergence(r, entry, path)
            else None
        )
        modules = (s.modules or []) if s.status == SuggestionStatus.PASSES else []
        blocks.append(VariantPart(v, sentences, divergence_rows(entry), chart, modules))
    return blocks


# -- the chart -----------------------------------------------------------------------------------
def chart_path(assets: Path, r: ModelResult, variant: str) -> Path:
    return assets / f"{r.model}_divergence_{re.sub(r'[^A-Za-z0-9_.-]', '_', variant)}.png"


def error_axis_limits(values: list, tol: float | None) -> tuple[float, float]:
    """(floor, top) of the log axis: a decade below the smallest positive finite error or tolerance, a
    decade above the largest; 1e-12 and 1 when there is none."""
    positive = [v for v in values if 0 < v < math.inf] + ([tol] if tol else [])
    floor = 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-12
    top = 10.0 ** (math.ceil(math.log10(max(positive))) + 1) if positive else 1.0
    return floor, top


def plot_error_series(ax, x: list[int], own_errors: list, inherited_errors: list, floor: float) -> None:
    """The inherited errors as a line, the own errors as dots, both clipped to the floor; a missing or
    infinite figure (and a zero own error) is left to its own marker."""

    def shown(v):  # the line breaks at a missing or infinite figure; those get their own markers
        return math.nan if v is None or math.isinf(v) else max(v, floor)

    ax.plot(
        x,
        [shown(v) for v in inherited_errors],
        color="tab:blue",
        lw=1.2,
        zorder=3,
        label="inherited (whole network as variant)",
    )
    ax.plot(
        x,
        [shown(v) if v else math.nan for v in own_errors],
        "o",
        color="black",
        ms=2.5 if len(x) <= 300 else 1.5,
        ls="none",
        label="own (layer alone on the reference input)",
    )


def mark_over_tolerance(ax, x: list[int], own_errors: list, tol: float | None) -> None:
    """The finite own errors over the tolerance, in red."""
    over = [(i, v) for i, v in zip(x, own_errors) if v is not None and tol is not None and tol < v < math.inf]
    if over:
        ax.plot(*zip(*over), "o", color="tab:red", ms=3.5, ls="none", label="own error over the tolerance")


def mark_infinite(ax, x: list[int], both: list, top: float) -> bool:
    """The infinite errors (own and inherited) as triangles at the top; True when there is one."""
    infinite = [(i, top) for i, v in zip(x + x, both) if v is not None and math.isinf(v)]
    if infinite:
        ax.plot(
            *zip(*infinite), "^", color="tab:purple", ms=7, ls="none", label="infinite (non-finite output), at the top"
        )
    return bool(infinite)


def mark_zeros(ax, x: list[int], both: list, floor: float) -> None:
    """The errors of exactly zero (own and inherited) as open circles at the floor."""
    zeros = [i for i, v in zip(x + x, both) if v == 0]
    if zeros:
        ax.plot(
            zeros,
            [floor] * len(zeros),
            "o",
            color="black",
            mfc="white",
            ms=4,
            ls="none",
            label=f"exactly zero, drawn at the floor {floor:.0e}",
        )


def mark_first_divergent(ax, entry: DivergenceEntry, top: float) -> None:
    """The first divergent record, if any: a dotted line at its index and a star at its own error
    (at the top when infinite), its name in the legend."""
    first = entry.first_divergent
    if not first:
        return
    own, inherited = briefed(entry, first)
    # an ONNX variant's records have no own error (no shadow call): the star sits at the propagated one
    shown = own if own is not None else inherited if inherited is not None else math.inf
    name = first.name if len(first.name) <= 40 else "..." + first.name[-37:]
    ax.axvline(first.index, color="tab:red", ls=":", lw=1)
    ax.plot(
        [first.index],
        [top if math.isinf(shown) else shown],
        "*",
        ms=14,
        color="tab:red",
        mec="black",
        ls="none",
        label=f"first divergent: #{first.index} {name}",
    )


def label_error_axes(ax, r: ModelResult, entry: DivergenceEntry, floor: float, top: float, infinite: bool) -> None:
    """The log scale from the floor to the top, the axes' labels, the title and the legend."""
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, top * 3)
    if infinite:  # the top decade holds the infinite errors: its tick says so
        from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation

        scientific = LogFormatterSciNotation()
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, at: "inf" if math.isclose(v, top) else scientific(v, at)))
    ax.set_xlabel("record (execution order)")
    ax.set_ylabel("relative L2 error vs fp32 (log)")
    ax.set_title(
        f"{r.model} {entry.variant}: where it leaves the fp32 reference ({entry.image or 'first image'})", fontsize=9
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)


def draw_divergence(r: ModelResult, entry: DivergenceEntry, path: Path) -> bool:
    """Own and inherited error against record index, log scale: the tolerance as a line, the first
    divergent record starred, zeros clipped to a floor a decade below the smallest error, infinite
    errors drawn as triangles at the top. Drawn once: a finished entry never changes."""
    records = sorted(entry.records, key=lambda rec: rec.index)
    own_errors, inherited_errors = [rec.own for rec in records], [rec.inherited for rec in records]
    both = own_errors + inherited_errors
    values = [v for v in both if v is not None]
    if not values:
        return False
    tol = entry.tolerance
    floor, top = error_axis_limits(values, tol)
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(9, 3.4), constrained_layout=True)
    x = [rec.index for rec in records]
    plot_error_series(ax, x, own_errors, inherited_errors, floor)
    mark_over_tolerance(ax, x, own_errors, tol)
    infinite = mark_infinite(ax, x, both, top)
    mark_zeros(ax, x, both, floor)
    if tol:
        ax.axhline(tol, color="tab:red", ls="--", lw=1, label=f"tolerance {tol:g}")
    mark_first_divergent(ax, entry, top)
    label_error_axes(ax, r, entry, floor, top, infinite)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- the layer explorer's overlay ---------------------------------------------------------------
def compact(value, metric: str):
    """A figure for the page's JSON: "inf" for an infinite one (strict JSON has no Infinity), four
    significant digits, nine for a cosine (its digits near 1 are the information)."""
    if value is None:
        return None
    if math.isinf(value):
        return "inf"
    return float(format(value, ".9g" if metric == "cosine" else ".4g"))


def explorer_overlay(r: ModelResult, records: list[inspection.LayerRecord]) -> list[dict]:
    """Per complete variant, the figures of each explorer record (the dissection's layer records,
    matched by module path and call), in arrays aligned with `records`; null where the variant has no figure for a record."""
    position = {(rec.name, rec.call): pos for pos, rec in enumerate(records)}
    out = []
    for entry in complete(r):
        arrays = {label: {metric: [None] * len(records) for metric in METRICS} for label, _ in MODES}
        notes, matched = {}, 0
        for rec in entry.records:
            pos = position.get((rec.name, rec.call))
            if pos is None:
                continue
            matched += 1
            modes = [(label, getattr(rec, mode)) for label, mode in MODES]
            for label, figures in modes:
                for metric in METRICS:
                    arrays[label][metric][pos] = compact(figure(figures, metric), metric)
            said = [rec.note] if rec.note else []
            said += [
                f"{label}: {figures.non_finite} value(s) finite in the reference are not in the variant"
                for label, figures in modes
                if figures is not None and figures.non_finite
            ]
            said += [
                f"{label}: the variant's output has another shape"
                for label, figures in modes
                if figures is not None and figures.shape_mismatch
            ]
            if said:
                notes[str(pos)] = "; ".join(said)
        first = entry.first_divergent
        out.append(
            {
                "variant": entry.variant,
                "tolerance": entry.tolerance,
                "image": entry.image,
                "level": entry.level,
                "first": position.get((first.name, first.call)) if first else None,
                "culprit_by": entry.culprit_by,
                "matched": matched,
                "compared": len(entry.records),
                "notes": notes,
                **arrays,
            }
        )
    return out


def divergence_section(r: ModelResult, assets: Path) -> list[Block]:
    """Per variant: the first divergent layer, the largest own errors, the passes' cost, the suggestion, the chart."""
    explorer = " The layer explorer below colours its records by these errors." if r.dissection else ""
    blocks: list[Block] = [Heading(3, "Where the variants diverge"), Paragraph(INTRO + explorer)]
    for block in divergence_blocks(r, assets):
        first, *rest = block.sentences
        blocks += [Heading(4, block.variant), Paragraph(first)]
        if block.rows:
            rows = [[row[0], f"`{row[1]}`"] + row[2:] for row in block.rows]
            blocks.append(Table(DIVERGENCE_HEADERS, rows, caption="Largest own errors:"))
        if block.modules:
            rest = rest + ["Kept in fp32: " + ", ".join(f"`{m}`" for m in block.modules)]
        blocks.append(BulletList(rest))
        if block.chart:
            blocks.append(Figure(f"{assets.name}/{block.chart[0]}", block.chart[1]))
    return blocks
