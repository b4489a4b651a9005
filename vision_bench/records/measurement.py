"""What the timed runs produce, as records: each run (cold start, warm-up, timed) with the machine
state the guard saw around it; the latency statistics of the timed runs (end to end, forward, the
tails, the phases' medians, per image); the machine state over a model's timed runs and the guard's
own record; --precision's stop, --processes' per-process medians and the interval over them; and the
memory figures of a model's window. Times are in seconds, memory in bytes.

Held under a model result's keys `runs`, `cold_start`, `latency_end_to_end`, `latency_forward`,
`latency_tails`, `latency_phases_median`, `latency_per_image`, `machine_state`, `guard`, `precision`,
`processes`, `latency_interval` and `memory` (FAMILIES in model_result.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum

from .codec import from_json, is_record, optional

MIN_RUNS_FOR_CI = 6  # fewer runs than this have no distribution-free 95% interval of the median
PHASES = ("preprocess", "forward", "postprocess")  # a run's phases, each timed as `<phase>_s`


class RunKind(StrEnum):
    """Which part of the window a run belongs to; only timed runs make the statistics."""

    COLD = "cold"  # the model's first run (cold start)
    WARMUP = "warmup"
    TIMED = "timed"


@dataclass
class RunState:
    """The machine state around one timed run: the guard's samples on its two sides."""

    flags: list[str] = field(default_factory=list)  # 'throttled', 'shared', 'busy'
    load1: float | None = None  # load average after the run (context only: it counts the tool's own threads)
    involuntary_switches: int | None = None  # the process's involuntary context switches during the run
    cpu_freq_mhz: float | None = optional()  # mean CPU frequency after the run
    sm_clock_mhz: float | None = optional()  # GPU (NVML) figures after the run
    mem_clock_mhz: float | None = optional()
    temperature_c: float | None = optional()
    power_w: float | None = optional()
    throttle_reasons: list[str] | None = optional()  # NVML's reasons on either side
    other_pids: list[int] | None = optional()  # other processes on the GPU on either side
    # Shares of the machine's CPU time (its CPUs x the wall time) over the run's span: the run, or the
    # consecutive runs it was measured with until they lasted MIN_SPAN_S (/proc/stat counts 10 ms ticks).
    other_cpu_share: float | None = optional()  # every process but the tool's own (and the hypervisor's steal)
    own_cpu_share: float | None = optional()  # the tool's own processes: the worker, the fork server, the main


@dataclass(kw_only=True)
class RunRecord:
    """One run of the pipeline on one image (`runs[]`, `cold_start`)."""

    image: str  # the image's file name
    image_size: list[int] | None = optional()  # [width, height] in pixels
    kind: RunKind | None = optional()  # absent in files written before warm-up runs were kept (schema 1)
    cold: bool = False  # the cold start
    total_s: float  # end to end
    preprocess_s: float | None = optional()  # the phases; the tool always writes them
    forward_s: float | None = optional()
    postprocess_s: float | None = optional()
    state: RunState | None = optional()  # timed runs: the machine-state guard's flags and readings
    process: int | None = optional()  # --processes: which process (1-based) ran it
    discarded: bool | None = optional()  # --discard-throttled left it out of the statistics

    @property
    def run_kind(self) -> RunKind:
        """The kind, also for a schema-1 run (no kind: every run but the cold start was timed)."""
        return self.kind or (RunKind.COLD if self.cold else RunKind.TIMED)

    @property
    def flagged(self) -> bool:
        """The guard flagged it throttled, shared or busy."""
        return bool(self.state and self.state.flags)

    def phase_s(self, phase: str) -> float | None:
        """Seconds of one of PHASES."""
        return getattr(self, f"{phase}_s")


@dataclass
class LatencyStats:
    """Statistics of a list of run times, in seconds; all None (n 0) without runs. The median's 95%
    interval is distribution-free (order statistics at binomial ranks; --processes: over the process
    medians), None below MIN_RUNS_FOR_CI runs."""

    n: int = 0
    median: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    ci_coverage: float | None = None  # the interval's exact coverage (at least 0.95)
    p10: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    std: float | None = None  # sample standard deviation; None for one run
    min: float | None = None
    max: float | None = None
    cov: float | None = None  # coefficient of variation, std / mean

    def interval_text(self) -> str:
        """'[low, high]' in ms for the median's 95% interval, or why there is none."""
        if self.ci95_low is None or self.ci95_high is None:
            return f"[no 95% interval: {self.n or 0} runs, need {MIN_RUNS_FOR_CI}]"
        return f"[{self.ci95_low * 1000:.1f}, {self.ci95_high * 1000:.1f}]"

    @property
    def relative_half_width(self) -> float | None:
        """How far the median's interval reaches from the median, in percent of it (the larger side)."""
        if not self.median or self.ci95_low is None or self.ci95_high is None:
            return None
        return max(self.median - self.ci95_low, self.ci95_high - self.median) / self.median * 100.0


@dataclass
class TailStat:
    """A tail percentile of the end-to-end times with its distribution-free 95% interval, or the runs
    it would need for one."""

    value: float | None = None  # seconds
    n: int = 0  # timed runs
    ci95_low: float | None = None
    ci95_high: float | None = None
    ci_coverage: float | None = None
    needed_runs: int | None = None  # the fewest runs with an interval (p90: 36, p99: 368)

    def text(self) -> str:
        """'812.3 ms [790.1, 901.7]' or '812.3 ms (not estimable with 20 runs: ...)'."""
        if self.value is None:
            return "n/a"
        if self.ci95_low is None or self.ci95_high is None:
            return (
                f"{self.value * 1000:.1f} ms (not estimable with {self.n} runs: its 95% interval needs "
                f"{self.needed_runs})"
            )
        return f"{self.value * 1000:.1f} ms [{self.ci95_low * 1000:.1f}, {self.ci95_high * 1000:.1f}]"


@dataclass
class LatencyTails:
    """p90 and p99 of the timed end-to-end times (`latency_tails`)."""

    p90: TailStat = field(default_factory=TailStat)
    p99: TailStat = field(default_factory=TailStat)

    def items(self) -> list[tuple[str, TailStat]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


@dataclass
class PhaseMedians:
    """Medians of the timed runs' phases, in seconds (`latency_phases_median`)."""

    preprocess: float | None = None
    forward: float | None = None
    postprocess: float | None = None


@dataclass
class ImageLatency:
    """One image's runs (`latency_per_image[name]`): its first run (cold start or first warm-up: a new
    input shape builds new kernels), its warm-up runs and the statistics of its timed runs."""

    image_size: list[int] | None = None  # [width, height]
    first_run_s: float | None = None
    first_is_cold_start: bool = False
    warmup_s: list[float] = field(default_factory=list)
    steady: LatencyStats = field(default_factory=LatencyStats)


def per_image_from_json(value: dict) -> dict[str, ImageLatency]:
    """`latency_per_image` read from JSON (an image already a record is kept)."""
    return {name: item if is_record(item) else from_json(ImageLatency, item) for name, item in value.items()}


@dataclass
class GpuSample:
    """What NVML shows of the GPU at one sample (nvml_guard); None where the board does not say."""

    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    throttle_reasons: list[str] | None = None  # the clocks' throttle reasons (THROTTLE_REASONS' names)
    other_pids: list[int] = field(default_factory=list)  # other processes on the GPU


@dataclass
class CpuReading:
    """The CPU time counters at one sample (measure/cpu_share.py; not written), in seconds, summed over
    the CPUs: the machine's from /proc/stat, the tool's own processes' from their /proc/<pid>/stat."""

    wall_s: float  # a monotonic clock
    capacity_s: float  # all CPU time the machine had (every /proc/stat field but guest, which user holds)
    busy_s: float  # capacity less idle and iowait; steal counts as busy (the CPU went to someone else)
    steal_s: float
    own_s: float  # the tool's own processes, all their threads

    def other_share(self, before: CpuReading) -> float | None:
        """What every other process used since `before`, as a share of the machine's CPU time."""
        capacity = self.capacity_s - before.capacity_s
        if capacity <= 0:
            return None
        return max((self.busy_s - before.busy_s) - (self.own_s - before.own_s), 0.0) / capacity

    def own_share(self, before: CpuReading) -> float | None:
        capacity = self.capacity_s - before.capacity_s
        return (self.own_s - before.own_s) / capacity if capacity > 0 else None


@dataclass
class BusyProcess:
    """Another process that used the CPU while a run was flagged busy: its share of the machine's CPU
    time between two readings of every process (read only when the machine looked busy)."""

    pid: int
    command: str
    cpu_share: float


@dataclass
class MachineSample:
    """One sample of the machine-state guard, at a timed run's boundary (not written: a run's RunState
    is made of the samples on its two sides)."""

    load1: float  # the load average
    involuntary_switches: int  # the process's involuntary context switches so far
    cpu_freq_mhz: float | None = None  # mean over the CPUs; None where /sys has no cpufreq
    cpu_throttle_count: int | None = None  # thermal throttle events over the CPUs; None without counters
    gpu: GpuSample = field(default_factory=GpuSample)  # on CUDA with NVML; else all None
    cpu: CpuReading | None = None  # None where /proc/stat cannot be read

    def cpu_throttled_since(self, before: MachineSample) -> bool:
        """The CPUs' thermal throttle count rose since `before`."""
        if self.cpu_throttle_count is None or before.cpu_throttle_count is None:
            return False
        return self.cpu_throttle_count > before.cpu_throttle_count


@dataclass
class GuardStatic:
    """What the machine-state guard reads once: CPU governors, throttle counters, CPUs, NVML."""

    governors: list[str] | None = None  # the CPUs' frequency governors; None where /sys has none
    throttle_counters: bool = False  # /sys has thermal throttle counters
    cpus: int | None = None  # usable CPUs
    nvml: str | None = None  # 'ok', 'unavailable: ...', None on the CPU


@dataclass
class GuardRecord:
    """The guard of one window (`guard`): its static readings, its own cost and its samples."""

    static: GuardStatic = field(default_factory=GuardStatic)
    cost_s: float = 0.0  # seconds spent sampling
    samples: int = 0
    # The CPU time over the whole timed window (first sample to last), seconds summed over the CPUs
    window_s: float | None = optional()  # its wall time
    capacity_cpu_s: float | None = optional()  # what the machine had
    busy_cpu_s: float | None = optional()  # what it used (steal included)
    own_cpu_s: float | None = optional()  # what the tool's own processes used
    own_pids: list[int] | None = optional()  # those processes: the worker, the fork server, the main process
    window_epoch: list[float] | None = optional()  # [first sample, last sample], Unix time (cross-checks)
    busy_limit: float | None = optional()  # a run is flagged busy above this other-process share
    busiest: list[BusyProcess] | None = optional()  # the busiest other processes, when a run was busy
    scans: int | None = optional()  # readings of every process (costly: only when the machine looked busy)

    @property
    def other_cpu_share(self) -> float | None:
        """Every other process's share of the machine's CPU time over the window."""
        if not self.capacity_cpu_s or self.busy_cpu_s is None or self.own_cpu_s is None:
            return None
        return max(self.busy_cpu_s - self.own_cpu_s, 0.0) / self.capacity_cpu_s


@dataclass
class FlagCounts:
    """Timed runs flagged by the guard."""

    throttled: int = 0
    shared: int = 0
    busy: int | None = optional()  # other processes used over the guard's busy_limit of the CPU time (None: a
    # file written before the guard measured it)


@dataclass
class MachineState:
    """The machine state over a model's timed runs (`machine_state`): the guard's static readings,
    ranges [low, high] of the sampled figures, flagged and discarded runs, and warnings."""

    governors: list[str] | None = None
    throttle_counters: bool = False
    cpus: int | None = None
    nvml: str | None = None
    runs_sampled: int = 0
    flagged: FlagCounts = field(default_factory=FlagCounts)
    discarded: int = 0  # timed runs left out by --discard-throttled
    load1: list[float] | None = None  # context only: the load average counts the tool's own threads
    involuntary_switches_per_run: int | None = None  # median over the timed runs
    other_cpu_share: list[float] | None = optional()  # [low, high] over the timed runs' spans
    other_cpu_share_window: float | None = optional()  # over the whole timed window
    own_cpu_share_window: float | None = optional()  # the tool's own processes, the same window
    busy_limit: float | None = optional()
    busiest: list[BusyProcess] | None = optional()  # the busiest other processes when runs were busy
    cpu_freq_mhz: list[float] | None = None
    sm_clock_mhz: list[float] | None = None
    mem_clock_mhz: list[float] | None = None
    temperature_c: list[float] | None = None
    power_w: list[float] | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    other_pids: list[int] = field(default_factory=list)
    guard_cost_s_per_run: float | None = None
    guard_cost_ratio: float | None = None  # the guard's cost per run against the median
    warnings: list[str] = field(default_factory=list)
    clean: bool = True  # no warnings


@dataclass
class PrecisionRecord:
    """--precision's stop (`precision`)."""

    target_pct: float  # the interval's reach asked for, in percent of the median
    reached_pct: float | None  # the reach at the stop (None: no interval)
    stopped_by: str  # a key of stopping_rule.STOPPED_BY: 'precision', 'max-time', 'max-runs'
    runs: int  # timed runs
    seconds: float  # wall time of the timed runs
    max_seconds: float
    max_runs: int
    min_runs: int


@dataclass
class ProcessSummary:
    """One of --processes K workers (`processes[]`): its own medians, load and cold start."""

    process: int  # 1-based
    pid: int | None = None
    status: str | None = None
    median: float | None = None  # end to end, seconds
    ci95_low: float | None = None
    ci95_high: float | None = None
    n: int | None = None
    forward_median: float | None = None
    load_seconds: float | None = None
    cold_start_s: float | None = None
    stopped_by: str | None = None  # 'fixed' without --precision
    reached_pct: float | None = None


@dataclass
class TimedWindow:
    """The timed runs of a --divergence suggestion's fp32 set (not written as such: the suggestion keeps
    their statistics): every run, the guard's record, --precision's stop, the three fields
    measure.timed_runs.time_runs fills, as a ModelResult, a VariantResult and a SweepPoint hold them."""

    runs: list[RunRecord] = field(default_factory=list)
    guard: GuardRecord | None = None
    precision: PrecisionRecord | None = None


@dataclass
class LatencyInterval:
    """How the pooled median's interval was made over --processes (`latency_interval`)."""

    method: str
    why: str
    processes: int


@dataclass
class PrivateMemory:
    """A process's private memory from /proc/<pid>/smaps_rollup, bytes (measure/memory.private_memory)."""

    uss: int  # private clean and dirty pages: what is the process's own
    pss: int | None  # proportional set size
    rss: int  # resident set


@dataclass
class PeakReading:
    """The memory tracker's peak over a window (`memory.peak_during_load`, `memory.at_failure`)."""

    cpu_peak_rss_bytes: int | None = None
    cuda_peak_allocated_bytes: int | None = optional()
    cuda_peak_reserved_bytes: int | None = optional()
    cuda_error: str | None = optional()  # a CUDA error reading it (safe_peak_reading on an error path)
    source: str | None = optional()  # who read it, when not the worker's own tracker (a lost worker)


@dataclass
class MemoryFigures:
    """A model's memory figures, in bytes (`memory`): before and after the load, the peak of the timed
    window (CPU resident set, CUDA allocator), the model's own share of it, after the cleanup."""

    cuda_context_bytes: int | None = optional()  # CUDA: the context itself, apart from the model
    cpu_rss_before_load_bytes: int | None = optional()
    cpu_private_before_load_bytes: int | None = optional()  # USS, where smaps_rollup exists
    cuda_allocated_before_load_bytes: int | None = optional()
    peak_during_load: PeakReading | None = optional()
    cpu_rss_after_load_bytes: int | None = optional()
    cuda_allocated_after_load_bytes: int | None = optional()
    cpu_peak_rss_bytes: int | None = optional()  # the timed window's peaks
    cuda_peak_allocated_bytes: int | None = optional()
    cuda_peak_reserved_bytes: int | None = optional()
    cpu_private_peak_bytes: int | None = optional()  # USS at the window's peak
    peak_bytes: int | None = optional()  # the headline peak, of peak_kind
    peak_kind: str | None = optional()
    rss_over_baseline_bytes: int | None = optional()  # the resident set's growth from before the load
    peak_over_baseline_bytes: int | None = optional()  # the model's own share, of own_share_kind
    own_share_kind: str | None = optional()
    at_failure: PeakReading | None = optional()  # the peak when the model failed
    cleanup_error: str | None = optional()
    cpu_rss_after_cleanup_bytes: int | None = optional()
    cuda_allocated_after_cleanup_bytes: int | None = optional()

    def add_peak(self, peak: PeakReading) -> None:
        """The timed window's peak readings."""
        self.cpu_peak_rss_bytes = peak.cpu_peak_rss_bytes
        if peak.cuda_peak_allocated_bytes is not None:
            self.cuda_peak_allocated_bytes = peak.cuda_peak_allocated_bytes
            self.cuda_peak_reserved_bytes = peak.cuda_peak_reserved_bytes

    def set_private_peak(self, now: PrivateMemory | None) -> None:
        """The private memory (USS) at the window's peak: USS now plus what the resident set has
        given back since its peak (memory freed after a forward returned, activations: private);
        nothing when the private memory could not be read or there is no baseline before the load."""
        if now is not None and now.rss is not None and self.cpu_private_before_load_bytes is not None:
            self.cpu_private_peak_bytes = now.uss + max((self.cpu_peak_rss_bytes or 0) - now.rss, 0)

    def set_headline(self, cuda: bool) -> None:
        """The headline peak (what the OS or the allocator saw) and the model's own share of it: on
        CUDA the allocated growth, on the CPU the growth of the private memory (USS) from before the
        load to the peak; the resident set's growth also counts library pages first touched by this
        worker though the server already holds them (kept as rss_over_baseline)."""
        if cuda:
            self.peak_bytes, self.peak_kind = self.cuda_peak_allocated_bytes, "CUDA peak allocated"
        else:
            self.peak_bytes, self.peak_kind = self.cpu_peak_rss_bytes, "CPU peak resident set (process)"
        self.rss_over_baseline_bytes = (self.cpu_peak_rss_bytes or 0) - (self.cpu_rss_before_load_bytes or 0)
        if cuda:
            self.peak_over_baseline_bytes = (self.peak_bytes or 0) - (self.cuda_allocated_before_load_bytes or 0)
            self.own_share_kind = "CUDA allocated growth"
        elif self.cpu_private_peak_bytes is not None and self.cpu_private_before_load_bytes is not None:
            self.peak_over_baseline_bytes = self.cpu_private_peak_bytes - self.cpu_private_before_load_bytes
            self.own_share_kind = "private memory (USS) growth"
        else:
            self.peak_over_baseline_bytes = self.rss_over_baseline_bytes
            self.own_share_kind = "resident set growth (no /proc/self/smaps_rollup)"
