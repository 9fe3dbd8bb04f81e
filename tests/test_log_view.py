"""The log tail keeps following when polls arrive faster than the screen lays lines out (a busy machine)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from console.widgets.log_view import LogView

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class OneLog(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView(id="log")


async def test_polls_before_the_last_lines_were_laid_out_leave_the_view_following() -> None:
    app = OneLog()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        view.add(f"line {i}" for i in range(60))
        view.add([])  # the next polls land before any refresh: the geometry still says "top"
        view.add(["line 60"])
        assert view.following
        await pilot.pause()
        await pilot.pause()
        assert view.following and view.scroll_y == view.max_scroll_y > 0
        assert view.kept[-1] == "line 60"


async def test_scrolling_up_pauses_and_the_end_resumes() -> None:
    app = OneLog()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        view.add(f"line {i}" for i in range(60))
        await pilot.pause()
        view.scroll_home(animate=False, immediate=True)
        view.add(["while reading"])
        await pilot.pause()
        assert not view.following and view.scroll_y == 0
        view.scroll_end(animate=False, immediate=True)
        view.add(["after resuming"])
        await pilot.pause()
        assert view.following and view.scroll_y == view.max_scroll_y
