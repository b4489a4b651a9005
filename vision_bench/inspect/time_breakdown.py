"""Where the forward time goes: each top-level block and leaf module timed with hooks in one
extra pass, with a host clock on the CPU and CUDA events on a GPU."""

from __future__ import annotations

import contextlib
import time

from ..records.inspection import BlockShare, LeafTime, TimeBreakdownRecord


class HostClock:
    """Host wall clock: on the CPU a module's work is done when its forward returns."""

    def mark(self) -> float:
        return time.perf_counter()

    def finish(self) -> None:
        pass

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1000


class CudaEventClock:
    """CUDA events recorded on the device's stream: a mark queues no synchronisation, so the
    host keeps launching ahead of the GPU and each interval is the GPU's own time between two
    points of the stream. One synchronisation after the pass, then the intervals are read."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device

    def mark(self):
        event = self.torch.cuda.Event(enable_timing=True)
        event.record(self.torch.cuda.current_stream(self.device))
        return event

    def finish(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start, end) -> float:
        return start.elapsed_time(end)


@contextlib.contextmanager
def forward_hooks(hooks):
    """Each (module, pre, post): `pre` as a forward pre-hook and `post` as a forward hook of
    `module` while the block runs; removed on the way out, whatever happens inside."""
    handles = []
    try:
        for module, pre, post in hooks:
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        yield
    finally:
        for h in handles:
            h.remove()


OUTSIDE_BLOCKS = "(outside top-level blocks)"


def block_share_rows(block_ms: dict, forward_ms: float) -> tuple[list[tuple[str, float, float]], float]:
    """Each top-level block's (label, ms, share) of the forward, and the remainder (time between
    blocks); the denominator is the forward or, when the blocks' sum exceeds it (clock noise), that sum."""
    blocks_total = sum(block_ms.values())
    denominator = max(forward_ms, blocks_total) or 1.0
    rows = [(label, ms, ms / denominator) for label, ms in block_ms.items()]
    outside = max(denominator - blocks_total, 0.0)
    rows.append((OUTSIDE_BLOCKS, outside, outside / denominator))
    return rows, denominator


def clock_for(device):
    return CudaEventClock(device) if device.type == "cuda" else HostClock()


class TimeBreakdown:
    """Times each top-level block and each leaf module of one pass with pre/post hooks.

    The hooks only take marks from the clock; intervals are read after the pass (on CUDA,
    after its single synchronisation), so a module called several times adds up its calls."""

    def __init__(self, device, clock=None):
        self.device = device
        self.clock = clock or clock_for(device)
        self.block_ms: dict[str, float] = {}
        self.leaf_ms: dict[str, float] = {}
        self.leaf_calls: dict[str, int] = {}
        self.leaf_types: dict[str, str] = {}
        self._starts: dict[tuple[int, str], list] = {}  # a module can be a block and a leaf
        self._intervals: list[tuple[str, dict, dict | None, object, object]] = []

    def _hooks(self, key: str, totals: dict, counts: dict | None):
        def pre(module, args):
            self._starts.setdefault((id(module), key), []).append(self.clock.mark())

        def post(module, args, output):
            end = self.clock.mark()
            self._intervals.append((key, totals, counts, self._starts[(id(module), key)].pop(), end))

        return pre, post

    def _read_intervals(self) -> None:
        self.clock.finish()
        for key, totals, counts, start, end in self._intervals:
            totals[key] = totals.get(key, 0.0) + self.clock.elapsed_ms(start, end)
            if counts is not None:
                counts[key] = counts.get(key, 0) + 1
        self._intervals.clear()

    def run(self, blocks, leaves, call) -> TimeBreakdownRecord:
        for name, module in leaves:
            self.leaf_types[name] = type(module).__name__
        hooks = [(module, *self._hooks(label, self.block_ms, None)) for label, module in blocks]
        hooks += [(module, *self._hooks(name, self.leaf_ms, self.leaf_calls)) for name, module in leaves]
        with forward_hooks(hooks):
            _, phases = call()
        self._read_intervals()
        forward_ms = phases["forward"] * 1000
        rows, denominator = block_share_rows(self.block_ms, forward_ms)
        top = sorted(self.leaf_ms.items(), key=lambda kv: -kv[1])[:10]
        return TimeBreakdownRecord(
            forward_ms,
            [BlockShare(*row) for row in rows],
            [LeafTime(n, self.leaf_types[n], ms, self.leaf_calls[n], ms / denominator) for n, ms in top],
        )
