"""A shared (PostgreSQL) registry without processes: hosts and their heartbeats judged by the database's
clock, requests written through the database (serialised, absolute, building on a request not made
yet), a host leaving a stopped deployment, and artifacts every host can read from the database.
The processes themselves (supervisors in network namespaces) are tested in tests/reliability/test_hosts.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from helpers import wait_until
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from registry import Registry, blobs, core, hosts, placement, schema
from registry.deployments import get_deployment
from registry.errors import ArtifactDamaged, RegistryError
from registry.store import artifact_lock_key


@pytest.fixture
def shared(postgres_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A PostgreSQL registry with model `m` versions 1 and 2, and hosts a and b joined."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    with Registry(home=tmp_path / "a", db_url=postgres_url) as reg:
        reg.register(LogisticRegression().fit(x, y), "m", reference=x)
        reg.register(LogisticRegression(C=0.1).fit(x, y), "m", reference=x)
        for name in ("a", "b"):
            join(reg, name)
        yield reg


def join(reg: Registry, name: str, deployments: dict[str, Any] | None = None) -> None:
    hosts.join(
        reg,
        name,
        address=f"10.0.0.{ord(name)}",
        version="test",
        cpus=2,
        memory_bytes=1 << 30,
        pid=1,
        exporter=f"10.0.0.{ord(name)}:9464",
        deployments=deployments or {},
    )


def acted(reg: Registry, host: str, name: str, generation: int, **fields: Any) -> None:
    """Host `host` says it made request `generation` of `name`."""
    hosts.beat(
        reg,
        host,
        cpu_percent=1.0,
        memory_percent=2.0,
        exporter=None,
        deployments={name: {"generation": generation, "outcome": "done", "message": "ok", **fields}},
    )


def by_name(reg: Registry) -> dict[str, Any]:
    return {h.name: h for h in hosts.hosts(reg)}


def test_a_host_is_lost_by_the_database_clock_and_stopped_when_it_said_goodbye(shared: Registry) -> None:
    assert {h.state for h in hosts.hosts(shared)} == {"up"}
    with shared.db.write() as session:  # a heartbeat 20 s old, whatever this process' clock says
        session.connection().execute(
            sa.text(
                "UPDATE host SET heartbeat_at = CURRENT_TIMESTAMP - interval '20 seconds' WHERE name = 'b'"
            )
        )
    found = by_name(shared)
    assert found["b"].state == "lost" and found["b"].heartbeat_age >= 19
    assert found["a"].state == "up"
    with pytest.raises(RegistryError, match="is up"):
        hosts.forget(shared, "a")
    hosts.leave(shared, "a")
    assert by_name(shared)["a"].state == "stopped"
    assert hosts.forget(shared, "b").state == "lost"
    assert set(by_name(shared)) == {"a"}
    with pytest.raises(RegistryError, match="no host 'zz'"):
        hosts.forget(shared, "zz")


def test_a_request_is_written_with_its_ledger_event_and_a_new_deployment_needs_hosts(
    shared: Registry,
) -> None:
    with pytest.raises(placement.PlacementError, match="say which hosts"):
        placement.request(shared, "deploy", "web", ref="m:1")
    with pytest.raises(placement.PlacementError, match="not a host name"):
        placement.request(shared, "deploy", "web", ref="m:1", placement=["b;drop"])
    with pytest.raises(placement.PlacementError, match="no deployment 'web'"):
        placement.request(shared, "rollback", "web")
    asked = placement.request(shared, "deploy", "web", ref="m:1", placement=["b", "b"], bind="0.0.0.0")
    assert asked.generation == 1 and asked.placement == ["b"]
    assert asked.desired["version"] == 1 and asked.desired["workers"] == 1
    spec = get_deployment(shared, "web")
    assert spec is not None and spec.port == 8080 and spec.host == "0.0.0.0" and spec.placement == ["b"]
    event = shared.history("m").events[-1]
    assert event.kind == "requested" and event.deployment == "web"
    assert event.detail["generation"] == 1 and event.detail["placement"] == ["b"]
    second = placement.request(shared, "deploy", "api", ref="m:1", placement=["a"], bind="0.0.0.0")
    assert get_deployment(shared, "api").port == 8081  # type: ignore[union-attr]  # a port no deployment uses
    assert second.generation == 1
    with pytest.raises(placement.PlacementError, match=r"listens on 0\.0\.0\.0:8080"):
        placement.request(shared, "deploy", "web", ref="m:2", port=9000)
    with pytest.raises(placement.PlacementError, match="no standby"):
        placement.request(shared, "rollback", "web")
    with pytest.raises(placement.PlacementError, match="no canary or shadow"):
        placement.request(shared, "promote", "web")
    acted(shared, "b", "web", 1, version=1, workers=1, rollout={"mode": "canary", "version": 2, "weight": 5})
    promoted = placement.request(shared, "promote", "web")  # a canary started on b itself
    assert promoted.desired["version"] == 2 and promoted.desired["rollout"] is None


def test_two_requests_before_the_host_acted_keep_both_changes(shared: Registry) -> None:
    placement.request(shared, "deploy", "web", ref="m:1", placement=["b"])
    acted(shared, "b", "web", 1, version=1, workers=1)
    scaled = placement.request(shared, "scale", "web", workers=3)
    deployed = placement.request(shared, "deploy", "web", ref="m:2")  # b has not made the scale yet
    assert (scaled.generation, deployed.generation) == (2, 3)
    assert deployed.desired["version"] == 2 and deployed.desired["workers"] == 3


def test_a_request_after_the_host_acted_starts_from_what_serves(shared: Registry) -> None:
    placement.request(shared, "deploy", "web", ref="m:2", placement=["b"])
    acted(shared, "b", "web", 1, version=2, workers=1)
    with shared.db.write() as session:  # b's crash loop rolled back to version 1 on its own
        session.connection().execute(
            sa.text(
                "UPDATE deployment SET version_id = (SELECT id FROM model_version WHERE version = 1), "
                "workers = 2 WHERE name = 'web'"
            )
        )
    asked = placement.request(shared, "scale", "web", workers=4)
    assert asked.desired["version"] == 1 and asked.desired["workers"] == 4  # not back to 2


def test_stop_leaves_the_row_until_every_host_released_it(shared: Registry) -> None:
    placement.request(shared, "deploy", "web", ref="m:1", placement=["a", "b"])
    stop = placement.request(shared, "stop", "web")
    assert stop.desired["stopped"] is True
    assert placement.released(shared, "web", "a", stop.generation) is False
    assert get_deployment(shared, "web").placement == ["b"]  # type: ignore[union-attr]
    assert placement.released(shared, "web", "b", stop.generation - 1) is False  # an older request: kept
    assert placement.released(shared, "web", "b", stop.generation) is True
    assert get_deployment(shared, "web") is None
    stopped = [e for e in shared.history("m").events if e.kind == "stopped"]
    assert [e.detail["host"] for e in stopped] == ["a", "b"]


def test_wait_reports_each_host_and_does_not_wait_for_a_lost_one(shared: Registry) -> None:
    asked = placement.request(shared, "deploy", "web", ref="m:1", placement=["a", "b"])
    acted(shared, "a", "web", asked.generation, version=1, workers=1)
    with shared.db.write() as session:
        session.connection().execute(
            sa.text(
                "UPDATE host SET heartbeat_at = CURRENT_TIMESTAMP - interval '30 seconds' WHERE name = 'b'"
            )
        )
    seen: list[list[placement.Outcome]] = []
    found = placement.wait(lambda: hosts.hosts(shared), asked, timeout=5, on_change=seen.append)
    states = {o.host: (o.state, o.outcome, o.generation) for o in found}
    assert states == {"a": ("up", "done", 1), "b": ("lost", None, 0)}
    assert seen  # told at least once
    newer = placement.request(shared, "scale", "web", workers=2)
    acted(shared, "a", "web", newer.generation, version=1, workers=2)
    (a,) = [o for o in placement.wait(lambda: hosts.hosts(shared), asked, timeout=5) if o.host == "a"]
    assert a.generation == newer.generation > asked.generation  # superseded, and said so


def test_a_host_with_an_empty_cache_reads_artifacts_from_the_database(
    shared: Registry, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobs, "CHUNK", 1024)  # several chunks per model
    x = np.random.default_rng(1).normal(size=(40, 3))
    info = shared.register(LogisticRegression().fit(x, (x[:, 1] > 0).astype(int)), "big", reference=x)
    with shared.db.connect() as conn:
        chunks = conn.execute(
            sa.text("SELECT chunks FROM blob WHERE sha256 = :s"), {"s": info.artifact_sha256}
        ).scalar()
    assert chunks is not None and chunks > 1
    with Registry(home=tmp_path / "empty", db_url=postgres_url) as other:
        model = other.load("big:1")
        assert model.predict(x[:3]).tolist() == shared.load("big:1").predict(x[:3]).tolist()
        assert (
            other.artifacts.path_of(info.artifact_sha256).read_bytes()
            == shared.artifacts.path_of(info.artifact_sha256).read_bytes()
        )
        cached = other.artifacts.path_of(info.artifact_sha256)
        cached.write_bytes(cached.read_bytes()[:-3] + b"abc")  # this host's copy changed on disk
        with pytest.raises(ArtifactDamaged, match="changed on disk"):
            other.load("big:1")
        cached.unlink()
        with shared.db.write() as session:  # and the database's copy tampered with
            session.connection().execute(
                sa.text("UPDATE blob_chunk SET data = :d WHERE sha256 = :s AND seq = 0"),
                {"d": b"x" * 1024, "s": info.artifact_sha256},
            )
        with pytest.raises(ArtifactDamaged, match="does not match its checksum"):
            other.load("big:1")
        assert not cached.exists()  # nothing unchecked was kept


def test_deleting_a_version_removes_its_blobs_from_the_database(shared: Registry) -> None:
    x = np.random.default_rng(2).normal(size=(30, 3))
    info = shared.register(LogisticRegression().fit(x, (x[:, 2] > 0).astype(int)), "gone", reference=x)
    shared.delete("gone:1")
    with shared.db.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM blob_chunk WHERE sha256 = :s"), {"s": info.artifact_sha256}
        ).scalar()
    assert left == 0


def _captured(seed: int) -> Any:
    from registry.capture import capture

    x = np.random.default_rng(seed).normal(size=(30, 3))
    return capture(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), x), x


def _lock_waiters(url: str) -> int:
    """Transactions waiting for an advisory lock (a blob's) on the database of `url` (pg_locks is the
    whole server's: other tests' databases wait for their own locks meanwhile)."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return int(found.fetchone()[0])  # type: ignore[index]


def _repeatable_read_by_default(url: str) -> None:
    """The database's own default isolation made repeatable read (an operator's choice)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'")


@pytest.mark.parametrize("cached_here", [True, False])
def test_a_registration_stores_its_blobs_in_the_database_again_after_a_delete_took_them(
    shared: Registry, tmp_path: Path, postgres_url: str, cached_here: bool
) -> None:
    """A delete removed the database's copy of these bytes; adding a version of them stores them again,
    whether this host's cache still holds them (found missing under the registration's locks) or not."""
    captured, x = _captured(4)
    first = shared.add_version(captured, "again")
    shared.delete("again:1")  # its last version: the database's copy goes, and this host's
    store = shared.artifacts
    assert isinstance(store, blobs.SharedArtifactStore)
    assert store.missing([first.artifact_sha256]) == [first.artifact_sha256]
    if cached_here:
        store.cache(captured.model_bytes)  # in this host's files only (another host deleted it)
    second = shared.add_version(captured, "again")
    assert second.artifact_sha256 == first.artifact_sha256
    assert store.missing([second.artifact_sha256, second.reference_sha256, second.profile_sha256]) == []
    with Registry(home=tmp_path / "other-host", db_url=postgres_url) as other:
        assert other.load("again:2").predict(x[:3]).tolist() == shared.load("again:2").predict(x[:3]).tolist()
        assert [v.version for v in other.versions("again")] == [2]  # the retry left no gap or twin


def test_a_registration_waiting_on_a_delete_sees_what_it_took_under_a_repeatable_read_default(
    postgres_url: str, tmp_path: Path
) -> None:
    """A delete holds a blob's lock and removes the database's copy while a registration of the same
    bytes waits for the lock: the registration must see the copy gone (and store it again), even when
    the database's default isolation is repeatable read (whose snapshot predates the lock)."""
    _repeatable_read_by_default(postgres_url)
    captured, x = _captured(5)
    with Registry(home=tmp_path / "a", db_url=postgres_url) as reg:
        with reg.db.write() as session:  # writes pin READ COMMITTED, whatever the database's default
            assert session.connection().execute(sa.text("SHOW transaction_isolation")).scalar() == (
                "read committed"
            )
        sha = reg.add_version(captured, "race").artifact_sha256
        added: list[Any] = []
        with psycopg.connect(postgres_url.replace("+psycopg", "")) as deleter:
            deleter.execute("SELECT pg_advisory_xact_lock(%s)", [artifact_lock_key(sha)])
            registering = threading.Thread(target=lambda: added.append(reg.add_version(captured, "race")))
            registering.start()
            wait_until(lambda: _lock_waiters(postgres_url) == 1, what="the registration to wait for the lock")
            deleter.execute("DELETE FROM blob_chunk WHERE sha256 = %s", [sha])
            deleter.execute("DELETE FROM blob WHERE sha256 = %s", [sha])
            deleter.commit()  # the lock goes with the transaction
            registering.join(30)
        assert added and added[0].version == 2 and added[0].artifact_sha256 == sha
        assert isinstance(reg.artifacts, blobs.SharedArtifactStore) and reg.artifacts.missing([sha]) == []
        with Registry(home=tmp_path / "b", db_url=postgres_url) as other:
            assert other.load("race:2").predict(x[:3]).tolist() == reg.load("race:2").predict(x[:3]).tolist()


def test_a_delete_waiting_on_a_registration_keeps_the_blobs_it_uses_under_a_repeatable_read_default(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: a registration of another model with the same bytes holds their locks,
    its rows written but not committed, while a delete of the bytes' last version waits to discard
    them; once the registration commits, the delete must see its version and keep them."""
    _repeatable_read_by_default(postgres_url)
    captured, x = _captured(6)
    with Registry(home=tmp_path / "a", db_url=postgres_url) as reg:
        sha = reg.add_version(captured, "old").artifact_sha256
        inside, go_on = threading.Event(), threading.Event()

        def hold(artifacts: Any, blobs: Any) -> None:  # in the registering transaction, rows written
            inside.set()
            go_on.wait(30)

        monkeypatch.setattr(core, "_ensure_stored", hold)
        added: list[Any] = []
        registering = threading.Thread(target=lambda: added.append(reg.add_version(captured, "twin")))
        registering.start()
        assert inside.wait(30)
        deleting = threading.Thread(target=reg.delete, args=("old:1",))
        deleting.start()
        wait_until(lambda: _lock_waiters(postgres_url) == 1, what="the delete to wait for the blob's lock")
        go_on.set()
        registering.join(30)
        deleting.join(30)
        assert added and added[0].artifact_sha256 == sha
        store = reg.artifacts
        assert isinstance(store, blobs.SharedArtifactStore)
        assert store.missing([sha, added[0].reference_sha256, added[0].profile_sha256]) == []
        with Registry(home=tmp_path / "b", db_url=postgres_url) as other:
            assert other.load("twin:1").predict(x[:3]).tolist() == reg.load("twin:1").predict(x[:3]).tolist()


def _incomplete_blobs(url: str) -> list[str]:
    """Blobs whose row says more chunks than the database holds: what no host could load."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        found = conn.execute(
            "SELECT sha256 FROM blob"
            " WHERE chunks <> (SELECT count(*) FROM blob_chunk c WHERE c.sha256 = blob.sha256)"
        )
        return [sha for (sha,) in found.fetchall()]


def test_a_delete_waits_for_a_store_of_the_same_bytes_and_leaves_no_blob_without_its_chunks(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host b stores bytes host a holds (b found them missing a moment before), while a deletes their
    last version: a must wait for b's store to commit, then remove all of it. Without the store's
    lock, a removed the chunks b had skipped (a's were there) and b's row went in without any."""
    captured, _ = _captured(7)
    with (
        Registry(home=tmp_path / "a", db_url=postgres_url) as a,
        Registry(home=tmp_path / "b", db_url=postgres_url) as b,
    ):
        sha = a.add_version(captured, "a").artifact_sha256
        inside, go_on = threading.Event(), threading.Event()

        def paused_clock() -> Any:  # after the chunks' insert, before the blob's row
            inside.set()
            go_on.wait(30)
            return schema.utcnow()

        monkeypatch.setattr(blobs, "utcnow", paused_clock)

        def store() -> None:
            with b.db.driver_write() as raw:
                blobs.store_blob(raw, sha, captured.model_bytes)

        storing = threading.Thread(target=store)
        storing.start()
        assert inside.wait(30)
        deleting = threading.Thread(target=a.delete, args=("a:1",))
        deleting.start()
        wait_until(lambda: _lock_waiters(postgres_url) == 1, what="the delete to wait for the store")
        go_on.set()
        storing.join(30)
        deleting.join(30)
        assert _incomplete_blobs(postgres_url) == []
        assert isinstance(a.artifacts, blobs.SharedArtifactStore) and a.artifacts.missing([sha]) == [sha]


def test_a_delete_removes_a_blobs_rows_in_the_transaction_that_holds_its_lock(shared: Registry) -> None:
    """Not on another connection while the lock's holder sits idle (a server's idle-in-transaction
    timeout would end it and free the lock mid-delete; and a second connection per delete can run the
    pool dry while registrations of the same bytes wait for the lock)."""
    captured, _ = _captured(8)
    sha = shared.add_version(captured, "solo").artifact_sha256
    held: list[int] = []

    def check(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("DELETE FROM blob_chunk"):
            mine = cursor.connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock'"
                " AND granted AND pid = pg_backend_pid()"
            )
            held.append(int(mine.fetchone()[0]))

    sa.event.listen(shared.db.engine, "before_cursor_execute", check)
    try:
        shared.delete("solo:1")
    finally:
        sa.event.remove(shared.db.engine, "before_cursor_execute", check)
    assert held and all(n == 1 for n in held), held  # each blob's rows went with its lock
    assert isinstance(shared.artifacts, blobs.SharedArtifactStore) and shared.artifacts.missing([sha]) == [
        sha
    ]


def test_on_and_hosts_on_a_sqlite_home_say_why_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from console.cli import app

    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    runner = CliRunner()
    listed = runner.invoke(app, ["hosts"])
    assert listed.exit_code == 0 and "no hosts" in listed.output
    refused = runner.invoke(app, ["deploy", "m:1", "--on", "b"])
    assert refused.exit_code == 1 and "shared registry" in refused.output
    filtered = runner.invoke(app, ["status", "--host", "b"])
    assert filtered.exit_code == 0 and "--host: this registry is SQLite, with one host" in filtered.output


def test_a_host_shares_what_only_its_cache_holds(shared: Registry, tmp_path: Path, postgres_url: str) -> None:
    """A registry from before artifacts were shared: the first supervisor to join puts its cache's
    blobs into the database (`share_local`), and only intact ones."""
    info = shared.get("m:1")
    with shared.db.write() as session:
        session.connection().execute(sa.text("DELETE FROM blob_chunk"))
        session.connection().execute(sa.text("DELETE FROM blob"))
    tampered = shared.artifacts.path_of(shared.get("m:2").artifact_sha256)
    tampered.write_bytes(tampered.read_bytes() + b"!")
    store = shared.artifacts
    assert isinstance(store, blobs.SharedArtifactStore)
    assert store.share_local() >= 2  # m:1's model and the reference both versions share
    assert store.stored(info.artifact_sha256) and not store.stored(shared.get("m:2").artifact_sha256)
    with Registry(home=tmp_path / "new-host", db_url=postgres_url) as other:
        assert other.load("m:1") is not None
        with pytest.raises(ArtifactDamaged):
            other.load("m:2")


def test_deployments_from_before_hosts_are_claimed_by_the_first_host_only(shared: Registry) -> None:
    placement.request(shared, "deploy", "placed", ref="m:1", placement=["b"])
    with shared.db.write() as session:  # a row written before the registry had hosts
        session.connection().execute(
            sa.text(
                "INSERT INTO deployment (name, model_id, version_id, host, port, workers, state, options, "
                "placement, generation, desired, created_at, updated_at) SELECT 'old', model_id, id, "
                "'127.0.0.1', 9000, 1, 'running', '{}', '[]', 0, '{}', now(), now() FROM model_version "
                "WHERE version = 1"
            )
        )
    assert placement.claim_unplaced(shared, "a") == ["old"]
    assert placement.claim_unplaced(shared, "b") == []
    assert get_deployment(shared, "old").placement == ["a"]  # type: ignore[union-attr]
    assert get_deployment(shared, "placed").placement == ["b"]  # type: ignore[union-attr]


def test_ports_never_meet_on_a_host_whatever_address_each_binds(shared: Registry) -> None:
    placement.request(shared, "deploy", "web", ref="m:1", placement=["b"], bind="0.0.0.0")
    other = placement.request(shared, "deploy", "x7", ref="m:1", placement=["b"])  # loopback, no port asked
    assert get_deployment(shared, "x7").port == 8081  # type: ignore[union-attr]  # not 127.0.0.1:8080 under web
    assert other.generation == 1
    with pytest.raises(placement.PlacementError, match="port 8080 is already used by deployment 'web' on b"):
        placement.request(shared, "deploy", "x8", ref="m:1", placement=["b"], port=8080)
    placement.request(shared, "deploy", "elsewhere", ref="m:1", placement=["a"], port=9000)
    placement.request(
        shared, "deploy", "there", ref="m:1", placement=["b"], port=9000
    )  # another host: allowed
    with pytest.raises(
        placement.PlacementError, match="port 9000 is already used by deployment 'elsewhere' on a"
    ):
        placement.request(shared, "scale", "there", workers=1, placement=["a", "b"])  # moved onto a's 9000
    assert get_deployment(shared, "x8") is None


def test_stopping_a_deployment_of_a_host_that_never_joined_or_was_forgotten_ends_it(shared: Registry) -> None:
    placement.request(shared, "deploy", "y1", ref="m:1", placement=["b"])
    with pytest.raises(RegistryError, match="still has deployments placed on it: y1"):
        hosts.leave(shared, "b") or hosts.forget(shared, "b")
    with shared.db.write() as session:  # b is gone for good (its row removed by hand, say)
        session.connection().execute(sa.text("DELETE FROM host WHERE name = 'b'"))
    stopped = placement.request(shared, "stop", "y1")
    assert stopped.placement == [] and get_deployment(shared, "y1") is None
    assert [e.kind for e in shared.history("m").events][-2:] == ["requested", "stopped"]
