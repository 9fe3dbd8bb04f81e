"""The console's views of one deployment and one model, driven by real keys against a real supervisor:
logs, version details, aliases, the version diff, the monitor around a deploy, and the ledger at a time."""

from __future__ import annotations

import time

import httpx
import pytest
from console_deck import ROW, Deck, settle, toasts, wait_until
from helpers import next_second

from registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_logs_follow_new_lines_pause_when_scrolled_up_and_wrap(deck: Deck) -> None:
    from console.screens.logs import LogsScreen
    from console.widgets.log_view import LogView

    log_file = deck.client.rundir.deployment_log("iris")
    with log_file.open("a") as handle:
        handle.write("written before the view opened\n")
    app = deck.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await settle(pilot, app)
        await pilot.press("l")
        assert isinstance(app.screen, LogsScreen)
        view = app.screen.query_one(LogView)
        await wait_until(pilot, lambda: len(view.kept) > 0)
        assert list(view.kept) == log_file.read_text().splitlines()[-500:]  # opens on the file's tail
        assert view.kept[-1] == "written before the view opened"
        assert any(" iris v1 [" in line and line.endswith("modeldeck.worker: serving") for line in view.kept)
        with log_file.open("a") as handle:
            handle.writelines(f"console test line {i} " + "x" * 150 + "\n" for i in range(200))
        await wait_until(pilot, lambda: view.kept[-1].startswith("console test line 199"))
        await settle(pilot, app, 0.1)
        assert view.following and view.scroll_y == view.max_scroll_y > 0
        assert "following" in text(app, "#status")

        await pilot.press("pageup", "pageup")  # reading further up: new lines must not pull the view down
        reading = view.scroll_y
        with log_file.open("a") as handle:
            handle.write("while reading\n")
        await wait_until(pilot, lambda: view.kept[-1] == "while reading")
        await settle(pilot, app, 0.1)
        assert view.scroll_y == reading < view.max_scroll_y
        assert "paused: scrolled up" in text(app, "#status")

        await pilot.press("end")  # back at the end: following again
        with log_file.open("a") as handle:
            handle.write("after resuming\n")
        await wait_until(pilot, lambda: view.kept[-1] == "after resuming")
        await settle(pilot, app, 0.1)
        assert view.scroll_y == view.max_scroll_y and "following" in text(app, "#status")

        lines_unwrapped = len(view.lines)
        await pilot.press("w")
        assert view.wrap and len(view.lines) > lines_unwrapped  # the long lines now take two rows
        assert "wrap on" in text(app, "#status")
        await pilot.press("escape")
        assert app.screen.__class__.__name__ == "DeploymentsScreen"


async def test_the_log_buffer_is_bounded(deck: Deck) -> None:
    from console.widgets.log_view import LogView

    app = deck.app()
    async with app.run_test(size=(80, 24)) as pilot:
        view = LogView(max_lines=100)
        await app.screen.mount(view)
        view.add(f"line {i}" for i in range(250))
        await pilot.pause(0.1)
        assert len(view.kept) == 100 and view.kept[0] == "line 150" and len(view.lines) == 100


async def test_versions_show_details_set_an_alias_and_compare_two_versions(deck: Deck) -> None:
    from console.screens.diff import DiffScreen
    from console.widgets.ask import Ask

    app = deck.app()
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")
        await settle(pilot, app)
        details = text(app, "#details")
        assert details.startswith("iris:2  sklearn.linear_model")
        assert "signature (4): sepal length (cm)" in details
        assert "scikit-learn 1." in details

        await pilot.press("a")
        assert isinstance(app.screen, Ask)
        await pilot.press(*"canary", "enter")
        await settle(pilot, app, 0.3)
        with Registry(home=deck.home) as reg:
            assert reg.get("iris@canary").version == 2
        table = app.screen.query_one("#versions")
        await wait_until(pilot, lambda: "canary" in table.get_row_at(0)[1])
        assert "canary" in table.get_row_at(0)[1]

        await pilot.press("a", *"bad alias!", "enter")  # refused with the registry's reason, nothing changes
        await settle(pilot, app, 0.3)
        await wait_until(pilot, lambda: any("setting iris@bad alias! failed" in t for t in toasts(app)))
        assert any("setting iris@bad alias! failed" in t for t in toasts(app)), toasts(app)

        await pilot.press("c")  # no version marked: compares with the next older one
        await settle(pilot, app, 0.3)
        assert isinstance(app.screen, DiffScreen)
        diff = app.screen.query_one("#diff")
        rows = {(r[1], r[2]): r for r in (diff.get_row_at(i) for i in range(diff.row_count))}
        assert rows[("params", "C")] == ["*", "params", "C", "1", "0.5"]
        assert rows[("params", "solver")][0] == ""  # equal fields are shown, unmarked
        assert rows[("version", "aliases")][3:] == ["-", "canary"]
        await pilot.press("x")
        await settle(pilot, app, 0.1)
        assert all(diff.get_row_at(i)[0] == "*" for i in range(diff.row_count))
        assert "fields differ (only those shown" in text(app, "#summary")
        await pilot.press("escape")
        assert app.screen.__class__.__name__ == "VersionsScreen"


async def test_the_monitor_shows_the_previous_version_beside_the_new_one_after_a_deploy(deck: Deck) -> None:
    from console.screens.monitor import MonitorScreen

    url = f"http://127.0.0.1:{deck.port}/invocations"
    app = deck.app()
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.press("2")
            await settle(pilot, app)
            await pilot.press("m")
            monitor = app.screen
            assert isinstance(monitor, MonitorScreen)
            with httpx.Client(timeout=10) as client:
                for _ in range(120):  # enough rows for a drift verdict (the window needs 100)
                    client.post(url, json=ROW)
                await wait_until(pilot, lambda: len(monitor.drift_shares) >= 2)  # verdicts on version 1
                deck.client.deploy("iris:2", port=deck.port)
                for _ in range(40):
                    client.post(url, json=ROW)
            both = lambda: " v2: " in text(app, "#summary") and " v1: " in text(app, "#summary")  # noqa: E731
            await wait_until(pilot, both)
            summary = text(app, "#summary")
            assert summary.startswith(" iris: version 2") and summary.index(" v2: ") < summary.index(" v1: ")
            await wait_until(pilot, lambda: "req/s v2" in text(app, "#traffic"))  # after two points of v2
            assert "req/s v1" in text(app, "#traffic")  # one line per version on the charts
            share = text(app, "#drift-share")
            assert "drifted share of features" in share
    finally:
        deck.client.rollback("iris", to=1)  # the next tests start from version 1


async def test_the_monitor_shows_multivariate_drift_of_rows_whose_correlation_broke_at_80x24(
    deck: Deck,
) -> None:
    from helpers import free_port, iris_rows_with_broken_correlation

    from console.screens.monitor import MonitorScreen

    port = free_port()  # a deployment of its own: its window holds only these rows
    deck.client.deploy("iris:1", name="iris-mv", port=port)
    app = deck.app()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            await pilot.press("colon", *"monitor iris-mv", "enter")
            assert isinstance(app.screen, MonitorScreen)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for row in iris_rows_with_broken_correlation():
                    assert client.post("/invocations", json={"inputs": [row]}).status_code == 200
            await wait_until(pilot, lambda: "multivariate:" in text(app, "#summary"))
            await wait_until(pilot, lambda: "  drift" in text(app, "#summary"))
            line = next(x for x in text(app, "#summary").splitlines() if "multivariate:" in x)
            assert "PCA error x" in line and "p<0.001  drift" in line and len(line) <= 80
    finally:
        deck.client.stop("iris-mv")


async def test_the_events_view_says_what_was_serving_at_a_time(deck: Deck) -> None:
    deck.client.rollback("iris", to=2, reason="serving-at test")
    middle = next_second()  # a second after the rollback to 2 ended, and before the one to 1 starts
    next_second()
    deck.client.rollback("iris", to=1, reason="serving-at test")
    deck.client.wait_settled()
    app = deck.app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("colon", *f"at {middle}", "enter")  # from the models view: opens the events
        await wait_until(pilot, lambda: "iris → iris:2" in text(app, "#serving"))
        assert app.screen.__class__.__name__ == "EventsScreen"
        assert text(app, "#serving") == f"serving at {time.strftime('%Y-%m-%d')} {middle}: iris → iris:2"

    app = deck.app()
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await pilot.press("3")
        await settle(pilot, app)
        await wait_until(pilot, lambda: "serving at" in text(app, "#serving"))
        assert text(app, "#serving").endswith("iris → iris:1")  # at the newest event
        await pilot.press("t", *middle, "enter")  # `t` opens the command line with "at "
        await wait_until(pilot, lambda: "iris → iris:2" in text(app, "#serving"))
        assert text(app, "#serving") == f"serving at {time.strftime('%Y-%m-%d')} {middle}: iris → iris:2"
        table = app.screen.query_one("#events")
        assert table.get_row_at(table.cursor_row)[0] <= f"{time.strftime('%Y-%m-%d')} {middle}"
        await pilot.press("colon", *"at yesterday-ish", "enter")
        await settle(pilot, app, 0.2)
        await wait_until(pilot, lambda: any("time" in t for t in toasts(app)))
        assert any("time" in t for t in toasts(app)), toasts(app)  # an unreadable time is said


async def test_a_view_key_goes_to_its_root_and_deploying_the_serving_version_says_it_serves(
    deck: Deck,
) -> None:
    from console.widgets.confirm import Confirm

    serving = deck.version()
    app = deck.app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot, app)
        await pilot.press("2", "l")  # the logs, pushed on the deployments tab
        await settle(pilot, app, 0.2)
        assert app.screen.__class__.__name__ == "LogsScreen"
        await pilot.press("1", "2")  # away and back: the deployments list, not the logs
        await settle(pilot, app, 0.2)
        assert app.screen.__class__.__name__ == "DeploymentsScreen" and len(app.screen_stack) == 1
        await pilot.press("m", "2")  # on the same tab: its root at once, no escapes
        await settle(pilot, app, 0.2)
        assert app.screen.__class__.__name__ == "DeploymentsScreen" and len(app.screen_stack) == 1

        await pilot.press("1", "enter")  # iris's versions, newest first
        await settle(pilot, app)
        table = app.screen.query_one("#versions")
        rows = [table.get_row_at(i)[0] for i in range(table.row_count)]
        table.move_cursor(row=rows.index(serving))
        await pilot.press("d")
        await settle(pilot, app, 0.3)
        assert not isinstance(app.screen, Confirm)  # no no-op deploy is offered
        said = f"iris:{serving} already serves on deployment iris ("
        await wait_until(pilot, lambda: any(t.startswith(said) for t in toasts(app)))
        assert any(t.startswith(said) for t in toasts(app)), toasts(app)
