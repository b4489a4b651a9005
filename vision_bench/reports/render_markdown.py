"""The Markdown renderer: report blocks (blocks.py) as Markdown lines. Inline marks (`code`,
[label](url)) are Markdown already; a "|" in a table cell would split its row and becomes "/"."""

from __future__ import annotations

import re

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
from ..document.tables import md_table

NOT_IN_ANCHOR = re.compile(r"[^\w\- ]")


def markdown_anchor(title: str) -> str:
    """The anchor a Markdown viewer (GitHub, VS Code, most others) gives a heading: lower case, punctuation
    other than hyphens and underscores dropped, spaces as hyphens."""
    return NOT_IN_ANCHOR.sub("", title.strip().lower()).replace(" ", "-")


def cell_text(cell) -> str:
    text = cell.text if isinstance(cell, Cell) else ("" if cell is None else str(cell))
    return text.replace("|", "/").replace("\n", " ")


def block_lines(block: Block) -> list[str]:
    """One block's lines, each block followed by an empty line."""
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text, ""]
    if isinstance(block, Paragraph):
        return [block.text, ""]
    if isinstance(block, BulletList):
        return [f"- {item}" for item in block.items] + [""] if block.items else []
    if isinstance(block, Table):
        caption = [block.caption, ""] if block.caption else []
        return caption + [md_table(block.headers, [[cell_text(c) for c in row] for row in block.rows]), ""]
    if isinstance(block, Figure):
        return [f"![{block.alt}]({block.path})", ""]
    if isinstance(block, Note):
        return [f"> **{block.title}** {block.text}" if block.title else block.text, ""]
    if isinstance(block, Details):
        return [f"{block.summary}:", "", "```", block.text.replace("```", "'''"), "```", ""]
    if isinstance(block, Columns):
        return markdown_lines([b for column in block.columns for b in column])
    if isinstance(block, Section):
        return markdown_lines(block.blocks)
    if isinstance(block, Fold):
        return block_lines(Heading(3, block.title)) + markdown_lines(block.blocks)
    if isinstance(block, Contents):
        return [f"- [{title}](#{markdown_anchor(title)})" for title, _ in block.entries] + [""]
    if isinstance(block, Explorer):
        return []  # interactive: the HTML page's alone
    raise TypeError(f"no Markdown for {type(block).__name__}")


def markdown_lines(blocks: list) -> list[str]:
    return [line for block in blocks for line in block_lines(block)]


def render_markdown(blocks: list) -> str:
    return "\n".join(markdown_lines(blocks))
