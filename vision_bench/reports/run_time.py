"""The report's "Where the run's time went": seconds per phase (as vision_bench/phases.py declares
them) summed over the models, and the tool's own overhead."""

from __future__ import annotations

from ..phases import MEASURING_PHASES, OVERHEAD_PHASES, PHASES, labels_text
from .blocks import Block, Heading, Paragraph, Table


def run_time_blocks(data: dict) -> list[Block]:
    totals = data.get("phase_totals") or {}
    wall = totals.get("wall") or 0
    if not wall:
        return []
    available = totals.get("available") or wall
    rows = [
        [label, f"{totals[name]:.1f}", f"{totals[name] / available * 100:.1f}%"]
        for name, label in ((p.name, p.label) for p in PHASES)
        if totals.get(name)
    ]
    share = "share of the slots' time" if totals.get("slots") else "share of wall time"
    blocks: list[Block] = [
        Heading(2, "Where the run's time went", "run-time"),
        Table(["phase (summed over models)", "s", share], rows),
    ]
    if totals.get("shards"):
        text = (
            f"Wall time {wall:.1f} s: the sum of the {len(totals['shards'])} merged files' wall times ("
            + ", ".join(f"`{s['run_id']}` {s['wall'] or 0:.1f} s" for s in totals["shards"])
            + "), not the time any one run took."
        )
    elif totals.get("slots"):
        text = (
            f"Wall time {wall:.1f} s on {len(totals['slots'])} device slots in parallel: the slots were busy "
            f"{available - totals['outside_slots']:.1f} s in all, and the parent {totals['outside_slots']:.1f} s "
            f"outside them (start-up, final reports); {available:.1f} s of time available in all."
        )
        blocks += [Paragraph(text), slots_table(totals)]
        text = ""
    else:
        text = (
            f"Wall time {wall:.1f} s, from the process's start to the last chart drawn (the report files "
            "themselves are written after it)."
        )
    text += (
        f" Measuring ({labels_text(MEASURING_PHASES)}) "
        f"{totals['measuring']:.1f} s; the tool's own overhead (everything else: {labels_text(OVERHEAD_PHASES)}, "
        f"reports, start-up) {totals['overhead']:.1f} s ({totals['overhead'] / available * 100:.1f}%"
        + (" of the time available" if totals.get("slots") else "")
        + ")."
    )
    return blocks + [Paragraph(text.strip())]


def slots_table(totals: dict) -> Table:
    return Table(
        ["slot", "device", "models", "busy s", "measuring s", "overhead s"],
        [
            [
                s["slot"],
                s["device"],
                ", ".join(s["models"]) or "none",
                f"{s['busy']:.1f}",
                f"{s['measuring']:.1f}",
                f"{s['overhead']:.1f}",
            ]
            for s in totals["slots"]
        ],
    )
