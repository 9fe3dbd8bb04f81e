"""Alerts under a real supervisor: a model that starts failing 5% of requests fires and resolves, the
webhook receiver (a real HTTP server) hears each transition once, and a silence keeps it quiet. The
delivery across a supervisor SIGKILL and a latency regression are in the reliability tier
(`tests/reliability/test_alert_delivery.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alerted import Alerted, Traffic, alerted_home
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


def test_a_silence_keeps_the_webhook_quiet_while_the_alert_shows(alerted: Alerted) -> None:
    with alerted.registry() as reg:
        silence = store.add_silence(reg, "nb", 600, kind=store.AVAILABILITY, reason="known outage")
    try:
        with Traffic(alerted.url, bad=0.05):
            wait_until(lambda: alerted.state() == store.FIRING, timeout=30, what="the silenced alert")
            assert alerted.alerts()[0].silenced
        with Traffic(alerted.url, bad=0.0):
            wait_until(lambda: alerted.state() == store.RESOLVED, timeout=30, what="the alert to resolve")
    finally:
        with alerted.registry() as reg:
            store.end_silence(reg, silence.id)
    assert alerted.receiver.bodies == []
