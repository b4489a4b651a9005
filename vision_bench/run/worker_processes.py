"""One fresh worker process per model, forked from a server that imported the libraries once:
starting it, relaying its output, and turning a dead or overdue worker into a failed record."""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

from ..common import RunInterrupted, log
from ..measure.environment import configure_threads
from ..measure.memory import MemoryTracker, apply_memory_limit
from ..records import SweepPointStatus
from ..records.failure import ErrorRecord, WorkerRecord
from ..records.measurement import MemoryFigures, PeakReading
from ..records.model_result import ModelResult
from ..records.run_config import AllocatorSettings
from ..records.statuses import ModelStatus
from ..records.sweep import WorkerDeath
from ..settings import RunContext
from ..sweeps.sweep_pass import resume_sweep
from .model_pass import benchmark_model, new_result

# Imported once by the fork server, so a worker starts in a fraction of a second. Nothing here
# may touch CUDA or run a parallel torch op: a forked child cannot use either.
WORKER_PRELOAD = [
    "torch",
    "torchvision",
    "cv2",
    "matplotlib.pyplot",
    "transformers",
    "ultralytics",
    "ultralytics.models.sam",
    "transformers.models.depth_anything.modeling_depth_anything",
    "transformers.models.depth_pro.modeling_depth_pro",
    "transformers.models.dpt.image_processing_dpt",
    "transformers.models.depth_pro.image_processing_depth_pro",
    # the package itself, so that a worker unpickles its task without importing anything
    "vision_bench.run.model_pass",
    "vision_bench.models.library_bases",
    "vision_bench.run.worker_processes",
]
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
WORKER_LOG_TAIL_LINES = 80  # a dead worker's last output lines kept in its error record: enough for
# faulthandler's report of a few threads and the lines before it
WORKER_STOP_GRACE_SEC = 5.0  # SIGTERM, then this long, then SIGKILL
WORKER_POLL_SEC = 0.2
MAX_SWEEP_RESUMES = 32  # fresh workers for one model's sweep after deaths at its points


def keep_freed_memory() -> AllocatorSettings | None:
    """Make glibc keep freed memory instead of returning it to the kernel after every run.

    Measured (yolo11n, CPU): a young process pays thousands of page faults per run, memory its
    allocator gave back after the previous run and maps again, while a process in which a model
    already ran pays none; that made whichever model ran first in a process about 1.5x slower
    through all its runs. Fixed thresholds (M_MMAP_THRESHOLD 32 MiB, the most glibc allows;
    M_TRIM_THRESHOLD 1 GiB) give every worker the steady state at once. Larger blocks are still
    mapped per allocation, as in any process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    m_trim_threshold, m_mmap_threshold = -1, -3
    settings = AllocatorSettings(mmap_threshold_bytes=32 << 20, trim_threshold_bytes=1 << 30)
    ok = mallopt(m_mmap_threshold, settings.mmap_threshold_bytes) and mallopt(
        m_trim_threshold, settings.trim_threshold_bytes
    )
    return settings if ok else None


def start_worker_server() -> None:
    """Start the fork server now, so that it imports the libraries while the run gets ready."""
    import multiprocessing
    from multiprocessing import forkserver

    if str(PACKAGE_PARENT) not in sys.path:  # the server imports this package by name, whatever the working directory
        sys.path.insert(0, str(PACKAGE_PARENT))
    multiprocessing.get_context("forkserver").set_forkserver_preload(WORKER_PRELOAD)
    forkserver.ensure_running()


def worker_main(cls, ctx: RunContext, conn, log_path: str, resume: ModelResult | None = None) -> None:
    """Runs in the worker process: one model, its output into log_path (the parent relays it),
    its result record to the parent at every phase. `resume`: the record of a model whose worker
    died during its sweep; this worker only goes on with the sweep."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # native libraries' output and crash reports land in the log too
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    conn.send(("started", time.time()))
    settings = dataclasses.replace(ctx.settings, allocator=keep_freed_memory())
    ctx = dataclasses.replace(ctx, settings=settings, in_worker=True)  # a sweep may ask for a fresh worker
    configure_threads(settings.threads)
    if settings.memory_limit:
        apply_memory_limit(settings.memory_limit, ctx.device)
    publish = lambda r: conn.send(("update", r))  # noqa: E731
    if resume is not None:
        result = resume
        resume_sweep(cls, ctx, result, publish)
    else:
        result = new_result(cls, ctx)
        benchmark_model(cls, ctx, result, publish=publish)
    conn.send(("done", result))
    conn.close()


class LogRelay:
    """Copies a worker's new output lines to this process's stdout, keeping the last ones."""

    def __init__(self, path: Path, prefix: str = ""):
        self.path = path
        self.prefix = prefix  # with --devices, several workers print at once: each line names its model
        self.offset = 0
        self.partial = ""
        self.tail: collections.deque = collections.deque(maxlen=WORKER_LOG_TAIL_LINES)

    def pump(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        lines = (self.partial + data.decode("utf-8", "replace")).split("\n")
        self.partial = "" if final else lines.pop()
        for line in lines:
            if line or not final:
                print(self.prefix + line)
                self.tail.append(line)
        sys.stdout.flush()


def stop_worker(process, finished: bool) -> None:
    """Let a worker that sent its result exit by itself; stop any other (SIGTERM, then SIGKILL)."""
    if finished:
        process.join(WORKER_STOP_GRACE_SEC)
    if process.is_alive():
        process.terminate()
        process.join(WORKER_STOP_GRACE_SEC)
    if process.is_alive():
        process.kill()
    process.join()


def run_in_worker(cls, ctx: RunContext, result: ModelResult, part: int | None = None) -> None:
    """Run one model in a fresh worker process and fill `result` from its reports. A worker that
    dies (any signal, the OOM killer, an exit without a result) or overruns --model-timeout gives
    a failed record with what it had measured, the phase it was in and its last output lines;
    except at a sweep point, which becomes that point's `oom` edge: the model keeps what it
    measured and a fresh worker goes on with the sweep. Under --memory-limit, a fresh worker also
    takes the point after every out-of-memory one. `part` numbers the model's worker under
    --processes (its own log file)."""
    resume = None
    for _ in range(MAX_SWEEP_RESUMES + 1):
        run_one_worker(cls, ctx, result, resume, part)
        sweep = result.sweep
        fresh_next = result.status == "complete" and sweep is not None and sweep.fresh_worker_next
        if not (sweep_point_died(result) or fresh_next):
            return
        resume = result


def sweep_point_died(result: ModelResult) -> bool:
    """If the worker died at a sweep point: that point is `oom`, the model complete; True then."""
    sweep, error = result.sweep, result.error
    running = [p for p in sweep.points if p.status == SweepPointStatus.RUNNING] if sweep else []
    if (
        sweep is None
        or result.status != "failed"
        or error is None
        or error.type != "WorkerDied"
        or error.phase != "sweep"
        or not running
    ):
        return False
    point = running[-1]
    point.status, point.killed, point.reason = SweepPointStatus.OOM, True, error.message
    log(
        "SWEEP",
        f"{result.model}: the worker died at {point.dimension} {point.value} (out of memory): "
        "that is the edge; a fresh worker goes on with the sweep",
    )
    death = WorkerDeath(dimension=point.dimension, value=point.value, message=error.message)
    sweep.worker_deaths = (sweep.worker_deaths or []) + [death]
    result.error = None
    result.status, result.phase = ModelStatus.COMPLETE, "sweep"
    return True


def run_one_worker(cls, ctx: RunContext, result: ModelResult, resume: ModelResult | None, part: int | None) -> None:
    import multiprocessing

    mp = multiprocessing.get_context("forkserver")
    log_path = ctx.assets_dir / (
        f"{cls.MODEL_NAME}_worker.log" if part is None else f"{cls.MODEL_NAME}_worker_p{part}.log"
    )
    receive, send = mp.Pipe(duplex=False)
    process = mp.Process(
        target=worker_main, args=(cls, ctx, send, str(log_path), resume), name=f"worker-{cls.CLI_NAME}", daemon=True
    )
    logged = log_path.stat().st_size if resume is not None and log_path.exists() else 0
    started = time.time()
    process.start()
    send.close()
    worker = result.worker = WorkerRecord(process.pid, log=str(log_path.relative_to(ctx.results_dir)))
    relay = LogRelay(log_path, prefix=ctx.log_prefix)
    relay.offset = logged  # a sweep's fresh worker appends to its model's log: relay only its own lines
    finished = False
    try:
        finished, timed_out, last_hwm = follow_worker(process, receive, relay, ctx, result, started)
    finally:  # also on an interrupt: no worker outlives the run
        stop_worker(process, finished)
        relay.pump(final=True)
        receive.close()
        if not finished:
            result.phase_reached = result.phase or "setup"
    worker.exit_code = process.exitcode
    if process.exitcode is not None and process.exitcode < 0:
        worker.signal = signal.Signals(-process.exitcode).name
    if not finished:
        error = record_lost_worker(cls, ctx, result, timed_out, last_hwm, list(relay.tail))
        log("ERROR", f"{cls.MODEL_NAME}: {error.message}. Its output: {log_path}")


def follow_worker(process, receive, relay: LogRelay, ctx: RunContext, result: ModelResult, started: float) -> tuple:
    """Relay a worker's output and take its records until its last one, its death, its deadline
    (--model-timeout) or --devices' stop event. Returns (finished, timed_out, its last peak RSS)."""
    worker = result.worker
    stop = ctx.stop_event  # set by the main thread when --devices runs this in a thread
    deadline = None  # --model-timeout counts from the worker's start, not the fork server's imports
    finished = False
    last_hwm = None
    while not finished:
        relay.pump()
        if stop is not None and stop.is_set():
            raise RunInterrupted(stop.signum)
        last_hwm = MemoryTracker._read_hwm(process.pid) or last_hwm
        if receive.poll(WORKER_POLL_SEC):
            try:
                kind, payload = receive.recv()
            except EOFError:
                break  # the worker is gone without a last word
            if kind == "started":
                seconds = result.phase_seconds  # a sweep's fresh worker adds its start
                seconds["worker_start"] = (seconds.get("worker_start") or 0.0) + payload - started
                if ctx.settings.model_timeout:
                    deadline = time.time() + ctx.settings.model_timeout
            else:
                payload.phase_seconds = {
                    **payload.phase_seconds,
                    "worker_start": result.phase_seconds.get("worker_start"),
                }
                result.adopt(payload)
                result.worker = worker
                finished = kind == "done"
        elif not process.is_alive() and not receive.poll():
            break
        if deadline and time.time() > deadline and not finished:
            return False, True, last_hwm
    return finished, False, last_hwm


def record_lost_worker(
    cls, ctx: RunContext, result: ModelResult, timed_out: bool, last_hwm, tail: list[str]
) -> ErrorRecord:
    """The record of a worker that died or overran --model-timeout: status, error, memory at failure."""
    worker, phase = result.worker, result.phase_reached
    assert worker is not None  # run_one_worker set it
    memory = result.memory = result.memory or MemoryFigures()
    if memory.at_failure is None:
        memory.at_failure = PeakReading(cpu_peak_rss_bytes=last_hwm, source="worker VmHWM, read by the parent")
    if timed_out:
        result.status = ModelStatus.TIMEOUT
        message = f"killed after --model-timeout {ctx.settings.model_timeout:g} s, during {phase}"
        error_type = "Timeout"
    else:
        result.status = ModelStatus.FAILED
        error_type = "WorkerDied"
        if worker.signal:
            message = f"the worker process was killed by {worker.signal} during {phase}" + (
                " (the kernel's OOM killer sends SIGKILL when memory runs out)" if worker.signal == "SIGKILL" else ""
            )
        else:
            message = f"the worker process exited with code {worker.exit_code} during {phase} without a result"
    error = result.error = ErrorRecord(error_type, message, phase, output_tail=tail)
    return error
