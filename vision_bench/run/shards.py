"""Shards of a job array: --shard I/N (which models a task runs, balanced by each model's
RELATIVE_COST), the shard record a task writes into its results, and the check that --merge
makes on the shards of one array (every selected model once; the missing ones named, with the
log of the task that should have run them)."""

from __future__ import annotations

import math
import os

from ..common import UsageError
from ..records.failure import ErrorRecord
from ..records.model_result import ModelResult
from ..records.run_config import ShardArray, ShardMember, ShardRecord, SlurmJob, known
from ..records.run_document import RunDocument
from ..records.statuses import ModelStatus

SLURM_VARIABLES = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "node": "SLURMD_NODENAME",
}


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N (Slurm array indices start at 0)."""
    index_text, slash, count_text = text.partition("/")
    if not (slash and index_text.strip().isdigit() and count_text.strip().isdigit()):
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. --shard 0/4 (shard indices 0 to N-1)")
    index, count = int(index_text), int(count_text)
    if count < 1 or index >= count:
        raise UsageError(
            f"--shard {text}: the index must be 0 to {count - 1}"
            if count >= 1
            else f"--shard {text}: N must be 1 or more"
        )
    return index, count


def plan_shards(classes: list, count: int) -> list[list]:
    """The models of each of `count` shards, balanced by RELATIVE_COST: the costliest model first,
    each to the shard with the least cost so far (ties: the lower shard). Deterministic, so every
    task of an array computes the same plan; within a shard the models keep their given order."""
    if count > len(classes):
        raise UsageError(
            f"--shard: {count} shards for {len(classes)} model(s) leaves a shard with nothing to run; "
            f"use at most {len(classes)} shards"
        )
    for cls in classes:
        cost = cls.RELATIVE_COST
        if not (isinstance(cost, (int, float)) and math.isfinite(cost) and cost > 0):
            raise UsageError(f"{cls.__name__}.RELATIVE_COST is {cost!r}: it must be a positive number")
    loads: list[float] = [0.0] * count
    members: list[list] = [[] for _ in range(count)]
    for position in sorted(range(len(classes)), key=lambda i: (-classes[i].RELATIVE_COST, i)):
        shard = min(range(count), key=lambda k: (loads[k], k))
        members[shard].append(position)
        loads[shard] += classes[position].RELATIVE_COST
    return [[classes[i] for i in sorted(m)] for m in members]


def slurm_job() -> SlurmJob | None:
    """The Slurm job this process runs in, from its environment (None outside Slurm)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return SlurmJob(**{field: os.environ.get(name) for field, name in SLURM_VARIABLES.items()})


def select_shard(classes: list, text: str) -> tuple[list, ShardRecord]:
    """--shard I/N: this shard's models and the record written into its results (config.shard),
    which holds the whole plan so that --merge can tell which models a missing shard had."""
    index, count = parse_shard(text)
    plan = plan_shards(classes, count)
    where = {cls: k for k, members in enumerate(plan) for cls in members}
    record = ShardRecord(
        index=index,
        count=count,
        models=[c.CLI_NAME for c in plan[index]],
        selected=[
            ShardMember(
                cli_name=c.CLI_NAME,
                model=c.MODEL_NAME,
                task=c.TASK,
                library=c.LIBRARY,
                relative_cost=c.RELATIVE_COST,
                shard=where[c],
            )
            for c in classes
        ],
        slurm=slurm_job(),
    )
    return plan[index], record


# -- --merge of an array's shards ------------------------------------------------------------
def shard_array(files: list[RunDocument], paths: list) -> ShardArray | None:
    """The array the files are shards of (its shard count and selected models), None when no file
    is a shard; a UsageError when shards and other results, or shards of different arrays, mix."""
    found = [known(d.config.shard) for d in files]
    if not any(found):
        return None
    if not all(found):
        plain = paths[found.index(None)]
        raise UsageError(
            f"--merge: {plain} is not a shard (--shard) but other files are; merge the shards of one "
            "array, then merge that with other results"
        )
    records: list[ShardRecord] = [r for r in found if r]  # every file is a shard
    first = records[0]
    for path, record in zip(paths[1:], records[1:]):
        if (record.count, record.selected) != (first.count, first.selected):
            raise UsageError(
                f"--merge: {paths[0]} and {path} are shards of different arrays (other models, or "
                f"{first.count} and {record.count} shards)"
            )
    return ShardArray(
        count=first.count,
        selected=first.selected,
        present=sorted({r.index for r in records}),
        jobs={r.index: r.slurm for r in records},
    )


def shard_log(array: ShardArray, index: int, template: str | None) -> str | None:
    return template.replace("{shard}", str(index)) if template else None


def mark_array_failures(
    array: ShardArray, chosen: dict, weights: str | None, log_template: str | None
) -> tuple[list, list]:
    """The merged models in the order they were selected: each model of a shard that wrote no results,
    or whose run did not complete, marked failed with the shard and its task's log named.
    `chosen` maps a model's CLI name to its record; returns (records, one line per problem)."""
    records, problems = [], []
    for entry in array.selected:
        index, name = entry.shard, entry.cli_name
        record = chosen.get(name)
        if record is not None and record.status == "complete":
            records.append(record)
            continue
        job = array.jobs.get(index) or SlurmJob()
        where = f"shard {index}/{array.count}" + (
            f" (Slurm job {job.array_job_id}_{job.array_task_id})" if job.array_job_id else ""
        )
        status_in_shard = record.status if record is not None else "missing"
        if record is None:
            what = f"{where} wrote no results for it: the task was killed, timed out, failed to start or never ran"
            record = ModelResult(
                model=entry.model,
                cli_name=name,
                task=entry.task,
                library=entry.library,
                weights=weights,
                weights_source=None,
                phase=None,
            )
        else:
            error = record.error
            what = f"{where} ended with it {record.status}" + (error.in_words if error else "")
        log = shard_log(array, index, log_template)
        message = what + (f"; see the task's log {log}" if log else "; see the log of that task")
        record = record.replaced(
            status=ModelStatus.FAILED,
            status_in_shard=status_in_shard,
            shard_log=log,
            error=ErrorRecord(
                "ShardFailed", message, (record.error.phase if record.error else None) or record.phase_reached
            ),
        )
        records.append(record)
        problems.append(f"{entry.model}: {message}")
    return records, problems
