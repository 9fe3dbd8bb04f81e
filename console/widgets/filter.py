"""The `/` filter of the list views: a regex (case-insensitive), `!` in front excludes what it matches."""

from __future__ import annotations

import re
from collections.abc import Iterable

from textual import on
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
    """The `/` input above a list: hidden until opened; enter on an empty filter hides it again.
    Screens refilter on `Input.Changed`; after enter the focus goes back to the list `target`."""

    DEFAULT_CSS = """
    FilterBar { dock: top; display: none; height: 1; border: none; padding: 0 1; }
    FilterBar.-open { display: block; }
    """

    def __init__(self, what: str, target: str) -> None:
        super().__init__(placeholder=f"filter {what} (regex; !regex excludes)", id="filter")
        self.target = target

    def open(self) -> None:
        self.add_class("-open")
        self.focus()

    @on(Input.Submitted)
    def _done(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.value:
            self.remove_class("-open")
        self.screen.query_one(self.target).focus()
