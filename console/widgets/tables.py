"""Refreshing a DataTable in place: rebuild only when its rows change, else update the changed cells."""

from __future__ import annotations

from textual.coordinate import Coordinate
from textual.widgets import DataTable


def refresh_rows(table: DataTable[str], rows: list[tuple[str, list[str]]]) -> None:
    """Make `table` show `rows` (key, cells), keeping the cursor; cheap when little changed."""
    keys = [str(key.value) for key in table.rows]
    if keys == [key for key, _ in rows]:
        for index, (_, cells) in enumerate(rows):
            current = table.get_row_at(index)
            for column, value in enumerate(cells):
                if current[column] != value:
                    table.update_cell_at(Coordinate(index, column), value)
        return
    selected = keys[table.cursor_row] if keys and 0 <= table.cursor_row < len(keys) else None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    new_keys = [key for key, _ in rows]
    if selected in new_keys:
        table.move_cursor(row=new_keys.index(selected))
