"""Plain-text tables for results people scan."""

from __future__ import annotations

from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plural(count: int, word: str) -> str:
    """``plural(1, "image") == "1 image"``, ``plural(2, "image") == "2 images"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
