"""The `/` filter of the list views: a regex (case-insensitive), `!` in front excludes what it matches."""

from __future__ import annotations

import re
from collections.abc import Iterable

from textual import on
from textual.binding import Binding
from textual.widgets import Input


def matches(pattern: str, texts: Iterable[str]) -> bool:
    """Whether any of `texts` matches `pattern`; a pattern that is not a valid regex is a plain substring."""
    if not pattern:
        return True
    invert = pattern.startswith("!")
    body = pattern[1:] if invert else pattern
    try:
        found = any(re.search(body, text, re.IGNORECASE) for text in texts)
    except re.error:
        found = any(body.lower() in text.lower() for text in texts)
    return found != invert


class FilterBar(Input):
    """The `/` input above a list (one row, in the layout, never over other widgets): hidden until
    opened. Enter keeps a pattern in force (shown) and hands the focus back to the list `target`; enter
    on an empty filter, or esc, closes it (esc also clears it, so the whole list is back). Screens
    refilter on `Input.Changed`. The focus never stays in a hidden filter."""

    BINDINGS = [Binding("escape", "close", "Clear filter")]
    DEFAULT_CSS = """
    FilterBar { display: none; }
    FilterBar.-open { display: block; }
    FilterBar.-open.-textual-compact { padding: 0 1; }
    """

    def __init__(self, what: str, target: str) -> None:
        # compact: one row and no border whatever the focus (Input:focus would otherwise draw a tall
        # border over its only row, leaving no room for the text and the cursor)
        placeholder = f"/ filter {what} (regex; !regex excludes; esc clears)"
        super().__init__(placeholder=placeholder, id="filter", compact=True)
        self.target = target

    def open(self) -> None:
        self.add_class("-open")
        self.cursor_position = len(self.value)
        self.focus()

    def action_close(self) -> None:
        """Clear the filter, hide it and give the focus back to the list."""
        self.value = ""
        self._hide()

    def _hide(self) -> None:
        self.remove_class("-open")
        self.screen.query_one(self.target).focus()

    @on(Input.Submitted)
    def _done(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.value:
            self._hide()
        else:
            self.screen.query_one(self.target).focus()
