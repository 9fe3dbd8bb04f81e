"""Screens fed by messages from their workers, driven by real keys on a real registry (no supervisor):
each still shows what it read, a static view reads only when asked, and polls never overlap."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_deck import settle, tap, wait_until
from helpers import iris_home

from registry import Registry

pytestmark = [pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with iris_home(tmp_path_factory, "screens") as home:
        yield home


def _app(home: Path):  # type: ignore[no-untyped-def]
    from console.app import ModeldeckApp

    return ModeldeckApp(home, refresh_seconds=0.05)


def _polls_running(app) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for w in app.workers if w.node is app.screen and w.group == "poll" and not w.is_finished)


async def test_the_diff_reads_once_and_again_only_on_the_refresh_key(home: Path) -> None:
    from console.screens.diff import DiffScreen

    app = _app(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one("#models").row_count > 0)  # the first poll's
        await pilot.press("enter")  # iris's versions
        await settle(pilot, app, 0.2)
        await pilot.press("c")  # 2 against the next older one
        assert isinstance(app.screen, DiffScreen)
        table = app.screen.query_one("#diff")

        def fields() -> dict[tuple[str, str], list[str]]:
            rows = (table.get_row_at(i) for i in range(table.row_count))
            return {(r[1], r[2]): r for r in rows}

        await wait_until(pilot, lambda: ("params", "C") in fields())
        assert fields()[("params", "C")] == ["*", "params", "C", "1", "0.5"]  # what it read is shown
        with Registry(home=home) as reg:
            reg.tag("iris:2", {"team": "risk"})
        await settle(pilot, app, 1.0)  # twenty refresh periods: a polling screen would have read it
        assert ("tags", "team") not in fields()
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: ("tags", "team") in fields())
        assert fields()[("tags", "team")] == ["*", "tags", "team", "-", "risk"]
        with Registry(home=home) as reg:
            reg.tag("iris:2", {}, remove=["team"])


async def test_refresh_keys_while_a_poll_runs_never_start_a_second_one(home: Path) -> None:
    app = _app(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 0.2)
        screen, read = app.screen, app.screen.fetch
        # each read of the real registry takes 0.2 s more, so the keys surely land while one runs
        screen.fetch = lambda request: (time.sleep(0.2), read(request))[1]  # type: ignore[method-assign]
        running = []
        for _ in range(20):
            await pilot.press("ctrl+r")
            running.append(_polls_running(app))
        assert max(running) == 1, running  # each press while one runs asks for one more after it
        await settle(pilot, app, 0.2)
        assert app.screen.query_one("#models").row_count == 1  # and the screen still shows its data


async def test_log_lines_arrive_once_each_however_often_the_view_is_refreshed(home: Path) -> None:
    from console.screens.logs import LogsScreen
    from console.widgets.log_view import LogView

    app = _app(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 0.2)
        screen = LogsScreen("iris")
        screen.path.parent.mkdir(parents=True, exist_ok=True)
        await app.push_screen(screen)
        await settle(pilot, app, 0.2)
        view = app.screen.query_one(LogView)
        reads, read = [], screen.fetch
        screen.fetch = lambda request: (reads.append(1), read(request))[1]  # type: ignore[method-assign]
        lines = [f"line {i}" for i in range(40)]
        with screen.path.open("a") as handle:
            for line in lines:
                handle.write(line + "\n")
                handle.flush()
                await tap(pilot, "ctrl+r")
                await wait_until(pilot, lambda: not screen._polling)  # the read it asked for is in
        await wait_until(pilot, lambda: list(view.kept)[-1:] == ["line 39"])
        assert [line for line in view.kept if line.startswith("line ")] == lines
        assert len(reads) >= 40  # the keys refreshed it between the writes (one poll at a time)
