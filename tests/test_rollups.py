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
    first = read_rollups(registry.db, "iris", 10)[0]
    write_rollups(registry.db, [{k: v for k, v in first.items() if k != "id"}])
    again = read_rollups(registry.db, "iris", 10)[0]
    assert again["requests"] == 2 * first["requests"]  # a second part of a stored window adds to it
    assert again["p99"] == first["p99"] and len(read_rollups(registry.db, "iris", 10)) == 3


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


def test_two_switches_within_one_window_keep_both_versions_rows(registry) -> None:
    """v1, v2, then v1 again inside one 10 s window: the batch used to hit the unique key and was
    retried forever; now each version keeps its row and v1's two parts are added up."""
    rollups = Rollups(resolutions=(10,))
    for second, version in [(100, 1), (101, 1), (102, 2), (103, 2), (104, 2), (105, 1), (110, 1)]:
        rollups.add("iris", "iris", point(second, version=version), None)
    assert rollups.flush(registry.db) == 2
    stored = {r["version"]: r for r in read_rollups(registry.db, "iris", 10)}
    assert {v: r["requests"] for v, r in stored.items()} == {1: 30, 2: 30}
    assert all(r["at"].timestamp() == 100 for r in stored.values())
    assert 0.0005 <= stored[1]["p50"] <= 0.001 and stored[1]["client_errors"] == 3


def test_a_window_written_in_parts_across_flushes_is_merged_not_overwritten(registry) -> None:
    rollups = Rollups(resolutions=(10,))
    for second, version in [(200, 1), (201, 2), (202, 1)]:  # v1's first part and v2 close here
        rollups.add("iris", "iris", point(second, version=version), None)
    assert rollups.flush(registry.db) == 2
    slow = point(203, version=1, requests=4)
    slow["latency_buckets"] = [0.0] * (len(slow["latency_buckets"]) - 1) + [4.0]  # over 2.5 s
    rollups.add("iris", "iris", slow, {"status": "warn", "drifted_share": 0.2})
    rollups.add("iris", "iris", point(204, version=2), None)
    rollups.close_all()
    assert rollups.flush(registry.db) == 2
    stored = {r["version"]: r for r in read_rollups(registry.db, "iris", 10)}
    assert {v: r["requests"] for v, r in stored.items()} == {1: 24, 2: 20}
    assert stored[1]["p99"] == LATENCY_BUCKETS[-1] and stored[1]["drift_status"] == "warn"
    assert rollups.stats()["stored"] == 4 and rollups.stats()["set_aside"] == 0


def test_a_row_that_cannot_be_written_is_set_aside_and_never_blocks_later_windows(registry, caplog) -> None:
    rollups = Rollups(resolutions=(10,))
    for second in range(300, 330):
        rollups.add("iris", "iris", point(second), None)
        rollups.add("broken", None, point(second), None)  # type: ignore[arg-type]  # NOT NULL model
        if second % 10 == 5:
            rollups.flush(registry.db)
    rollups.close_all()
    rollups.flush(registry.db)
    assert [r["at"].timestamp() for r in read_rollups(registry.db, "iris", 10)] == [300, 310, 320]
    assert read_rollups(registry.db, "broken", 10) == [] and rollups.pending == []
    stats = rollups.stats()
    assert stats["set_aside"] == 3 and stats["stored"] == 3 and "model" in stats["last_error"]
    assert [row["deployment"] for row, _ in rollups.set_aside] == ["broken"] * 3
    assert sum("set aside the metric rollup" in r.getMessage() for r in caplog.records) == 1  # once


def test_a_locked_database_keeps_rows_and_merges_parts_closed_meanwhile(registry, monkeypatch) -> None:
    import registry.monitoring.rollups as module

    rollups = Rollups(resolutions=(10,))
    rollups.add("iris", "iris", point(400, version=1), None)
    rollups.add("iris", "iris", point(401, version=2), None)  # closes v1's first part

    def locked(db, rows):
        raise DatabaseError("registry database is locked")

    monkeypatch.setattr(module, "write_rollups", locked)
    assert rollups.flush(registry.db) == 0 and rollups.stats()["set_aside"] == 0
    monkeypatch.setattr(module, "write_rollups", write_rollups)
    rollups.add("iris", "iris", point(402, version=1), None)  # closes v2; v1's second part opens
    rollups.close_all()
    assert [(r["version"], r["requests"]) for r in rollups.pending] == [(1, 20), (2, 10)]
    assert rollups.flush(registry.db) == 2


def test_performance_rollups_are_rewritten_as_labels_arrive_and_pruned(registry) -> None:
    from registry.monitoring.performance import (
        prune_performance_rollups,
        read_performance_rollups,
        write_performance_rollups,
    )

    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    row = {"deployment": "iris", "model": "iris", "version": 2, "at": minute, "predicted": 100}
    early = {**row, "labelled": 10, "accuracy": 0.9, "f1": 0.8, "log_loss": None, "mae": None, "rmse": None}
    write_performance_rollups(registry.db, [early, {**early, "version": 1, "labelled": 0, "accuracy": None}])
    write_performance_rollups(
        registry.db, [{**early, "labelled": 80, "accuracy": 0.95, "label_delay": 3600.0}]
    )
    stored = read_performance_rollups(registry.db, "iris")
    assert [(r["version"], r["labelled"], r["accuracy"]) for r in stored] == [(1, 0, None), (2, 80, 0.95)]
    assert stored[1]["label_delay"] == 3600.0 and stored[1]["at"] == minute
    write_performance_rollups(registry.db, [{**early, "at": minute - timedelta(days=40)}])
    prune_performance_rollups(registry.db, timedelta(days=30))
    assert [r["at"] for r in read_performance_rollups(registry.db, "iris")] == [minute, minute]
