"""Line charts drawn by plotext into a Static: redrawn only when the data or the size changes.

Markers are plotext's high-resolution block characters, or plain ASCII (`*`, `+`, `o`, ...) with an
ASCII frame when `MODELDECK_ASCII=1` (`modeldeck console --ascii` sets it) or the locale is not UTF-8.
"""

from __future__ import annotations

import locale
import os
import threading
from collections.abc import Mapping, Sequence
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


#: Series colours: the 16 basic ANSI colours, which stay themselves in 16 and 256 colours (the 256-colour
#: cube merged neighbours such as p95 and p99 of one version); one per series, never reused in a chart.
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "cyan+", "magenta+", "green+", "yellow+")
#: Tick steps of the time axis (seconds): the first that gives at most one tick per TICK_ROOM cells.
_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
TICK_ROOM = 12


def render_chart(
    title: str,
    series: Mapping[str, Sequence[float | None]],
    width: int,
    height: int,
    thresholds: dict[str, float] | None = None,
    ascii: bool | None = None,
    xs: Sequence[float] | None = None,
    floor: float | None = 0.0,
) -> Text:
    """A line chart of `series` (None values are gaps) `width` x `height` cells: the title, a legend
    line (each label in its series' colour and marker: it covers no data), then the plot. `xs` are
    seconds relative to now (<= 0; ticks read `2m ago` ... `now`), default 0, 1, ...; `thresholds`
    are labelled horizontal lines; the y axis starts at `floor` (None: where the data starts).
    `ascii` (default: `ascii_wanted()`) draws with ASCII characters only."""
    import plotext

    plain = ascii_wanted() if ascii is None else ascii
    length = max((len(v) for v in series.values()), default=0)
    positions = list(xs) if xs is not None else list(range(length))
    lines = [(label, list(values), False) for label, values in series.items()]
    lines += [(label, [level] * length, True) for label, level in (thresholds or {}).items()]
    drawn = []
    for index, (label, values, threshold) in enumerate(lines):
        points = [(x, v) for x, v in zip(positions, values, strict=False) if v is not None]
        if len(points) >= 2:
            drawn.append((label, points, index, threshold))
    if not any(not threshold for *_, threshold in drawn):
        return Text(f"{title}\n(waiting for data)", style="dim")
    legend = _legend([(label, index) for label, _, index, _ in drawn], width, plain)
    figure = plotext.figure
    with _PLOTEXT:
        figure.clear()
        figure.plot_size(max(20, width), max(5, height - 1 - len(legend.split())))
        figure.theme("simple")  # no canvas colour: the chart sits on the theme's background
        for _label, points, index, _ in drawn:
            marker = plotext.marker(_marker(index, plain), pixel=COLOURS[index % len(COLOURS)])
            figure.draw(figure.signal([p[0] for p in points], [p[1] for p in points], marker=marker).lines())
        if floor is not None:
            top = max(v for _, points, _, _ in drawn for _, v in points)
            figure.ruler(1).lim(floor, None if top > floor else floor + 1)  # all zero: 0..1, not -1..1
        if xs is not None and positions:
            ticks = time_ticks(min(positions), max(width - 8, 20) // TICK_ROOM)
            figure.ruler(0).ticks([t for t, _ in ticks], [label for _, label in ticks])
        text = str(figure.build())
    plot = Text.from_ansi(text.translate(_ASCII_FRAME) if plain else text)
    return Text("\n").join([Text(title, style="bold"), legend, plot])


def _marker(index: int, plain: bool) -> str:
    return ASCII_MARKERS[index % len(ASCII_MARKERS)] if plain else "hd"


def _legend(entries: list[tuple[str, int]], width: int, plain: bool) -> Text:
    """`━ p99 v1  ━ p99 v2`, each in its series' colour (ASCII: its marker), wrapped between entries."""
    legend, used = Text(), 0
    for label, index in entries:
        colour = COLOURS[index % len(COLOURS)]
        style = colour.rstrip("+") if not colour.endswith("+") else f"bright_{colour.rstrip('+')}"
        item = Text.assemble(
            ((ASCII_MARKERS[index % len(ASCII_MARKERS)] if plain else "━"), style), f" {label}"
        )
        if used and used + 2 + item.cell_len > width:
            legend.append("\n")
            used = 0
        elif used:
            legend.append("  ")
            used += 2
        legend.append_text(item)
        used += item.cell_len
    return legend


def time_ticks(oldest: float, most: int) -> list[tuple[float, str]]:
    """Round ticks from `oldest` (seconds, <= 0) to now, at most `most` of them: (position, `2m ago`)."""
    span = max(-oldest, 1.0)
    step = next((s for s in _STEPS if span / s <= max(most, 1)), _STEPS[-1])
    ticks = []
    at = 0
    while at <= span:
        ticks.append((-float(at), ago(at)))
        at += step
    return list(reversed(ticks))


def ago(seconds: float) -> str:
    """`now`, `30s ago`, `2m ago`, `1m30s ago`, `1h ago`."""
    seconds = round(seconds)
    if seconds <= 0:
        return "now"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m ago" if minutes else f"{hours}h ago"
    if minutes:
        return f"{minutes}m{secs:02d}s ago" if secs else f"{minutes}m ago"
    return f"{secs}s ago"


class Chart(Static):
    """A chart that knows its own size; `plot()` redraws it, and so does a resize."""

    DEFAULT_CSS = "Chart { height: 1fr; min-height: 5; width: 1fr; }"

    @dataclass
    class _Plot:
        title: str
        series: Mapping[str, Sequence[float | None]]
        options: dict[str, object]

    _last: _Plot | None = None

    def plot(self, title: str, series: Mapping[str, Sequence[float | None]], **options: object) -> None:
        self._last = self._Plot(title, series, options)
        self._draw()

    def _draw(self) -> None:
        if self._last is None or not self.size.width:
            return
        last = self._last
        width, height = self.size.width, self.size.height
        # plot() passes its keyword options through untyped (**object); render_chart checks their names.
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
