"""`console.plain` prints what Rich prints to a pipe, byte for byte, or declines (and Rich prints)."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from rich._emoji_codes import EMOJI

from console import plain
from console.plain import Grid
from console.safe_console import SafeConsole

#: Characters the CLI's cells and lines are made of, and the awkward ones (emoji colons, URLs,
#: control characters, wide and combining characters, blanks).
AWKWARD = ["  ", "\t", "\x1b", "\x9b", "é", "漢", "\u0301", "://", ":ok:", ":05:", ":1234:", "😀"]
ALPHABET = st.sampled_from(list("abcdxyz0159-_/.@,→…") * 6 + list(" :") * 3 + AWKWARD)
CELL = st.lists(ALPHABET, max_size=12).map("".join)


def rich_table(grid: Grid, width: int) -> str:
    """What `console.output.print_table` prints to a pipe through Rich."""
    console = SafeConsole(file=io.StringIO(), width=width, highlight=False, markup=False)
    with console.capture() as captured:
        console.print(grid.rich())
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


def rich_line(text: str, width: int, soft_wrap: bool) -> str:
    console = SafeConsole(file=io.StringIO(), width=width, highlight=False, markup=False, soft_wrap=soft_wrap)
    console.print(text)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


@settings(max_examples=400, deadline=None)
@given(
    columns=st.integers(1, 6),
    data=st.data(),
    wrap=st.booleans(),
    width=st.sampled_from([20, 40, 200]),
)
def test_a_table_is_what_rich_prints_or_declined(
    columns: int, data: st.DataObject, wrap: bool, width: int
) -> None:
    headers = tuple(data.draw(st.lists(CELL.filter(bool), min_size=columns, max_size=columns)))
    rows = data.draw(st.lists(st.lists(CELL, min_size=columns, max_size=columns), max_size=5))
    grid = Grid(headers, wrap=wrap, rows=[tuple(r) for r in rows])
    text = plain.table_text(grid, max_width=width)
    if text is not None:
        assert text == rich_table(grid, width)


@settings(max_examples=400, deadline=None)
@given(words=st.lists(CELL, max_size=40), width=st.sampled_from([10, 30, 200]), soft_wrap=st.booleans())
def test_a_line_is_what_rich_prints_or_declined(words: list[str], width: int, soft_wrap: bool) -> None:
    text = " ".join(words)
    shown = plain.line_text(text, soft_wrap, max_width=width)
    if shown is not None:
        assert shown == rich_line(text, width, soft_wrap)


def test_the_cli_tables_and_lines_are_printed_plainly() -> None:
    """What the read verbs print is plain: the check does not decline everything."""
    grid = Grid(("MODEL", "ALIASES", "UPDATED", "URL"))
    grid.add_row("iris", "champion→2, staging→3", "2026-12-03 01:53:44", "http://127.0.0.1:20000")
    grid.add_row("tumor", "", "-", "http://[::1]:8080")
    assert plain.table_text(grid) == rich_table(grid, 200)
    long = ", ".join(f"iris-{i:02d}: version 1" for i in range(40))
    assert plain.line_text(f"  serving   {long}") == rich_line(f"  serving   {long}", 200, False)


def test_every_character_of_rich_emoji_names_is_known() -> None:
    """`console.plain` tells emoji codes apart by their characters: Rich must have no others."""
    assert set("".join(EMOJI)) <= plain._EMOJI_NAME_CHARACTERS
    assert not any(name.isdigit() and len(name) <= 2 for name in EMOJI)
