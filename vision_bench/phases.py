"""Every phase of a model's pass, declared once: its name (the key in `phase_seconds`), the label
the reports show, and whether its time is measuring or the tool's own overhead. Timing a phase that
is not declared here is an error, so a new phase cannot silently count as overhead."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str
    label: str
    measuring: bool  # False: the tool's own overhead (start, pictures, cleanup)


PHASES = (
    Phase("worker_start", "worker start", measuring=False),
    Phase("load", "load", measuring=True),
    Phase("cold_start", "cold start", measuring=True),
    Phase("warmup", "warm-up", measuring=True),
    Phase("timed", "timed runs", measuring=True),
    Phase("flops", "FLOPs pass", measuring=True),
    Phase("output", "output picture", measuring=False),
    Phase("time_breakdown", "profiled pass", measuring=True),
    Phase("trace", "profiler trace", measuring=True),
    Phase("dissection", "dissection", measuring=True),
    Phase("variants", "variants", measuring=True),
    Phase("divergence", "divergence passes", measuring=True),
    Phase("sweep", "sweeps", measuring=True),
    Phase("cleanup", "cleanup", measuring=False),
)
PHASES_BY_NAME = {p.name: p for p in PHASES}
MEASURING_PHASES = tuple(p.name for p in PHASES if p.measuring)
OVERHEAD_PHASES = tuple(p.name for p in PHASES if not p.measuring)


class UnregisteredPhase(KeyError):
    """A phase timed or reported that vision_bench/phases.py does not declare."""


def registered(name: str) -> Phase:
    """The declared phase `name`; an error for any other name."""
    try:
        return PHASES_BY_NAME[name]
    except KeyError:
        raise UnregisteredPhase(
            f"phase {name!r} is not declared in vision_bench/phases.py (declared: {', '.join(PHASES_BY_NAME)})"
        ) from None


def labels_text(names: tuple[str, ...]) -> str:
    """'load, cold start, ...': the labels of `names`, for the sentence under the time table."""
    return ", ".join(PHASES_BY_NAME[n].label for n in names)


def phase_label(name: str) -> str:
    """The label of a phase read back from a results file (an older file's unknown name as it is)."""
    phase = PHASES_BY_NAME.get(name)
    return phase.label if phase else name
