"""All the models of a run: in order or over --devices, failing fast, holding signals while the
reports are written after every model."""

from __future__ import annotations

import copy
import dataclasses
import queue
import signal
import threading
import time
from datetime import datetime

from ..common import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, RunInterrupted, log
from ..measure.environment import system_info
from ..records.codec import from_json
from ..records.model_result import ModelResult
from ..records.run_config import SystemInfo
from ..records.statuses import ModelStatus, RunStatus
from ..reports.results_file import report_paths
from ..reports.write import write_reports
from ..settings import DeviceSlot, RunContext
from .model_pass import benchmark_model, new_result
from .repeated_processes import run_processes
from .worker_processes import run_in_worker


def run_all(classes, ctx: RunContext) -> int:
    """Run the models in order, each in its own worker process unless --isolation none. Fail
    fast unless --keep-going; results are written after every model, so a failure or an
    interrupt (wherever it lands) loses nothing measured."""
    settings = ctx.settings
    if settings.devices:
        return run_on_devices(classes, ctx)
    exit_code = EXIT_OK
    try:
        for position, cls in enumerate(classes, 1):
            print("=" * 80)
            print(f"[{position}/{len(classes)}] {cls.MODEL_NAME}")
            print("=" * 80, flush=True)
            result = new_result(cls, ctx)
            ctx.results.append(result)
            if settings.processes > 1:
                run_processes(cls, ctx, result)
            elif settings.isolation == "process":
                run_in_worker(cls, ctx, result)
            else:
                benchmark_model(cls, ctx, result)
            if result.status == "complete":
                log("COMPLETE", f"{cls.MODEL_NAME} finished")
            else:
                exit_code = EXIT_FAILED
                if not settings.keep_going:
                    log("ERROR", "Stopping (fail fast). Use --keep-going to continue with the next model.")
                    ctx.status = RunStatus.INCOMPLETE
                    mark_not_run(classes[position:], ctx)
                    break
            with signals_deferred():
                write_reports(ctx)
        else:
            ctx.status = RunStatus.COMPLETE if exit_code == EXIT_OK else RunStatus.INCOMPLETE
    except (RunInterrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
        ctx.status = RunStatus.INTERRUPTED
        current = next((r for r in ctx.results if r.status == "running"), None)
        if current is not None:
            current.status = ModelStatus.INTERRUPTED
        where = f"during {current.model} ({current.phase_reached or current.phase})" if current else "between models"
        log("ERROR", f"Interrupted by {signal.Signals(signum).name} {where}; writing the results of finished models")
        done = {r.cli_name for r in ctx.results}
        mark_not_run([c for c in classes if c.CLI_NAME not in done], ctx)
        exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
    with signals_deferred(deliver=False):  # the run is ending anyway: a second Ctrl-C must not cut the write
        write_reports(ctx)
    return exit_code


class StopEvent(threading.Event):
    """Set by the main thread to stop the device threads' workers; `signum` says which signal did."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int = signal.SIGINT


def run_on_devices(classes, ctx: RunContext) -> int:
    """--devices: one thread per device, each taking the next model from a shared queue and running
    it in a worker on its device, so no device ever holds two models. Reports are written after
    every model, in the order of --models whatever order the models finish in."""
    devices = ctx.settings.devices
    log("INFO", f"Running on {len(devices)} device(s) at once: {', '.join(map(str, devices))}")
    run = DevicesRun(classes, ctx)
    exit_code = run.run()
    results = run.ordered()
    if exit_code == EXIT_OK and any(r.status != "complete" for r in results):
        exit_code = EXIT_FAILED
    ctx.status = {EXIT_OK: RunStatus.COMPLETE, EXIT_FAILED: RunStatus.INCOMPLETE}.get(exit_code, RunStatus.INTERRUPTED)
    ctx.results = results
    mark_not_run([c for c in classes if c not in run.records], ctx)
    with signals_deferred(deliver=False):
        write_reports(ctx)
    return exit_code


class DevicesRun:
    """The threads of --devices (one a device) and what they share: the queue of models, their
    records, the stop and failure flags."""

    def __init__(self, classes, ctx: RunContext):
        self.classes, self.ctx = classes, ctx
        self.todo: queue.Queue = queue.Queue()
        for cls in classes:
            self.todo.put(cls)
        self.records: dict = {}  # class -> its result, once started
        self.lock = threading.Lock()
        self.stop = StopEvent()
        self.failed = threading.Event()
        devices = ctx.settings.devices
        # Waiting is a sleep loop, not Thread.join: on Python 3.11 a signal's exception raised inside
        # join() can leave the thread marked as stopped while it still runs (seen here: the report was
        # written before the last worker's record was final).
        self.finished = [threading.Event() for _ in devices]
        self.threads = [
            threading.Thread(target=self.serve, args=(d, i), name=f"device-{d}-{i}", daemon=True)
            for i, d in enumerate(devices)
        ]
        ctx.device_slots = [DeviceSlot(str(d), i) for i, d in enumerate(devices)]

    def ordered(self) -> list[ModelResult]:
        return [self.records[c] for c in self.classes if c in self.records]

    def write_now(self) -> None:
        with self.lock:  # a running model's record is copied: its thread replaces it at every phase
            self.ctx.results = [r if r.status != "running" else copy.copy(r) for r in self.ordered()]
            write_reports(self.ctx)

    def wait_for_all(self) -> None:
        while not all(e.is_set() for e in self.finished):
            time.sleep(0.2)

    def run(self) -> int:
        """Start the threads and wait for them; an interrupt stops them. Returns the exit code so far."""
        try:
            for t in self.threads:
                t.start()
            self.wait_for_all()
        except (RunInterrupted, KeyboardInterrupt) as exc:
            self.stop.signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
            self.stop.set()
            log(
                "ERROR",
                f"Interrupted by {signal.Signals(self.stop.signum).name}; stopping the workers and writing the "
                "results of finished models",
            )
            with signals_deferred(deliver=False):
                self.wait_for_all()
            return EXIT_SIGINT if self.stop.signum == signal.SIGINT else EXIT_SIGTERM
        return EXIT_OK

    def serve(self, device, slot: int) -> None:
        slots = self.ctx.device_slots or []
        slots[slot].start = datetime.now()
        try:
            self.serve_models(device, slot)
        finally:
            slots[slot].end = datetime.now()
            self.finished[slot].set()

    def serve_models(self, device, slot: int) -> None:
        ctx = self.ctx
        system = from_json(SystemInfo, system_info(device)) if device != ctx.device else ctx.system
        dctx = dataclasses.replace(ctx, device=device, system=system, results=[], stop_event=self.stop)
        while not self.stop.is_set() and not (self.failed.is_set() and not ctx.settings.keep_going):
            try:
                cls = self.todo.get_nowait()
            except queue.Empty:
                return
            self.run_model(cls, dataclasses.replace(dctx, log_prefix=f"[{device}#{slot} {cls.CLI_NAME}] "), slot)

    def run_model(self, cls, dctx: RunContext, slot: int) -> None:
        device = dctx.device
        result = new_result(cls, dctx)
        with self.lock:
            self.records[cls] = result
        log("INFO", f"{cls.MODEL_NAME} starts on {device} (worker slot {slot})")
        try:
            run_in_worker(cls, dctx, result)
        except RunInterrupted:
            result.status = ModelStatus.INTERRUPTED
        result.device, result.device_slot = str(device), slot
        if dctx.system is not self.ctx.system:
            result.system = dctx.system
        if result.status == "complete":
            log("COMPLETE", f"{cls.MODEL_NAME} finished on {device}")
        elif result.status != "interrupted":
            self.failed.set()
            if not self.ctx.settings.keep_going:
                log(
                    "ERROR",
                    "Stopping (fail fast): no new model starts; the others finish. Use --keep-going to continue.",
                )
        self.write_now()


def mark_not_run(classes, ctx: RunContext) -> None:
    for cls in classes:
        ctx.results.append(new_result(cls, ctx).replaced(status=ModelStatus.NOT_RUN, phase=None))


def announce(ctx: RunContext) -> None:
    """The run's first lines: what runs, how, where."""
    s = ctx.settings
    log(
        "INFO",
        f"Run {ctx.run_id}: {len(s.models)} model(s), {len(ctx.images)} image(s), 1 cold-start run, "
        f"{s.warmup} warm-up round(s), "
        + (
            f"timed rounds until +-{s.precision:g}% (at most {s.max_time:g} s)"
            if s.precision
            else f"{s.runs} timed run(s) per image"
        )
        + (f" in each of {s.processes} processes" if s.processes > 1 else "")
        + f", {s.weights} weights, "
        f"device {', '.join(map(str, s.devices)) if s.devices else ctx.device}, seed {s.seed}, "
        + ("one worker process per model" if s.isolation == "process" else "all in this process"),
    )
    if s.shard:
        log(
            "INFO",
            f"Shard {s.shard.index}/{s.shard.count} of {len(s.shard.selected)} selected model(s): "
            f"{', '.join(s.shard.models)}",
        )
    log("INFO", f"Images: {', '.join(p.name for p in ctx.images)}")


def print_summary(ctx: RunContext) -> None:
    paths_written = report_paths(ctx)
    print("=" * 80)
    print(f"BENCHMARK {ctx.status.upper()}")
    print("=" * 80)
    for r in ctx.results:
        print(f"  {r.model:<22} {r.status}")
    print("Output files:")
    for p in paths_written.values():
        print(f"  - {p}")
    print(f"Layer folders: {ctx.viz_dir}")


_deferred_signals: list[int] | None = None


def raise_on_signal(signum, frame):
    if _deferred_signals is not None:
        _deferred_signals.append(signum)  # delivered when the report is on disk
        return
    raise RunInterrupted(signum)


class signals_deferred:
    """Hold SIGINT/SIGTERM while results are written, then deliver the first one."""

    def __init__(self, deliver: bool = True):
        self.deliver = deliver

    def __enter__(self):
        global _deferred_signals
        _deferred_signals = []

    def __exit__(self, *exc):
        global _deferred_signals
        pending, _deferred_signals = _deferred_signals, None
        if pending and self.deliver and exc[0] is None:
            raise RunInterrupted(pending[0])
        return False
