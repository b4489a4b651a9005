"""--merge of an array's shards (--shard I/N): which array the files are shards of, and each model
of a shard that wrote no results, or did not complete, marked failed with its shard and log named."""

from __future__ import annotations

from ..common import UsageError
from ..records.codec import known
from ..records.failure import ErrorRecord
from ..records.model_result import ModelResult
from ..records.run_config import ShardArray, ShardRecord, SlurmJob
from ..records.run_document import RunDocument
from ..records.statuses import ModelStatus


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
