"""The report model: the blocks a report is made of, written once by the section builders and
turned into Markdown (render_markdown.py) or the HTML page (render_html.py).

Text in a block is plain text with three inline marks both renderers understand: `code` spans
(module paths, file names), [label](relative/url) links and **bold**, as Markdown reads them. Nothing
else is markup: the HTML renderer escapes everything before it reads those marks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str | None = None  # the HTML page's id (and its navigation entry, at level 2)


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class BulletList:
    items: list[str]


@dataclass(frozen=True)
class Cell:
    """A table cell shown as `text` that a sortable table sorts by `sort` (None sorts as empty)."""

    text: str
    sort: float | int | str | None = None


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list]  # a cell is a value shown as text, or a Cell
    sortable: bool = False
    caption: str | None = None  # a line above the table
    kind: str | None = None  # a style for the HTML page ("fail"); Markdown ignores it


@dataclass(frozen=True)
class Figure:
    path: str  # relative to results/
    alt: str
    kind: str = "charts"  # "charts" (side by side on the page) or "output" (a model's output picture)


@dataclass(frozen=True)
class Note:
    """A remark beside the figures (`title` set: a warning, shown with its title in bold)."""

    text: str
    title: str | None = None


@dataclass(frozen=True)
class Details:
    """Long text folded away on the page (a worker's last output), a code block in Markdown."""

    summary: str
    text: str


@dataclass(frozen=True)
class Columns:
    """Blocks side by side on the page; one after the other in Markdown."""

    columns: list[list]


@dataclass(frozen=True)
class Section:
    """A model's section: its own navigation entry and anchor on the page."""

    title: str
    anchor: str
    blocks: list = field(default_factory=list)


@dataclass(frozen=True)
class Fold:
    """A long part of a model's section under its level-3 title: folded on the page (the title stays in
    view, a click unfolds it), a level-3 heading and the blocks in Markdown."""

    title: str
    blocks: list = field(default_factory=list)


@dataclass(frozen=True)
class Contents:
    """A table of contents: (title, the HTML page's anchor) per entry. Markdown links each entry to the
    anchor its heading gets there (the title, lower case, spaces as hyphens)."""

    entries: list[tuple[str, str]]


@dataclass(frozen=True)
class Explorer:
    """The HTML page's interactive layer explorer of one model (nothing in Markdown): its records
    (from layers_metadata.json) or why they are missing, and the divergence overlay."""

    model: str
    base: str
    records: list[dict]
    divergence: list[dict]
    problem: str | None = None


Block = (
    Heading | Paragraph | BulletList | Table | Figure | Note | Details | Columns | Section | Fold | Contents | Explorer
)
