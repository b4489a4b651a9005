"""The report's "Where the run's time went": seconds per phase (as vision_bench/phases.py declares
them) summed over the models, and the tool's own overhead."""

from __future__ import annotations

from ..document.blocks import Block, Heading, Paragraph, Table
from ..phases import MEASURING_PHASES, OVERHEAD_PHASES, PHASES, labels_text
from ..records.run_document import PhaseTotals, RunDocument, SlotSpan, read_document


def run_time_blocks(data: RunDocument | PhaseTotals | dict) -> list[Block]:
    """The section from a document (or a document built by hand), or from its phase totals alone."""
    totals = data if isinstance(data, PhaseTotals) else read_document(data).phase_totals
    wall = totals.wall if totals else 0
    if not totals or not wall:
        return []
    available = totals.available or wall
    seconds = [(p.label, totals.seconds(p.name)) for p in PHASES]
    rows = [[label, f"{s:.1f}", f"{s / available * 100:.1f}%"] for label, s in seconds if s]
    share = "share of the slots' time" if totals.slots else "share of wall time"
    blocks: list[Block] = [
        Heading(2, "Where the run's time went", "run-time"),
        Table(["phase (summed over models)", "s", share], rows),
    ]
    if totals.shards:
        text = (
            f"Wall time {wall:.1f} s: the sum of the {len(totals.shards)} merged files' wall times ("
            + ", ".join(f"`{s.run_id}` {s.wall or 0:.1f} s" for s in totals.shards)
            + "), not the time any one run took."
        )
    elif totals.slots:
        outside = totals.outside_slots or 0.0
        text = (
            f"Wall time {wall:.1f} s on {len(totals.slots)} device slots in parallel: the slots were busy "
            f"{available - outside:.1f} s in all, and the parent {outside:.1f} s "
            f"outside them (start-up, final reports); {available:.1f} s of time available in all."
        )
        blocks += [Paragraph(text), slots_table(totals.slots)]
        text = ""
    else:
        text = (
            f"Wall time {wall:.1f} s, from the process's start to the last chart drawn (the report files "
            "themselves are written after it)."
        )
    text += (
        f" Measuring ({labels_text(MEASURING_PHASES)}) "
        f"{totals.measuring:.1f} s; the tool's own overhead (everything else: {labels_text(OVERHEAD_PHASES)}, "
        f"reports, start-up) {totals.overhead:.1f} s ({totals.overhead / available * 100:.1f}%"
        + (" of the time available" if totals.slots else "")
        + ")."
    )
    return blocks + [Paragraph(text.strip())]


def slots_table(slots: list[SlotSpan]) -> Table:
    return Table(
        ["slot", "device", "models", "busy s", "measuring s", "overhead s"],
        [
            [
                s.slot,
                s.device,
                ", ".join(s.models or []) or "none",
                f"{s.busy:.1f}",
                f"{s.measuring or 0:.1f}",
                f"{s.overhead or 0:.1f}",
            ]
            for s in slots
        ],
    )
