"""A model's result as the reports read it: a dict of the results file's top-level keys whose record
families (sweep, variants, divergence, latency, memory, ...) are records, not dicts.

The measuring code stores each family's record under its key as it measures; a results file read
back (--compare, --merge) or a result built by hand gets its families through `with_records`, the
one place a model's JSON becomes records. Each family is one line of FAMILIES: the key and the
function that reads its JSON value (a record's `from_json`, or a list of them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .codec import from_json, is_record
from .divergence import read_divergence
from .failure import ErrorRecord, WorkerRecord
from .inspection import DissectionSummary, TimeBreakdownRecord, TraceSummary
from .measurement import (
    GuardRecord,
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
    # the end of the families
}


def with_records(model: dict) -> dict:
    """`model` (a result read from JSON, or already in records) with each family as its records;
    a family already in records is left as it is, so this may be applied twice."""
    for key, read in FAMILIES.items():
        value = model.get(key)
        if value is not None and not is_record(value) and not (isinstance(value, list) and all(map(is_record, value))):
            model[key] = read(value)
    return model


def document_with_records(data: dict) -> dict:
    """A results document (a run's, a merge's or a file's) with every model's families as records."""
    for model in data.get("models") or []:
        with_records(model)
    return data
