"""The runbook (docs/runbook.md) as an HTML page at `/runbook`, so each alert's `runbook_url` is a link
that opens from Slack, e-mail or Alertmanager.

docs/ installs as package data (`devflow_monitor.docs`, see pyproject.toml): one source file, read the
same way from a checkout and from a wheel, with no generated copy to keep in sync. The renderer below
covers the Markdown the runbook uses (headings with GitHub's anchors, paragraphs, lists, fenced code,
tables, inline code, bold, links), so the daemon needs no Markdown library.
"""

from __future__ import annotations

import functools
import html
import re
from importlib import resources

from devflow_monitor.core.settings import RUNBOOK_PATH as PATH

HEADING = re.compile(r"(#{1,6})\s+(.*)")
LIST_ITEM = re.compile(r"(\s*)(?:([-*])|(\d+)\.)\s+(.*)")
FENCE = "```"


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


@functools.cache
def page() -> bytes | None:
    """The rendered runbook, or None when the installed package lacks it."""
    try:
        text = resources.files("devflow_monitor.docs").joinpath("runbook.md").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        return None
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>DevFlow Monitor runbook</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.5}}"
            f"pre{{background:#f4f4f4;padding:.5em;overflow-x:auto}}td,th{{border:1px solid #ccc;padding:.2em .5em}}"
            f"table{{border-collapse:collapse}}</style></head><body>\n{to_html(text)}</body></html>\n").encode()


def to_html(markdown: str) -> str:
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith(FENCE):
            i = _code(lines, i, out)
        elif heading := HEADING.fullmatch(stripped):
            level, title = len(heading[1]), heading[2]
            out.append(f"<h{level} id='{anchor(title)}'>{inline(title)}</h{level}>")
            i += 1
        elif stripped == "---":
            out.append("<hr>")
            i += 1
        elif stripped.startswith("|"):
            i = _table(lines, i, out)
        elif LIST_ITEM.fullmatch(line):
            i = _list(lines, i, out)
        else:
            i = _paragraph(lines, i, out)
    return "\n".join(out) + "\n"


def inline(text: str) -> str:
    """Code spans as they are; elsewhere bold and links."""
    parts = text.split("`")
    for index, part in enumerate(parts):
        part = html.escape(part, quote=True)
        if index % 2:
            parts[index] = f"<code>{part}</code>"
        else:
            part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
            parts[index] = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r"<a href='\2'>\1</a>", part)
    return "".join(parts)


def _code(lines: list[str], i: int, out: list[str]) -> int:
    indent = len(lines[i]) - len(lines[i].lstrip())
    body = []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(FENCE):
        body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i].lstrip())
        i += 1
    out.append("<pre><code>" + html.escape("\n".join(body)) + "</code></pre>")
    return i + 1


def _table(lines: list[str], i: int, out: list[str]) -> int:
    rows = []
    while i < len(lines) and lines[i].strip().startswith("|"):
        cells = [cell.strip() for cell in lines[i].strip().strip("|").split("|")]
        if not all(set(cell) <= set("-: ") for cell in cells):  # the header's separator row
            rows.append(cells)
        i += 1
    out.append("<table>")
    for number, cells in enumerate(rows):
        tag = "th" if number == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{inline(cell)}</{tag}>" for cell in cells) + "</tr>")
    out.append("</table>")
    return i


def _list(lines: list[str], i: int, out: list[str]) -> int:
    """One list: its items, each with its indented continuation lines, paragraphs and code blocks in order."""
    ordered = LIST_ITEM.fullmatch(lines[i])[3] is not None
    out.append("<ol>" if ordered else "<ul>")
    while i < len(lines):
        item = LIST_ITEM.fullmatch(lines[i])
        if item is None or (item[3] is not None) != ordered:
            break
        parts, text = [], [item[4]]
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")) \
                and not LIST_ITEM.fullmatch(lines[i]):
            if lines[i].strip().startswith(FENCE) or not lines[i].strip():
                if text:  # the item's first words open it; later paragraphs are paragraphs
                    parts.append(inline(" ".join(text)) if not parts else f"<p>{inline(' '.join(text))}</p>")
                    text = []
                i = _code(lines, i, parts) if lines[i].strip() else i + 1
            else:
                text.append(lines[i].strip())
                i += 1
        if text:
            parts.append(inline(" ".join(text)) if not parts else f"<p>{inline(' '.join(text))}</p>")
        out.append("<li>" + "".join(parts) + "</li>")
    out.append("</ol>" if ordered else "</ul>")
    return i


def _paragraph(lines: list[str], i: int, out: list[str]) -> int:
    text = []
    while i < len(lines) and lines[i].strip() and not (
            HEADING.fullmatch(lines[i].strip()) or lines[i].strip().startswith((FENCE, "|"))
            or LIST_ITEM.fullmatch(lines[i])):
        text.append(lines[i].strip())
        i += 1
    out.append("<p>" + inline(" ".join(text)) + "</p>")
    return i
