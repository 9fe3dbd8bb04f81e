"""A yes/no modal that names exactly what will change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class Confirm(ModalScreen[bool]):
    """`y` confirms, `n` or `esc` cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="modeldeck.confirm_yes"),
        Binding("n", "answer(False)", "No", id="modeldeck.confirm_no"),
        Binding("escape", "answer(False)", "Cancel", show=False),
    ]
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical {
        width: auto; max-width: 76; height: auto; padding: 1 2; border: thick $warning; background: $panel;
    }
    Confirm > Vertical > Static { width: auto; max-width: 70; }
    Confirm #question { text-style: bold; }
    Confirm #keys { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question, self.detail = question, detail

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="question", markup=False)
            if self.detail:
                yield Static(self.detail, id="detail", markup=False)
            yield Static("y: yes    n / esc: no", id="keys", markup=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
