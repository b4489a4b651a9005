"""The HTML report: the run's report model (report_model.py) written out as one offline page
(render_html.py), with sortable tables and a layer explorer per model."""

from __future__ import annotations

from ..inspect.trace_report import trace_blocks
from ..records.codec import known
from ..records.model_result import ModelResult
from ..records.run_document import RunDocument, read_document
from .render_html import render_html, render_html_fragment
from .report_model import build_report


def html_report(data: RunDocument | dict, ctx) -> str:
    """The report as one offline HTML page, rewritten after every model like the others."""
    data = read_document(data)
    return render_html(build_report(data, ctx), report_title(data))


def report_title(data: RunDocument) -> str:
    return f"Benchmark report {known(data.run_id) or ''}"


def trace_html(r: ModelResult) -> str:
    """The model's profiler trace (--trace) as a part of the page."""
    return render_html_fragment(trace_blocks(r))
