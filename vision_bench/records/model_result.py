"""A model's result (`ModelResult`, one entry of the results file's `models[]`): its top-level keys
as fields, the record families (sweep, variants, divergence, latency, memory, ...) as records.

The measuring code builds the ModelResult and fills it as it measures; a results file read back
(--compare, --merge) or a result built by hand (a dict) becomes one through `with_records`, the
one place a model's JSON becomes records. Each family is one line of FAMILIES: the key and the
function that reads its JSON value (a record's `from_json`, or a list of them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .codec import UNDECLARED, RecordError, absent, decode, from_json, is_record, optional
from .divergence import AnyDivergenceEntry, read_divergence
from .failure import ErrorRecord, WorkerRecord
from .inspection import DissectionSummary, TimeBreakdownRecord, TraceSummary
from .measurement import (
    GuardRecord,
    ImageLatency,
    LatencyInterval,
    LatencyStats,
    LatencyTails,
    MachineState,
    MemoryFigures,
    PhaseMedians,
    PrecisionRecord,
    ProcessSummary,
    RunRecord,
    per_image_from_json,
)
from .run_config import AllocatorSettings, RunConfig, SystemInfo
from .statuses import ModelStatus
from .sweep import SweepRecord
from .variants import VariantResult


def list_of(cls: type) -> Callable[[Any], list]:
    """A reader of a JSON list of `cls` records."""

    def read(value: Any) -> list:
        return [item if is_record(item) else from_json(cls, item) for item in value]

    return read


def one(cls: type) -> Callable[[Any], Any]:
    """A reader of one `cls` record."""
    return lambda value: from_json(cls, value)


# key -> how its JSON value becomes records, grouped by the capability that owns them (a comment line
# between groups, so that families added side by side do not touch each other's lines).
FAMILIES: dict[str, Callable[[Any], Any]] = {
    # sweeps/: --batch-sizes, --input-sizes
    "sweep": one(SweepRecord),
    # variants/: --variants
    "variants": list_of(VariantResult),
    # divergence/: --divergence
    "divergence": read_divergence,
    # measure/: the runs, their statistics and the machine state
    "runs": list_of(RunRecord),
    "cold_start": one(RunRecord),
    "latency_end_to_end": one(LatencyStats),
    "latency_forward": one(LatencyStats),
    "latency_tails": one(LatencyTails),
    "latency_phases_median": one(PhaseMedians),
    "latency_per_image": per_image_from_json,
    "machine_state": one(MachineState),
    "guard": one(GuardRecord),
    "precision": one(PrecisionRecord),
    "processes": list_of(ProcessSummary),
    "latency_interval": one(LatencyInterval),
    # measure/memory and inspect/: memory, dissection, time breakdown, trace
    "memory": one(MemoryFigures),
    "dissection": one(DissectionSummary),
    "time_breakdown": one(TimeBreakdownRecord),
    "trace": one(TraceSummary),
    # run/: a failed model's error and the worker process that ran it
    "error": one(ErrorRecord),
    "worker": one(WorkerRecord),
    "allocator": one(AllocatorSettings),
    # --devices, --merge: a model's own system and settings
    "system": one(SystemInfo),
    "run_config": one(RunConfig),
    # the end of the families
}


@dataclass
class ModelResult:
    """One model's result (`models[]`). The fields up to `phase_seconds` are in every result the tool
    writes; the others are written only once set (`optional()`: not while None; `absent()`: not
    until given a value, None included)."""

    # The producers set these first keys (absent() only for a hand-built result that lacks them).
    model: str = absent()  # the model's display name
    cli_name: str = absent()  # its --models name
    task: str | None = absent()
    library: str | None = absent()
    status: ModelStatus = absent()
    phase: str | None = absent()  # the phase it is in ('setup' first); None once it ended
    weights: str | None = absent()  # --weights (pretrained, random)
    weights_source: str | None = absent()  # where the weights came from, once loaded
    nominal_input_size: int | None = absent()  # its nominal input size (null: none); absent in a shard's placeholder
    runs: list[RunRecord] = field(default_factory=list)
    phase_seconds: dict[str, float | None] = field(default_factory=dict)  # wall seconds per phase
    memory: MemoryFigures | None = optional()
    config: dict | None = optional()  # the model's run configuration (batch, dtype, ...)
    allocator: AllocatorSettings | None = optional()  # the allocator settings of the process
    load_seconds: float | None = optional()
    dtype: str | None = optional()  # the compute dtype
    guard: GuardRecord | None = optional()
    torch_threads: int | None = optional()
    cold_start: RunRecord | None = optional()
    latency_end_to_end: LatencyStats | None = optional()
    latency_forward: LatencyStats | None = optional()
    latency_tails: LatencyTails | None = optional()
    latency_phases_median: PhaseMedians | None = optional()
    fps: float | None = absent()  # 1 / the median end-to-end latency (null: no timed run)
    machine_state: MachineState | None = optional()
    latency_per_image: dict[str, ImageLatency] | None = optional()
    parameters: int | None = optional()
    flops: int | None = optional()
    gflops: float | None = optional()
    input_shape: list | None = optional()
    prediction_summary: dict | None = optional()
    output_image: str | None = optional()  # the output picture, relative to the results folder
    time_breakdown: TimeBreakdownRecord | None = optional()
    trace: TraceSummary | None = optional()
    dissection: DissectionSummary | None = optional()
    variants: list[VariantResult] | None = optional()
    divergence: list[AnyDivergenceEntry] | None = optional()
    sweep: SweepRecord | None = optional()
    precision: PrecisionRecord | None = optional()  # --precision's stopping rule
    processes: list[ProcessSummary] | None = optional()  # --processes: one summary per process
    latency_interval: LatencyInterval | None = optional()  # --processes: how the interval was made
    phase_reached: str | None = optional()  # the last phase it entered
    worker: WorkerRecord | None = optional()
    error: ErrorRecord | None = optional()
    device: str | None = optional()  # --devices: the device it ran on, and its slot
    device_slot: int | None = optional()
    system: SystemInfo | None = optional()  # --devices, --merge: its own system where they differ
    run_config: RunConfig | None = optional()  # --merge: its file's settings where the files differ
    source_file: str | None = optional()  # --merge: the file it came from, and its run id
    source_run_id: str | None = optional()
    variant: str | None = optional()  # a file of results per variant: the variant (model_key)
    status_in_shard: str | None = optional()  # --merge of shards: its status in a shard that failed it
    shard_log: str | None = absent()  # the log of that shard's task (null: unknown)

    @property
    def complete(self) -> bool:
        return self.status == ModelStatus.COMPLETE

    def replaced(self, **changes: Any) -> ModelResult:
        """A copy with `changes` (dataclasses.replace), the keys it does not declare kept."""
        new = dataclasses.replace(self, **changes)
        undeclared = getattr(self, UNDECLARED, None)
        if undeclared:
            object.__setattr__(new, UNDECLARED, dict(undeclared))
        return new

    def adopt(self, other: ModelResult) -> None:
        """Take every field of `other` (a worker's newer copy of this result), in place."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(other, f.name))


FIELDS = {f.name for f in dataclasses.fields(ModelResult)}


def with_records(model: dict | ModelResult) -> ModelResult:
    """`model` (a result read from JSON, or a hand-built dict) as a ModelResult, each family as its
    records; a ModelResult passes through, so this may be applied twice."""
    if isinstance(model, ModelResult):
        return model
    values = dict(model)
    for key, read in FAMILIES.items():
        value = values.get(key)
        if value is not None and not is_record(value) and not (isinstance(value, list) and all(map(is_record, value))):
            try:
                values[key] = read(value)
            except (RecordError, TypeError) as exc:
                raise RecordError(f"{values.get('model')}: '{key}': {exc}") from None
    if "status" in values:
        values["status"] = decode(ModelStatus, values["status"], f"{values.get('model')}: 'status'")
    result = ModelResult(**{key: value for key, value in values.items() if key in FIELDS})
    undeclared = {key: value for key, value in values.items() if key not in FIELDS}
    if undeclared:
        object.__setattr__(result, UNDECLARED, undeclared)
    return result


def document_with_records(data: dict) -> dict:
    """A results document (a run's, a merge's or a file's) with every model as a ModelResult."""
    data["models"] = [with_records(model) for model in data.get("models") or []]
    return data
