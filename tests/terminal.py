"""A real terminal for end-to-end tests: the program runs in a pseudo-terminal (pexpect) and what it
draws is read back through a terminal emulator (pyte), so a test sees the screen a user sees.

    with Terminal(modeldeck("console"), size=(80, 24), env={...}) as term:
        term.wait_for("Models")
        term.send("/")
        term.send("iris")
        term.wait_for("iris", row=term.row_of("filter"))

Every wait polls the screen until its condition holds or a deadline passes (then it fails with the
screen as it was); nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import pexpect
import pyte

#: Keys as the terminal sends them.
KEYS = {
    "escape": "\x1b",
    "enter": "\r",
    "up": "\x1b[A",
    "down": "\x1b[B",
    "right": "\x1b[C",
    "left": "\x1b[D",
    "backspace": "\x7f",
    "ctrl+u": "\x15",
}


def modeldeck(*args: str) -> list[str]:
    """argv of the `modeldeck` CLI of this checkout (run as a module, so no installed script is needed)."""
    return [sys.executable, "-m", "console.cli", *args]


class Terminal:
    """`argv` running in a `size` (columns, rows) pseudo-terminal with TERM=xterm-256color."""

    def __init__(
        self,
        argv: Sequence[str],
        size: tuple[int, int] = (80, 24),
        env: dict[str, str | None] | None = None,
    ) -> None:
        """`env` is added to this process's environment (a None value removes that variable)."""
        columns, rows = size
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        environment = {
            **os.environ,
            "TERM": "xterm-256color",
            "COLUMNS": str(columns),
            "LINES": str(rows),
            **(env or {}),
        }
        kept = {key: value for key, value in environment.items() if value is not None}
        self.child = pexpect.spawn(
            argv[0], list(argv[1:]), env=kept, dimensions=(rows, columns), timeout=None
        )

    # ---------------------------------------------------------------- reading the screen
    def pump(self, wait: float = 0.05) -> None:
        """Feed the emulator whatever the program wrote (waiting up to `wait` s for the first bytes)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=max(0.0, deadline - time.monotonic()))
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.stream.feed(data)
            deadline = time.monotonic()  # take what is there now, without waiting again

    def lines(self) -> list[str]:
        """The screen, one string per row."""
        return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(self.lines())

    def row_of(self, text: str) -> int | None:
        """The first row showing `text`, or None."""
        return next((y for y, line in enumerate(self.lines()) if text in line), None)

    def cursor(self, row: int | None = None) -> tuple[int, int] | None:
        """(column, row) of the cursor drawn on `row` (default: the terminal's cursor row), or None while
        none is drawn (it blinks). Textual hides the terminal's own cursor and draws the input's: the
        cell in reverse video, or painted in the colour of the row's text. (The terminal's cursor is
        moved to the input only on full repaints, so a test that knows the row should name it.)"""
        y = self.screen.cursor.y if row is None else row
        line = self.screen.buffer[y]
        cells = [line[x] for x in range(self.screen.columns)]
        letters = [c.fg for c in cells if c.data.strip() and not c.reverse]
        text_colour = max(set(letters), key=letters.count) if letters else None
        for x, cell in enumerate(cells):
            if _drawing(cell.data):  # a modal's border painted in the text's colour is no cursor
                continue
            if cell.reverse or (text_colour not in (None, "default") and cell.bg == text_colour):
                return x, y
        return None

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Pump until `condition()` holds; fail with `what` and the screen after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if condition():
                return
            if time.monotonic() > deadline or not self.child.isalive():
                self.pump()
                if condition():
                    return
                raise AssertionError(f"{what} (after {timeout:.0f} s); the screen:\n{self.text()}")

    def wait_for(self, text: str, timeout: float = 30.0, row: int | None = None) -> int:
        """Wait until `text` is on screen (on `row` if given); the row it is on."""

        def shown() -> bool:
            return text in (self.lines()[row] if row is not None else self.text())

        self.wait_until(
            shown, f"{text!r} never appeared" + (f" on row {row}" if row is not None else ""), timeout
        )
        return row if row is not None else self.row_of(text)  # type: ignore[return-value]

    def wait_gone(self, text: str, timeout: float = 30.0) -> None:
        self.wait_until(lambda: text not in self.text(), f"{text!r} stayed on screen", timeout)

    # ---------------------------------------------------------------- typing
    def send(self, *keys: str) -> None:
        """Type each of `keys`: a name of KEYS or literal text."""
        for key in keys:
            self.child.send(KEYS.get(key, key))

    # ---------------------------------------------------------------- the end
    def wait_exit(self, timeout: float = 30.0) -> int | None:
        """Wait for the program to end (draining what it writes); its exit status."""
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self.pump(0.1)
        if self.child.isalive():
            raise AssertionError(f"still running after {timeout:.0f} s; the screen:\n{self.text()}")
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _drawing(text: str) -> bool:
    """Box-drawing and block characters (U+2500 to U+259F): borders, never text."""
    return bool(text) and all("\u2500" <= c <= "\u259f" for c in text)
