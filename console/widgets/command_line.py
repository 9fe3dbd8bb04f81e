"""The `:` command line: `:deploy iris@champion`, `:rollback iris`, `:models`, `:q`."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input

PLACEHOLDER = "command: models, deploy REF, rollback NAME, logs NAME, at TIME, q (? lists all)"


class CommandLine(Input):
    """A one-line input docked at the bottom, shown by `:` and hidden after enter or esc."""

    BINDINGS = [Binding("escape", "close", "Close", show=False)]
    DEFAULT_CSS = """
    CommandLine { dock: bottom; display: none; border: none; height: 1; padding: 0 1; }
    CommandLine.-open { display: block; }
    """

    @dataclass
    class Command(Message):
        command: str
        arguments: list[str]

    def __init__(self) -> None:
        # no select-all on focus: `t` opens the line with "at " for the user to go on typing
        super().__init__(placeholder=PLACEHOLDER, select_on_focus=False)
        self._previous: Widget | None = None

    def open(self, text: str = "") -> None:
        """Show the line, starting with `text`, and take the focus."""
        self._previous = self.screen.focused
        self.value = text
        self.cursor_position = len(text)
        self.add_class("-open")
        self.focus()

    def action_close(self) -> None:
        """Hide, and give the focus back to where it was before `:`."""
        self.remove_class("-open")
        self.value = ""
        if self._previous is not None and self._previous.is_attached:
            self._previous.focus()
        else:
            self.screen.focus_next()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        words = event.value.strip().lstrip(":").split()
        self.action_close()
        if words:
            self.post_message(self.Command(words[0], words[1:]))
