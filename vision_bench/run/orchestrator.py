"""All the models of a run: in order or over --devices, failing fast, holding signals while the
reports are written after every model."""

from __future__ import annotations

import queue
import signal
import threading
import time
from datetime import datetime

from ..common import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, RunInterrupted, log
from ..measure.environment import system_info
from ..measure.model_pass import RunContext, benchmark_model, new_result
from ..reports.write import write_reports
from .repeated_processes import run_processes
from .worker_processes import run_in_worker


def run_all(classes, ctx: RunContext) -> int:
    """Run the models in order, each in its own worker process unless --isolation none. Fail
    fast unless --keep-going; results are written after every model, so a failure or an
    interrupt (wherever it lands) loses nothing measured."""
    if getattr(ctx.args, "devices", None):
        return run_on_devices(classes, ctx)
    exit_code = EXIT_OK
    try:
        for position, cls in enumerate(classes, 1):
            print("=" * 80)
            print(f"[{position}/{len(classes)}] {cls.MODEL_NAME}")
            print("=" * 80, flush=True)
            result = new_result(cls, ctx)
            ctx.results.append(result)
            if getattr(ctx.args, "processes", 1) > 1:
                run_processes(cls, ctx, result)
            elif ctx.args.isolation == "process":
                run_in_worker(cls, ctx, result)
            else:
                benchmark_model(cls, ctx, result)
            if result["status"] == "complete":
                log("COMPLETE", f"{cls.MODEL_NAME} finished")
            else:
                exit_code = EXIT_FAILED
                if not ctx.args.keep_going:
                    log("ERROR", "Stopping (fail fast). Use --keep-going to continue with the next model.")
                    ctx.status = "incomplete"
                    mark_not_run(classes[position:], ctx)
                    break
            with signals_deferred():
                write_reports(ctx)
        else:
            ctx.status = "complete" if exit_code == EXIT_OK else "incomplete"
    except (RunInterrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
        ctx.status = "interrupted"
        current = next((r for r in ctx.results if r["status"] == "running"), None)
        if current is not None:
            current["status"] = "interrupted"
        where = (
            f"during {current['model']} ({current.get('phase_reached') or current['phase']})"
            if current
            else "between models"
        )
        log("ERROR", f"Interrupted by {signal.Signals(signum).name} {where}; writing the results of finished models")
        done = {r["cli_name"] for r in ctx.results}
        mark_not_run([c for c in classes if c.CLI_NAME not in done], ctx)
        exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
    with signals_deferred(deliver=False):  # the run is ending anyway: a second Ctrl-C must not cut the write
        write_reports(ctx)
    return exit_code


def run_on_devices(classes, ctx: RunContext) -> int:
    """--devices: one thread per device, each taking the next model from a shared queue and running
    it in a worker on its device, so no device ever holds two models. Reports are written after
    every model, in the order of --models whatever order the models finish in."""
    import copy

    todo: queue.Queue = queue.Queue()
    for cls in classes:
        todo.put(cls)
    records: dict = {}  # class -> its result, once started
    lock = threading.Lock()
    stop = threading.Event()
    stop.signum = signal.SIGINT
    failed = threading.Event()

    def ordered() -> list[dict]:
        return [records[c] for c in classes if c in records]

    def write_now() -> None:
        with lock:  # a running model's record is copied: its thread replaces it at every phase
            ctx.results = [r if r["status"] != "running" else dict(r) for r in ordered()]
            write_reports(ctx)

    def serve(device, slot: int) -> None:
        ctx.device_slots[slot]["start"] = datetime.now()
        try:
            serve_models(device, slot)
        finally:
            ctx.device_slots[slot]["end"] = datetime.now()
            finished[slot].set()

    def serve_models(device, slot: int) -> None:
        dctx = copy.copy(ctx)
        dctx.device = device
        dctx.system = system_info(device) if device != ctx.device else ctx.system
        dctx.stop_event = stop
        while not stop.is_set() and not (failed.is_set() and not ctx.args.keep_going):
            try:
                cls = todo.get_nowait()
            except queue.Empty:
                return
            dctx.log_prefix = f"[{device}#{slot} {cls.CLI_NAME}] "
            result = new_result(cls, dctx)
            with lock:
                records[cls] = result
            log("INFO", f"{cls.MODEL_NAME} starts on {device} (worker slot {slot})")
            try:
                run_in_worker(cls, dctx, result)
            except RunInterrupted:
                result["status"] = "interrupted"
            result["device"], result["device_slot"] = str(device), slot
            if dctx.system is not ctx.system:
                result["system"] = dctx.system
            if result["status"] == "complete":
                log("COMPLETE", f"{cls.MODEL_NAME} finished on {device}")
            elif result["status"] != "interrupted":
                failed.set()
                if not ctx.args.keep_going:
                    log(
                        "ERROR",
                        "Stopping (fail fast): no new model starts; the others finish. Use --keep-going to continue.",
                    )
            write_now()

    log("INFO", f"Running on {len(ctx.args.devices)} device(s) at once: {', '.join(map(str, ctx.args.devices))}")
    threads = [
        threading.Thread(target=serve, args=(d, i), name=f"device-{d}-{i}", daemon=True)
        for i, d in enumerate(ctx.args.devices)
    ]
    # Waiting is a sleep loop, not Thread.join: on Python 3.11 a signal's exception raised inside
    # join() can leave the thread marked as stopped while it still runs (seen here: the report was
    # written before the last worker's record was final).
    finished = [threading.Event() for _ in threads]
    ctx.device_slots = [
        {"device": str(d), "slot": i, "start": None, "end": None} for i, d in enumerate(ctx.args.devices)
    ]

    def wait_for_all() -> None:
        while not all(e.is_set() for e in finished):
            time.sleep(0.2)

    exit_code = EXIT_OK
    try:
        for t in threads:
            t.start()
        wait_for_all()
    except (RunInterrupted, KeyboardInterrupt) as exc:
        stop.signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
        stop.set()
        log(
            "ERROR",
            f"Interrupted by {signal.Signals(stop.signum).name}; stopping the workers and writing the "
            "results of finished models",
        )
        with signals_deferred(deliver=False):
            wait_for_all()
        exit_code = EXIT_SIGINT if stop.signum == signal.SIGINT else EXIT_SIGTERM
    results = ordered()
    if exit_code == EXIT_OK and any(r["status"] != "complete" for r in results):
        exit_code = EXIT_FAILED
    ctx.status = {EXIT_OK: "complete", EXIT_FAILED: "incomplete"}.get(exit_code, "interrupted")
    ctx.results = results
    mark_not_run([c for c in classes if c not in records], ctx)
    with signals_deferred(deliver=False):
        write_reports(ctx)
    return exit_code


def mark_not_run(classes, ctx: RunContext) -> None:
    for cls in classes:
        ctx.results.append(new_result(cls, ctx) | {"status": "not run", "phase": None})


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
