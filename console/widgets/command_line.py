"""The `:` command line: `:deploy iris@champion`, `:rollback iris`, `:models`, `:q`."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input


class CommandLine(Input):
    """A one-line input above the footer, shown by `:` and hidden after enter or esc (the focus goes
    back to where it was, so it never stays in a hidden line)."""

    BINDINGS = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    CommandLine { display: none; }
    CommandLine.-open { display: block; }
    CommandLine.-open.-textual-compact { padding: 0 1; }
    """

    @dataclass
    class Command(Message):
        command: str
        arguments: list[str]

    def __init__(self) -> None:
        # no select-all on focus: `t` opens the line with "at " for the user to go on typing;
        # compact: one row, no border (Input:focus would draw a tall border over its only row)
        super().__init__(select_on_focus=False, compact=True, id="command-line")
        self._previous: Widget | None = None

    def open(self, text: str = "") -> None:
        """Show the line, starting with `:` and `text`, and take the focus."""
        if self.has_class("-open"):
            self.focus()
            return
        self._previous = self.screen.focused
        self.value = f":{text}"
        self.cursor_position = len(self.value)
        self.add_class("-open")
        self.screen.set_focus(self)  # now, not after a refresh: keys typed at once are its text

    def action_close(self) -> None:
        """Hide, and give the focus back to where it was before `:`."""
        self.remove_class("-open")
        self.value = ""
        if self._previous is not None and self._previous.is_attached and self._previous is not self:
            self._previous.focus()
        else:
            self.screen.focus_next()

    @on(Input.Changed)
    def _keep_the_colon(self, event: Input.Changed) -> None:
        """Backspace over the `:` closes the line, as in vi."""
        if self.has_class("-open") and not self.value:
            self.action_close()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        words = event.value.strip().lstrip(":").split()
        self.action_close()
        if words:
            self.post_message(self.Command(words[0], words[1:]))
