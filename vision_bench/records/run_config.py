"""The settings and machine a run records (the results file's `config` and `system`, a merged
model's `run_config` and `system`), the --shard record and its Slurm job, and the allocator
settings a model's process ran with. Keys that older files lack, or that only some runs write, are
`absent()` fields: `known()` reads such a field as None when the file did not hold it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .codec import UNDECLARED, absent, known, optional


def with_undeclared(record: Any, extra: dict) -> Any:
    """`record` with `extra` keys written after its fields (keys it does not declare), in place."""
    if extra:
        object.__setattr__(record, UNDECLARED, {**(getattr(record, UNDECLARED, None) or {}), **extra})
    return record


@dataclass
class AllocatorSettings:
    """glibc's thresholds a model's process ran with (run.worker_processes.keep_freed_memory)."""

    mmap_threshold_bytes: int  # M_MMAP_THRESHOLD: larger blocks are mapped per allocation
    trim_threshold_bytes: int  # M_TRIM_THRESHOLD: free memory kept before it is given back


@dataclass
class SystemInfo:
    """The machine as the report states it (measure.environment.system_info): every key absent()
    since files written before a key was recorded lack it."""

    os: str | None = absent()  # "Linux 6.1..."
    platform: str | None = absent()
    python: str | None = absent()
    torch: str | None = absent()
    transformers: str | None = absent()
    ultralytics: str | None = absent()
    cuda_available: bool | None = absent()
    cuda_version: str | None = absent()
    gpu: str | None = absent()  # the device's name (null on CPU)
    cpu: str | None = absent()
    cpu_count: int | None = absent()  # logical cores
    cpu_model: str | None = absent()  # the CPU's name ("AMD EPYC 9654 96-Core Processor")
    cpu_cores: int | None = absent()  # physical cores
    cpu_threads: int | None = absent()  # hardware threads (logical processors listed)
    cpu_features: list[str] | None = absent()  # which of environment.CPU_FEATURES it has (avx2, amx_bf16, ...)
    torch_threads: int | None = absent()
    device: str | None = absent()
    default_dtype: str | None = absent()
    float32_matmul_precision: str | None = absent()
    matmul_allow_tf32: bool | None = absent()
    cudnn_allow_tf32: bool | None = absent()
    cudnn_benchmark: bool | None = absent()
    cudnn_deterministic: bool | None = absent()
    cudnn_version: int | None = absent()  # cuDNN 9 encodes 9.24.0 as 92400
    cuda_driver_version: str | None = absent()

    def value(self, name: str) -> Any:
        """The setting `name` (a field), None when not recorded."""
        return known(getattr(self, name))


@dataclass
class SourceState:
    """The git state of a folder when the run started (measure.source_control): the results file's
    `source`, the working folder's repository first, then the tool's when it is another one."""

    role: str  # "working folder" (where the tool ran from) or "tool" (the repository of vision_bench/)
    folder: str  # the repository's top folder
    commit: str  # the full hash of HEAD
    committed: str | None = None  # HEAD's commit date, ISO 8601 (--order commit-date)
    subject: str | None = None  # HEAD's subject line
    branch: str | None = None  # "HEAD" when detached
    dirty: bool | None = None  # tracked files changed since the commit (None: git status failed)

    def short_text(self) -> str:
        """'1a2b3c4', or '1a2b3c4 dirty' when tracked files had changed since the commit."""
        return self.commit[:7] + (" dirty" if self.dirty else "")


@dataclass
class SlurmJob:
    """The Slurm job a shard ran in (its environment variables; each None when unset)."""

    job_id: str | None = None
    array_job_id: str | None = None
    array_task_id: str | None = None
    node: str | None = None


@dataclass
class ShardMember:
    """One model of an array's plan: which shard runs it."""

    cli_name: str
    model: str
    task: str | None = None
    library: str | None = None
    relative_cost: float | None = None
    shard: int = 0  # the shard index that runs it


@dataclass
class ShardRecord:
    """--shard I/N: this task's shard and the whole plan (config.shard), so that --merge can tell
    which models a missing shard had."""

    index: int
    count: int
    models: list[str]  # this shard's models (CLI names)
    selected: list[ShardMember]  # every model of the array, in the order selected
    slurm: SlurmJob | None = None


@dataclass
class RunConfig:
    """The run's settings as written (results file `config`). The models' options are also written
    at the top level, as they always were (keys this record does not declare, see
    `with_undeclared`); every key absent() since older files lack some."""

    runs_per_image: int | None = absent()  # null under --precision
    warmup_rounds: int | None = absent()
    isolation: str | None = absent()  # process | none
    model_timeout_s: float | None = absent()
    precision_pct: float | None = absent()
    max_time_s: float | None = absent()
    processes: int | None = absent()
    discard_throttled: bool | None = absent()
    latency_interval: str | None = absent()  # how each median's interval is made
    seed: int | None = absent()
    weights: str | None = absent()
    device: str | None = absent()
    torch_threads: int | None = absent()
    dissect_files: bool | None = absent()
    keep_going: bool | None = absent()
    models: list[str] | None = absent()  # the CLI names run
    variants: list[str] | None = absent()
    shard: ShardRecord | None = absent()
    trace: bool | None = absent()
    trace_stacks: bool | None = absent()
    batch_sizes: list[int] | str | None = absent()
    input_sizes: list[int] | str | None = absent()
    sweep_budget_s: float | None = absent()
    memory_limit_bytes: int | None = absent()
    image_source: str | None = absent()
    viz_dir: str | None = absent()
    model_options: dict | None = absent()  # the options the models declare, as given (null: the default)
    devices: list[str] | None = optional()  # --devices

    def value(self, name: str) -> Any:
        """The setting `name` (a field), None when not recorded."""
        return known(getattr(self, name))

    def replaced(self, **changes: Any) -> RunConfig:
        """A copy with `changes`, the keys it does not declare kept."""
        return with_undeclared(dataclasses.replace(self, **changes), dict(getattr(self, UNDECLARED, None) or {}))


@dataclass
class ShardArray:
    """The array a merge's files are shards of (not written: reports.shard_merge.shard_array builds it)."""

    count: int
    selected: list[ShardMember]
    present: list[int]  # the shard indices that wrote results
    jobs: dict[int, SlurmJob | None] = field(default_factory=dict)  # each present shard's Slurm job
