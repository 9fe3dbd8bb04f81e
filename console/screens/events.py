"""Events: the ledger of every model (deploys, rollbacks, crashes, automatic rollbacks), filterable."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Input

from console.actions import bindings
from console.backend import Overview
from console.output import when
from console.screens.base import OverviewScreen
from console.widgets.filter import FilterBar, matches
from console.widgets.tables import FitTable
from registry.info import EventInfo


class EventsScreen(OverviewScreen):
    """Newest first; `/` filters rows by a regex matching any column (`!` inverts)."""

    AUTO_FOCUS = "#events"
    BINDINGS = bindings("events")
    COLUMNS = ("WHEN", "MODEL", "EVENT", "VERSION", "WHERE", "WHO", "WHY")

    def __init__(self) -> None:
        super().__init__(name="events")
        self.events: list[EventInfo] = []
        self.pattern = ""
        self._shown: tuple[int, str] | None = None

    def body(self) -> ComposeResult:
        yield FilterBar("events", "#events")
        table: DataTable[str] = FitTable(
            drop=("WHO", "WHERE"), cursor_type="row", zebra_stripes=True, id="events"
        )
        table.add_columns(*self.COLUMNS)
        yield table

    def load(self) -> Overview:
        self.events = self.deck.backend.events()
        return super().load()

    def show(self, overview: Overview) -> None:
        newest = (len(self.events), str(self.events[0].at) if self.events else "")
        if newest == self._shown:
            return  # nothing new: leave the table (and the user's cursor) alone
        self._shown = newest
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#events", DataTable)
        table.clear()
        for event in self.events:
            cells = _cells(event)
            if matches(self.pattern, cells):
                table.add_row(*cells)

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value
        self._fill()


def _cells(event: EventInfo) -> list[str]:
    if (
        event.from_version is not None
        and event.to_version is not None
        and event.from_version != event.to_version
    ):
        version = f"{event.from_version} → {event.to_version}"
    else:
        version = str(event.to_version if event.to_version is not None else event.from_version or "-")
    where = event.deployment or (f"@{event.alias}" if event.alias else "")
    return [when(event.at), event.model, event.kind, version, where, event.actor, event.reason]
