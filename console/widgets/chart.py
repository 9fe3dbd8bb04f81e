"""Line charts drawn by plotext into a Static: redrawn only when the data or the size changes.

Markers are plotext's high-resolution block characters, or plain ASCII (`*`, `+`, `o`, ...) with an
ASCII frame when `MODELDECK_ASCII=1` (`modeldeck console --ascii` sets it) or the locale is not UTF-8.
"""

from __future__ import annotations

import locale
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.containers import Grid
from textual.widgets import Static

_PLOTEXT = threading.Lock()  # plotext draws on one module-level figure

#: One ASCII marker per series, so series stay apart without colour too.
ASCII_MARKERS = ("*", "o", "x", "#", "%", "@", "=", "+")  # "+" last: ticks are "+" too
#: plotext's frame and tick characters, and their ASCII stand-ins.
_ASCII_FRAME = str.maketrans("─│┌┐└┘┤├┬┴┼╭╮╰╯", "-|+++++++++++++")


def ascii_wanted() -> bool:
    """Whether charts use ASCII: `MODELDECK_ASCII=1`, or (when it is not set) a locale that is not UTF-8."""
    setting = os.environ.get("MODELDECK_ASCII", "").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    encoding = locale.getpreferredencoding(False)
    return encoding.lower().replace("-", "").replace("_", "") != "utf8"


def render_chart(
    title: str,
    series: dict[str, Sequence[float | None]],
    width: int,
    height: int,
    thresholds: dict[str, float] | None = None,
    ascii: bool | None = None,
    xs: Sequence[float] | None = None,
    xlabel: str = "",
) -> Text:
    """A line chart of `series` (None values are gaps, drawn as missing) `width` x `height` cells, at
    the x positions `xs` (default 0, 1, ...); `thresholds` are labelled horizontal lines. `ascii`
    (default: `ascii_wanted()`) draws with ASCII characters only."""
    import plotext

    plain = ascii_wanted() if ascii is None else ascii
    figure = plotext.figure
    with _PLOTEXT:
        figure.clear()
        figure.plot_size(max(20, width), max(5, height))
        figure.theme("simple")  # no canvas colour: the chart sits on the theme's background
        figure.title(title)
        if xlabel:
            figure.label(xlabel, "x")
        drawn = False
        lines = [(label, values) for label, values in series.items()]
        length = max((len(v) for v in series.values()), default=0)
        positions = list(xs) if xs is not None else list(range(length))
        for label, level in (thresholds or {}).items():
            lines.append((label, [level] * length))
        for index, (label, values) in enumerate(lines):
            points = [(x, v) for x, v in zip(positions, values, strict=False) if v is not None]
            if len(points) < 2 or (index >= len(series) and not drawn):
                continue
            marker = ASCII_MARKERS[index % len(ASCII_MARKERS)] if plain else "hd"
            signal = figure.signal([p[0] for p in points], [p[1] for p in points], marker=marker)
            figure.draw(signal.lines().label(label))
            drawn = drawn or index < len(series)
        if not drawn:
            return Text(f"{title}\n(waiting for data)", style="dim")
        text = str(figure.build())
    return Text.from_ansi(text.translate(_ASCII_FRAME) if plain else text)


class Chart(Static):
    """A chart that knows its own size; `plot()` redraws it, and so does a resize."""

    DEFAULT_CSS = "Chart { height: 1fr; min-height: 5; width: 1fr; }"

    @dataclass
    class _Plot:
        title: str
        series: dict[str, Sequence[float | None]]
        options: dict[str, object]

    _last: _Plot | None = None

    def plot(self, title: str, series: dict[str, Sequence[float | None]], **options: object) -> None:
        self._last = self._Plot(title, series, options)
        self._draw()

    def _draw(self) -> None:
        if self._last is None or not self.size.width:
            return
        last = self._last
        width, height = self.size.width, self.size.height
        self.update(render_chart(last.title, last.series, width, height, **last.options))  # type: ignore[arg-type]

    def on_resize(self) -> None:
        self._draw()


class ChartGrid(Grid):
    """The charts of a view in pages of up to 3x2 (as many as fit), `next_page()` (the monitor's `c`)
    cycling through the pages."""

    DEFAULT_CSS = "ChartGrid { grid-size: 2 2; height: 2fr; grid-gutter: 0 1; }"
    WIDE, TALL = 100, 20  # grid columns for two charts side by side; grid rows for two rows of charts

    page = 0

    def on_resize(self) -> None:
        self._layout()

    def next_page(self) -> None:
        self.page += 1
        self._layout()

    def shape(self) -> tuple[int, int]:
        """(columns, rows) of charts that fit now."""
        width = self.size.width
        columns = 3 if width >= 1.5 * self.WIDE else 2 if width >= self.WIDE else 1
        return columns, (2 if self.size.height >= self.TALL else 1)

    def _layout(self) -> None:
        if not self.size.width:
            return
        charts = list(self.query(Chart))
        columns, rows = self.shape()
        per_page = columns * rows
        pages = max(1, -(-len(charts) // per_page))
        self.styles.grid_size_columns, self.styles.grid_size_rows = columns, rows
        start = (self.page % pages) * per_page
        for index, chart in enumerate(charts):
            chart.display = start <= index < start + per_page
