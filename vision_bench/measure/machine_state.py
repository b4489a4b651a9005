"""The machine-state guard: the state of the CPU (governor, frequency, thermal throttle count,
load average, the process's involuntary context switches) and, on CUDA, of the GPU (through
nvml_guard), sampled at timed-run boundaries only; each timed run is flagged 'throttled' or
'shared' from the samples on its two sides, and the guard's own cost is measured."""

from __future__ import annotations

import dataclasses
import glob
import os
import resource
import time
from pathlib import Path

from ..records.measurement import FlagCounts, GuardRecord, GuardStatic, MachineSample, MachineState, RunRecord, RunState
from . import nvml_guard

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
    """Samples the machine between timed runs and flags each run from the samples on its sides."""

    def __init__(self, device, nvml=None, cpu_root: Path = CPU_SYS):
        self.device_type = getattr(device, "type", str(device))
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
        if self.gpu is not None:
            state.gpu = self.gpu.sample()
        self.cost_s += time.perf_counter() - start
        self.samples += 1
        return state

    def begin(self) -> None:
        """The sample before the first timed run."""
        self.last = self.sample()

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
        return RunState(
            flags=flags,
            load1=after.load1,
            involuntary_switches=after.involuntary_switches - before.involuntary_switches,
            cpu_freq_mhz=after.cpu_freq_mhz,
            **{key: getattr(after.gpu, key) for key in GPU_READINGS},
            throttle_reasons=reasons or None,
            other_pids=others or None,
        )

    def record(self) -> GuardRecord:
        """The guard's record of the window: its static readings, its cost and its samples."""
        return GuardRecord(static=self.static, cost_s=self.cost_s, samples=self.samples)

    def close(self) -> None:
        if self.gpu is not None:
            self.gpu.close()


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


def summarize_state(
    static: GuardStatic,
    timed_runs: list[RunRecord],
    cost_s: float,
    samples: int,
    median_s: float | None,
    discarded: int,
) -> MachineState:
    """The model's machine state over its timed runs: ranges, flagged and discarded counts, warnings,
    and the guard's own cost per run against the median."""
    states = [r.state for r in timed_runs if r.state]
    flagged = FlagCounts(**{flag: sum(flag in s.flags for s in states) for flag in ("throttled", "shared")})
    loads = [s.load1 for s in states]
    per_run = cost_s / max(len(states), 1)
    summary = MachineState(
        **dataclasses.asdict(static),
        runs_sampled=len(states),
        flagged=flagged,
        discarded=discarded,
        load1=spread(loads),
        involuntary_switches_per_run=sorted(s.involuntary_switches or 0 for s in states)[len(states) // 2]
        if states
        else None,
        throttle_reasons=sorted({x for s in states for x in s.throttle_reasons or ()}),
        other_pids=sorted({x for s in states for x in s.other_pids or ()}),
        guard_cost_s_per_run=per_run if samples else None,
        guard_cost_ratio=per_run / median_s if samples and median_s else None,
    )
    for key in READINGS:
        setattr(summary, key, spread([getattr(s, key) for s in states]))
    summary.warnings = state_warnings(summary, [load for load in loads if load is not None])
    summary.clean = not summary.warnings
    return summary


def state_warnings(summary: MachineState, loads: list[float]) -> list[str]:
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
    if loads and summary.cpus and max(loads) > summary.cpus:
        warnings.append(
            f"the machine was busy: load average up to {max(loads):.1f} on {summary.cpus} usable CPUs "
            "(other processes competed for the cores)"
        )
    if summary.governors and set(summary.governors) != {"performance"}:
        warnings.append(f"CPU frequency governor {', '.join(summary.governors)}, not performance: clocks vary")
    if (summary.nvml or "ok") != "ok":
        warnings.append(f"GPU state not seen: NVML {summary.nvml}")
    return warnings
