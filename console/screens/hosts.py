"""Hosts: the supervisors of a shared (PostgreSQL) registry, as each one's heartbeat left its row.

One row per host: up, lost (no heartbeat for 10 s: what it runs is unknown, shown in the theme's error
colour) or stopped; when it last beat, its load, and each deployment it runs (`web v2 x2`). The rows
come with the overview every poll (one query); a SQLite home has one host, and the view says so.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from console.backend import Overview
from console.host_text import HEADINGS, host_cells
from console.screens.base import OverviewScreen
from console.widgets.tables import FitTable, refresh_rows

#: What the view says on a SQLite home (one line at 80 columns).
NOT_SHARED = "hosts need a shared PostgreSQL registry: this home's registry is SQLite"
NO_HOSTS = "no hosts yet: each supervisor on this registry joins when it starts"


class HostsScreen(OverviewScreen[None]):
    DEFAULT_CSS = """
    HostsScreen #list { height: 1fr; }
    HostsScreen #note { height: auto; padding: 0 1; }
    """
    AUTO_FOCUS = "#hosts"
    COLUMNS = HEADINGS
    #: hidden first to last when narrow: the host, its state, heartbeat and deployments stay
    DROP = ("VERSION", "ADDRESS", "MEM", "CPU")
    #: live columns keep these widths, so a heartbeat or a load changing never moves a column
    RESERVE = {"STATE": 7, "HEARTBEAT": 10, "CPU": 10, "MEM": 4}

    def __init__(self) -> None:
        super().__init__(name="hosts")
        self._colour = ""  # the error colour the rows were drawn in (a theme change redraws them)

    def body(self) -> ComposeResult:
        table = FitTable(
            drop=self.DROP,
            reserve=self.RESERVE,
            styles={"STATE": self._state_style},
            cursor_type="row",
            zebra_stripes=True,
            id="hosts",
        )
        table.add_columns(*self.COLUMNS)
        with Vertical(id="list"):
            yield table
        yield Static("", id="note", markup=False)

    def _state_style(self, state: str) -> str:
        return self._colour if state == "lost" else ""

    def show(self, overview: Overview) -> None:
        table = self.query_one("#hosts", FitTable)
        note = self.query_one("#note", Static)
        if not overview.shared:
            table.display = False
            note.update(NOT_SHARED)
            return
        colour = str(self.app.theme_variables.get("error", "red"))
        if colour != self._colour:  # cells keep the style they were drawn with
            self._colour = colour
            table.clear()
        rows = [(h.name, host_cells(h)) for h in overview.hosts]
        refresh_rows(table, rows)
        lost = [h.name for h in overview.hosts if h.state == "lost"]
        if not rows:
            note.update(NO_HOSTS)
        elif lost:
            note.update(f"lost (no heartbeat for 10 s; what they run is unknown): {', '.join(lost)}")
        else:
            note.update("")
