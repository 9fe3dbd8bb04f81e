"""A real registry with two iris versions, a real supervisor serving version 1, and Pilot helpers.

Each test module that imports `deck` gets its own home and supervisor (module scope).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import free_port, iris_home, stop_supervisor

from registry.serving.client import SupervisorClient

ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


class Deck:
    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.client = SupervisorClient(home)

    def version(self) -> str:
        return httpx.post(
            f"http://127.0.0.1:{self.port}/invocations", json=ROW, timeout=10, verify=False
        ).headers["x-model-version"]

    def app(self, **options):
        from console.app import ModeldeckApp

        app = ModeldeckApp(self.home, refresh_seconds=0.2, **options)
        app.NOTIFICATION_TIMEOUT = 60  # toasts stay until read, however long a loaded run's polls take
        return app


@pytest.fixture(scope="module")
def deck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    with iris_home(tmp_path_factory, "console") as home:
        deck = Deck(home, free_port())
        deck.client.ensure_running("--drain-grace=1", "--metrics=off", "--drift-every=1")
        deck.client.deploy("iris:1", port=deck.port)
        try:
            yield deck
        finally:
            stop_supervisor(deck.client, home)


async def settle(pilot, app, seconds: float = 0.5) -> None:
    """Let the app run `seconds`, then wait for its workers (one the app cancelled, such as a poll
    replaced by a newer one, is done too: not a failure)."""
    from textual.worker import WorkerCancelled

    await pilot.pause(seconds)
    for worker in list(app.workers):
        with contextlib.suppress(WorkerCancelled):
            await worker.wait()


def rows(app, table_id: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The rows of the current screen's table `table_id` ([] while the screen is still being built)."""
    tables = app.screen.query(table_id)
    if not tables:
        return []
    table = tables.first()
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def banner(app) -> str:
    from console.widgets.banner import Banner

    found = app.screen.query(Banner)  # none on a modal (a question) over the screen
    return str(found.first().render()) if found and found.first().display else ""


def toasts(app) -> list[str]:
    """The notifications the current screen shows: the text of its toasts (the `Toast` widgets)."""
    return [str(toast.render()) for toast in app.screen.query("Toast")]


async def tap(pilot, key: str) -> None:
    """A key the way the terminal driver hands it to the app, then the screen's pending messages
    processed: `pilot.press` also waits for the whole process to go idle, at most 1 s twice per key,
    and a screen refreshing 20 times a second never does."""
    from textual import events

    pilot.app.post_message(events.Key(key, None))
    await pilot.pause(0)


KEY_NAMES = {" ": "space", "-": "minus", "=": "equals_sign", ".": "full_stop", "/": "slash", "@": "at"}


async def type_text(pilot, text: str) -> None:
    """`text` typed into the focused input, a key at a time as the terminal driver hands them over
    (without `pilot.press`'s waits for the whole app to go idle)."""
    from textual import events

    for character in text:
        pilot.app.post_message(events.Key(KEY_NAMES.get(character, character), character))
        await pilot.pause(0)


async def wait_until(pilot, condition, seconds: float = 20.0) -> None:
    """Let the app run until `condition()` holds (or `seconds` pass: the caller's assert then says why)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await pilot.pause(0.1)
