"""Monitoring keeps counting under load and after adoption (issue 10, item 10).

A worker's pull reply used to be read with asyncio's default 64 KiB line limit. At a high request rate
with wide rows (or on a restarted supervisor's first pull of an adopted worker, which asked for its
whole sample from cursor 0) the reply was larger: the read failed, the cursor never moved, and the
worker was stale for good while `status` said running. Figure: requests missing from monitoring = 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from helpers import free_port
from helpers import wait_until as wait
from supervised import Deck, Load

FEATURES = 40
ROWS_PER_REQUEST = 20


@pytest.fixture
def deck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deck]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, FEATURES))
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    deck = Deck(tmp_path / "home", ())
    deck.register(LogisticRegression(max_iter=300).fit(X, X[:, 0] > 0), "wide", reference=X)
    deck.start()
    try:
        yield deck
    finally:
        deck.stop()


def _body(seed: int) -> dict:
    """Many varied rows of long floats: 8 of each request's rows are sampled for drift."""
    return {"inputs": np.random.default_rng(seed).normal(size=(ROWS_PER_REQUEST, FEATURES)).tolist()}


def _counted(deck: Deck, cursor: int) -> int:
    points = deck.client.monitor(cursor, "wide")["deployments"].get("wide", {}).get("points", [])
    return int(sum(p["requests"] for p in points))


def _missing_after(deck: Deck, cursor: int, sent: int) -> int:
    """Requests sent minus those monitoring counted, once it has caught up (or after 15 s)."""
    with contextlib.suppress(AssertionError):
        wait(lambda: _counted(deck, cursor) >= sent, 15, "monitoring to count every request")
    return sent - _counted(deck, cursor)


def _live(deck: Deck) -> dict:
    return deck.client.monitor(2**62, "wide")["deployments"]["wide"]["live"] or {}


def test_monitoring_counts_every_request_at_a_high_rate_and_after_adoption(deck: Deck) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    deck.client.deploy("wide:1", port=int(url.rsplit(":", 1)[1]))
    (worker,) = deck.active_pids("wide")

    cursor = deck.client.monitor()["cursor"]
    load = Load(url, _body(1), count=1500, clients=4).run()
    assert load.statuses == {200: 1500} and load.failures == []
    missing = _missing_after(deck, cursor, load.answered)
    assert missing == 0, f"{missing} requests missing from monitoring under load"
    assert wait(lambda: _live(deck).get("workers") == 1 and _live(deck)["stale"] == 0, 5, "a fresh pull")

    # The supervisor dies; the worker serves on and fills its sample; a new supervisor adopts it.
    old = deck.client.status()["supervisor"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie", 10, "its death")
    unwatched = Load(url, _body(2), count=800, clients=4).run()
    assert unwatched.statuses == {200: 800}
    deck.start()
    assert deck.client.wait_settled(60)["deployments"][0]["processes"][0]["pid"] == worker
    settled = deck.client.monitor()["cursor"]
    wait(
        lambda: any(
            p["stale"] == 0 and p["workers"] == 1
            for p in deck.client.monitor(settled, "wide")["deployments"].get("wide", {}).get("points", [])
        ),
        10,
        "the adopted worker to answer its first pull",
    )
    cursor = deck.client.monitor()["cursor"]
    load = Load(url, _body(3), count=1500, clients=4).run()
    assert load.statuses == {200: 1500}
    missing = _missing_after(deck, cursor, load.answered)
    assert missing == 0, f"{missing} requests missing from monitoring after adoption"
    assert _live(deck)["stale"] == 0
    assert deck.client.monitor(2**62)["monitoring"]["pull_errors"].get("wide", 0) == 0
