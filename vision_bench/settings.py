"""A run's settings and its context, as declared dataclasses. RunSettings is every run setting, built
once by cli from the command line and the script's defaults and never changed (a changed copy is
dataclasses.replace); RunContext is what every model's pass needs beside them (the device, the
images, the folders, the results so far), with every attribute declared. CompareOptions,
MergeOptions and HistoryOptions are what --compare, --merge and --history need, ReportFolders where
--merge writes. Nothing here imports a heavy library."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from .records.model_result import ModelResult
from .records.run_config import AllocatorSettings, ShardRecord, SourceState, SystemInfo
from .records.statuses import RunStatus


@dataclass(slots=True)
class DeviceSlot:
    """--devices: one device slot (a thread serving one device) and when it was busy."""

    device: str
    slot: int
    start: datetime | None = None  # when its thread started, and ended (None: not yet)
    end: datetime | None = None


@dataclass(frozen=True)
class RunSettings:
    """Every setting of a run, typed; built by cli.settings_from_options."""

    models: list[type]  # the model classes to run, in order (--models, after --shard)
    runs: int  # timed runs per image (a sweep point's count under --precision too)
    warmup: int
    seed: int
    weights: str = "pretrained"  # pretrained | random
    models_dir: Path = Path("models")
    # The models' own options (ModelOption, e.g. --sam-prompt): every option the registry's classes
    # declare, with the value given on the command line or None (the class's own default then).
    model_options: dict[str, str | None] = field(default_factory=dict)
    precision: float | None = None  # --precision PCT: run until the median's interval is this tight
    max_time: float = 0.0  # --precision's time cap per model, shared by its processes
    processes: int = 1
    discard_throttled: bool = False
    busy_limit_pct: float | None = None  # --busy-limit; None: the guard's own (measure/cpu_share.BUSY_LIMIT)
    isolation: str = "process"  # process | none
    model_timeout: float | None = None
    threads: int | None = None  # torch CPU threads, pinned in every worker
    allocator: AllocatorSettings | None = (
        None  # glibc's thresholds (run.worker_processes.keep_freed_memory), set where models run
    )
    dissect: bool = True  # write the layer files (--no-dissect: statistics only)
    keep_going: bool = False
    devices: list = field(default_factory=list)  # --devices: torch devices, one worker each; empty: --device alone
    variants: list[str] = field(default_factory=lambda: ["torch-fp32"])  # the reference first
    divergence: bool = False
    trace: bool = False
    trace_stacks: bool = False
    batch_sizes: list[int] | str | None = None  # a list, "auto" or None
    input_sizes: list[int] | str | None = None
    sweep_budget: float | None = None
    memory_limit: int | None = None  # bytes
    shard: ShardRecord | None = None  # --shard I/N's record (run.shards.select_shard)
    output_dir: Path = Path(".")
    label: str | None = None  # --label: written into the results file for --history

    def options_for(self, cls) -> dict[str, str]:
        """The options given for `cls`: those it declares (ModelOption) that were set."""
        declared = {option.name for option in getattr(cls, "RUN_OPTIONS", ())}
        return {k: v for k, v in self.model_options.items() if k in declared and v is not None}


@dataclass(frozen=True)
class CompareOptions:
    """--compare's options."""

    output_dir: Path
    fail_if_slower: float | None = None
    allow_missing: bool = False


@dataclass(frozen=True)
class HistoryOptions:
    """--history's options: the order of the runs and the gate over the newest step."""

    output_dir: Path
    fail_if_slower: float | None = None
    order: str = "start"  # start | label | commit-date
    allow_missing: bool = False  # the gate warns on a model that completed in the run before the newest, not in it


@dataclass(frozen=True)
class MergeOptions:
    """--merge's options."""

    output_dir: Path
    prefer: str | None = None
    shard_logs: str | None = None


@dataclass(frozen=True)
class ReportFolders:
    """Where a set of reports goes: what --merge writes into (a RunContext has the same fields)."""

    run_id: str
    results_dir: Path
    viz_dir: Path
    assets_dir: Path


@dataclass(slots=True, eq=False)
class RunContext:
    """What every model's pass needs: the settings, the device, the images, the folders, and the
    results so far. Copies for a device or a worker are dataclasses.replace."""

    settings: RunSettings
    device: Any  # torch.device
    images: list[Path]
    image_source: str
    run_id: str
    results_dir: Path
    viz_dir: Path
    assets_dir: Path
    system: SystemInfo  # measure.environment.system_info of `device`
    started: datetime = field(default_factory=datetime.now)  # cli passes its own start: start-up is overhead too
    results: list[ModelResult] = field(default_factory=list)
    status: RunStatus = RunStatus.RUNNING
    in_worker: bool = False  # in a model's worker process: a sweep may ask for a fresh worker
    timing_only: bool = False  # a later process of --processes: only its timed runs count
    device_slots: list[DeviceSlot] | None = None  # --devices: each slot's device and busy span
    stop_event: Any = None  # --devices: set by the main thread to stop the device threads' workers
    log_prefix: str = ""  # --devices: names the model on each relayed line
    source: list[SourceState] = field(default_factory=list)  # git commits at the start (measure.source_control)

    def __getstate__(self) -> dict:
        # A worker gets the settings and paths, not the other models' results (nor --devices' stop event).
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**state, "results": [], "stop_event": None}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
