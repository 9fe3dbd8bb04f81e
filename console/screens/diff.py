"""Two versions of a model side by side: params, metrics, signature, tags and environment."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from console.actions import bindings
from console.version_diff import DiffRow, diff_versions
from registry.errors import RegistryError


class DiffScreen(Screen[None]):
    """Fields that differ are marked `*`; `x` hides the equal ones."""

    AUTO_FOCUS = "#diff"
    BINDINGS = bindings("diff")
    DEFAULT_CSS = "DiffScreen #summary { height: 1; padding: 0 1; }"

    def __init__(self, model: str, left: int, right: int) -> None:
        super().__init__(name="diff")
        self.model, self.left, self.right = model, left, right
        self.rows: list[DiffRow] = []
        self.changes_only = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f" {self.model}: version {self.left} vs {self.right}", id="summary", markup=False)
        table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True, id="diff")
        table.add_columns("", "SECTION", "FIELD", f"VERSION {self.left}", f"VERSION {self.right}")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exit_on_error=False)
    def load(self) -> None:
        backend = self.app.backend  # type: ignore[attr-defined]
        try:
            left = backend.version(f"{self.model}:{self.left}")
            right = backend.version(f"{self.model}:{self.right}")
        except RegistryError as exc:
            self.app.call_from_thread(self.notify, f"cannot compare: {exc}", severity="error")
            return
        rows = diff_versions(left, right)
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[DiffRow]) -> None:
        self.rows = rows
        differing = sum(r.differs for r in rows)
        self.query_one("#summary", Static).update(
            f" {self.model}: version {self.left} vs {self.right}: {differing} of {len(rows)} fields differ"
            + (" (only those shown; x shows all)" if self.changes_only else " (x: only those)")
        )
        table = self.query_one("#diff", DataTable)
        table.clear()
        for row in rows:
            if row.differs or not self.changes_only:
                table.add_row("*" if row.differs else "", row.section, row.field, row.left, row.right)

    def action_changes_only(self) -> None:
        self.changes_only = not self.changes_only
        self._show(self.rows)

    def action_back(self) -> None:
        self.app.pop_screen()
