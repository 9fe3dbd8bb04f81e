"""Deployments: what serves where, the standby, workers, state and live figures."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable

from console.actions import bindings
from console.backend import Overview
from console.screens.base import OverviewScreen
from console.widgets.live import (
    alert_text,
    drift_text,
    error_share,
    p99_text,
    rps_text,
    state_text,
    uptime_text,
)
from console.widgets.tables import FitTable, refresh_rows


class DeploymentsScreen(OverviewScreen[None]):
    """`r` rolls back to the standby, `s` stops (both confirmed), `m` monitors, `l` shows the logs, `o`
    sets the objectives, `P` / `A` promote or abort a canary or shadow (STATE names it and its share).
    A deployment whose alert fires is marked "!"; ALERT (when there is room) says
    firing, pending or quiet (silenced).

    On a shared (PostgreSQL) registry a HOST column names the hosts each deployment is placed on (a
    host that is not up marked `?`); a deployment placed elsewhere shows what those hosts' heartbeats
    say, and its changes go through the database to their supervisors (`console/operations.py`)."""

    AUTO_FOCUS = "#deployments"
    BINDINGS = bindings("deployments")
    COLUMNS = (
        "DEPLOYMENT",
        "SERVING",
        "STANDBY",
        "PORT",
        "WORKERS",
        "STATE",
        "UPTIME",
        "REQ/S",
        "P99",
        "ERR%",
        "DRIFT",
        "ALERT",
    )

    #: hidden first to last when narrow: identity (name, version), state and where it listens stay
    DROP = ("ALERT", "ERR%", "P99", "STANDBY", "WORKERS", "DRIFT", "REQ/S", "UPTIME", "HOST")
    #: live columns keep these widths, so figures arriving never move or hide a column
    RESERVE = {
        "ALERT": 8,
        "WORKERS": 7,
        "STATE": 20,
        "UPTIME": 6,
        "REQ/S": 6,
        "P99": 8,
        "ERR%": 5,
        "DRIFT": 7,
    }

    def __init__(self) -> None:
        super().__init__(name="deployments")
        self.overview: Overview | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """COLUMNS, with HOST after the name on a shared registry."""
        if not self.deck.backend.shared:
            return self.COLUMNS
        return (self.COLUMNS[0], "HOST", *self.COLUMNS[1:])

    def body(self) -> ComposeResult:
        table: DataTable[str] = FitTable(
            drop=self.DROP,
            reserve=self.RESERVE,
            cursor_type="row",
            zebra_stripes=True,
            id="deployments",
        )
        table.add_columns(*self.columns)
        yield table

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Promote and abort are offered (footer, palette) only on a deployment with a rollout."""
        if action in ("promote", "abort"):
            if self.deck.read_only:
                return None  # shown dimmed, refused
            name = self.selected()
            live = self.overview.live.get(name, {}) if self.overview is not None and name else {}
            return bool(live.get("rollout"))
        return True

    def show(self, overview: Overview) -> None:
        had = self.overview is not None and any(v.get("rollout") for v in self.overview.live.values())
        self.overview = overview
        if had or any(v.get("rollout") for v in overview.live.values()):
            self.refresh_bindings()
        rows = []
        for d in overview.deployments:
            live = overview.live.get(d.name, {})
            wanted = d.workers
            if overview.placed_elsewhere(d):  # workers per host, on each host it is placed on
                wanted = int(d.desired.get("workers") or d.workers) * len(d.placement)
            cells = [
                f"! {d.name}" if overview.firing(d.name) else d.name,
                f"{d.model}:{d.version}",
                str(d.standby_version or "-"),
                str(d.port),
                f"{live.get('workers_running', 0)}/{wanted}",
                state_text(live, overview.supervisor_up),
                uptime_text(live),
                rps_text([live]),
                p99_text([live]),
                error_share([live]),
                drift_text([live]),
                alert_text(overview.alert_of(d.name)),
            ]
            if overview.shared:
                cells.insert(1, placement_text(d.placement, overview))
            rows.append((d.name, cells))
        refresh_rows(self.query_one("#deployments", FitTable), rows)

    def selected(self) -> str | None:
        table = self.query_one("#deployments", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    @on(DataTable.RowHighlighted, "#deployments")
    def _moved(self, event: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()  # promote and abort follow the row's rollout

    @on(DataTable.RowSelected, "#deployments")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.action_monitor()

    def action_open(self) -> None:
        self.action_monitor()

    def action_monitor(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.open_deployment("monitor", name)

    def action_logs(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.open_deployment("logs", name)

    def action_objectives(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.operations.objectives(name)

    def action_promote(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.operations.promote(name)

    def action_abort(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.operations.abort(name)

    def action_rollback(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.operations.rollback(name)

    def action_stop(self) -> None:
        name = self.selected()
        if name is not None:
            self.deck.operations.stop(name)


def placement_text(placement: list[str], overview: Overview) -> str:
    """`b`, `b,c`; a host that is not up marked `b?` (what it runs is unknown); `-` when not placed
    (the supervisor of the home that deployed it runs it)."""
    marked = [host if overview.host_state(host) == "up" else f"{host}?" for host in placement]
    return ",".join(marked) or "-"
