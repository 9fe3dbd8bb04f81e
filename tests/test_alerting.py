"""Alerts under a real supervisor: a model that starts failing 5% of requests fires and resolves, the
webhook receiver (a real HTTP server) hears each transition once, and the console names it, marks it
and silences it. A silence keeping the webhook quiet, delivery across a supervisor SIGKILL, a latency
regression, the performance objective and a real Alertmanager are in the reliability tier
(`tests/reliability/test_alert_delivery.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alerted import Alerted, Traffic, alerted_home
from console_deck import rows
from helpers import wait_until

from registry import alerts as store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerted]:
    with alerted_home(tmp_path_factory) as alerted:
        yield alerted


def test_a_model_failing_5_percent_fires_then_resolves_and_the_webhook_hears_each_once(
    alerted: Alerted,
) -> None:
    with Traffic(alerted.url, bad=0.05) as traffic:
        wait_until(lambda: alerted.state() == store.FIRING, timeout=30, what="the availability alert")
        firing = alerted.alerts()[0]
        assert firing.version == 1 and firing.severity == "critical"
        assert "requests failed with 5xx" in firing.reason and firing.figures["window"] == "6s/2s"
    assert traffic.codes.get(500, 0) > 0
    with Traffic(alerted.url, bad=0.0):
        wait_until(lambda: alerted.state() == store.RESOLVED, timeout=30, what="the alert to resolve")
    wait_until(lambda: len(alerted.receiver.bodies) >= 2, timeout=15, what="both notifications")
    assert alerted.receiver.transitions() == [
        ("firing", "nb", "availability"),
        ("resolved", "nb", "availability"),
    ]
    resolved = alerted.receiver.bodies[1]["alerts"][0]
    assert resolved["endsAt"] != "0001-01-01T00:00:00Z" and resolved["labels"]["severity"] == "critical"
    with alerted.registry() as reg:
        kinds = [e.kind for e in reg.history("nb").events if e.kind.startswith("alert_")]
    assert kinds[-2:] == ["alert_firing", "alert_resolved"]
    alerted.receiver.bodies.clear()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_console_names_the_firing_alert_marks_its_rows_and_silences_it(alerted: Alerted) -> None:
    from console_deck import banner, tap, type_text
    from console_deck import wait_until as settled

    from console.app import ModeldeckApp

    with Traffic(alerted.url, bad=0.05):
        wait_until(lambda: alerted.state() == store.FIRING, timeout=30, what="the availability alert")
        app = ModeldeckApp(alerted.home, refresh_seconds=0.2)
        async with app.run_test(size=(150, 30)) as pilot:  # wide: every column shows
            await settled(pilot, lambda: "ALERT nb: availability firing" in banner(app))
            assert "bad over 2s" in banner(app) and "(4: alerts)" in banner(app)
            # Every list marks it. Each view reads the alerts in its own poll: on a loaded machine a
            # stalled client can let the 2 s window fall under the burn for a poll (the alert resolves,
            # then fires again), so each waits up to 20 s for its mark rather than taking the first rows.
            await settled(pilot, lambda: _first_cell(app, "#models") == "! nb")
            assert _first_cell(app, "#models") == "! nb"
            await tap(pilot, "2")
            await settled(pilot, lambda: _first_cell(app, "#deployments") == "! nb")
            assert _first_cell(app, "#deployments") == "! nb"
            assert rows(app, "#deployments")[0][-1] == "FIRING"  # the same poll's row: its ALERT column
            await tap(pilot, "4")
            await settled(pilot, lambda: _first_cell(app, "#alerts", 1) == "FIRING")
            assert rows(app, "#alerts")[0][1:5] == ["FIRING", "nb", "1", "availability"]
            await tap(pilot, "z")  # silence: how long, then why
            await settled(pilot, lambda: app.screen.query("Input"))
            await type_text(pilot, "10m console-test")
            await tap(pilot, "enter")
            await settled(pilot, lambda: "all silenced" in banner(app))
            # the list is read in the same poll as the banner, just before it: it may show it a poll later
            await settled(pilot, lambda: rows(app, "#alerts")[0][1] == "FIRING (silenced)")
            assert rows(app, "#alerts")[0][1] == "FIRING (silenced)"
            with alerted.registry() as reg:
                [silence] = store.silences(reg)
            assert silence.deployment == "nb" and silence.reason == "console-test"
            await tap(pilot, "u")
            await settled(pilot, lambda: "ALERT nb" in banner(app))
            await tap(pilot, "o")  # objectives, on one line
            await settled(pilot, lambda: app.screen.query("Input"))
            await type_text(pilot, "drift=warn")
            await tap(pilot, "enter")
            await settled(pilot, lambda: _objective(alerted, store.DRIFT).enabled)
            assert _objective(alerted, store.DRIFT).threshold == 1.0
    with alerted.registry() as reg:
        store.set_objective(reg, "nb", store.DRIFT, enabled=False)
    with Traffic(alerted.url, bad=0.0):
        wait_until(lambda: alerted.state() == store.RESOLVED, timeout=30, what="the alert to resolve")
    alerted.receiver.bodies.clear()


def _first_cell(app, table: str, column: int = 0) -> str | None:  # type: ignore[no-untyped-def]
    """A cell of the table's first row, or None while it has no rows."""
    found = rows(app, table)
    return found[0][column] if found else None


def _objective(alerted: Alerted, kind: str) -> store.ObjectiveSpec:
    with alerted.registry() as reg:
        return next(o for o in store.objectives(reg, "nb") if o.kind == kind)
