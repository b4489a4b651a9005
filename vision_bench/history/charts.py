"""One chart per series, as SVG text (no plotting library: 200 runs draw in milliseconds): each run's
median with its 95% interval, gaps where the model did not complete, outliers hollow, each segment's
level, the change points and the library-version changes as vertical lines. Every point carries its
run, label, commit, interval and memory as an SVG title, which the HTML page shows on hover."""

from __future__ import annotations

import html
import statistics

from ..records.history import HistoryRun, LibraryChange, ModelHistory, SeriesPoint

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 28, 36


def point_title(point: SeriesPoint, run: HistoryRun) -> str:
    """What hovering a point shows."""
    lines = [f"run {run.index}" + (f" ({run.label})" if run.label else "") + f", {run.started or 'start unknown'}"]
    lines += [f"{s.commit[:7]}{' dirty' if s.dirty else ''} {s.subject or ''}".rstrip() for s in run.source]
    if point.median_s is None:
        lines.append(f"no median: {point.status}")
    else:
        interval = (
            f" [{point.ci95_low_s * 1000:.1f}, {point.ci95_high_s * 1000:.1f}]"
            if point.ci95_low_s is not None and point.ci95_high_s is not None
            else ""
        )
        lines.append(f"median {point.median_s * 1000:.1f} ms{interval}, {point.timed_runs} timed runs")
    if point.peak_bytes:
        lines.append(
            f"peak memory {point.peak_bytes / 1024**2:.0f} MB, own share {(point.own_share_bytes or 0) / 1024**2:.0f} MB"
        )
    if point.outlier:
        lines.append("outlier: left out of the change-point search")
    return html.escape("\n".join(lines))


def scales(series: ModelHistory, runs: int):
    """x(run index) and y(seconds) in pixels, and the y range in ms."""
    values = [v for p in series.points for v in (p.median_s, p.ci95_low_s, p.ci95_high_s) if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.08 or high * 0.1 or 1.0
    low, high = max(0.0, low - pad), high + pad
    x = lambda i: LEFT + (i - 0.5) / max(runs, 1) * (WIDTH - LEFT - RIGHT)
    y = lambda v: TOP + (high - v) / (high - low) * (HEIGHT - TOP - BOTTOM)
    return x, y, low * 1000, high * 1000


def series_svg(series: ModelHistory, runs: list[HistoryRun], changes: list[LibraryChange]) -> str:
    """The chart of one series as an SVG document."""
    x, y, low_ms, high_ms = scales(series, len(runs))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{LEFT}" y="14" font-size="12">{html.escape(series.model)}: end-to-end median per run (ms, 95% interval)</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" fill="none" stroke="#999"/>',
    ]
    for k in range(5):  # the y axis: five ticks
        value = low_ms + (high_ms - low_ms) * k / 4
        py = y(value / 1000)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 4}" y="{py + 3:.1f}" text-anchor="end">{value:.4g}</text>')
    step = max(1, len(runs) // 12)
    for run in runs[::step]:
        out.append(f'<text x="{x(run.index):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{run.index}</text>')
    out.append(f'<text x="{(LEFT + WIDTH) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">run</text>')
    for change in changes:
        cx = x(change.run - 0.5)
        out.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#888" stroke-dasharray="2,3"/>'
        )
        out.append(f'<text x="{cx + 3:.1f}" y="{TOP + 10}" fill="#555">{html.escape(change.text())}</text>')
    out += level_lines(series, x, y)
    for point in series.points:
        if point.median_s is None:
            continue
        px, py = x(point.run), y(point.median_s)
        if point.ci95_low_s is not None and point.ci95_high_s is not None:
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(point.ci95_low_s):.1f}" y2="{y(point.ci95_high_s):.1f}" stroke="#444"/>'
            )
        fill = "white" if point.outlier else "black"
        out.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{fill}" stroke="black">'
            f"<title>{point_title(point, runs[point.run - 1])}</title></circle>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def level_lines(series: ModelHistory, x, y) -> list[str]:
    """Each segment's level (the median of its run medians) and a red line at each change point."""
    out = []
    kept = [p for p in series.points if p.median_s is not None and not p.outlier]
    bounds = [kept[0].run if kept else 1, *(c.after for c in series.change_points), (kept[-1].run + 1) if kept else 1]
    for change in series.change_points:
        cx = x(change.after - 0.5)
        out.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#c00" stroke-width="1.5"/>'
        )
    levels = [c.level_before_s for c in series.change_points] + [c.level_after_s for c in series.change_points[-1:]]
    if not series.change_points and kept:  # one segment: its level is the median of its run medians
        levels = [float(statistics.median(p.median_s for p in kept if p.median_s is not None))]
    for (start, end), level in zip(zip(bounds, bounds[1:]), levels):
        out.append(
            f'<line x1="{x(start - 0.4):.1f}" x2="{x(end - 0.6):.1f}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            'stroke="#c00" stroke-opacity="0.6"/>'
        )
    return out
