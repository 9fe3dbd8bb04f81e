"""A one-line question in a modal: enter answers, esc cancels."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class Ask(ModalScreen[str | None]):
    """Dismisses with the stripped answer, or None on esc or an empty answer."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]
    DEFAULT_CSS = """
    Ask { align: center middle; }
    Ask > Vertical {
        width: 60; max-width: 100%; height: auto; padding: 1 2; border: thick $primary; background: $panel;
    }
    Ask #keys { color: $text-muted; }
    """

    def __init__(self, question: str, placeholder: str = "") -> None:
        super().__init__()
        self.question, self.placeholder = question, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            yield Input(placeholder=self.placeholder)
            yield Static("enter: ok    esc: cancel", id="keys", markup=False)

    @on(Input.Submitted)
    def _answered(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
