"""Registry text made safe to print: the one place control characters are taken out.

Names, descriptions, tags, metric names, params and error messages can come from anyone who can
register a model or hand over an export archive. Printed raw, an ESC or C1 byte in them would drive
the reader's terminal (retitle the window, clear the screen, fake output). Every string the CLI and
the console show passes through `printable`: the CLI's consoles filter every segment they render,
the console's line filter every line it draws, and table cells are plain Text (never Rich markup).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rich.segment import Segment

#: C0 controls, DEL and C1 controls; tab and newline are turned into spaces by `printable`.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(value: object, keep_newlines: bool = False) -> str:
    """`str(value)` without control characters (tabs, and newlines unless kept, become spaces)."""
    text = str(value)
    if keep_newlines:
        return _CONTROL_KEEP_NEWLINE.sub(_replace, text)
    return _CONTROL.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    return " " if match.group() in "\t\n" else ""


def safe_segments(segments: Iterable[Segment]) -> Iterator[Segment]:
    """Rendered segments with control characters taken out of their text (Rich's own control
    segments, such as cursor moves, are kept; newlines are the renderer's own line breaks)."""
    for segment in segments:
        if segment.control or not _CONTROL_KEEP_NEWLINE.search(segment.text):
            yield segment
        else:
            yield Segment(printable(segment.text, keep_newlines=True), segment.style, segment.control)
