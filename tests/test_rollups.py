"""Rollups of the supervisor's points into 10 s and 1 min windows, stored in the registry DB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from registry.errors import DatabaseError
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.monitoring.rollups import Rollups, prune_rollups, read_rollups, write_rollups


def point(t: float, requests: float = 10, version: int = 1, cpu: float | None = 20.0) -> dict:
    buckets = [0.0] * (len(LATENCY_BUCKETS) + 1)
    buckets[3] = requests  # 0.5 - 1 ms
    return {
        "t": t,
        "version": version,
        "requests": requests,
        "ok": requests - 1,
        "client_errors": 1,
        "server_errors": 0,
        "cpu": cpu,
        "rss": 1e8 + t,
        "latency_buckets": buckets,
    }


def test_points_roll_up_into_closed_windows_per_resolution(registry) -> None:
    rollups = Rollups()
    for second in range(1200, 1261):  # 1200..1260: windows of 10 s close as later points arrive
        rollups.add("iris", "iris", point(second), {"status": "ok", "drifted_share": 0.0})
    tens = [r for r in rollups.pending if r["resolution"] == 10]
    minutes = [r for r in rollups.pending if r["resolution"] == 60]
    assert [r["at"].timestamp() for r in tens] == [1200 + 10 * i for i in range(6)]
    assert [r["requests"] for r in tens] == [100] * 6 and tens[0]["client_errors"] == 10
    assert 0.0005 <= tens[0]["p50"] <= 0.001 and tens[0]["cpu"] == 20.0 and tens[0]["rss"] == 1e8 + 1209
    assert [r["at"].timestamp() for r in minutes] == [1200] and minutes[0]["requests"] == 600
    assert rollups.flush(registry.db) == 7 and rollups.pending == []
    stored = read_rollups(registry.db, "iris", 10)
    assert [r["requests"] for r in stored] == [100] * 6 and stored[0]["drift_status"] == "ok"
    assert stored[0]["at"] == datetime.fromtimestamp(1200, UTC)


def test_a_new_version_starts_a_new_window(registry) -> None:
    rollups = Rollups(resolutions=(60,))
    rollups.add("iris", "iris", point(60), None)
    rollups.add("iris", "iris", point(61, version=2), None)
    rollups.close_all()
    assert [(r["version"], r["requests"]) for r in rollups.pending] == [(1, 10), (2, 10)]


def test_a_failed_write_is_retried_and_nothing_is_lost(registry, monkeypatch) -> None:
    import registry.monitoring.rollups as module

    rollups = Rollups(resolutions=(10,))
    for second in range(0, 25):
        rollups.add("iris", "iris", point(second), None)
    calls = []

    def failing(db, rows):
        calls.append(len(rows))
        raise DatabaseError("database is locked")

    monkeypatch.setattr(module, "write_rollups", failing)
    assert rollups.flush(registry.db) == 0 and len(rollups.pending) == 2
    monkeypatch.setattr(module, "write_rollups", write_rollups)
    rollups.close_all()
    assert rollups.flush(registry.db) == 3
    assert [r["at"].timestamp() for r in read_rollups(registry.db, "iris", 10)] == [0, 10, 20]
    write_rollups(
        registry.db,
        [dict(rollups_row, requests=99) for rollups_row in [read_rollups(registry.db, "iris", 10)[0]]],
    )
    assert read_rollups(registry.db, "iris", 10)[0]["requests"] == 99  # rewriting a window replaces it


def test_old_rollups_are_pruned_by_resolution(registry) -> None:
    now = datetime.now(UTC).timestamp()
    rollups = Rollups()
    rollups.add("iris", "iris", point(now - 3 * 86400), None)
    rollups.add("iris", "iris", point(now - 2 * 3600), None)
    rollups.close_all()
    rollups.flush(registry.db)
    prune_rollups(registry.db, {10: timedelta(hours=1), 60: timedelta(days=2)})
    assert len(read_rollups(registry.db, "iris", 10)) == 0
    assert len(read_rollups(registry.db, "iris", 60)) == 1
