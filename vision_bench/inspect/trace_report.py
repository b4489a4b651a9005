"""What the reports show of a model's profiler trace (--trace): the link and how to open it, what it
holds and leaves out, the profiled pass's overhead, each block's share of the forward from the trace
beside the hook-based breakdown's, the top operators and, on CUDA, the device's idle share: report
blocks, written out the same in Markdown and HTML."""

from __future__ import annotations

from ..document.blocks import Block, BulletList, Columns, Heading, Paragraph, Table
from ..records.inspection import DissectionSummary, TraceSummary
from ..records.model_result import ModelResult
from .trace import PHASES, TRACE_OPEN_HINT, file_size

BLOCK_HEADERS = ["block", "trace ms", "trace share", "hooks share", "difference (pp)"]
OPERATOR_HEADERS = ["operator", "calls", "self ms", "share"]


def percent(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def signed_pp(value) -> str:
    """A difference in percentage points with its sign; 0.0 when it rounds to zero."""
    if value is None:
        return "n/a"
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def trace_link(trace: TraceSummary | None) -> tuple[str, str] | None:
    """(file name, path relative to results/) of the model's trace, None without one."""
    if trace is None or not trace.file:
        return None
    path = trace.file.replace("\\", "/")
    return path.rsplit("/", 1)[-1], path


def trace_sentences(t: TraceSummary, dissection: DissectionSummary | None) -> list[str]:
    """The plain-text lines under the link: the pass, the counts, what was recorded and left out."""
    records = dissection.records if dissection else None
    overhead = (
        f" against the timed end-to-end median {(t.timed_median_s or 0) * 1000:.1f} ms "
        f"({t.overhead_ratio:.2f}x: the profiler's own overhead, and the noise between runs)"
        if t.overhead_ratio
        else ""
    )
    lines = [
        (
            f"One more warm pass (not a timed run) under torch.profiler with {' and '.join(t.activities)} "
            f"activities: {t.pass_wall_s * 1000:.1f} ms wall{overhead}."
        ),
        f"{file_size(t.bytes)} compressed, {t.events:,} events; {t.module_ranges:,} module ranges, "
        f"{t.leaf_ranges:,} of them leaf-module calls"
        + (f" (the dissection recorded {records:,} calls)" if records is not None else "")
        + ", named like the layer explorer's records; and the ranges "
        + ", ".join(PHASES)
        + ".",
        "Recorded: operator input shapes"
        + (", Python call stacks" if t.stacks else "")
        + ". Left out: "
        + "; ".join(t.left_out)
        + ".",
    ]
    cuda = t.cuda
    if cuda:
        lines.append(
            f"Device idle during the forward: {percent(cuda.idle_share)} of {cuda.window_ms:.1f} ms "
            f"({cuda.kernels} kernels, busy {cuda.busy_ms:.1f} ms): "
            + (
                "launch-bound. The GPU waits for the host to queue work more than it computes; fewer, larger "
                "kernels (larger batches, torch.compile, CUDA graphs) would help more than faster ones."
                if cuda.launch_bound
                else "not launch-bound."
            )
        )
    elif "CUDA" not in t.activities:
        lines.append("CUDA activities: not recorded (a CPU run), so no device operators and no idle share.")
    return lines


def block_caption(t: TraceSummary) -> str:
    biggest = t.max_difference_pp
    return (
        f"Share of the forward per top-level block, from the trace ({t.block_clock} time; forward "
        f"{t.forward_ms:.1f} ms) beside the timing hooks' (Where the time goes, another pass)"
        + (f"; the largest difference is {biggest:.1f} percentage points." if biggest is not None else ".")
    )


def block_rows(t: TraceSummary) -> list[list[str]]:
    return [
        [b.block, f"{b.ms:.2f}", percent(b.share), percent(b.hook_share), signed_pp(b.difference_pp)] for b in t.blocks
    ]


def operator_tables(t: TraceSummary) -> list[tuple[str, list[list]]]:
    """(caption, rows) of the top operators by self time: CPU, then CUDA when recorded."""
    tables = [("Top operators by CPU self time (share of all operators' self time in the pass):", t.top_cpu_operators)]
    if t.top_cuda_operators is not None:
        tables.append(
            (
                "Top operators by CUDA time (kernels and copies by the operator that launched them):",
                t.top_cuda_operators,
            )
        )
    return [
        (caption, [[op.name, op.calls, f"{op.self_ms:.3f}", percent(op.share)] for op in ops])
        for caption, ops in tables
    ]


def trace_blocks(r: ModelResult) -> list[Block]:
    """The model's profiler trace (--trace): its link, what it holds, and its summary tables."""
    t = r.trace
    link = trace_link(t)
    if t is None or not link:
        return []
    operators = [
        Table(OPERATOR_HEADERS, [[f"`{row[0]}`"] + row[1:] for row in rows], caption=caption)
        for caption, rows in operator_tables(t)
    ]
    return [
        Heading(3, "Profiler trace"),
        Paragraph(f"Trace: [`{link[0]}`]({link[1]}). {TRACE_OPEN_HINT}"),
        BulletList(trace_sentences(t, r.dissection)),
        Table(BLOCK_HEADERS, block_rows(t), caption=block_caption(t)),
        Columns([[table] for table in operators]),
    ]
