"""The CLI's Rich consoles (`console.output.out` and `err`), which never print a control character."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

from console.safe_text import safe_segments


class SafeConsole(Console):
    """A Console that never writes a control character it did not generate itself: every segment
    it renders (tables, Text, plain strings, error lines) passes through `safe_text`."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        return safe_segments(super().render(renderable, options))


def consoles() -> tuple[SafeConsole, SafeConsole]:
    """(stdout's console, stderr's console)."""
    # markup=False everywhere: names, tags, reasons and paths are user text and must print verbatim
    # (less their control characters: see console/safe_text.py).
    # Piped output is not squeezed into 80 columns, so grep and awk see one row per line.
    out = SafeConsole(
        highlight=False,
        markup=False,
        width=None if sys.stdout.isatty() else max(200, shutil.get_terminal_size().columns),
    )
    err = SafeConsole(stderr=True, highlight=False, markup=False, soft_wrap=True)
    return out, err
