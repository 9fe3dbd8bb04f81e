"""One line under the header: read-only mode, a supervisor that is down, a database error, pause."""

from __future__ import annotations

from textual.widgets import Static


class Banner(Static):
    DEFAULT_CSS = """
    Banner {
        dock: top; height: auto; max-height: 3; padding: 0 1; display: none;
        background: $warning; color: $background;
    }
    Banner.-shown { display: block; }
    """

    _text = ""

    def say(self, text: str) -> None:
        """Show `text` (hidden when empty). Every poll calls this: an unchanged text costs nothing,
        where `update` would lay out and repaint the whole screen each second."""
        if text != self._text:
            self._text = text
            self.update(text)
        self.set_class(bool(text), "-shown")
