"""A log tail that follows new lines, pauses while the user reads further up, and can wrap."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

MAX_LINES = 5000  # the buffer is bounded: older lines drop off the top


class LogView(RichLog):
    """Lines are plain text (never markup). Following resumes once the view is scrolled back to the end."""

    DEFAULT_CSS = "LogView { height: 1fr; }"

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, wrap=False, markup=False, highlight=False, id=id)
        self.kept: deque[str] = deque(maxlen=max_lines)
        #: whether new lines scroll into view: decided at each `add` by whether the view is at its end
        self.following = True
        #: a scroll to the end is scheduled: until it lands the geometry is stale, not the user's doing
        self._end_pending = False

    def add(self, lines: Iterable[str]) -> None:
        """Append lines (possibly none); scroll to them only if the user is at the end."""
        if not self._end_pending:  # a busy machine can poll again before the last lines were laid out
            self.following = self.is_vertical_scroll_end or self.max_scroll_y == 0
        added = False
        for line in lines:
            self.kept.append(line)
            self.write(Text(line), scroll_end=self.following)
            added = True
        if added and self.following:
            # again once laid out: a first long line brings a horizontal scrollbar that takes a row,
            # which would leave the view one line short of the end (and so no longer following)
            self._end_pending = True
            self.call_after_refresh(self._reach_end)

    def _reach_end(self) -> None:
        self.scroll_end(animate=False, immediate=True)
        self._end_pending = False

    def toggle_wrap(self) -> None:
        """Re-render every kept line wrapped (or not) and go to the end."""
        self.wrap = not self.wrap
        self.clear()
        for line in self.kept:
            self.write(Text(line), scroll_end=False)
        self.scroll_end(animate=False)
        self.following = True
