"""Plain-text tables and the cells in them: one way to show a missing value, a percentage or a number, and to line
up the columns, for the scripts' summaries and the benchmarks alike."""

from __future__ import annotations

from typing import Sequence

MISSING = "-"  # a cell with no value: not measured, not applicable, or not comparable


def cell(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    """`value` formatted with `spec` (and `unit`), or MISSING."""
    return MISSING if value is None else f"{value:{spec}}{unit}"


def percent(value: float | None, spec: str = ".1f") -> str:
    """A fraction shown in percent (0.467 -> 46.7), or MISSING."""
    return MISSING if value is None else f"{100 * value:{spec}}"


def format_table(rows: Sequence[Sequence[str]], separator: str = "  ", align_first_left: bool = True,
                 numbers_right: bool = True) -> str:
    """Rows of cells (the first row the header) as aligned text: the first column left-aligned, the others
    right-aligned like numbers (or all left with `numbers_right=False`)."""
    rows = [[str(c) for c in row] for row in rows]
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(width)]

    def aligned(index: int, text: str) -> str:
        left = (index == 0 and align_first_left) or not numbers_right
        return text.ljust(widths[index]) if left else text.rjust(widths[index])

    return "\n".join(separator.join(aligned(i, c) for i, c in enumerate(row)).rstrip() for row in rows)
