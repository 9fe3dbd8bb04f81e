"""`?`: every key and `:` command, from the action table (changing actions dimmed when read-only)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.actions import ACTIONS, GLOBAL, key_label


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 72; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $panel; padding: 0 1;
    }
    HelpScreen .scope { text-style: bold; color: $primary; margin-top: 1; }
    HelpScreen .refused { color: $text-disabled; }
    """

    def __init__(self, read_only: bool) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        scopes: list[str] = []
        for action in ACTIONS:
            for scope in action.scopes:
                if scope not in scopes:
                    scopes.append(scope)
        with VerticalScroll():
            if self.read_only:
                yield Static("read-only: deploy, roll back and stop are off", classes="refused")
            for scope in scopes:
                yield Static("everywhere" if scope == GLOBAL else scope, classes="scope")
                for action in (a for a in ACTIONS if scope in a.scopes):
                    command = f"  :{action.command} {action.usage}".rstrip() if action.command else ""
                    line = f"{key_label(action.key):>7}  {action.description:<14}{command}"
                    refused = self.read_only and action.changes
                    yield Static(
                        line + ("  (read-only)" if refused else ""),
                        classes="refused" if refused else "",
                        markup=False,
                    )
