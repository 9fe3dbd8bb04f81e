"""Models: every registered model, its versions, aliases, what is deployed and how it is doing."""

from __future__ import annotations

from collections import deque
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Input

from console.actions import bindings
from console.backend import Overview
from console.screens.base import OverviewScreen
from console.widgets.chart import ascii_wanted
from console.widgets.filter import FilterBar, matches
from console.widgets.live import drift_text, error_share, p99_text, rps_text, sparkline
from console.widgets.tables import FitTable, refresh_rows

TREND = 20  # points (refreshes) in the req/s sparkline


class ModelsScreen(OverviewScreen[None]):
    """`/` filters by regex (`!` inverts), `enter` opens the versions, `d` deploys the champion."""

    AUTO_FOCUS = "#models"
    BINDINGS = bindings("models")
    COLUMNS = ("MODEL", "VERSIONS", "LATEST", "ALIASES", "DEPLOYED", "REQ/S", "TREND", "P99", "ERR%", "DRIFT")
    DROP = ("VERSIONS", "LATEST", "ERR%", "TREND", "P99")  # hidden first when the table is narrow
    #: live columns keep these widths, so figures arriving never move or hide a column
    RESERVE = {"REQ/S": 6, "TREND": 20, "P99": 8, "ERR%": 5, "DRIFT": 7}

    def __init__(self) -> None:
        super().__init__(name="models")
        self.overview: Overview | None = None
        self.pattern = ""
        self.trends: dict[str, deque[float]] = {}
        self._seen: dict[str, int] = {}  # model -> seq of the newest live point already in its trend
        self.ascii = ascii_wanted()

    def body(self) -> ComposeResult:
        yield FilterBar("models", "#models")
        table: DataTable[str] = FitTable(
            drop=self.DROP, reserve=self.RESERVE, cursor_type="row", zebra_stripes=True, id="models"
        )
        table.add_columns(*self.COLUMNS)
        yield table

    def show(self, overview: Overview) -> None:
        self.overview = overview
        rows = []
        for model in overview.models:
            if not matches(self.pattern, [model.name]):
                continue
            deployed = overview.deployed(model.name)
            live = [overview.live.get(d.name, {}) for d in deployed]
            trend = self._trend(model.name, live)
            aliases = " ".join(f"{a}→{v}" for a, v in sorted(model.aliases.items()))
            where = " ".join(f"{d.name}:{d.version}" for d in deployed) or "-"
            alarmed = any(
                a.state == "firing" and not a.silenced for d in deployed if (a := overview.alert_of(d.name))
            )
            cells = [
                f"! {model.name}" if alarmed else model.name,
                str(model.versions),
                str(model.latest_version or "-"),
                aliases or "-",
                where,
                rps_text(live),
                sparkline(trend, ascii=self.ascii),
                p99_text(live),
                error_share(live),
                drift_text(live),
            ]
            rows.append((model.name, cells))
        refresh_rows(self.query_one("#models", FitTable), rows)

    def _trend(self, model: str, live: list[dict[str, Any]]) -> deque[float]:
        """The model's req/s over its last TREND points (one per newly arrived live point)."""
        trend = self.trends.setdefault(model, deque(maxlen=TREND))
        points = [d["live"] for d in live if d.get("live")]
        newest = max((p["seq"] for p in points), default=None)
        if newest is not None and newest != self._seen.get(model):
            self._seen[model] = newest
            trend.append(sum(p["rps"] for p in points))
        return trend

    def selected(self) -> str | None:
        table = self.query_one("#models", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value
        if self.overview is not None:
            self.show(self.overview)

    @on(DataTable.RowSelected, "#models")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from console.screens.versions import VersionsScreen

        name = self.selected()
        if name is not None:
            self.app.push_screen(VersionsScreen(name))

    def action_deploy(self) -> None:
        """Deploy the model's champion if it has one, else its newest version."""
        name = self.selected()
        if name is None or self.overview is None:
            return
        model = next(m for m in self.overview.models if m.name == name)
        if model.latest_version is None:
            self.notify(f"{name} has no version to deploy", severity="warning")
            return
        self.deck.operations.deploy(f"{name}@champion" if "champion" in model.aliases else name)
