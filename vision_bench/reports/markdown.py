"""The Markdown report: the run's report model (report_model.py) written out as Markdown."""

from __future__ import annotations

from .render_markdown import render_markdown
from .report_model import build_report, draw_summary_charts, numeric_settings_text

__all__ = ["draw_summary_charts", "markdown_report", "numeric_settings_text"]


def markdown_report(data: dict, ctx) -> str:
    return render_markdown(build_report(data, ctx))
