"""A model's batch and input-size sweep (--batch-sizes, --input-sizes): the results file's `sweep`.

`SweepRecord` holds what was asked (the plan, the budget), what the model is (its nominal input size,
its size step, the dimensions it cannot sweep), what its peak memory is compared with (the limit),
every point measured or skipped (`SweepPoint`, with its runs, latency, throughput, memory and FLOPs),
and, once the sweep is finished, the analysis of each dimension: the memory model (a + b x batch,
a + b x pixels), the predicted largest batch against the measured out-of-memory edge, the knee.

The record is built and grown by sweeps/ (sweep_plan.new_sweep, sweep_pass.measure_point), pickled to
the parent at every point, and handed back to a fresh worker that goes on from the next point after
one its previous worker died at (sweeps/sweep_pass.resume_sweep). Times in seconds, memory in bytes.

A point's runs, latency statistics, machine state and guard are the timed runs' records
(records/measurement.py), as a model's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .codec import optional
from .measurement import GuardRecord, LatencyStats, LatencyTails, MachineState, PeakReading, PhaseMedians, RunRecord
from .statuses import SweepPointStatus

BATCH, INPUT_SIZE = "batch", "input_size"  # the two dimensions (a point's `dimension`)


@dataclass
class SweepPlan:
    """The values asked for per dimension: ascending whole numbers, "auto", or None (not swept)."""

    batch: list[int] | str | None = None
    input_size: list[int] | str | None = None

    def of(self, dimension: str) -> list[int] | str | None:
        return self.batch if dimension == BATCH else self.input_size


@dataclass
class MemoryLimit:
    """What the memory model's prediction is compared with."""

    bytes: int  # --memory-limit, else the CUDA device's or the machine's memory
    kind: str  # "--memory-limit", "CUDA device memory", "machine RAM (no --memory-limit)"


@dataclass
class Throughput:
    """Images per second of a batch: batch / the latency's median, and the interval's bounds (from the
    latency's interval: its slow end is the low end here). None where the latency has none."""

    median: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None


@dataclass
class PointMemory:
    """A point's memory, bytes."""

    cpu_rss_start_bytes: int  # the worker's resident set before the point
    cpu_peak_rss_bytes: int  # the worker's resident peak over the point
    cuda_peak_allocated_bytes: int | None = optional()  # on CUDA: the allocator's peak over the point
    cuda_peak_reserved_bytes: int | None = optional()
    cuda_error: str | None = optional()  # on CUDA, when the device could not be asked any more
    peak_bytes: int | None = None  # what the sweep compares: the CUDA allocator's peak, else the resident one
    cpu_peak_growth_bytes: int | None = None  # the resident peak over the start: the point's own growth

    @classmethod
    def measured(cls, start: int, peak: PeakReading) -> PointMemory:
        """From the resident set at the start and the tracker's peak (MemoryTracker.safe_peak_reading)."""
        memory = cls(
            cpu_rss_start_bytes=start,
            cpu_peak_rss_bytes=peak.cpu_peak_rss_bytes or 0,
            cuda_peak_allocated_bytes=peak.cuda_peak_allocated_bytes,
            cuda_peak_reserved_bytes=peak.cuda_peak_reserved_bytes,
            cuda_error=peak.cuda_error,
        )
        cuda = memory.cuda_peak_allocated_bytes
        memory.peak_bytes = cuda if cuda is not None else memory.cpu_peak_rss_bytes
        memory.cpu_peak_growth_bytes = memory.cpu_peak_rss_bytes - start
        return memory


@dataclass
class SweepPoint:
    """One point: a batch (the first image repeated) at the nominal input size, or batch 1 at an input
    size. The measured figures are there when `status` is ok; `reason` says why it is not."""

    dimension: str  # BATCH or INPUT_SIZE
    value: int  # the batch or the input size
    batch: int  # images in a call: `value` for a batch point, 1 for an input-size point
    input_size: int | None  # `value` for an input-size point; None (the model's nominal size) for a batch
    bisect: bool  # a value of the bisection towards the out-of-memory edge, not one asked for
    status: SweepPointStatus
    runs: list[RunRecord] = field(default_factory=list)  # every run: cold start, warm-up, timed (seconds a batch)
    memory: PointMemory | None = optional()
    guard: GuardRecord | None = optional()  # the machine-state guard of the timed runs
    latency_end_to_end: LatencyStats | None = optional()  # statistics of the timed runs, seconds a batch
    latency_forward: LatencyStats | None = optional()
    latency_tails: LatencyTails | None = optional()
    latency_phases_median: PhaseMedians | None = optional()  # median seconds a batch of each phase
    machine_state: MachineState | None = optional()
    throughput: Throughput | None = optional()
    flops_per_image: float | None = optional()  # counted at batch 1 of the point's size
    input_shape: list[int] | None = optional()  # the batch's input tensor, e.g. [4, 3, 640, 480]
    pixels: int | None = optional()  # height x width the network received
    reason: str | None = optional()  # not ok: the error line, or why it was skipped
    killed: bool | None = optional()  # its worker died at it (the parent marked it oom)

    @property
    def name(self) -> str:
        """'batch 8', 'input size 640 (bisect)': the point as the reports name it."""
        return f"{'batch' if self.dimension == BATCH else 'input size'} {self.value}" + (
            " (bisect)" if self.bisect else ""
        )

    @property
    def ok(self) -> bool:
        return self.status == SweepPointStatus.OK

    @property
    def median_s(self) -> float | None:
        """The median seconds of a batch, end to end."""
        return self.latency_end_to_end.median if self.latency_end_to_end else None

    @property
    def forward_median_s(self) -> float | None:
        """The median seconds of a batch in the network's forward."""
        return self.latency_forward.median if self.latency_forward else None

    @property
    def peak_bytes(self) -> int | None:
        return self.memory.peak_bytes if self.memory else None


@dataclass
class LineFit:
    """Least squares y = a + b x over the ok points."""

    a: float
    b: float
    points: int
    max_residual: float  # the largest |y - a - b x|, in y's unit


@dataclass
class BestBatch:
    batch: int
    throughput: float  # images per second, median


@dataclass
class Knee:
    """The smallest batch reaching `share_of_best` of the best throughput."""

    batch: int
    throughput: float  # images per second, median
    share_of_best: float
    speedup_over_batch_1: float | None = optional()  # when batch 1 ran


@dataclass
class Edge:
    """The out-of-memory edge of a dimension."""

    last_good: int | None  # the largest value that ran below the first that did not
    first_oom: int | None  # the smallest value that ran out of memory


@dataclass
class BatchEdge(Edge):
    one_step: bool = False  # bisected down to one image


@dataclass
class BatchAnalysis:
    best: BestBatch
    knee: Knee
    edge: BatchEdge
    memory_fit: LineFit | None  # peak bytes against batch
    predicted_max_batch: int | None = optional()  # from the fit and the limit, when the fit grows
    prediction_minus_edge: int | None = optional()  # when the edge was measured
    prediction_within_one_step: bool | None = optional()


@dataclass
class InputSizeAnalysis:
    edge: Edge
    memory_fit: LineFit | None  # peak bytes against pixels
    latency_fit: LineFit | None  # median seconds against pixels


@dataclass
class WorkerDeath:
    """A worker killed at a point (the OOM killer, a signal): that point is the edge."""

    dimension: str
    value: int
    message: str


@dataclass
class SweepRecord:
    """A model's sweep: the plan, the points so far and, once finished, the analyses. The analyses are
    written as null until then (and when a dimension has no ok point)."""

    plan: SweepPlan
    budget_s: float | None  # --sweep-budget: no new point after this long
    nominal_size: int | None  # the model's INPUT_SIZE
    size_step: int | None  # input sizes come in multiples of this (the model's SIZE_STEP)
    unsupported: dict[str, str]  # dimension -> why the model cannot sweep it
    limit: MemoryLimit | None
    seconds: float = 0.0  # spent on the sweep so far, over its workers
    points: list[SweepPoint] = field(default_factory=list)
    budget_reached: bool = False
    batch_analysis: BatchAnalysis | None = None
    input_size_analysis: InputSizeAnalysis | None = None
    fresh_worker_next: bool | None = optional()  # under --memory-limit: the next point in a fresh worker
    worker_deaths: list[WorkerDeath] | None = optional()
    error: str | None = optional()  # why the sweep could not go on in a fresh worker

    def step(self, dimension: str) -> int:
        """The bisection's smallest step: one image, or the model's SIZE_STEP."""
        return 1 if dimension == BATCH else max(int(self.size_step or 1), 1)

    def swept(self, dimension: str) -> bool:
        """Asked for and supported."""
        return bool(self.plan.of(dimension)) and dimension not in self.unsupported

    def points_of(self, dimension: str) -> list[SweepPoint]:
        return [p for p in self.points if p.dimension == dimension]

    def ok_points(self, dimension: str) -> list[SweepPoint]:
        """The dimension's ok points by value."""
        return sorted((p for p in self.points_of(dimension) if p.ok), key=lambda p: p.value)

    def oom_points(self, dimension: str) -> list[SweepPoint]:
        return [p for p in self.points_of(dimension) if p.status == SweepPointStatus.OOM]

    @property
    def limit_bytes(self) -> int | None:
        return self.limit.bytes if self.limit else None
