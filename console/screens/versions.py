"""Versions of one model: who made each, when, with what, and which aliases point at it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from console.actions import bindings
from console.backend import Overview
from console.output import when
from console.screens.base import OverviewScreen
from console.widgets.tables import FitTable
from registry.info import VersionSummary


class VersionsScreen(OverviewScreen):
    """`d` deploys the selected version, `esc` goes back."""

    AUTO_FOCUS = "#versions"
    BINDINGS = bindings("versions")
    COLUMNS = ("VERSION", "ALIASES", "ESTIMATOR", "METRICS", "CREATED", "BY", "SERVING")

    def __init__(self, model: str) -> None:
        super().__init__(name="versions")
        self.model = model
        self.summaries: list[VersionSummary] = []

    def body(self) -> ComposeResult:
        yield Static(f" {self.model}: versions", id="title", markup=False)
        table: DataTable[str] = FitTable(
            drop=("BY", "ESTIMATOR", "CREATED"), cursor_type="row", zebra_stripes=True, id="versions"
        )
        table.add_columns(*self.COLUMNS)
        yield table

    def load(self) -> Overview:
        self.summaries = self.deck.backend.versions(self.model)
        return super().load()

    def show(self, overview: Overview) -> None:
        table = self.query_one("#versions", DataTable)
        row = table.cursor_row
        table.clear()
        serving = {d.version: d.name for d in overview.deployed(self.model)}
        for v in sorted(self.summaries, key=lambda s: -s.version):
            metrics = " ".join(f"{k}={x:.3g}" for k, x in sorted(v.metrics.items())[:3])
            table.add_row(
                str(v.version),
                " ".join(v.aliases) or "-",
                v.estimator_class.rsplit(".", 1)[-1],
                metrics or "-",
                when(v.created_at),
                v.created_by,
                serving.get(v.version, ""),
                key=str(v.version),
            )
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_deploy(self) -> None:
        table = self.query_one("#versions", DataTable)
        if table.row_count == 0:
            return
        version = int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
        self.deck.confirm_deploy(self, self.model, version, None)
