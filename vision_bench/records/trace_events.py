"""The events of a Chrome trace as torch.profiler exports it (`traceEvents`), read once where the
trace is read: each event a TraceEvent, the few keys the trace's summary uses as attributes. The
trace is the profiler's file, not ours: the events are never written back, so the record is read
with its own function, not the codec."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TraceEvent:
    """One trace event. Times are the trace's: microseconds from the profiler's origin."""

    name: str
    ph: str | None = None  # the event's phase: "X" a complete event (with ts and dur), "M" metadata, ...
    cat: str | None = None  # Kineto's category: cpu_op, user_annotation, kernel, cuda_runtime, ...
    ts: float | None = None  # start, microseconds
    dur: float | None = None  # duration, microseconds
    pid: int | str | None = None  # process (on the device: the device's number)
    tid: int | str | None = None  # thread (on the device: the stream)
    correlation: int | None = None  # args.correlation: ties a kernel or copy to the launch call that queued it
    external_id: int | None = None  # args["External id"]: ties a launch or a kernel to its operator

    @classmethod
    def from_chrome(cls, event: dict) -> TraceEvent:
        """An event of the exported trace's `traceEvents` list."""
        args = event.get("args") or {}
        return cls(
            name=event.get("name", ""),
            ph=event.get("ph"),
            cat=event.get("cat"),
            ts=event.get("ts"),
            dur=event.get("dur"),
            pid=event.get("pid"),
            tid=event.get("tid"),
            correlation=args.get("correlation"),
            external_id=args.get("External id"),
        )

    @property
    def complete(self) -> bool:
        """A complete event ("X") with its start and duration: a range, an operator, a kernel."""
        return self.ph == "X" and self.ts is not None and self.dur is not None

    @property
    def thread(self) -> tuple:
        """(pid, tid): the thread (or the device stream) the event ran on."""
        return (self.pid, self.tid)

    @property
    def start(self) -> float:
        """ts of a complete event (0 where the event has none)."""
        return self.ts or 0.0

    @property
    def length(self) -> float:
        """dur of a complete event (0 where the event has none)."""
        return self.dur or 0.0

    @property
    def end(self) -> float:
        """ts + dur, microseconds."""
        return self.start + self.length


def trace_events(trace: dict) -> list[TraceEvent]:
    """The events of an exported Chrome trace (the parsed JSON object)."""
    return chrome_events(trace["traceEvents"])


def chrome_events(events: list[dict]) -> list[TraceEvent]:
    """Each Chrome trace event (a dict as the trace's JSON holds it) as a TraceEvent."""
    return [TraceEvent.from_chrome(e) for e in events]
