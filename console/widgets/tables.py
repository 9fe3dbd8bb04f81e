"""Tables of the views: a DataTable that fits its width, and refreshing one in place.

`FitTable` keeps every row's full cells and shows the columns that fit: when the widest cells of all
columns need more room than the table has, it hides the columns named in `drop` (first named, first
hidden), then shortens the widest cells with an ellipsis (not in columns where every cell has the
same length, such as times), rather than scrolling sideways. So the
views work at 80x24 and show everything when there is room.

Columns of live figures (req/s, p99, state, uptime) are given a `reserve`d width: they keep it whatever
their cells hold, and the choice of columns counts that width instead of the cells', so figures
arriving (`-` becoming `12.3ms`) neither move the columns nor make one appear or disappear.

Cells are registry text: they are kept without control characters and shown with Rich markup escaped
(`console/safe_text.py`), so a model's description can neither drive the terminal nor style the table.
A column named in `styles` is coloured by the table's owner instead (a lost host in the theme's error
colour): the cell is then plain text with that style, never markup either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from rich.cells import cell_len
from rich.markup import escape
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from console.safe_text import printable

SCROLLBAR = 2  # room kept for the vertical scrollbar
NARROWEST = 6  # a shortened column keeps at least this many cells


class FitTable(DataTable[str]):
    """A DataTable whose columns fit its width: see the module docstring. `drop` names columns by label."""

    def __init__(
        self,
        *,
        drop: Sequence[str] = (),
        reserve: Mapping[str, int] | None = None,
        styles: Mapping[str, Callable[[str], str]] | None = None,
        **options: Any,
    ) -> None:
        """`drop`: labels hidden first to last when the table is narrow (identity and state are never
        named); `reserve`: label -> the fixed width of a column of live figures; `styles`: label -> the
        Rich style of a cell of that column from its text ("": none)."""
        super().__init__(**options)
        self.drop = tuple(drop)
        self.reserve = dict(reserve or {})
        self.cell_styles = dict(styles or {})
        self.labels: list[str] = []
        self.full: dict[Any, list[str]] = {}  # row key -> every cell, in `labels` order
        self.shown: list[int] = []  # indexes of the labels shown
        self.limit: int | None = None  # cells longer than this are shortened
        self._refit_pending = False
        self._fixed: set[int] = set()  # columns of one fixed format, never shortened

    # ---------------------------------------------------------------- the DataTable calls views make
    def add_columns(self, *labels: Any) -> list[Any]:
        self.labels = [str(label) for label in labels]
        self.shown = list(range(len(self.labels)))
        return self._add_columns(self.labels)

    def _add_columns(self, labels: list[str]) -> list[Any]:
        """Columns of live figures at their reserved width, the others as wide as their cells."""
        return [
            super(FitTable, self).add_column(label, width=self._reserved(label), key=label)
            for label in labels
        ]

    def _reserved(self, label: str) -> int | None:
        return max(cell_len(label), self.reserve[label]) if label in self.reserve else None

    def add_row(self, *cells: Any, key: str | None = None, **options: Any) -> Any:
        if not self.labels:
            return super().add_row(*cells, key=key, **options)
        clean = [printable(c) for c in cells]
        row_key = super().add_row(*self._project(clean), key=key, **options)
        self.full[row_key] = clean
        if not self._refit_pending:  # once after a batch of rows, not once per row
            self._refit_pending = True
            self.call_after_refresh(self._rows_added)
        return row_key

    def clear(self, columns: bool = False) -> FitTable:
        self.full.clear()
        if columns:
            self.labels, self.shown = [], []
        super().clear(columns)
        return self

    def full_row(self, index: int) -> list[str]:
        """Every cell of the row at `index`, shown or not."""
        return self.full[self.coordinate_to_cell_key(Coordinate(index, 0)).row_key]

    def set_cell(self, index: int, label_index: int, value: str) -> None:
        """Set one cell by the index of its label; a hidden cell is kept for when it is shown."""
        value = printable(value)
        self.full_row(index)[label_index] = value
        if label_index in self.shown:
            at = Coordinate(index, self.shown.index(label_index))
            # (a styled cell is a Text: the DataTable renders either; its type parameter says str)
            self.update_cell_at(at, cast(str, self._display(label_index, value)), update_width=True)

    # ---------------------------------------------------------------- fitting
    def on_resize(self) -> None:
        self.refit()

    def _rows_added(self) -> None:
        self._refit_pending = False
        if not self.refit():
            # the columns grew to fit the new rows: the header line may still be cached at its old widths.
            # `notify_style_update` is the public hook by which a DataTable drops its render caches
            # (and repaints).
            self.notify_style_update()

    def refit(self) -> bool:
        """Choose the columns (and the length limit) for the current width; rebuild (and say so) if they
        changed."""
        if not self.labels or not self.size.width:
            return False
        shown, limit = self._choose()
        if (shown, limit) == (self.shown, self.limit):
            return False
        self.shown, self.limit = shown, limit
        cursor = self.cursor_coordinate.row
        rows = [(key, cells) for key, cells in self.full.items()]
        super().clear(columns=True)
        self._add_columns([self.labels[i] for i in shown])
        for key, cells in rows:
            super().add_row(*self._project(cells), key=key.value)
            self.full[key] = cells
        if self.row_count:
            self.move_cursor(row=min(cursor, self.row_count - 1))
        return True

    def _choose(self) -> tuple[list[int], int | None]:
        room = self.size.width - SCROLLBAR
        widths = [
            self._reserved(label)
            or max([cell_len(label)] + [cell_len(cells[i]) for cells in self.full.values()])
            for i, label in enumerate(self.labels)
        ]
        pad = 2 * self.cell_padding
        shown = list(range(len(self.labels)))
        for label in self.drop:
            if sum(widths[i] + pad for i in shown) <= room:
                break
            if label in self.labels:
                shown.remove(self.labels.index(label))
        need = sum(widths[i] + pad for i in shown)
        if need <= room:
            return shown, None
        # Shorten the widest cells until the rest fits, but never a column of one fixed format
        # (times, versions: every cell as long as the others), where a cut loses the end that matters.
        fixed = {
            i
            for i in shown
            if self.labels[i] in self.reserve
            or (len(self.full) > 1 and len({cell_len(c[i]) for c in self.full.values()}) == 1)
        }
        free = [i for i in shown if i not in fixed]
        if not free:
            return shown, None
        base = sum(widths[i] + pad for i in fixed)
        limit = max(widths[i] for i in free)
        while limit > NARROWEST and base + sum(min(widths[i], limit) + pad for i in free) > room:
            limit -= 1
        self._fixed = fixed
        return shown, limit

    def _project(self, cells: list[Any]) -> list[Any]:
        return [self._display(i, cells[i]) for i in self.shown]

    def _display(self, index: int, value: str) -> str | Text:
        """The cell as the DataTable gets it: markup escaped, or plain text in its column's style."""
        short = self._cell(index, value)
        label = self.labels[index]
        style = self.cell_styles[label](value) if label in self.cell_styles else ""
        return Text(short, style=style) if style else escape(short)

    def _cell(self, index: int, value: str) -> str:
        """The cell as shown: a live column's within its reserved width, a fixed-format one whole,
        any other within the length limit (an ellipsis says when something was cut)."""
        reserved = self._reserved(self.labels[index])
        if reserved is not None:
            return value if cell_len(value) <= reserved else value[: reserved - 1] + "…"
        return value if index in self._fixed else self._short(value)

    def _short(self, value: Any) -> Any:
        text = str(value)
        if self.limit is None or cell_len(text) <= self.limit:
            return value
        return text[: self.limit - 1] + "…"


def refresh_rows(table: FitTable, rows: list[tuple[str, list[str]]]) -> None:
    """Make `table` show `rows` (key, cells), keeping the cursor; cheap when little changed."""
    keys = [str(key.value) for key in table.rows]
    if keys == [key for key, _ in rows]:
        for index, (_, cells) in enumerate(rows):
            current = table.full_row(index)
            for column, value in enumerate(cells):
                if current[column] != printable(value):
                    table.set_cell(index, column, value)
        table.refit()
        return
    selected = keys[table.cursor_row] if keys and 0 <= table.cursor_row < len(keys) else None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    new_keys = [key for key, _ in rows]
    if selected in new_keys:
        table.move_cursor(row=new_keys.index(selected))
