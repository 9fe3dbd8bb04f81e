"""The footer's rebuild, asked for after a refresh, may come once its screen is gone: it does nothing."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from console.widgets.footer import FitFooter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class WithFooter(App[None]):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static("body")
        yield FitFooter()


async def test_a_rebuild_after_the_footer_left_its_screen_does_nothing() -> None:
    app = WithFooter()
    async with app.run_test(size=(80, 24)) as pilot:
        footer = app.query_one(FitFooter)
        await pilot.pause()
        assert any("Quit" in str(key.render()) for key in footer.query("FooterKey"))
        await footer.remove()
        await footer.recompose()  # as a call_after_refresh queued before the removal would


async def test_the_same_keys_are_not_rebuilt() -> None:
    app = WithFooter()
    async with app.run_test(size=(80, 24)) as pilot:
        footer = app.query_one(FitFooter)
        await pilot.pause()
        keys = list(footer.query("FooterKey"))
        await footer.recompose()  # the same bindings: the same key widgets
        assert list(footer.query("FooterKey")) == keys
