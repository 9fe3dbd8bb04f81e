"""Two versions of a model side by side: params, metrics, signature, tags and environment."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from console.actions import bindings
from console.backend import Overview
from console.screens.base import OverviewScreen
from console.version_diff import DiffRow, diff_versions
from console.widgets.tables import FitTable


class DiffScreen(OverviewScreen[list[DiffRow]]):
    """Fields that differ are marked `*`; `x` hides the equal ones. Versions do not change once
    registered: they are read once, and again only on the refresh key (aliases, tags and the live
    performance may have moved)."""

    LIVE = False

    AUTO_FOCUS = "#diff"
    BINDINGS = bindings("diff")
    DEFAULT_CSS = "DiffScreen #summary { height: 1; padding: 0 1; }"

    def __init__(self, model: str, left: int, right: int) -> None:
        super().__init__(name="diff")
        self.model, self.left, self.right = model, left, right
        self.rows: list[DiffRow] = []
        self.changes_only = False
        self._shown: list[DiffRow] | None = None

    def body(self) -> ComposeResult:
        yield Static(f" {self.model}: version {self.left} vs {self.right}", id="summary", markup=False)
        table = FitTable(drop=("SECTION",), cursor_type="row", zebra_stripes=True, id="diff")
        table.add_columns("", "SECTION", "FIELD", f"VERSION {self.left}", f"VERSION {self.right}")
        yield table

    def fetch(self, request: None) -> list[DiffRow]:
        backend = self.deck.backend
        left, right = (
            backend.version(f"{self.model}:{self.left}"),
            backend.version(f"{self.model}:{self.right}"),
        )
        return diff_versions(left, right, backend.live_performance(left, right))

    def take(self, extra: list[DiffRow], request: None) -> None:
        self.rows = extra

    def show(self, overview: Overview) -> None:
        if self.rows != self._shown:
            self._fill()

    def _fill(self) -> None:
        self._shown = self.rows
        differing = sum(r.differs for r in self.rows)
        self.query_one("#summary", Static).update(
            f" {self.model}: version {self.left} vs {self.right}:"
            f" {differing} of {len(self.rows)} fields differ"
            + (" (only those shown; x shows all)" if self.changes_only else " (x: only those)")
        )
        table = self.query_one("#diff", DataTable)
        table.clear()
        for row in self.rows:
            if row.differs or not self.changes_only:
                table.add_row("*" if row.differs else "", row.section, row.field, row.left, row.right)

    def action_changes_only(self) -> None:
        self.changes_only = not self.changes_only
        self._fill()
