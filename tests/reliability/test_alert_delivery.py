"""Alerts under faults and against what we did not write: a silence keeps the webhook quiet, each
transition reaches the webhook once across a supervisor SIGKILL (the receiver down meanwhile), a slower
version fires the latency objective, an estimated accuracy under the floor fires the performance
objective, and a real Alertmanager takes the alerts on its API.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from alerted import Alerted, Traffic, alerted_home
from helpers import free_port, need_prometheus, wait_until

from registry import alert_outbox as outbox
from registry import alerts as store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerted]:
    with alerted_home(tmp_path_factory) as alerted:
        yield alerted


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


def test_each_transition_reaches_the_webhook_once_across_a_supervisor_sigkill(alerted: Alerted) -> None:
    alerted.receiver.status = 503  # the receiver is down: the firing notification waits in the outbox
    with Traffic(alerted.url, bad=0.05):
        wait_until(lambda: alerted.state() == store.FIRING, timeout=30, what="the alert")
        wait_until(lambda: alerted.receiver.refused >= 1, timeout=15, what="a refused notification")
        old = alerted.client.status()["supervisor"]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(
            lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie", what="death"
        )
        alerted.receiver.status = 200
        alerted.restart()  # takes the firing alert over and sends what the outbox holds
        wait_until(lambda: alerted.receiver.bodies, timeout=30, what="the firing notification")
    with Traffic(alerted.url, bad=0.0):
        wait_until(lambda: alerted.state() == store.RESOLVED, timeout=30, what="the alert to resolve")
    wait_until(lambda: len(alerted.receiver.bodies) >= 2, timeout=15, what="the resolved notification")
    assert alerted.receiver.transitions() == [
        ("firing", "nb", "availability"),
        ("resolved", "nb", "availability"),
    ]
    with alerted.registry() as reg:  # marked delivered once the receiver's answer is back
        wait_until(lambda: outbox.pending_deliveries(reg) == 0, timeout=15, what="the outbox to empty")
    alerted.receiver.bodies.clear()


def test_a_slower_version_fires_the_latency_objective(alerted: Alerted) -> None:
    with alerted.registry() as reg:
        store.set_objective(reg, "nb", store.LATENCY, enabled=True)
    alerted.client.deploy("nb:2")  # 600 trees: each request well over the 10 ms objective
    try:
        with Traffic(alerted.url):
            wait_until(
                lambda: alerted.state(store.LATENCY) == store.FIRING, timeout=40, what="the latency alert"
            )
        latency = next(a for a in alerted.alerts() if a.kind == store.LATENCY)
        assert latency.version == 2 and "took over 10 ms" in latency.reason
        wait_until(
            lambda: ("firing", "nb", "latency") in alerted.receiver.transitions(), timeout=15, what="notice"
        )
    finally:
        alerted.client.rollback("nb")
    try:
        with Traffic(alerted.url):
            wait_until(lambda: alerted.state(store.LATENCY) == store.RESOLVED, timeout=40, what="the resolve")
    finally:
        with alerted.registry() as reg:
            store.set_objective(reg, "nb", store.LATENCY, enabled=False)


def test_an_accuracy_under_the_performance_floor_fires_from_the_estimate(alerted: Alerted) -> None:
    """No labels: the estimated accuracy (the calibrated confidence of the live sample) stands in."""
    with alerted.registry() as reg:
        store.set_objective(
            reg,
            "nb",
            store.PERFORMANCE,
            enabled=True,
            threshold=0.999,
            windows=[{"long": 6.0, "short": 2.0, "burn": 1.0, "severity": "warning"}],
        )
    try:
        with Traffic(alerted.url):
            wait_until(
                lambda: alerted.state(store.PERFORMANCE) == store.FIRING,
                timeout=60,
                what="the performance alert",
            )
        alert = next(a for a in alerted.alerts() if a.kind == store.PERFORMANCE)
        assert "of the time accuracy was under 99.9%" in alert.reason
    finally:
        with alerted.registry() as reg:
            store.set_objective(reg, "nb", store.PERFORMANCE, enabled=False)
    wait_until(
        lambda: alerted.state(store.PERFORMANCE) == store.RESOLVED,
        timeout=30,
        what="resolved once turned off",
    )


def test_a_real_alertmanager_takes_the_alert_and_routes_firing_and_resolved(
    alerted: Alerted, tmp_path: Path
) -> None:
    """The webhook pointed at an Alertmanager's own API (`/api/v2/alerts`): Alertmanager (Debian's
    package) lists the alert with modeldeck's labels and routes it, then its resolution, to a receiver."""
    need_prometheus("prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route: {receiver: hook, group_wait: 0s, group_interval: 1s, repeat_interval: 1h}\n"
        "receivers: [{name: hook, webhook_configs: "
        f"[{{url: '{alerted.receiver.url}', send_resolved: true}}]}}]\n"
    )
    command = [
        "prometheus-alertmanager",
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    manager = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api/v2"
    alerted.receiver.bodies.clear()

    def routed() -> list[dict[str, Any]]:  # what Alertmanager sent (its receiver is named "hook")
        return [b for b in alerted.receiver.bodies if b.get("receiver") == "hook"]

    try:
        wait_until(lambda: _answers(f"{api}/status"), timeout=30, what="Alertmanager")
        with alerted.registry() as reg:
            store.set_webhook(reg, f"{api}/alerts")
        with Traffic(alerted.url, bad=0.05):
            wait_until(lambda: alerted.state() == store.FIRING, timeout=30, what="the alert")
            wait_until(lambda: httpx.get(f"{api}/alerts").json(), timeout=15, what="Alertmanager to list it")
            [listed] = httpx.get(f"{api}/alerts").json()
            assert listed["labels"]["alertname"] == "ModeldeckAvailability"
            assert listed["labels"]["deployment"] == "nb" and listed["status"]["state"] == "active"
            wait_until(routed, timeout=15, what="Alertmanager's notification")
        with Traffic(alerted.url, bad=0.0):
            wait_until(lambda: alerted.state() == store.RESOLVED, timeout=30, what="the alert to resolve")
        wait_until(
            lambda: [b["status"] for b in routed()][-1:] == ["resolved"],
            timeout=30,
            what="Alertmanager's resolved notification",
        )
        assert routed()[0]["status"] == "firing"
        assert routed()[0]["alerts"][0]["labels"]["objective"] == "availability"
    finally:
        manager.terminate()
        manager.wait(10)
        with alerted.registry() as reg:
            store.set_webhook(reg, alerted.receiver.url)
        alerted.receiver.bodies.clear()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
