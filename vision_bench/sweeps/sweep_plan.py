"""How cost grows (--batch-sizes, --input-sizes): parsing the sweep, the order of its points (the
values asked for, ascending, then a bisection to one step at the out-of-memory edge), telling an
out-of-memory error from other failures, and the analysis of the measured points: the memory
model (a + b x batch, a + b x pixels), the predicted largest batch against the measured edge, and
the knee (the smallest batch reaching 95% of the best throughput).

The measuring of a point (warm-up and timed runs, memory, FLOPs) is sweep_pass's;
everything here reads and grows the sweep's record (records/sweep.py) and nothing else, so a sweep cut
short by its worker's death goes on in a fresh worker from its next point.
"""

from __future__ import annotations

import math
import re

from ..common import UsageError
from ..records import SweepPointStatus
from ..records.measurement import LatencyStats
from ..records.sweep import (
    BATCH,
    INPUT_SIZE,
    BatchAnalysis,
    BatchEdge,
    BestBatch,
    Edge,
    InputSizeAnalysis,
    Knee,
    LineFit,
    MemoryLimit,
    SweepPlan,
    SweepPoint,
    SweepRecord,
    Throughput,
)

DIMENSIONS = (INPUT_SIZE, BATCH)  # the order a sweep runs in: the out-of-memory-prone batches last
AUTO_MAX = {BATCH: 1024, INPUT_SIZE: 4096}
KNEE_SHARE = 0.95  # the knee: the smallest batch reaching this share of the best throughput
OOM_PATTERNS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
    "std::bad_alloc",
    "memory limit",
)


def parse_sizes(text: str | None, option: str) -> list[int] | str | None:
    """'1,2,4,8' -> [1, 2, 4, 8] (ascending, each once); 'auto' -> 'auto'; None -> None."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"{option}: expected whole numbers separated by commas, or auto; got {text!r}") from None
    if not values or values[0] < 1:
        raise UsageError(f"{option}: expected whole numbers of 1 or more, or auto; got {text!r}")
    return values


UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30}


def parse_memory(text: str) -> int:
    """'4GB', '3.5G', '512MB', '1073741824' -> bytes (binary units: 1 GB = 2**30 bytes)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    unit = match and match[2].lower().replace("ib", "b")
    if not match or unit not in UNITS or float(match[1]) <= 0:
        raise UsageError(f"--memory-limit: expected a size such as 4GB, 512MB or a number of bytes; got {text!r}")
    return int(float(match[1]) * UNITS[unit])


# oneDNN's error when it cannot get the memory for a convolution's primitive: under --memory-limit,
# seen at yolo11n-detect's batch 10 between a batch that ran and one the CPU allocator refused
LIMITED_OOM_PATTERNS = ("could not create a primitive",)


def is_out_of_memory(exc: BaseException, limited: bool = False) -> bool:
    """A CUDA or CPU allocation failure (torch.OutOfMemoryError, MemoryError, the CPU allocator's
    "can't allocate memory" under --memory-limit), as opposed to any other failure of a point.
    `limited`: a memory limit is set, so oneDNN failing to create a primitive is one too."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    patterns = OOM_PATTERNS + (LIMITED_OOM_PATTERNS if limited else ())
    return isinstance(exc, RuntimeError) and any(p in text for p in patterns)


def new_sweep(cls, settings, limit: MemoryLimit | None) -> SweepRecord:
    """The sweep record of a model: what was asked (settings.RunSettings), what the model cannot do,
    its points so far."""
    plan = SweepPlan(batch=settings.batch_sizes, input_size=settings.input_sizes)
    unsupported = {d: cls.SWEEP_UNSUPPORTED[d] for d in DIMENSIONS if plan.of(d) and d in cls.SWEEP_UNSUPPORTED}
    return SweepRecord(
        plan=plan,
        budget_s=settings.sweep_budget,
        nominal_size=cls.INPUT_SIZE,
        size_step=cls.SIZE_STEP,
        unsupported=unsupported,
        limit=limit,
    )


def edge_of(points: list[SweepPoint]) -> tuple[int | None, int | None]:
    """(largest value that ran, smallest value that ran out of memory) of one dimension's points;
    the largest good value is the one below the first failing one."""
    oom = [p.value for p in points if p.status == SweepPointStatus.OOM]
    first_oom = min(oom) if oom else None
    good = [p.value for p in points if p.ok and (first_oom is None or p.value < first_oom)]
    return (max(good) if good else None), first_oom


def auto_values(sweep: SweepRecord, dimension: str) -> list[int]:
    """auto: doubling from batch 1, or from half the nominal input size, up to AUTO_MAX."""
    if dimension == BATCH:
        start = 1
    else:
        step = sweep.step(dimension)
        start = max(step, round((sweep.nominal_size or 640) / 2 / step) * step)
    values = []
    while start <= AUTO_MAX[dimension]:
        values.append(start)
        start *= 2
    return values


def planned_values(sweep: SweepRecord, dimension: str) -> list[int]:
    plan = sweep.plan.of(dimension)
    return auto_values(sweep, dimension) if isinstance(plan, str) else list(plan or [])  # str: "auto"


def next_point(sweep: SweepRecord, elapsed: float) -> tuple[str, int, bool] | None:
    """The next (dimension, value, is_bisection) to measure, or None when the sweep is done. Per
    dimension: the planned values in ascending order until one runs out of memory; then a bisection
    between the last value that ran and the first that did not, down to one step (one image for a
    batch, the model's SIZE_STEP for an input size); the values beyond the edge are skipped."""
    if sweep.budget_s is not None and elapsed >= sweep.budget_s:
        sweep.budget_reached = True
        return None
    for dimension in DIMENSIONS:
        if not sweep.swept(dimension):
            continue
        points = sweep.points_of(dimension)
        done = {p.value for p in points}
        good, first_oom = edge_of(points)
        if first_oom is None:
            remaining = [v for v in planned_values(sweep, dimension) if v not in done]
            if remaining:
                return dimension, remaining[0], False
            continue
        step = sweep.step(dimension)
        low = good if good is not None else (0 if dimension == BATCH else None)
        if low is None or first_oom - low <= step:
            continue
        middle = low + max((first_oom - low) // (2 * step), 1) * step
        if middle not in done:
            return dimension, middle, True
    return None


def finish_sweep(sweep: SweepRecord) -> None:
    """Mark the planned values that did not run (beyond the edge, or the budget ran out) and add the
    analysis of each dimension."""
    for dimension in DIMENSIONS:
        if not sweep.swept(dimension) or sweep.plan.of(dimension) == "auto":
            continue
        points = sweep.points_of(dimension)
        _, first_oom = edge_of(points)
        for value in planned_values(sweep, dimension):
            if value not in {p.value for p in points}:
                beyond = first_oom is not None and value > first_oom
                point = point_record(dimension, value, False)
                point.status = SweepPointStatus.SKIPPED
                point.reason = "beyond the out-of-memory edge" if beyond else "sweep budget reached"
                sweep.points.append(point)
    sweep.points.sort(key=lambda p: (DIMENSIONS.index(p.dimension), p.value))
    sweep.batch_analysis = batch_analysis(sweep)
    sweep.input_size_analysis = input_size_analysis(sweep)


def point_record(dimension: str, value: int, bisect: bool) -> SweepPoint:
    return SweepPoint(
        dimension=dimension,
        value=value,
        batch=value if dimension == BATCH else 1,
        input_size=value if dimension == INPUT_SIZE else None,
        bisect=bisect,
        status=SweepPointStatus.RUNNING,
    )


def fit_line(xs: list[float], ys: list[float]) -> LineFit | None:
    """Least squares y = a + b x; None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    return LineFit(a=a, b=b, points=n, max_residual=max(abs(y - a - b * x) for x, y in zip(xs, ys)))


def batch_analysis(sweep: SweepRecord) -> BatchAnalysis | None:
    """Best throughput and its batch, the knee, the edge, the memory fit and its predicted largest batch."""
    points = sweep.ok_points(BATCH)
    if not points:
        return None

    def ips(p: SweepPoint) -> float:
        return p.throughput.median if p.throughput and p.throughput.median is not None else 0.0

    best = max(points, key=ips)
    knee_point = next(p for p in points if ips(p) >= KNEE_SHARE * ips(best))
    knee = Knee(batch=knee_point.value, throughput=ips(knee_point), share_of_best=KNEE_SHARE)
    if points[0].value == 1:
        knee.speedup_over_batch_1 = ips(knee_point) / ips(points[0])
    good, first_oom = edge_of(sweep.points_of(BATCH))
    one_step = first_oom is not None and good is not None and first_oom - good == 1
    fit = fit_line([p.value for p in points], [p.peak_bytes or 0 for p in points])
    out = BatchAnalysis(
        best=BestBatch(batch=best.value, throughput=ips(best)),
        knee=knee,
        edge=BatchEdge(last_good=good, first_oom=first_oom, one_step=one_step),
        memory_fit=fit,
    )
    limit = sweep.limit_bytes
    if fit and fit.b > 0 and limit:
        predicted = math.floor((limit - fit.a) / fit.b)
        out.predicted_max_batch = predicted
        if good is not None and first_oom is not None:
            out.prediction_minus_edge = predicted - good
            out.prediction_within_one_step = abs(predicted - good) <= 1
    return out


def input_size_analysis(sweep: SweepRecord) -> InputSizeAnalysis | None:
    """Memory, latency and FLOPs per image against the pixels the network received."""
    points = [p for p in sweep.ok_points(INPUT_SIZE) if p.pixels]
    if not points:
        return None
    good, first_oom = edge_of(sweep.points_of(INPUT_SIZE))
    pixels: list[float] = [p.pixels or 0 for p in points]
    return InputSizeAnalysis(
        edge=Edge(last_good=good, first_oom=first_oom),
        memory_fit=fit_line(pixels, [p.peak_bytes or 0 for p in points]),
        latency_fit=fit_line(pixels, [p.median_s or 0.0 for p in points]),
    )


def throughput(latency: LatencyStats, batch: int) -> Throughput:
    """Images per second from a batch's latency statistics: the median's and the interval's bounds
    (a decreasing function of the latency, so the interval's ends swap)."""

    def per_second(seconds):
        return batch / seconds if seconds else None

    return Throughput(
        median=per_second(latency.median),
        ci95_low=per_second(latency.ci95_high),
        ci95_high=per_second(latency.ci95_low),
    )


class BatchCall:
    """A model seen through time_runs' eyes at one sweep point: each 'run' is one pipeline
    call over the whole batch at the point's input size. `quiet`: no progress thread (under
    --memory-limit a thread's start can fail inside it, and Thread.start() then waits forever:
    seen at yolo11n-detect's batch 10)."""

    def __init__(self, bench, images: list, size: int | None, quiet: bool = False):
        self.bench, self.images, self.size, self.quiet = bench, images, size, quiet

    def timed_run(self, image):
        return self.bench.timed_call(lambda: self.bench.run_batch(self.images, self.size))

    def progress(self, *args, **kwargs):
        import contextlib

        return contextlib.nullcontext() if self.quiet else self.bench.progress(*args, **kwargs)
