"""Line charts drawn by plotext into a Static: redrawn only when the data changes."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

_PLOTEXT = threading.Lock()  # plotext draws on one module-level figure


def render_chart(
    title: str,
    series: dict[str, Sequence[float | None]],
    width: int,
    height: int,
    thresholds: dict[str, float] | None = None,
) -> Text:
    """A line chart of `series` (None values are gaps, drawn as missing) `width` x `height` cells."""
    import plotext

    figure = plotext.figure
    with _PLOTEXT:
        figure.clear()
        figure.plot_size(max(20, width), max(5, height))
        figure.theme("clear")
        figure.title(title)
        drawn = False
        for label, values in series.items():
            points = [(i, v) for i, v in enumerate(values) if v is not None]
            if len(points) >= 2:
                figure.draw(
                    figure.signal([p[0] for p in points], [p[1] for p in points]).lines().label(label)
                )
                drawn = True
        length = max((len(v) for v in series.values()), default=0)
        for label, level in (thresholds or {}).items():
            if drawn and length >= 2:
                figure.draw(figure.signal([0, length - 1], [level, level]).lines().label(label))
        if not drawn:
            return Text(f"{title}\n(waiting for data)", style="dim")
        return Text.from_ansi(str(figure.build()))


class Chart(Static):
    """A chart that knows its own size; `plot()` redraws it."""

    DEFAULT_CSS = "Chart { height: 1fr; min-height: 8; width: 1fr; }"

    def plot(self, title: str, series: dict[str, Sequence[float | None]], **options: object) -> None:
        width, height = self.size.width or 40, self.size.height or 10
        self.update(render_chart(title, series, width, height, **options))  # type: ignore[arg-type]
