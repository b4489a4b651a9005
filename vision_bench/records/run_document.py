"""The results document of a run (`RunDocument`, the whole results file): its settings and system
(run_config.py), the time accounting (`PhaseTotals`, with the device slots' spans and the merged
files' walls), and what a --merge adds (`MergedFrom`, `MergedShards`).

The writer (reports/write.py) and --merge build the document; a file read back, or a document
built by hand, goes through `read_document`, the one place a results file's JSON becomes records
(its models through model_result.with_records)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .codec import absent, from_json, optional
from .model_result import ModelResult, with_records
from .run_config import RunConfig, SourceState, SystemInfo
from .statuses import RunStatus


@dataclass
class SlotSpan:
    """--devices: one device slot's busy span, in seconds from the run's start."""

    device: str
    slot: int
    start: float
    end: float
    busy: float  # end - start
    measuring: float | None = optional()  # the measuring phases of its models
    overhead: float | None = optional()  # busy - measuring
    models: list[str] | None = optional()  # the models it ran


@dataclass
class ShardWall:
    """--merge: one merged file's wall time."""

    file: str
    run_id: str | None
    wall: float | None


# The phases (vision_bench/phases.py PHASES), each a field of PhaseTotals; tests check the two agree.
PHASE_FIELDS = (
    "worker_start",
    "load",
    "cold_start",
    "warmup",
    "timed",
    "flops",
    "output",
    "time_breakdown",
    "trace",
    "dissection",
    "variants",
    "divergence",
    "sweep",
    "cleanup",
)


@dataclass
class PhaseTotals:
    """Where the run's time went: seconds per phase summed over the models (a field per phase,
    written once some model spent time in it), the wall time and the overhead."""

    worker_start: float | None = optional()
    load: float | None = optional()
    cold_start: float | None = optional()
    warmup: float | None = optional()
    timed: float | None = optional()
    flops: float | None = optional()
    output: float | None = optional()
    time_breakdown: float | None = optional()
    trace: float | None = optional()
    dissection: float | None = optional()
    variants: float | None = optional()
    divergence: float | None = optional()
    sweep: float | None = optional()
    cleanup: float | None = optional()
    wall: float = 0.0  # the run's wall seconds (--merge: the files' sum)
    measuring: float = 0.0  # the measuring phases' sum
    slots: list[SlotSpan] | None = optional()  # --devices
    outside_slots: float | None = optional()  # --devices: the parent's seconds outside the slots
    available: float | None = optional()  # --devices: the time available (slots' busy + outside)
    shards: list[ShardWall] | None = optional()  # --merge: each file's wall
    wall_kind: str | None = optional()  # --merge: what the wall time is
    overhead: float = 0.0  # the time available minus measuring

    def seconds(self, phase: str) -> float | None:
        """The summed seconds of `phase` (None: no model spent time in it)."""
        return getattr(self, phase, None) if phase in PHASE_FIELDS else None


@dataclass
class MergedFrom:
    """--merge: one file merged."""

    file: str
    run_id: str | None
    status: RunStatus | None
    command: str | None


@dataclass
class MergedShards:
    """--merge of an array's shards: which shards wrote results."""

    count: int
    present: list[int]
    missing: list[int]
    logs_template: str | None = None  # --shard-logs


@dataclass
class RunDocument:
    """The results file: a run's (or a merge's) settings, system, images, models and time."""

    schema: str = absent()
    run_id: str | None = absent()
    status: RunStatus | None = absent()
    started: str | None = absent()  # ISO time, seconds
    written: str | None = absent()
    total_seconds: float | None = absent()
    command: str | None = absent()
    config: RunConfig = field(default_factory=RunConfig)
    system: SystemInfo = field(default_factory=SystemInfo)
    images: list[str] = field(default_factory=list)
    models: list[ModelResult] = field(default_factory=list)
    merged_from: list[MergedFrom] | None = optional()  # --merge
    shards: MergedShards | None = optional()  # --merge of shards
    phase_totals: PhaseTotals | None = optional()
    label: str | None = optional()  # --label: a driver version, a branch (--history shows it, --order label)
    source: list[SourceState] | None = optional()  # the git commits the run came from (--history)


def read_document(data: dict | RunDocument) -> RunDocument:
    """A results document (a file read back, or a hand-built dict) as records; a RunDocument
    passes through."""
    if isinstance(data, RunDocument):
        return data
    data = dict(data)
    models = [with_records(model) for model in data.pop("models", None) or []]
    for key in ("config", "system"):  # hand-built documents may give null or leave them out
        if data.get(key) is None:
            data.pop(key, None)
    document = from_json(RunDocument, data)
    document.models = models
    return document
