"""The console driven by real keys (Textual Pilot) against a real registry and a real supervisor."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from console_deck import ROW, Deck, banner, settle, toasts, wait_until
from helpers import wait_until as poll_until

from registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.anyio]  # anyio's pytest plugin runs the async tests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_deploy_and_roll_back_with_single_keys(deck: Deck) -> None:
    from console.screens.versions import VersionsScreen
    from console.widgets.confirm import Confirm

    app = deck.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")  # iris -> its versions, newest first
        await settle(pilot, app)
        assert isinstance(app.screen, VersionsScreen)
        await pilot.press("d")
        await settle(pilot, app, 0.2)  # the version is looked up in a worker before the question
        assert isinstance(app.screen, Confirm)
        assert "Deploy iris:2 to deployment iris?" in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        shown: set[str] = set()  # the banner while the action runs: the ledger's steps, live
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown.add(banner(app))
            if "done in" in banner(app):
                break  # the action ended
            await pilot.pause(0.05)
        # every step with the time it took (a preloaded worker deploys in a fraction of a second, too
        # fast to catch the banner mid-way every time: the in-progress form is tested in test_console_parts)
        assert all(b.startswith("deploying iris:2") for b in shown if b.startswith("deploying"))
        final = next(b for b in shown if "done in" in b)
        assert final.startswith("deploying iris:2: done in ") and "deploy_requested → loading " in final
        assert "→ ready " in final and "→ switched " in final
        await settle(pilot, app, 0.2)
        assert deck.version() == "2"
        await pilot.press("2")  # deployments
        await settle(pilot, app)
        table = app.screen.query_one("#deployments")
        assert table.get_row_at(0)[:3] == ["iris", "iris:2", "1"]
        await pilot.press("r")
        assert "Roll back iris: iris:2 → version 1 (warm standby)?" in str(
            app.screen.query_one("#question").render()
        )
        await pilot.press("y")
        await settle(pilot, app, 0.2)
        assert deck.version() == "1"
    with Registry(home=deck.home) as reg:
        last = [e for e in reg.history("iris").events if e.kind in ("switched", "rolled_back")][-1]
    assert (last.kind, last.to_version, last.reason) == ("rolled_back", 1, "from the console")


async def test_read_only_refuses_changes_and_says_so(deck: Deck) -> None:
    from console.screens.help import HelpScreen

    app = deck.app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert "read-only" in banner(app)
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.press("d")
        await settle(pilot, app)
        assert app.screen.__class__.__name__ == "VersionsScreen"  # no confirmation was even asked
        await pilot.press("colon", *"deploy iris:2", "enter")
        await settle(pilot, app)
        assert app.screen.__class__.__name__ == "VersionsScreen"
        await pilot.press("a")  # no alias question either
        await pilot.press("colon", *"alias iris:1 champion", "enter")
        await settle(pilot, app)
        assert app.screen.__class__.__name__ == "VersionsScreen"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        lines = [str(w.render()) for w in app.screen.query(".refused")]
        assert any("Deploy" in line and "(read-only)" in line for line in lines)
        assert any("Set alias" in line and "(read-only)" in line for line in lines)
    assert deck.version() == "1"
    with Registry(home=deck.home) as reg:
        assert "champion" not in reg.get("iris:1").aliases


async def test_a_killed_supervisor_shows_a_banner_and_the_console_recovers(deck: Deck) -> None:
    app = deck.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert "supervisor" not in banner(app)
        pid = deck.client.status()["supervisor"]["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while "supervisor not running" not in banner(app) and time.monotonic() < deadline:
            await pilot.pause(0.2)
        assert "supervisor not running" in banner(app)
        assert app.screen.query_one("#models").row_count == 1  # browsing the registry goes on
        deck.client.ensure_running("--drain-grace=1", "--metrics=off", "--drift-every=1")
        deadline = time.monotonic() + 20
        while "supervisor" in banner(app) and time.monotonic() < deadline:
            await pilot.pause(0.2)
        assert "supervisor" not in banner(app)
    assert deck.version() == "1"  # the server never stopped


async def test_a_stuck_supervisor_is_named_and_the_console_keeps_going(deck: Deck) -> None:
    from console.screens.monitor import MonitorScreen

    app = deck.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await settle(pilot, app)
        await pilot.press("enter")  # drills into the deployment: its monitor
        assert isinstance(app.screen, MonitorScreen)
        pid = deck.client.status()["supervisor"]["pid"]
        os.kill(pid, signal.SIGSTOP)  # alive, holding its socket, answering nothing
        try:
            deadline = time.monotonic() + 20
            while "not answering" not in banner(app) and time.monotonic() < deadline:
                await pilot.pause(0.2)
            said = f"supervisor not answering (the supervisor (pid {pid}) did not answer within 3 s)"
            assert said in banner(app), banner(app)
            await pilot.press("escape", "1")  # the console still moves and reads the registry
            await settle(pilot, app, 0.2)
            assert app.screen.query_one("#models").row_count == 1
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while "supervisor" in banner(app) and time.monotonic() < deadline:
            await pilot.pause(0.2)
        assert "supervisor" not in banner(app)
        assert not isinstance(app.screen, MonitorScreen)


async def test_colon_commands_and_the_filter(deck: Deck) -> None:
    from console.widgets.confirm import Confirm

    app = deck.app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot, app)
        await pilot.press("slash", *"^nope")
        await settle(pilot, app, 0.3)
        assert app.screen.query_one("#models").row_count == 0
        await pilot.press("ctrl+u", "exclamation_mark", *"^nope", "enter")
        await settle(pilot, app, 0.3)
        assert app.screen.query_one("#models").row_count == 1
        with Registry(home=deck.home) as reg:
            reg.set_alias("iris", "champion", 2)
        await pilot.press("colon", *"deploy iris@champion", "enter")
        await settle(pilot, app, 0.2)
        assert isinstance(app.screen, Confirm)
        question = str(app.screen.query_one("#question").render())
        assert question == "Deploy iris:2 (@champion) to deployment iris?"
        assert "now serving iris:1 on 127.0.0.1:" in str(app.screen.query_one("#detail").render())
        await pilot.press("n")
        await settle(pilot, app)
        assert deck.version() == "1"

        def said(check) -> bool:  # a toast on screen says it (each shows for a few seconds)
            return any(check(t) for t in toasts(app))

        unknown_model = lambda m: m.startswith("cannot deploy nope@champion: ")  # noqa: E731
        unknown_deployment = lambda m: m == "no deployment 'nope'; known: iris"  # noqa: E731
        await pilot.press("colon", *"deploy nope@champion", "enter")
        await wait_until(pilot, lambda: said(unknown_model))
        assert said(unknown_model), toasts(app)
        assert not isinstance(app.screen, Confirm)  # an unknown model is said, not asked about
        await pilot.press("colon", *"logs nope", "enter")
        await wait_until(pilot, lambda: said(unknown_deployment))
        assert said(unknown_deployment), toasts(app)
        await pilot.press("colon", *"deployments", "enter")
        await settle(pilot, app)
        assert app.screen.__class__.__name__ == "DeploymentsScreen"


def test_demo_traffic_is_answered_and_drifts_the_chosen_deployment(deck: Deck) -> None:
    from console.demo_traffic import DemoTraffic

    url = f"http://127.0.0.1:{deck.port}"
    traffic = DemoTraffic(deck.home, {"iris": (url, "iris:1")}, rate=50, drifting="iris", drift_after=0.5)
    calm = traffic._rows(traffic._samples()["iris"], drifted=False)
    traffic.start()
    # at 50 requests/s, 50 sent means over a second: half a second of drifted rows after the calm half
    poll_until(lambda: traffic.sent > 50, what="a second of demo traffic")
    traffic.stop()
    traffic.join(5)
    assert traffic.sent > 20 and traffic.failed == 0
    sample = traffic._samples()["iris"]
    shifted = traffic._rows(sample, drifted=True)
    assert calm["columns"] == shifted["columns"] == list(sample["columns"])
    spread = float(sample["data"][calm["columns"][0]].std())
    values = [traffic._rows(sample, drifted=True)["data"][0][0] for _ in range(200)]
    reference = sample["data"][calm["columns"][0]]
    assert sum(values) / len(values) > reference.mean() + 0.8 * spread  # the first feature moved


async def test_the_monitor_view_charts_live_traffic_and_lists_drift_worst_first(deck: Deck) -> None:
    from console.screens.monitor import MonitorScreen

    app = deck.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot, app)
        await pilot.press("m")
        assert isinstance(app.screen, MonitorScreen)
        url = f"http://127.0.0.1:{deck.port}/invocations"
        with httpx.Client(timeout=10) as client:
            for i in range(120):  # over about three seconds, so each chart gets points with traffic
                client.post(url, json=ROW)
                if i % 40 == 39:
                    await pilot.pause(1.0)

        def judged() -> bool:  # a window is read and judged: every row of the table carries its test
            table = app.screen.query_one("#drift")
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            return bool(rows) and all(str(row[2]) != "-" for row in rows)

        deadline = time.monotonic() + 30
        while not judged() and time.monotonic() < deadline:
            await pilot.pause(0.3)
        summary = str(app.screen.query_one("#summary").render())
        assert summary.startswith(" iris: version 1, 1 worker ·") and " v1: " in summary
        for chart in ("#traffic", "#latency", "#errors", "#cpu", "#memory"):  # (each needs two points)
            drawn = lambda c=chart: "waiting" not in str(app.screen.query_one(c).render())  # noqa: E731
            await wait_until(pilot, drawn, 10)
            assert "waiting for data" not in str(app.screen.query_one(chart).render()), chart
        table = app.screen.query_one("#drift")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        names = [row[0] for row in rows]
        assert "prediction" in names and "sepal length (cm)" in names
        levels = [{"drift": 0, "warn": 1, "ok": 2}.get(row[1], 3) for row in rows]
        assert levels == sorted(levels)  # worst first
        reasons = dict(zip(names, (str(row[2]) for row in rows), strict=True))
        assert reasons["sepal length (cm)"].startswith("KS p=") and "(adj " in reasons["sepal length (cm)"]
        assert reasons["prediction"].startswith("chi2 p=")  # the test, its p-values and effect size
        await pilot.press("escape")
        assert app.screen.__class__.__name__ == "DeploymentsScreen"
        await pilot.press("1")  # the models view has been drawing iris's req/s trend all along
        await settle(pilot, app)
        models = app.screen.query_one("#models")
        trend = models.get_row_at(0)[models.labels.index("TREND")]  # (all columns fit at 120)
        assert len(trend) >= 2 and set(trend) <= set("▁▂▃▄▅▆▇█") and len(set(trend)) > 1


async def test_the_events_view_shows_the_ledger_newest_first_and_filters(deck: Deck) -> None:
    deck.client.rollback("iris", to=2, reason="events view test")
    deck.client.rollback("iris", to=1, reason="events view test")
    app = deck.app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        await settle(pilot, app)
        table = app.screen.query_one("#events")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert rows[0][2] == "drained"  # newest first: the drain follows the switch
        rollback = next(row for row in rows if row[2] == "rolled_back")
        assert rollback[1:5] == ["iris", "rolled_back", "2 → 1", "iris"] and rollback[6] == "events view test"
        await pilot.press("slash", *"^registered")
        await settle(pilot, app, 0.3)
        kinds = {table.get_row_at(i)[2] for i in range(table.row_count)}
        assert kinds == {"registered"}


async def test_with_only_the_supervisor_stopped_the_deployments_view_says_serving(deck: Deck) -> None:
    deck.client.shutdown()  # its model servers keep serving
    try:
        assert deck.version() in ("1", "2")
        app = deck.app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")  # deployments
            await settle(pilot, app)
            table = app.screen.query_one("#deployments")

            def cell(label: str) -> str:
                return str(table.get_row_at(0)[table.labels.index(label)])

            await wait_until(pilot, lambda: table.row_count > 0 and cell("STATE") != "down")
            assert (cell("DEPLOYMENT"), cell("STATE")) == ("iris", "serving (sup. down)")
            assert cell("WORKERS") == "?/1"
    finally:
        deck.client.ensure_running("--drain-grace=1", "--metrics=off", "--drift-every=1")
        deck.client.wait_settled()
