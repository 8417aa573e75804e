"""`report.html`: one page with the metrics table, the plots and the gallery, the pictures beside it in the folder
(relative links), no script and nothing fetched, so it opens from the disk in any browser."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from frcnn.core.files import write_bytes_atomically
from frcnn.core.tables import MISSING, percent

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #555; }
"""


@dataclass(frozen=True)
class Figure:
    """A picture in the folder (its path relative to the page) and what it shows."""

    source: str
    caption: str


@dataclass(frozen=True)
class Section:
    """A heading, a paragraph saying how to read what follows, its pictures and links to files (CSV)."""

    heading: str
    text: str
    figures: list[Figure] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


def metrics_table(columns: dict[str, dict[str, float | None]], rows: list[str]) -> str:
    """The metrics as an HTML table in percent, a column per run (and the difference with two)."""
    labels = list(columns)
    header = [*labels] + ([f"{labels[-1]} - {labels[0]}"] if len(labels) == 2 else [])
    lines = ["<table>", "<tr><th>metric</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        values = [columns[label].get(row) for label in labels]
        cells = [percent(v) for v in values]
        if len(labels) == 2:
            cells.append(MISSING if None in values else f"{100 * (values[1] - values[0]):+.1f}")
        lines.append(f"<tr><td>{html.escape(row)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join([*lines, "</table>"])


def _section(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.heading)}</h2>", f"<p>{html.escape(section.text)}</p>"]
    for figure in section.figures:
        parts.append(f'<figure><img src="{quote(figure.source)}" alt="{html.escape(figure.caption, quote=True)}">'
                     f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")
    if section.links:
        parts.append("<p>" + " · ".join(f'<a href="{quote(target)}">{html.escape(text)}</a>'
                                        for target, text in section.links) + "</p>")
    return "\n".join(parts)


def write_page(path: Path, title: str, notes: list[str], table: str, sections: list[Section]) -> Path:
    """Write the page atomically."""
    body = [f"<h1>{html.escape(title)}</h1>", *(f'<p class="note">{html.escape(n)}</p>' for n in notes), table,
            *map(_section, sections)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    write_bytes_atomically(path, page.encode("utf-8"))
    return path
