"""Events: the ledger of every model (deploys, rollbacks, crashes, automatic rollbacks), filterable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from console.actions import bindings
from console.backend import Overview
from console.output import when
from console.screens.base import OverviewScreen
from console.widgets.command_line import CommandLine
from console.widgets.filter import FilterBar, matches
from console.widgets.tables import FitTable
from registry.errors import RegistryError
from registry.info import EventInfo


class EventsScreen(OverviewScreen[list[EventInfo]]):
    """Newest first; `/` filters rows by a regex matching any column (`!` inverts). Below the table: what
    every deployment was serving at the selected event's time, or at the time `t` / `:at TIME` asks for.
    On a shared (PostgreSQL) registry, HOST says where each event happened (every host's in one ledger)."""

    AUTO_FOCUS = "#events"
    #: the ledger takes the room that is left, so the answer below it stays on screen however long it is
    DEFAULT_CSS = """
    EventsScreen #ledger { height: 1fr; }
    EventsScreen #serving { height: auto; max-height: 3; padding: 0 1; border-top: solid $primary; }
    """
    BINDINGS = bindings("events")
    COLUMNS = ("WHEN", "MODEL", "EVENT", "VERSION", "WHERE", "WHO", "WHY")

    def __init__(self) -> None:
        super().__init__(name="events")
        self.events: list[EventInfo] = []
        self.pattern = ""
        self._shown: tuple[int, str] | None = None
        #: the event `:at` put the cursor on, and the time asked for (shown while the cursor stays there)
        self._pinned: tuple[EventInfo, datetime] | None = None
        self._asked: datetime | None = None  # a time asked for before the first read
        self._wanted: datetime | None = None  # the time the line below the ledger is to show

    def body(self) -> ComposeResult:
        yield FilterBar("events", "#events")
        table: DataTable[str] = FitTable(
            drop=("WHO", "WHERE", "HOST"), cursor_type="row", zebra_stripes=True, id="events"
        )
        table.add_columns(*self.columns)
        with Vertical(id="ledger"):
            yield table
        yield Static("", id="serving", markup=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """COLUMNS, with HOST after WHEN on a shared registry."""
        return ("WHEN", "HOST", *self.COLUMNS[1:]) if self.deck.backend.shared else self.COLUMNS

    def fetch(self, request: None) -> list[EventInfo]:
        return self.deck.backend.events()

    def take(self, extra: list[EventInfo], request: None) -> None:
        self.events = extra

    def show(self, overview: Overview) -> None:
        newest = (len(self.events), str(self.events[0].at) if self.events else "")
        if newest == self._shown:
            return  # nothing new: leave the table (and the user's cursor) alone
        self._shown = newest
        self._fill()
        if self._asked is not None:  # `:at` came before the ledger was first read
            self.show_serving_at(self._asked)

    def _fill(self) -> None:
        """Show the events that match the filter, keeping the cursor on the event it was on."""
        table = self.query_one("#events", DataTable)
        selected = self._selected()
        table.clear()
        shared = self.deck.backend.shared
        for index, event in enumerate(self.events):
            cells = _cells(event, shared)
            if matches(self.pattern, cells):
                table.add_row(*cells, key=str(index))
        key = str(self.events.index(selected)) if selected in self.events else None
        if key is not None and key in table.rows:  # (a filter may hide it)
            table.move_cursor(row=table.get_row_index(key))

    def _selected(self) -> EventInfo | None:
        table = self.query_one("#events", DataTable)
        if table.row_count == 0:
            return None
        return self.events[int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))]

    @on(DataTable.RowHighlighted, "#events")
    def _highlighted(self, message: DataTable.RowHighlighted) -> None:
        event = self.events[int(str(message.row_key.value))]
        pinned_event, moment = self._pinned or (None, event.at)
        self._serving(moment if event == pinned_event else event.at)

    def show_serving_at(self, moment: datetime) -> None:
        """Put the cursor on the last event at or before `moment` (what was serving then is what that
        event left in place) and show what was serving at `moment`."""
        self._asked = None if self._shown is not None else moment
        table = self.query_one("#events", DataTable)
        rows = [int(str(k.value)) for k in table.rows]
        before = [row for row, index in enumerate(rows) if self.events[index].at <= moment]
        self._pinned = (self.events[rows[before[0]]], moment) if before else None
        if before and table.cursor_row != before[0]:
            table.move_cursor(row=before[0])  # its highlight shows `moment`
        else:
            self._serving(moment)

    def _serving(self, moment: datetime) -> None:
        """Show what was serving at `moment` (read in a worker; only the last time asked is shown)."""
        self._wanted = moment
        self._read_serving(moment)

    @dataclass
    class Serving(Message):
        """What was serving at `moment`, as a line, read in a worker thread."""

        moment: datetime
        text: str

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, EventsScreen.Serving)

    @on(Serving)
    def _show_serving(self, message: Serving) -> None:
        if message.moment == self._wanted:  # else a newer time was asked for meanwhile
            self.query_one("#serving", Static).update(message.text)

    @work(thread=True, group="serving", exclusive=True, exit_on_error=False)
    def _read_serving(self, moment: datetime) -> None:
        try:
            states = self.deck.backend.serving_at(moment)
        except RegistryError as exc:
            text = f"cannot replay the ledger: {exc}"
        else:
            serving = [
                f"{deployment} → {model}:{version}"
                for model, state in sorted(states.items())
                for deployment, version in sorted(state.serving.items())
            ]
            text = f"serving at {when(moment)}: " + (", ".join(serving) or "nothing")
        self.post_message(self.Serving(moment, text))

    def action_serving_at(self) -> None:
        self.query_one(CommandLine).open("at ")

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value
        self._fill()


def _cells(event: EventInfo, shared: bool = False) -> list[str]:
    """The row of `event`; with `shared`, where it happened (`detail["host"]`) second."""
    if (
        event.from_version is not None
        and event.to_version is not None
        and event.from_version != event.to_version
    ):
        version = f"{event.from_version} → {event.to_version}"
    else:
        version = str(event.to_version if event.to_version is not None else event.from_version or "-")
    where = event.deployment or (f"@{event.alias}" if event.alias else "")
    cells = [when(event.at), event.model, event.kind, version, where, event.actor, event.reason]
    if shared:
        cells.insert(1, str(event.detail.get("host") or "-"))
    return cells
