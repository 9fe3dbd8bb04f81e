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
