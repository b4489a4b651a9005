"""The machine-state guard: the state of the CPU (governor, frequency, thermal throttle count,
load average, the process's involuntary context switches, the CPU time other processes used:
cpu_share) and, on CUDA, of the GPU (through nvml_guard), sampled at timed-run boundaries only;
each timed run is flagged 'throttled' or 'shared' from the samples on its two sides, and 'busy'
when other processes used more than BUSY_LIMIT of the machine's CPU time over its span (the run,
or consecutive runs together until they last MIN_SPAN_S); the guard's own cost is measured."""

from __future__ import annotations

import dataclasses
import glob
import os
import resource
import time
from pathlib import Path

from ..records.measurement import (
    BusyProcess,
    FlagCounts,
    GuardRecord,
    GuardStatic,
    MachineSample,
    MachineState,
    RunRecord,
    RunState,
)
from . import nvml_guard
from .cpu_share import BUSY_LIMIT, MIN_SPAN_S, CpuAccount, largest_shares

CPU_SYS = Path("/sys/devices/system/cpu")


def read_sys(path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_static_state(root: Path = CPU_SYS) -> GuardStatic:
    """What /sys shows once: the frequency governor of every CPU, whether throttle counters exist,
    and the usable CPUs."""
    governors = sorted(
        {g for g in (read_sys(p) for p in glob.glob(str(root / "cpu[0-9]*/cpufreq/scaling_governor"))) if g}
    )
    return GuardStatic(
        governors=governors or None,
        throttle_counters=bool(glob.glob(str(root / "cpu[0-9]*/thermal_throttle/core_throttle_count"))),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    )


def cpu_files(root: Path = CPU_SYS) -> tuple[list[str], list[str]]:
    """The /sys files read at every sample, found once (a glob per sample would cost more than the
    reads): the CPUs' current frequencies and their thermal throttle counters."""
    return (
        sorted(glob.glob(str(root / "cpu[0-9]*/cpufreq/scaling_cur_freq"))),
        sorted(glob.glob(str(root / "cpu[0-9]*/thermal_throttle/core_throttle_count"))),
    )


def cpu_sample(freq_files: list[str], throttle_files: list[str]) -> MachineSample:
    freqs = [int(f) for f in (read_sys(p) for p in freq_files) if f and f.isdigit()]
    counts = [int(c) for c in (read_sys(p) for p in throttle_files) if c and c.isdigit()]
    return MachineSample(
        load1=os.getloadavg()[0],
        involuntary_switches=resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw,
        cpu_freq_mhz=sum(freqs) / len(freqs) / 1000.0 if freqs else None,
        cpu_throttle_count=sum(counts) if counts else None,
    )


READINGS = ("cpu_freq_mhz", "sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_w")  # a run's state, ranged
GPU_READINGS = READINGS[1:]  # those NVML reads


class MachineGuard:
    """Samples the machine between timed runs and flags each run from the samples on its sides.
    `cpu` (a CpuAccount) reads the CPU time, tests give one over a fake /proc; `busy_limit` is
    --busy-limit as a share (None: BUSY_LIMIT)."""

    def __init__(
        self,
        device,
        nvml=None,
        cpu_root: Path = CPU_SYS,
        cpu: CpuAccount | None = None,
        busy_limit: float | None = None,
    ):
        self.device_type = getattr(device, "type", str(device))
        self.cpu = cpu or CpuAccount(limit=BUSY_LIMIT if busy_limit is None else busy_limit)
        self.spans = Spans(self.cpu)
        self.freq_files, self.throttle_files = cpu_files(cpu_root)
        self.static = cpu_static_state(cpu_root)
        self.gpu = None
        if self.device_type == "cuda":
            try:
                self.gpu = nvml_guard.NvmlGuard(
                    index=getattr(device, "index", None) or 0, uuid=gpu_uuid(device), nvml=nvml
                )
                self.static.nvml = "ok"
            except Exception as exc:  # no nvidia-ml-py, or no driver: the CPU side still runs
                self.static.nvml = f"unavailable: {type(exc).__name__}: {exc}"
        self.cost_s = 0.0
        self.samples = 0
        self.last: MachineSample | None = None  # the sample before the next run; begin() takes the first

    def sample(self) -> MachineSample:
        start = time.perf_counter()
        state = cpu_sample(self.freq_files, self.throttle_files)
        # The CPU counters only where a span can end: reading /proc costs ~0.1 ms on a cold cache, which
        # would be 0.3-0.7% of a 30 ms run if read at every boundary.
        state.cpu = self.cpu.read() if self.spans.due() else None
        if self.gpu is not None:
            state.gpu = self.gpu.sample()
        self.cost_s += time.perf_counter() - start
        self.samples += 1
        return state

    def begin(self) -> None:
        """The sample before the first timed run."""
        self.last = self.sample()
        self.spans.begin(self.last)

    def after_run(self) -> RunState:
        """The sample after a run (the next run's 'before'); returns the run's state and flags."""
        before, after = self.last, self.sample()
        assert before is not None, "begin() takes the first sample"
        self.last = after
        flags = []
        if any(nvml_guard.throttled(s.gpu) for s in (before, after)) or after.cpu_throttled_since(before):
            flags.append("throttled")
        if any(nvml_guard.shared(s.gpu) for s in (before, after)):
            flags.append("shared")
        reasons = sorted(set(before.gpu.throttle_reasons or ()) | set(after.gpu.throttle_reasons or ()))
        others = sorted(set(before.gpu.other_pids) | set(after.gpu.other_pids))
        state = RunState(
            flags=flags,
            load1=after.load1,
            involuntary_switches=after.involuntary_switches - before.involuntary_switches,
            cpu_freq_mhz=after.cpu_freq_mhz,
            **{key: getattr(after.gpu, key) for key in GPU_READINGS},
            throttle_reasons=reasons or None,
            other_pids=others or None,
        )
        start = time.perf_counter()  # the spans' judgement and a scan of every process are the guard's cost too
        self.spans.add(state, after)
        self.cost_s += time.perf_counter() - start
        return state

    def record(self) -> GuardRecord:
        """The guard's record of the window: its static readings, its cost and its samples, the CPU
        time over the window (the machine's, the tool's own) and the busiest other processes."""
        start = time.perf_counter()
        self.read_window_end()
        self.spans.finish()
        self.cost_s += time.perf_counter() - start
        return self.spans.fill(GuardRecord(static=self.static, cost_s=self.cost_s, samples=self.samples))

    def read_window_end(self) -> None:
        """The CPU counters after the last run, where its sample did not read them: the last span needs them."""
        if self.spans.last is not None and self.spans.last.cpu is None:
            self.spans.last.cpu = self.cpu.read()

    def close(self) -> None:
        start = time.perf_counter()
        self.read_window_end()
        self.cost_s += time.perf_counter() - start
        if self.gpu is not None:
            self.gpu.close()
        self.cpu.close()


class Spans:
    """Judges the timed runs busy or not from the CPU time other processes used over spans of
    consecutive runs lasting at least MIN_SPAN_S (the last, shorter span joins the one before), and
    reads every process's CPU time when the machine first looks busy and at the window's end, to
    name the busiest."""

    def __init__(self, cpu: CpuAccount):
        self.cpu = cpu
        self.first: MachineSample | None = None
        self.start: MachineSample | None = None  # the current span's first sample
        self.states: list[RunState] = []  # the current span's runs
        self.previous: tuple[MachineSample, list[RunState]] | None = None
        self.last: MachineSample | None = None
        self.epoch = 0.0
        self.scans: list[tuple[float, dict]] = []
        self.busiest: list[BusyProcess] | None = None
        self.any_busy = False

    def due(self) -> bool:
        """The next sample should read the CPU counters: the window's first, or the span has lasted MIN_SPAN_S."""
        start = self.start.cpu if self.start else None
        return start is None or self.cpu.clock() - start.wall_s >= MIN_SPAN_S

    def begin(self, sample: MachineSample) -> None:
        self.first = self.start = self.last = sample
        self.epoch = time.time()

    def add(self, state: RunState, after: MachineSample) -> None:
        """A run that ended at `after`: judged with its span once the span lasts MIN_SPAN_S."""
        self.states.append(state)
        self.last = after
        start = self.start
        if start is None or start.cpu is None or after.cpu is None:
            return
        if not self.scans and self.cpu.busy(start.cpu, after.cpu):
            self.scans.append(self.cpu.scan())  # looks busy already: the processes' times from here on
        if after.cpu.wall_s - start.cpu.wall_s >= MIN_SPAN_S:
            self.judge(start, after, self.states)
            self.previous, self.start, self.states = (start, self.states), after, []

    def judge(self, start: MachineSample, end: MachineSample, states: list[RunState]) -> None:
        """Every run of a span gets the span's shares and, above the limit, the 'busy' flag."""
        if start.cpu is None or end.cpu is None:
            return
        other, own = end.cpu.other_share(start.cpu), end.cpu.own_share(start.cpu)
        busy = self.cpu.busy(start.cpu, end.cpu)
        self.any_busy = self.any_busy or busy
        for state in states:
            state.other_cpu_share = None if other is None else round(other, 4)
            state.own_cpu_share = None if own is None else round(own, 4)
            state.flags = [f for f in state.flags if f != "busy"] + (["busy"] if busy else [])
        if busy and not self.scans:
            self.scans.append(self.cpu.scan())

    def finish(self) -> None:
        """The last span judged (joined to the one before when shorter than MIN_SPAN_S), and the
        busiest other processes named from the scans when any run was busy."""
        if self.states and self.start and self.last and self.start.cpu and self.last.cpu:
            start, states = self.start, self.states
            if self.previous and self.last.cpu.wall_s - self.start.cpu.wall_s < MIN_SPAN_S:
                start, states = self.previous[0], self.previous[1] + self.states
            self.judge(start, self.last, states)
            self.previous, self.start, self.states = (start, states), self.last, []
        if self.any_busy and self.scans and self.busiest is None:
            self.scans.append(self.cpu.scan())
            self.busiest = self.cpu.busiest(self.scans[0], self.scans[-1])

    def fill(self, record: GuardRecord) -> GuardRecord:
        """The window's CPU time and the busiest processes, into the guard's record."""
        first, last = self.first, self.last
        if first and last and first.cpu and last.cpu:
            record.window_s = round(last.cpu.wall_s - first.cpu.wall_s, 6)
            record.capacity_cpu_s = round(last.cpu.capacity_s - first.cpu.capacity_s, 4)
            record.busy_cpu_s = round(last.cpu.busy_s - first.cpu.busy_s, 4)
            record.own_cpu_s = round(last.cpu.own_s - first.cpu.own_s, 6)
            record.window_epoch = [round(self.epoch, 3), round(self.epoch + record.window_s, 3)]
        record.own_pids = list(self.cpu.own_pids)
        record.busy_limit = self.cpu.limit
        record.busiest = self.busiest
        record.scans = len(self.scans)
        return record


def gpu_uuid(device) -> str | None:
    """The NVML UUID of a torch CUDA device ('GPU-...'), so that CUDA_VISIBLE_DEVICES cannot mix indices up."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(device).uuid)
        return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    except Exception:
        return None


def spread(values: list) -> list | None:
    values = [v for v in values if v is not None]
    return [min(values), max(values)] if values else None


FLAGS = ("throttled", "shared", "busy")


def summarize_state(
    guard: GuardRecord, timed_runs: list[RunRecord], median_s: float | None, discarded: int
) -> MachineState:
    """The model's machine state over its timed runs: ranges, flagged and discarded counts, the CPU
    time other processes and the tool used, warnings, and the guard's own cost per run against the
    median."""
    states = [r.state for r in timed_runs if r.state]
    per_run = guard.cost_s / max(len(states), 1)
    own = guard.own_cpu_s / guard.capacity_cpu_s if guard.capacity_cpu_s and guard.own_cpu_s is not None else None
    summary = MachineState(
        **dataclasses.asdict(guard.static),
        runs_sampled=len(states),
        flagged=FlagCounts(**{flag: sum(flag in s.flags for s in states) for flag in FLAGS}),
        discarded=discarded,
        load1=spread([s.load1 for s in states]),
        involuntary_switches_per_run=sorted(s.involuntary_switches or 0 for s in states)[len(states) // 2]
        if states
        else None,
        other_cpu_share=spread([s.other_cpu_share for s in states]),
        other_cpu_share_window=None if guard.other_cpu_share is None else round(guard.other_cpu_share, 4),
        own_cpu_share_window=None if own is None else round(own, 4),
        busy_limit=guard.busy_limit,
        busiest=guard.busiest,
        throttle_reasons=sorted({x for s in states for x in s.throttle_reasons or ()}),
        other_pids=sorted({x for s in states for x in s.other_pids or ()}),
        guard_cost_s_per_run=per_run if guard.samples else None,
        guard_cost_ratio=per_run / median_s if guard.samples and median_s else None,
    )
    for key in READINGS:
        setattr(summary, key, spread([getattr(s, key) for s in states]))
    summary.warnings = state_warnings(summary)
    summary.clean = not summary.warnings
    return summary


def percent_range(shares: list[float]) -> str:
    """[0.31, 0.52] as '31-52%', [0.5, 0.5] as '50%'."""
    low, high = (round(x * 100) for x in shares)
    return f"{low}%" if low == high else f"{low}-{high}%"


def busy_text(summary: MachineState) -> str:
    """'other processes used 31-52% of the CPU time (the run is busy above 10%); busiest: pid 812
    python3 -c while True: pass (25%), ...'."""
    shares = summary.other_cpu_share or [0.0, 0.0]
    some = (summary.flagged.busy or 0) < summary.runs_sampled  # then the low end is a clean run's
    used = f"up to {round(shares[1] * 100)}%" if some else percent_range(shares)
    text = f"other processes used {used} of the CPU time (busy above {(summary.busy_limit or 0) * 100:.0f}%)"
    if summary.busiest:
        text += "; busiest: " + ", ".join(
            f"pid {p.pid} `{p.command.replace('`', '')}` ({p.cpu_share * 100:.0f}%)" for p in summary.busiest
        )
    return text


def state_warnings(summary: MachineState) -> list[str]:
    """Why a model's machine state was not clean."""
    warnings = []
    flagged, runs = summary.flagged, summary.runs_sampled
    if flagged.throttled:
        warnings.append(
            f"{flagged.throttled} of {runs} timed runs ran throttled"
            + (f" ({', '.join(summary.throttle_reasons)})" if summary.throttle_reasons else "")
        )
    if flagged.shared:
        warnings.append(
            f"{flagged.shared} of {runs} timed runs shared the GPU with other processes "
            f"(pids {', '.join(map(str, summary.other_pids[:8]))})"
        )
    if flagged.busy:
        warnings.append(f"{flagged.busy} of {runs} timed runs were busy: {busy_text(summary)}")
    if summary.governors and set(summary.governors) != {"performance"}:
        warnings.append(f"CPU frequency governor {', '.join(summary.governors)}, not performance: clocks vary")
    if (summary.nvml or "ok") != "ok":
        warnings.append(f"GPU state not seen: NVML {summary.nvml}")
    return warnings


def merge_guards(guards: list[GuardRecord]) -> GuardRecord:
    """The guards of --processes' workers as one: costs, samples and CPU times summed, the busiest
    other processes of any (each at its largest share)."""
    merged = GuardRecord(
        static=guards[0].static, cost_s=sum(g.cost_s for g in guards), samples=sum(g.samples for g in guards)
    )
    for key in ("window_s", "capacity_cpu_s", "busy_cpu_s", "own_cpu_s", "scans"):
        values = [getattr(g, key) for g in guards]
        setattr(merged, key, sum(values) if all(v is not None for v in values) else None)
    merged.own_pids = sorted({pid for g in guards for pid in g.own_pids or ()}) or None
    merged.busy_limit = guards[0].busy_limit
    merged.busiest = largest_shares(p for g in guards for p in g.busiest or ())
    return merged
