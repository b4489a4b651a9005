"""The profiler trace (--trace): one more warm pass of a model's pipeline under torch.profiler, with
a range around each pipeline phase and around every call of the top-level blocks and leaf modules
(named by the module paths the layer explorer shows), written as a gzipped Chrome trace; and its
summary, read back from the trace's own events: the top operators by self time, each block's share
of the forward (set beside the hook-based time breakdown) and, on CUDA, how long the device sat idle."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from ..common import format_bytes, leaf_modules
from ..records.inspection import (
    DeviceIdle,
    OperatorTime,
    PhaseRange,
    TimeBreakdownRecord,
    TraceBlockShare,
    TraceSummary,
)
from ..records.measurement import PHASES  # the range names, as in the latency tables
from ..records.trace_events import TraceEvent, trace_events
from .time_breakdown import block_share_rows, forward_hooks

TOP_OPERATORS = 10
LAUNCH_BOUND_IDLE_SHARE = 0.5  # the device idle for more than this share of the forward: launch-bound
GPU_ACTIVITY = ("kernel", "gpu_memcpy", "gpu_memset")  # Kineto's categories of work on the device
LAUNCH_CATEGORIES = ("cuda_runtime", "cuda_driver")  # host calls that queue it (cudaLaunchKernel, ...)
TRACE_OPEN_HINT = (
    'Open it in Perfetto (https://ui.perfetto.dev, "Open trace file": the trace is read in the '
    'browser, nothing is uploaded) or in Chrome at chrome://tracing ("Load"); both take the .gz '
    "file as it is, offline."
)


def file_size(num_bytes: int) -> str:
    """A trace's size: kilobytes below a megabyte (a small model's trace is a few KB)."""
    return f"{num_bytes / 1024:.0f} KB" if num_bytes < 1024**2 else format_bytes(num_bytes)


def profiler_activities(device) -> list:
    """CPU activities always; CUDA activities (kernels, copies, their launches) on a CUDA device."""
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def left_out(stacks: bool) -> list[str]:
    """What the trace does not hold, in the words the report uses."""
    return ([] if stacks else ["Python call stacks (--trace-stacks adds them)"]) + [
        "memory allocation events",
        "FLOP estimates (the FLOPs pass counts them)",
        "every run but this one: one pipeline call on the first image",
    ]


def range_names(network, blocks) -> tuple[list[tuple[str, object]], list[str], dict[str, str]]:
    """The modules to range and their range names: every leaf (named as leaf_modules and the
    dissection name it) and every top-level block, one range a call; a module that is both gets one.
    Returns ([(name, module)], the leaf names, {block label: range name})."""
    paths = {id(m): name or type(network).__name__ for name, m in network.named_modules()}
    leaves = leaf_modules(network)
    modules = {id(m): (name, m) for name, m in leaves}
    block_paths = {}
    for label, module in blocks:
        name = paths.get(id(module), label)
        modules.setdefault(id(module), (name, module))
        block_paths[label] = name
    return list(modules.values()), [name for name, _ in leaves], block_paths


class ModuleRanges:
    """A profiler range pushed in a module's forward pre-hook and popped in its forward hook.
    Calls nest, so one stack serves every module; a failing pass leaves ranges open, close_all ends them."""

    def __init__(self):
        self.open: list = []

    def hooks(self, name: str):
        from torch.profiler import record_function

        def pre(module, args):
            span = record_function(name)
            span.__enter__()
            self.open.append(span)

        def post(module, args, output):
            self.open.pop().__exit__(None, None, None)

        return pre, post

    def close_all(self) -> None:
        while self.open:
            self.open.pop().__exit__(None, None, None)


@contextlib.contextmanager
def phase_ranges(phase_methods: dict):
    """Each phase's method ({phase: (object, name)}) wrapped in a range of the phase's name for the
    duration of the block, through an attribute of the object (the class is left alone)."""
    from torch.profiler import record_function

    def in_range(phase, method):
        def ranged(*args, **kwargs):
            with record_function(phase):
                return method(*args, **kwargs)

        return ranged

    saved = []
    try:
        for phase, (owner, attr) in phase_methods.items():
            saved.append((owner, attr, vars(owner).get(attr)))
            setattr(owner, attr, in_range(phase, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, own in reversed(saved):
            if own is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, own)


def record_trace(device, network, blocks, phase_methods: dict, call, path: Path, stacks: bool = False) -> TraceSummary:
    """`call()` (one pipeline call) under torch.profiler with operator shapes (and Python stacks with
    `stacks`), ranges on the phases and on the modules; the Chrome trace gzipped to `path`. Returns
    the summary of its events, with the pass's wall time and the file's size."""
    from torch.profiler import profile

    if device.type != "cuda":  # else Kineto logs "ERROR: gpuGetDeviceCount failed" on a machine without a GPU
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # Kineto: ERROR is 4, USDT 5
    modules, leaf_names, block_paths = range_names(network, blocks)
    ranges = ModuleRanges()
    hooks = [(module, *ranges.hooks(name)) for name, module in modules]
    with profile(activities=profiler_activities(device), record_shapes=True, with_stack=stacks) as prof:
        try:
            with forward_hooks(hooks), phase_ranges(phase_methods):
                start = time.perf_counter()
                call()
                wall = time.perf_counter() - start
        finally:
            ranges.close_all()
    start = time.perf_counter()
    events = write_trace(prof, Path(path))
    summary = summarize_trace(events, leaf_names, block_paths, cuda=device.type == "cuda")
    summary.pass_wall_s = wall
    summary.bytes = Path(path).stat().st_size
    summary.write_seconds = time.perf_counter() - start
    summary.activities = ["CPU"] + (["CUDA"] if device.type == "cuda" else [])
    summary.shapes, summary.stacks, summary.left_out = True, stacks, left_out(stacks)
    return summary


def write_trace(prof, path: Path) -> list[TraceEvent]:
    """The profile as a gzipped Chrome trace at `path` (written whole, then renamed); returns its events."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".trace_") as folder:
        raw = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(raw))
        data = raw.read_bytes()
    events = trace_events(json.loads(data))
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with gzip.open(partial, "wb", compresslevel=6) as out:
        out.write(data)
    os.replace(partial, path)
    return events


# -- the summary, from the events alone (so a recorded or synthetic event list tests it) -------------
def self_times(ops: list[TraceEvent]) -> list[tuple[TraceEvent, float]]:
    """Each operator event with its self time: its duration less that of the operators directly
    inside it on the same thread (Chrome trace events nest by time)."""
    out = []
    by_thread = defaultdict(list)
    for e in ops:
        by_thread[e.thread].append(e)
    for thread in by_thread.values():
        thread.sort(key=lambda e: (e.start, -e.length))
        stack: list[list] = []  # [end, event, time of its direct children]
        for e in thread:
            while stack and e.start >= stack[-1][0]:
                _, done, inner = stack.pop()
                out.append((done, max(done.length - inner, 0.0)))
            if stack:
                stack[-1][2] += e.length
            stack.append([e.end, e, 0.0])
        out += [(done, max(done.length - inner, 0.0)) for _, done, inner in stack]
    return out


def top_by_time(items: list[tuple[str, float]], unit_total: float | None = None) -> list[OperatorTime]:
    """(name, microseconds) pairs summed by name: the TOP_OPERATORS largest, with calls and share."""
    totals: defaultdict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    for name, us in items:
        totals[name] += us
        calls[name] += 1
    whole = unit_total if unit_total is not None else sum(totals.values())
    return [
        OperatorTime(name, calls[name], us / 1000, us / whole if whole else None)
        for name, us in sorted(totals.items(), key=lambda kv: -kv[1])[:TOP_OPERATORS]
    ]


def busy_time(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of intervals within [lo, hi]."""
    busy, reach = 0.0, lo
    for start, end in sorted(intervals):
        start, end = max(start, reach), min(end, hi)
        if end > start:
            busy += end - start
            reach = end
    return busy


class DeviceWork:
    """The device's work in a trace, and which host range queued it: a kernel (or copy) carries the
    correlation id of the launch call on the host thread that queued it."""

    def __init__(self, complete: list[TraceEvent]):
        self.work = [e for e in complete if e.cat in GPU_ACTIVITY]
        self.by_correlation: defaultdict[int | None, list[TraceEvent]] = defaultdict(list)
        for e in self.work:
            if e.correlation is not None:
                self.by_correlation[e.correlation].append(e)
        self.launches = defaultdict(list)
        for e in complete:
            if e.cat in LAUNCH_CATEGORIES and e.correlation is not None:
                self.launches[e.thread].append(e)

    def queued_in(self, host_range: TraceEvent) -> list[TraceEvent]:
        lo, hi = host_range.start, host_range.end
        return [
            k
            for launch in self.launches[host_range.thread]
            if lo <= launch.start <= hi
            for k in self.by_correlation[launch.correlation]
        ]

    @staticmethod
    def span_us(work: list[TraceEvent]) -> float:
        """From the first one's start to the last one's end: what CUDA events around the range measure."""
        return max(k.end for k in work) - min(k.start for k in work) if work else 0.0

    def idle(self, forward: TraceEvent) -> DeviceIdle:
        """The device's idle share of the forward: from the forward's start on the host to the end of
        its last kernel, the time no kernel or copy ran."""
        mine = self.queued_in(forward)
        lo = forward.start
        hi = max([forward.end] + [k.end for k in mine])
        busy = busy_time([(k.start, k.end) for k in self.work], lo, hi)
        window = hi - lo
        idle_share = 1 - busy / window if window > 0 else None
        return DeviceIdle(
            window_ms=window / 1000,
            busy_ms=busy / 1000,
            idle_share=idle_share,
            kernels=sum(1 for k in mine if k.cat == "kernel"),
            launch_bound=idle_share is not None and idle_share > LAUNCH_BOUND_IDLE_SHARE,
        )

    def top_operators(self, ops: list[TraceEvent]) -> list[OperatorTime]:
        """Device time by the operator that launched it (its External id), a kernel's own name when
        no operator is known."""
        by_id: dict[int | None, str] = {e.external_id: e.name for e in ops if e.external_id is not None}
        return top_by_time([(by_id.get(k.external_id, k.name), k.length) for k in self.work])


def range_ms(ranges: list[TraceEvent], name: str) -> float:
    """The host time of the ranges named `name`, all their calls added up, in milliseconds."""
    return sum(e.length for e in ranges if e.name == name) / 1000


def summarize_trace(
    events: list[TraceEvent], leaf_names: list[str], block_paths: dict[str, str], cuda: bool
) -> TraceSummary:
    """What the report shows of a trace: its counts, the phase and module ranges, the top operators
    by self time, each top-level block's share of the forward (host time on the CPU; on CUDA the
    device's span of the kernels each block queued) and, on CUDA, the device's idle share."""
    complete = [e for e in events if e.complete]
    ranges = [e for e in complete if e.cat == "user_annotation"]
    counts = Counter(e.name for e in ranges)
    leaves = set(leaf_names)
    ops = [e for e in complete if e.cat == "cpu_op"]
    cpu_self = self_times(ops)
    summary = TraceSummary(
        events=len(events),
        leaf_ranges=sum(counts[n] for n in leaves),
        module_ranges=sum(counts[n] for n in leaves | set(block_paths.values())),
        phases={p: PhaseRange(counts[p], range_ms(ranges, p)) for p in PHASES},
        top_cpu_operators=top_by_time([(e.name, us) for e, us in cpu_self]),
    )
    forward = next((e for e in ranges if e.name == "forward"), None)
    ran = {label: name for label, name in block_paths.items() if counts[name]}  # as the hooks' breakdown lists them
    if cuda:
        device = DeviceWork(complete)
        summary.top_cuda_operators = device.top_operators(ops)
        block_ms = {
            label: sum(device.span_us(device.queued_in(e)) for e in ranges if e.name == name) / 1000
            for label, name in ran.items()
        }
        forward_ms = device.span_us(device.queued_in(forward)) / 1000 if forward else 0.0
        summary.cuda = device.idle(forward) if forward else None
    else:
        block_ms = {label: range_ms(ranges, name) for label, name in ran.items()}
        forward_ms = forward.length / 1000 if forward else 0.0
    summary.forward_ms = forward_ms
    summary.block_clock = "device (kernel spans)" if cuda else "host"
    rows, _ = block_share_rows(block_ms, forward_ms)
    summary.blocks = [TraceBlockShare(*row) for row in rows]
    return summary


def beside_breakdown(trace: TraceSummary, breakdown: TimeBreakdownRecord | None) -> None:
    """Each block row of the trace gets the hook-based breakdown's share of the same block, and the
    trace gets the largest difference in percentage points."""
    hooks = {row.block: row for row in (breakdown.blocks if breakdown else [])}
    differences = []
    for row in trace.blocks:
        other = hooks.get(row.block)
        if other:
            row.hook_ms, row.hook_share = other.ms, other.share
            row.difference_pp = (row.share - other.share) * 100
            differences.append(abs(row.difference_pp))
    trace.max_difference_pp = max(differences) if differences else None
