"""The report's Summary: one row a model (sortable on the page), and what its columns mean."""

from __future__ import annotations

from ..common import ms
from ..document.blocks import Block, Cell, Heading, Note, Table
from ..records.measurement import LatencyStats, MemoryFigures
from ..records.model_result import ModelResult

SUMMARY_HEADERS = [
    "model",
    "weights",
    "load s",
    "cold start ms",
    "end-to-end median ms [95% CI]",
    "p90 ms",
    "forward median ms",
    "CoV",
    "FPS",
    "peak memory MB",  # the peak's kind is added in brackets
    "params",
    "GFLOPs",
    "input shape",
    "layers dissected",
    "status",
    "timed runs",
]


def number(value, show=lambda v: f"{v:.2f}") -> Cell:
    """A number cell: shown text and the value the table sorts by."""
    return Cell("n/a", None) if value is None else Cell(show(value), value)


def memory_note(results: list[ModelResult]) -> str:
    """What the peak memory column means, and what a worker held before its model loaded."""
    text = (
        "Peak memory is over the cold start, warm-up and timed runs (the load's own peak is in the JSON). On the "
        "CPU it is the resident set of the whole process, as the OS sees it; in brackets, the model's own share: "
        "the growth of its worker's private memory (USS) from just before the load to the peak. On CUDA: the "
        "allocator's peak, and in brackets its growth from before the load."
    )
    for r in results:
        memory = r.memory or MemoryFigures()
        rss, uss = memory.cpu_rss_before_load_bytes, memory.cpu_private_before_load_bytes
        if r.status != "complete" or rss is None or uss is None:
            continue
        text += (
            f" Before its model loaded, a worker held {rss / 2**20:.0f} MB resident, {uss / 2**20:.0f} MB of "
            "it private: the rest are the libraries the worker server imported (torch, transformers, ultralytics, "
            "OpenCV), shared with it and not the model's."
        )
        break  # the first finished model's figures: every worker starts the same
    return text


def summary_row(r: ModelResult) -> list:
    e2e, mem = r.latency_end_to_end or LatencyStats(), r.memory or MemoryFigures()
    peak = mem.peak_bytes
    return [
        r.model,
        r.weights,
        number(r.load_seconds),
        number(r.cold_start.total_s if r.cold_start else None, ms),
        Cell(f"{ms(e2e.median)} {e2e.interval_text()}", e2e.median) if e2e.median is not None else Cell("n/a"),
        number(e2e.p90, ms),
        number((r.latency_forward or LatencyStats()).median, ms),
        number(e2e.cov, lambda v: f"{v * 100:.1f}%"),
        number(r.fps or None),
        Cell(f"{peak / 1024**2:.0f} (+{(mem.peak_over_baseline_bytes or 0) / 1024**2:.0f})", peak)
        if peak
        else Cell("n/a"),
        number(r.parameters or None, lambda v: f"{v:,}"),
        number(r.gflops),
        "x".join(map(str, r.input_shape or [])) or "n/a",
        number(r.dissection.records if r.dissection else None, str),
        r.status,
        number(e2e.n if r.latency_end_to_end else None, str),
    ]


def summary_blocks(results: list[ModelResult]) -> list[Block]:
    """Every model that started (a failed one with what it measured), sortable on the page."""
    shown = [r for r in results if r.status != "not run"]
    kind = next((r.memory.peak_kind for r in shown if r.memory and r.memory.peak_kind), "peak memory")
    headers = [f"{h} ({kind})" if h == "peak memory MB" else h for h in SUMMARY_HEADERS]
    return [
        Heading(2, "Summary", "summary"),
        Table(headers, [summary_row(r) for r in shown], sortable=True),
        Note(
            "End to end = preprocess + forward + postprocess, what a pipeline pays per image; FPS = 1 / its median; "
            "timed runs only, the 95% interval of the median in brackets. "
            "GFLOPs count 2 per multiply-add (torch.utils.flop_counter) over the network's matmuls and convolutions. "
            + memory_note(results)
        ),
    ]
