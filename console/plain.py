"""Piped output without Rich: the bytes Rich prints to a pipe, for the text Rich would print as is.

`modeldeck models | grep iris` prints a borderless table and a few lines; Rich prints them to a pipe
as plain text (no colour, no style), but importing Rich and laying a 50-row table out cell by cell
took longer than the rest of the command. This module writes the same bytes itself for what it can
prove plain: every cell and line printable ASCII (or `→`, `…`), without control characters, runs of
blanks or a possible `:emoji:` code, and a table within the console's width. For anything else it
answers None and the caller prints through Rich, as before. The tests compare both on many tables.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import TextIO

#: Characters Rich shows one cell wide that the CLI prints itself (arrows of aliases and history).
_NARROW = frozenset("→…")
#: What Rich's `_emoji_replace` looks for (`:name:` or `:name-text:`); it replaces a known name.
_EMOJI = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
#: Every character of Rich's emoji names (`rich._emoji_codes.EMOJI`; a test checks): a name with any
#: other character (`://127.0.0.1:` of a URL) is none. Nor are two digits (`:05:` of a time).
_EMOJI_NAME_CHARACTERS = frozenset(
    "!#&()*+-.0123456789_abcdefghijklmnopqrstuvwxyz\u00e3\u00e5\u00e7\u00e9\u00ed\u00f4\u2019"
)
#: Settings under which Rich treats a pipe as a terminal.
_RICH_TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


@dataclass
class Grid:
    """A borderless table of text cells with a bold header: what the CLI's tables are. `wrap`: cells
    wrap as Rich's default column does; else they never wrap and end in an ellipsis."""

    columns: tuple[str, ...]
    wrap: bool = False
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def rich(self) -> object:
        """The same table as a `rich.table.Table`."""
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in self.columns:
            if self.wrap:
                table.add_column(column)
            else:
                table.add_column(column, no_wrap=True, overflow="ellipsis")
        for row in self.rows:
            table.add_row(*row)
        return table


def piped(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stdout) is a pipe or file that Rich would print to without styles."""
    if any(name in os.environ for name in _RICH_TERMINAL_ENV):
        return False
    try:
        return not (stream or sys.stdout).isatty()
    except (AttributeError, ValueError):
        return False


def width() -> int:
    """The width of piped output (`console.output.out`'s): never squeezed into 80 columns."""
    return max(200, shutil.get_terminal_size().columns)


def _plain(text: str, blanks: bool = False) -> bool:
    """Whether Rich prints `text` as it is (on one line, without markup or highlighting); `blanks`:
    leading, trailing and repeated blanks too (a line that fits is never re-wrapped; a cell may be)."""
    if not (text.isascii() or all(c.isascii() or c in _NARROW for c in text)):
        return False
    if not text.isprintable() or not (blanks or ("  " not in text and text == text.strip())):
        return False
    return all(_not_emoji(match.group(2)) for match in _EMOJI.finditer(text))


def _not_emoji(name: str) -> bool:
    """Whether `:name:` is surely no emoji code of Rich's."""
    name = name.lower()
    return (name.isdigit() and len(name) <= 2) or not set(name) <= _EMOJI_NAME_CHARACTERS


def table_text(grid: Grid, max_width: int | None = None) -> str | None:
    """The table as Rich prints it to a pipe with trailing blanks stripped, or None if unsure."""
    cells = [grid.columns, *grid.rows]
    if not grid.columns or any(len(row) != len(grid.columns) for row in cells):
        return None
    if not all(_plain(cell) for row in cells for cell in row if cell):
        return None
    widths = [max(len(row[i]) for row in cells) for i in range(len(grid.columns))]
    # padding (0, 1) without the outer edges: one blank each side between columns
    total = sum(widths) + 2 * (len(widths) - 1)
    if total > (max_width or width()) or 0 in widths:
        return None
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in cells
    )


def line_text(text: str, soft_wrap: bool = False, max_width: int | None = None) -> str | None:
    """`text` as Rich's `print` writes it to a pipe (with `soft_wrap`, `text` and a newline; else
    word-wrapped at the width), or None if unsure."""
    if text and not _plain(text, blanks=True):
        return None
    limit = max_width or width()
    if soft_wrap or len(text) <= limit:
        return text + "\n"
    return _wrapped(text, limit)


_WORD = re.compile(r"\s*\S+\s*")


def _wrapped(text: str, limit: int) -> str | None:
    """`text` word-wrapped at `limit` as Rich's `divide_line` and `rstrip_end` do (None when a word
    is longer than a line: Rich folds it)."""
    breaks, offset = [], 0
    for word in _WORD.finditer(text):
        length = len(word.group().rstrip())
        if length > limit:
            return None
        if limit - offset >= length:
            offset += len(word.group())
        elif offset and word.start():
            breaks.append(word.start())
            offset = len(word.group())
    lines = [text[a:b] for a, b in zip([0, *breaks], [*breaks, len(text)], strict=True)]
    return "".join(_crop_blanks(line, limit) + "\n" for line in lines)


def _crop_blanks(line: str, limit: int) -> str:
    """Rich's `Text.rstrip_end`: trailing blanks beyond `limit` cut."""
    excess = len(line) - limit
    if excess <= 0:
        return line
    blanks = len(line) - len(line.rstrip())
    return line[: len(line) - min(blanks, excess)]
