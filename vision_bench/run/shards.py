"""Shards of a job array: --shard I/N (which models a task runs, balanced by each model's
RELATIVE_COST), the shard record a task writes into its results, and the check that --merge
makes on the shards of one array (every selected model once; the missing ones named, with the
log of the task that should have run them)."""

from __future__ import annotations

import math
import os

from ..common import UsageError
from ..records.run_config import ShardMember, ShardRecord, SlurmJob

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
