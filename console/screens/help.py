"""`?`: every key and `:` command, from the action table (changing actions dimmed when read-only).

Two columns of scopes when the terminal is wide enough (it fits 80x24), one below that; it scrolls
when it still does not fit, and the last line always says how to scroll and close.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.actions import ACTIONS, GLOBAL, READ_ONLY, Action, key_label

HINT = "↑↓ scroll · ctrl+p command palette · esc, ? or q closes"


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]
    HORIZONTAL_BREAKPOINTS = [(0, "-one-column"), (78, "-two-columns")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: auto; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $panel; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: auto; max-height: 1fr; width: auto; }
    HelpScreen Horizontal { height: auto; width: auto; }
    HelpScreen .column { width: 36; height: auto; }
    HelpScreen .column.-right { margin-left: 2; }
    HelpScreen.-one-column Horizontal { layout: vertical; }
    HelpScreen.-one-column .column.-right { margin-left: 0; }
    HelpScreen .scope { text-style: bold; color: $primary; }
    HelpScreen .refused { color: $text-disabled; }
    HelpScreen #hint { color: $text-muted; width: 74; max-width: 100%; }
    """

    def __init__(self, read_only: bool, shared: bool = False) -> None:
        """`shared`: the registry is shared by several hosts (the hosts view is listed)."""
        super().__init__()
        self.read_only = read_only
        self.shared = shared

    def compose(self) -> ComposeResult:
        offered = [a for a in ACTIONS if self.shared or not a.shared]
        scopes: list[str] = []
        for action in offered:
            for scope in action.scopes:
                if scope not in scopes:
                    scopes.append(scope)
        columns = _balance([(scope, [a for a in offered if scope in a.scopes]) for scope in scopes])
        with Vertical():
            if self.read_only:
                yield Static(READ_ONLY, classes="refused")
            with VerticalScroll(), Horizontal():
                for number, column in enumerate(columns):
                    with Vertical(classes="column -right" if number else "column"):
                        for scope, actions in column:
                            yield Static("everywhere" if scope == GLOBAL else scope, classes="scope")
                            for action in actions:
                                yield self._line(action)
            yield Static(HINT, id="hint", markup=False)

    def _line(self, action: Action) -> Static:
        command = f":{action.command} {action.usage}".rstrip() if action.command else ""
        refused = self.read_only and action.changes
        line = f"{key_label(action.key):>6} {action.description:<12} {'(read-only)' if refused else command}"
        return Static(line.rstrip(), classes="refused" if refused else "", markup=False)


def _balance(scopes: list[tuple[str, list[Action]]]) -> list[list[tuple[str, list[Action]]]]:
    """Split the scopes, in order, into two columns of about the same number of lines."""
    lines = [len(actions) + 1 for _, actions in scopes]  # with its heading
    total, running = sum(lines), 0
    for cut, count in enumerate(lines):
        if running + count / 2 > total / 2:
            return [scopes[:cut] or scopes[:1], scopes[cut:] if cut else scopes[1:]]
        running += count
    return [scopes, []]
