"""Alerts: every objective's alerts, newest first, the silences in force, and the selected deployment's
objectives. `z` silences the selected deployment's alerts, `u` ends its silences, `o` sets its
objectives, enter opens its monitor."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from console.actions import bindings
from console.backend import Overview
from console.output import when
from console.screens.base import OverviewScreen
from console.widgets.tables import FitTable, refresh_rows
from registry.info import AlertInfo, SilenceInfo

Read = tuple[list[AlertInfo], list[SilenceInfo]]


class AlertsScreen(OverviewScreen[Read]):
    AUTO_FOCUS = "#alerts"
    DEFAULT_CSS = """
    AlertsScreen #list { height: 1fr; }
    AlertsScreen #quiet { height: auto; max-height: 6; padding: 0 1; border-top: solid $primary; }
    """
    BINDINGS = bindings("alerts")
    COLUMNS = ("ID", "STATE", "DEPLOYMENT", "V", "OBJECTIVE", "SEVERITY", "SINCE", "WHY")

    def __init__(self) -> None:
        super().__init__(name="alerts")
        self.alerts: list[AlertInfo] = []
        self.silences: list[SilenceInfo] = []

    def body(self) -> ComposeResult:
        table: DataTable[str] = FitTable(
            drop=("SEVERITY", "V", "ID", "SINCE"), cursor_type="row", zebra_stripes=True, id="alerts"
        )
        table.add_columns(*self.COLUMNS)
        with Vertical(id="list"):
            yield table
        yield Static("", id="quiet", markup=False)

    def fetch(self, request: None) -> Read:
        return self.deck.backend.alerts()

    def take(self, extra: Read, request: None) -> None:
        self.alerts, self.silences = extra

    def show(self, overview: Overview) -> None:
        rows = []
        for alert in self.alerts:
            state = alert.state.upper() if alert.state == "firing" else alert.state
            if alert.silenced and alert.state in ("pending", "firing"):
                state += " (silenced)"
            why = str(alert.figures.get("summary") or alert.reason)
            since = when(alert.fired_at or alert.started_at)
            cells = [
                str(alert.id),
                state,
                alert.deployment,
                str(alert.version),
                alert.kind,
                alert.severity,
                since,
                why,
            ]
            rows.append((str(alert.id), cells))
        refresh_rows(self.query_one("#alerts", FitTable), rows)
        lines = [f"silenced: {s.describe(when(s.expires_at))}" for s in self.silences]
        if not self.alerts:
            lines.insert(
                0, "no alerts yet: each deployment's objectives are judged once a second (o sets them)"
            )
        self.query_one("#quiet", Static).update("\n".join(lines))

    def selected(self) -> AlertInfo | None:
        table = self.query_one("#alerts", DataTable)
        if table.row_count == 0:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next((a for a in self.alerts if str(a.id) == key), None)

    def _deployment(self) -> str | None:
        alert = self.selected()
        if alert is None:
            self.deck.notify("no alert selected", severity="warning")
        return alert.deployment if alert else None

    @on(DataTable.RowSelected, "#alerts")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        name = self._deployment()
        if name is not None:
            self.deck.open_deployment("monitor", name)

    def action_silence(self) -> None:
        name = self._deployment()
        if name is not None:
            self.deck.operations.silence(name)

    def action_unsilence(self) -> None:
        name = self._deployment()
        if name is not None:
            self.deck.operations.unsilence(name)

    def action_objectives(self) -> None:
        name = self._deployment()
        if name is not None:
            self.deck.operations.objectives(name)
