"""The HTML renderer: report blocks (document/blocks.py) as one offline page, with sortable tables and a
layer explorer per model. The styles and script live in report_page.html beside this file, read
at write time.

Text reaches the page only through html.escape (here) or textContent (the page's script): the
inline marks (`code`, [label](url), **bold**) are read from the escaped text. The explorers' records travel
as JSON in a script element with every "<" escaped, so no name can close it. Pictures are
referenced relative to results/, so results/ and viz/ can be moved together."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import quote

from ..common import strict_json
from ..document.blocks import (
    Block,
    BulletList,
    Cell,
    Columns,
    Contents,
    Details,
    Explorer,
    Figure,
    Fold,
    Heading,
    Note,
    Paragraph,
    Section,
    Table,
)

PAGE_TEMPLATE = Path(__file__).with_name("report_page.html")
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
CODE = re.compile(r"`([^`]*)`")
BOLD = re.compile(r"\*\*(.+?)\*\*")


def render_page(title: str, body: str, data: str) -> str:
    """The page template (styles and the explorer's script, read at write time) with its three slots filled.
    `title` and `body` must be escaped HTML already; `data` is the explorers' JSON."""
    parts = {"title": title, "body": body, "data": data}
    return re.sub(r"@@(\w+)@@", lambda m: parts[m.group(1)], PAGE_TEMPLATE.read_text(encoding="utf-8"))


def html_text(value) -> str:
    return "n/a" if value is None else html.escape(str(value))


def html_url(path: str) -> str:
    """A relative path as a URL (forward slashes, percent-encoded), escaped for an attribute."""
    return html_text(quote(Path(path).as_posix()) + ("/" if path.endswith("/") else ""))


def inline(text) -> str:
    """Escaped text whose [label](url) parts become links, `quoted` parts code and **starred** parts bold."""
    escaped = html_text(text)
    linked = LINK.sub(lambda m: f'<a href="{html_url(html.unescape(m[2]))}">{m[1]}</a>', escaped)
    return BOLD.sub(r"<b>\1</b>", CODE.sub(r"<code>\1</code>", linked))


def html_table(headers: list, rows: list[list], sortable: bool = False, show=html_text) -> str:
    """A cell is a value shown as text, or a Cell that a sortable table sorts by its value."""

    def cell(c):
        if isinstance(c, Cell):
            return f'<td data-sort="{html_text("" if c.sort is None else c.sort)}">{show(c.text)}</td>'
        return f"<td>{show(c)}</td>"

    head = "".join(f"<th>{html_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table{" class=sortable" if sortable else ""}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


class PageWriter:
    """Blocks to HTML, collecting the explorers' data and the navigation on the way."""

    def __init__(self) -> None:
        self.explorers: list[dict] = []
        self.nav: list[tuple[str, str]] = []

    def blocks(self, blocks: list) -> str:
        out: list[str] = []
        figures: list[Figure] = []
        for block in blocks + [None]:
            if isinstance(block, Figure) and (not figures or figures[-1].kind == block.kind):
                figures.append(block)
                continue
            if figures:  # consecutive figures side by side
                out.append(
                    f'<div class="{figures[0].kind}">'
                    + "".join(f'<img src="{html_url(f.path)}" alt="{html_text(f.alt)}">' for f in figures)
                    + "</div>"
                )
                figures = [block] if isinstance(block, Figure) else []
            if block is not None and not isinstance(block, Figure):
                out.append(self.block(block))
        return "".join(out)

    def block(self, block: Block) -> str:
        if isinstance(block, Heading):
            if block.anchor and block.level == 2:
                self.nav.append((block.anchor, block.text))
            anchor = f' id="{html_text(block.anchor)}"' if block.anchor else ""
            return f"<h{block.level}{anchor}>{inline(block.text)}</h{block.level}>"
        if isinstance(block, Paragraph):
            return f"<p>{inline(block.text)}</p>"
        if isinstance(block, BulletList):
            return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in block.items) + "</ul>" if block.items else ""
        if isinstance(block, Table):
            return self.table(block)
        if isinstance(block, Note):
            if block.title:
                return f'<p class="warn"><b>{inline(block.title)}</b> {inline(block.text)}</p>'
            return f'<p class="meta">{inline(block.text)}</p>'
        if isinstance(block, Details):
            return f"<details><summary>{html_text(block.summary)}</summary><pre>{html_text(block.text)}</pre></details>"
        if isinstance(block, Columns):
            return "<div class=pair>" + "".join(f"<div>{self.blocks(c)}</div>" for c in block.columns) + "</div>"
        if isinstance(block, Section):
            self.nav.append((block.anchor, block.title))
            return f'<section id="{html_text(block.anchor)}">{self.blocks(block.blocks)}</section>'
        if isinstance(block, Fold):
            return f'<details class="fold"><summary><h3>{inline(block.title)}</h3></summary>{self.blocks(block.blocks)}</details>'
        if isinstance(block, Contents):
            links = "".join(f'<li><a href="#{html_text(a)}">{inline(t)}</a></li>' for t, a in block.entries)
            return f"<ul class=contents>{links}</ul>"
        if isinstance(block, Explorer):
            return self.explorer(block)
        raise TypeError(f"no HTML for {type(block).__name__}")

    def table(self, t: Table) -> str:
        caption = f"<p>{inline(t.caption)}</p>" if t.caption else ""
        hint = "<p class=meta>Click a column to sort.</p>" if t.sortable else ""
        table = html_table(t.headers, t.rows, t.sortable, show=inline)
        return caption + (f'<div class="{html_text(t.kind)}">{table}</div>' if t.kind else table) + hint

    def explorer(self, e: Explorer) -> str:
        head = f"<h3>Layer explorer: {html_text(e.model)}</h3>"
        if not e.records:
            return head + f'<p class="meta">{html_text(e.problem or "no records")}</p>'
        self.explorers.append({"model": e.model, "base": e.base, "records": e.records, "divergence": e.divergence})
        return (
            head + f'<div class="explorer" id="explorer-{len(self.explorers) - 1}" tabindex="0"></div>'
            "<noscript><p>The layer explorer needs JavaScript.</p></noscript>"
        )


def render_html(blocks: list, title: str) -> str:
    """The page: the navigation (level-2 headings with an anchor, and the model sections), the blocks,
    and the explorers' data."""
    writer = PageWriter()
    body = writer.blocks(blocks)
    nav = "<nav>" + "".join(f'<a href="#{html_text(a)}">{html_text(t)}</a>' for a, t in writer.nav) + "</nav>"
    # Every "<" escaped as \u003c: the JSON cannot end its script element or open a comment in it.
    payload = json.dumps(strict_json({"explorers": writer.explorers}), allow_nan=False).replace("<", "\\u003c")
    return render_page(html_text(title), f"{nav}<main>{body}</main>", payload)


def render_html_fragment(blocks: list) -> str:
    """Blocks as HTML without the page around them (a part of a report, for tests)."""
    return PageWriter().blocks(blocks)
