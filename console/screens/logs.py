"""Logs of one deployment: the tail of its workers' log, followed live."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from console.actions import bindings
from console.backend import Overview
from console.screens.base import OverviewScreen
from console.widgets.log_view import LogView
from registry.serving.logs import LogReader

TAIL = 500  # lines shown when the view opens


class LogsScreen(OverviewScreen[list[str]]):
    """New lines scroll in while the view is at its end; scrolling up pauses that, `end` resumes it."""

    AUTO_FOCUS = "#log"
    REPLACEABLE = False  # each poll brings lines the next does not repeat
    BINDINGS = bindings("logs")
    DEFAULT_CSS = "LogsScreen #status { height: 1; padding: 0 1; }"

    def __init__(self, deployment: str) -> None:
        super().__init__(name="logs")
        self.deployment = deployment
        self.path = self.deck.backend.log_path(deployment)
        #: used by the poll's worker thread only (polls never overlap): it keeps its place in the file
        self.reader = LogReader(self.path, TAIL)
        self.arrived: list[str] = []  # the lines the last poll read, not yet shown
        #: the hosts serving it when it is placed elsewhere (its log is in their homes, not here)
        self.placed: list[str] = []

    def body(self) -> ComposeResult:
        yield Static("", id="status", markup=False)
        yield LogView(id="log")

    def on_unmount(self) -> None:
        self.reader.close()

    def fetch(self, request: None) -> list[str]:
        return self.reader.read()

    def take(self, extra: list[str], request: None) -> None:
        self.arrived += extra

    def show(self, overview: Overview) -> None:
        lines, self.arrived = self.arrived, []
        self.query_one(LogView).add(lines)
        spec = next((d for d in overview.deployments if d.name == self.deployment), None)
        self.placed = list(spec.placement) if spec is not None and overview.placed_elsewhere(spec) else []
        self._status()

    def _status(self) -> None:
        log = self.query_one(LogView)
        if not self.path.exists() and self.placed:
            where = ", ".join(self.placed)
            state = f"it runs on {where}: its log is there (modeldeck logs {self.deployment} on {where})"
        elif not self.path.exists():
            state = "no log yet"
        elif log.following:
            state = "following"
        else:
            state = "paused: scrolled up (end resumes)"
        wrap = "wrap on" if log.wrap else "wrap off"
        self.query_one("#status", Static).update(
            f" {self.deployment}: {self.path.name} · {len(log.kept)} lines · {state} · {wrap} (w)"
        )

    def action_wrap(self) -> None:
        self.query_one(LogView).toggle_wrap()
        self._status()

    def action_follow(self) -> None:
        log = self.query_one(LogView)
        log.scroll_end(animate=False)
        log.following = True
        self._status()
