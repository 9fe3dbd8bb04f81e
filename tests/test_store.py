"""The database layer: migrations, upgrade on open, and the faults a user meets (locked, read-only,
unreachable, too new), on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for_the_others
from sqlalchemy import JSON, DateTime, bindparam, create_engine, inspect, text

from registry import DatabaseError, Registry, SchemaTooNew
from registry.store import SCHEMA_HEAD, Database, Settings, current_revision, upgrade_schema

MIGRATIONS = Path(__file__).resolve().parent.parent / "registry" / "migrations"


# ---------------------------------------------------------------------- helpers
def _insert(conn: Any, table: str, **values: Any) -> int | None:
    """A plain SQL INSERT (the driver binds times and JSON); returns the new row's id if it has one."""
    binds = [
        bindparam(k, type_=DateTime(timezone=True) if isinstance(v, datetime) else JSON)
        for k, v in values.items()
        if isinstance(v, datetime | dict | list)
    ]
    returning = " RETURNING id" if table in {"registered_model", "model_version", "event"} else ""
    sql = f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})"
    result = conn.execute(text(sql + returning).bindparams(*binds), values)
    return result.scalar_one() if returning else None


def _snapshot(db_url: str) -> dict[str, Any]:
    """Every table's columns and rows, read with a plain engine (no registry code involved)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            return {
                table: (
                    [c["name"] for c in inspector.get_columns(table)],
                    sorted(map(repr, conn.execute(text(f"SELECT * FROM {table}")).all())),
                )
                for table in sorted(inspector.get_table_names())
            }
    finally:
        engine.dispose()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_registry(db_url: str, home: str) -> str | None:
    """Child process: wait for the others, then open (and so upgrade) the registry."""
    wait_for_the_others()
    with Registry(home=home, db_url=db_url) as reg:
        return current_revision(reg.db)


# ---------------------------------------------------------------------- migrations
def test_schema_head_is_the_head_of_the_migration_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # get_current_head() also refuses a branched history (two heads)
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def test_migrated_schema_matches_the_sqlmodel_tables(registry: Registry):
    """What the migrations build is what the code's tables describe: no missing or extra table,
    column or index, no type or nullability difference (server defaults are not compared: 0002
    gives `model_version.origin` a server default of '{}' so that existing rows get one)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    assert current_revision(registry.db) == SCHEMA_HEAD
    with registry.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_a_0001_database_is_upgraded_on_open_with_no_data_lost(home, db_url, iris, iris_model):
    from registry.artifacts import ArtifactStore
    from registry.capture import capture

    X, _ = iris
    settings = Settings.from_env(home, db_url)
    old = Database(settings, upgrade=False)
    assert upgrade_schema(old, "0001") == "0001"
    captured = capture(iris_model, X)
    sha = ArtifactStore(settings.artifacts_dir).put(captured.model_bytes)
    t1 = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    t2 = t1 + timedelta(hours=1)
    with old.engine.begin() as conn:  # rows exactly as a 0001-era modeldeck wrote them
        model_id = _insert(
            conn,
            "registered_model",
            name="iris",
            description="flowers",
            next_version=3,
            created_at=t1,
            updated_at=t2,
        )
        version_ids = {}
        for number, at in ((1, t1), (2, t2)):
            version_ids[number] = _insert(
                conn,
                "model_version",
                model_id=model_id,
                version=number,
                artifact_sha256=sha,
                artifact_size=len(captured.model_bytes),
                artifact_format="skops",
                trusted_types=captured.trusted_types,
                estimator_class=captured.estimator_class,
                params=captured.params,
                python_version=captured.python_version,
                sklearn_version=captured.sklearn_version,
                numpy_version=captured.numpy_version,
                signature=captured.signature,
                output=captured.output,
                metrics={"accuracy": 0.9 + number / 100},
                description=f"try {number}",
                reference_sha256=None,
                reference_rows=0,
                source="train.py",
                created_at=at,
                created_by="ann@lab",
                archived_at=None,
            )
        _insert(
            conn, "model_alias", model_id=model_id, alias="champion", version_id=version_ids[1], updated_at=t2
        )
        _insert(conn, "model_tag", model_id=model_id, key="team", value="botany")
        _insert(conn, "version_tag", version_id=version_ids[2], key="stage", value="candidate")
        for at, kind, alias, to_version in (
            (t1, "registered", None, 1),
            (t2, "registered", None, 2),
            (t2 + timedelta(seconds=1), "alias_set", "champion", 1),
        ):
            _insert(
                conn,
                "event",
                at=at,
                model_name="iris",
                kind=kind,
                actor="ann@lab",
                alias=alias,
                from_version=None,
                to_version=to_version,
                reason="",
                detail={"sha256": sha},
            )
    old.dispose()

    with Registry(home=home, db_url=db_url) as reg:
        assert current_revision(reg.db) == SCHEMA_HEAD
        [model] = reg.list_models()
        assert (model.name, model.description) == ("iris", "flowers")
        assert (model.versions, model.latest_version) == (2, 2)
        assert (model.aliases, model.tags) == ({"champion": 1}, {"team": "botany"})
        assert (model.created_at, model.updated_at) == (t1, t2)
        assert [v.version for v in reg.versions("iris")] == [1, 2]
        first, second = reg.get("iris:1"), reg.get("iris:2")
        assert reg.get("iris@champion") == first
        assert (first.aliases, first.tags) == (["champion"], {})
        assert (second.aliases, second.tags) == ([], {"stage": "candidate"})
        assert (first.metrics, first.description, first.source) == ({"accuracy": 0.91}, "try 1", "train.py")
        assert (first.created_at, second.created_at, first.created_by) == (t1, t2, "ann@lab")
        assert (first.signature, first.trusted_types) == (captured.signature, captured.trusted_types)
        # the columns 0002 added have sane values on the old rows
        assert [(v.origin, v.parent_version) for v in (first, second)] == [({}, None), ({}, None)]
        assert (reg.load("iris@champion").predict(X) == iris_model.predict(X)).all()

        history = reg.history("iris")
        assert [(e.kind, e.to_version, e.alias, e.deployment) for e in history.events] == [
            ("registered", 1, None, None),
            ("registered", 2, None, None),
            ("alias_set", 1, "champion", None),
        ]
        assert (history.state.versions, history.state.aliases) == ([1, 2], {"champion": 1})

        # and the upgraded registry carries on: the next version is 3, the alias can move
        third = reg.register(iris_model, "iris", reference=X, alias="champion")
        assert (third.version, reg.get("iris@champion").version) == (3, 3)
        assert [v.version for v in reg.versions("iris")] == [1, 2, 3]


def test_a_database_from_a_newer_modeldeck_is_refused_and_left_untouched(home, db_url, array_model):
    model, _ = array_model
    with Registry(home=home, db_url=db_url) as reg:
        reg.register(model, "ridge", alias="champion")
        with reg.db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    before = _snapshot(db_url)

    with pytest.raises(SchemaTooNew, match="written by a newer modeldeck") as raised:
        Registry(home=home, db_url=db_url)
    message = str(raised.value)
    assert "'9999'" in message and "nothing was changed" in message
    assert "\n" not in message
    after = _snapshot(db_url)
    assert after == before
    assert after["alembic_version"][1] == [repr(("9999",))]


# ---------------------------------------------------------------------- faults
def test_a_locked_sqlite_database_gives_a_clear_error_and_no_half_written_version(
    home, array_model, monkeypatch
):
    import sqlite3

    model, _ = array_model
    monkeypatch.setenv("MODELDECK_DB_TIMEOUT", "0.2")
    with Registry(home=home) as reg:
        assert reg.settings.db_timeout == 0.2
        reg.register(model, "ridge")
        other = sqlite3.connect(home / "registry.db", isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(DatabaseError, match="locked") as raised:
                reg.register(model, "ridge", alias="champion", tags={"k": "v"})
            assert "nothing was changed" in str(raised.value)
            assert [v.version for v in reg.versions("ridge")] == [1]  # readers are not blocked (WAL)
        finally:
            other.rollback()
            other.close()

        [only] = reg.versions("ridge")
        assert (only.version, only.aliases, only.tags) == (1, [], {})
        assert [(e.kind, e.to_version) for e in reg.history("ridge").events] == [("registered", 1)]
        assert reg.register(model, "ridge", alias="champion").version == 2
        assert reg.get("ridge@champion").version == 2


def test_a_read_only_sqlite_url_reads_but_refuses_writes(home, array_model, tmp_path, monkeypatch):
    model, X = array_model
    with Registry(home=home) as reg:
        reg.register(model, "ridge", alias="champion")
    path = home / "registry.db"
    checksum = _sha256(path)
    monkeypatch.chdir(tmp_path)
    cwd_before = sorted(os.listdir(tmp_path))

    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    with Registry(home=home, db_url=url) as ro:
        assert ro.settings.is_sqlite
        assert [m.name for m in ro.list_models()] == ["ridge"]
        assert ro.get("ridge@champion").version == 1
        assert (ro.load("ridge").predict(X) == model.predict(X)).all()
        with pytest.raises(DatabaseError, match="read-only") as raised:
            ro.register(model, "ridge")
        assert "nothing was changed" in str(raised.value)
        assert [v.version for v in ro.versions("ridge")] == [1]
    assert _sha256(path) == checksum
    assert sorted(os.listdir(tmp_path)) == cwd_before  # no directory made from the URL's text


def test_a_sqlite_url_in_another_spelling_gets_its_directory_made(tmp_path, array_model, monkeypatch):
    """`sqlite+pysqlite:///dir/registry.db` is a database in `dir`, not a path starting 'sqlite+...'."""
    model, _ = array_model
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "new" / "dir" / "registry.db"
    with Registry(home=tmp_path / "home", db_url=f"sqlite+pysqlite:///{target}") as reg:
        assert reg.register(model, "ridge").version == 1
    assert target.is_file()
    assert sorted(os.listdir(tmp_path)) == ["home", "new"]


def test_an_unreachable_postgresql_server_is_one_clear_line(home, monkeypatch):
    url = f"postgresql+psycopg://modeldeck:s3cret@127.0.0.1:{_closed_port()}/modeldeck"
    with pytest.raises(DatabaseError) as raised:
        Registry(home=home, db_url=url)
    message = str(raised.value)
    assert message.startswith("cannot use PostgreSQL registry postgresql+psycopg://modeldeck:***@127.0.0.1:")
    assert "refused" in message.lower()
    assert "\n" not in message and "s3cret" not in message and "Traceback" not in message

    from typer.testing import CliRunner

    from console.cli import app

    monkeypatch.setenv("MODELDECK_DB_URL", url)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {message}"
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------- upgrade on open
@pytest.mark.slow
def test_four_processes_opening_a_fresh_database_at_once_all_succeed(db_url, tmp_path, four_processes):
    home = tmp_path / "home"
    assert four_processes(_open_registry, db_url, str(home)) == [SCHEMA_HEAD] * 4
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                SCHEMA_HEAD
            ]
    finally:
        engine.dispose()
    with Registry(home=home, db_url=db_url) as reg:
        assert reg.list_models() == []


# ---------------------------------------------------------------------- a lost database
def test_an_empty_database_beside_stored_artifacts_is_refused_not_reinitialised(
    home, array_model, monkeypatch
):
    """A zero-length registry.db (crash, full disk, bad copy) while the artifact store holds every
    version is a lost database: nothing opens it as a new registry (which would reuse version 1)
    until `modeldeck db init --force` says so."""
    from typer.testing import CliRunner

    from console.cli import app

    model, _ = array_model
    with Registry(home=home) as reg:
        reg.register(model, "ridge", reference=array_model[1])
        reg.register(model, "ridge", description="second")
    db = home / "registry.db"
    for leftover in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        leftover.unlink(missing_ok=True)
    db.write_bytes(b"")
    blobs = sorted(p for p in (home / "artifacts").rglob("*") if p.is_file())
    assert blobs

    lost = rf"registry\.db is empty but the artifact store at .* holds {len(blobs)} artifacts"
    with pytest.raises(DatabaseError, match=lost):
        Registry(home=home)
    runner = CliRunner()
    for verb in (["register", "x.skops", "--name", "ridge"], ["models"], ["db", "init"]):
        result = runner.invoke(app, verb)
        assert result.exit_code == 1, result.output
        assert "modeldeck db init --force" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (
        db.stat().st_size == 0 or current_revision(Database(Settings.from_env(home), upgrade=False)) is None
    )
    assert sorted(p for p in (home / "artifacts").rglob("*") if p.is_file()) == blobs

    result = runner.invoke(app, ["db", "init", "--force"])
    assert result.exit_code == 0, result.output
    assert "created a new registry database" in result.stdout
    with Registry(home=home) as reg:
        assert reg.list_models() == []
        again = reg.register(model, "ridge", reference=array_model[1])
        assert again.version == 1
    result = runner.invoke(app, ["db", "init", "--force"])  # on a live registry: changes nothing
    assert result.exit_code == 0 and "nothing was changed" in result.stdout
    with Registry(home=home) as reg:
        assert [v.version for v in reg.versions("ridge")] == [1]


def test_a_new_registry_over_an_empty_artifact_store_needs_no_force(home, array_model):
    (home / "artifacts" / "sha256").mkdir(parents=True)
    with Registry(home=home) as reg:
        assert reg.register(array_model[0], "ridge").version == 1


def test_a_pool_with_no_connection_free_is_a_one_line_database_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads of one process waiting for a lock can hold every pooled connection: the next operation's
    wait ends in SQLAlchemy's pool timeout, said as the registry's own error, not a raw TimeoutError."""
    from registry import store

    made = store.create_engine
    monkeypatch.setattr(
        store, "create_engine", lambda *a, **k: made(*a, **k, pool_size=1, max_overflow=0, pool_timeout=0.1)
    )
    db = Database(Settings.from_env(home=tmp_path))
    busy = "no connection of this process came free in time"
    with db.connect(), pytest.raises(DatabaseError, match=busy), db.connect():
        pass
    db.dispose()


def test_psycopgs_second_report_of_a_failed_pipeline_statement_is_not_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A registration's statements are pipelined; when one fails, psycopg logs "error ignored
    terminating <Pipeline>" besides raising the error: on stderr, over the console's screen. A
    PostgreSQL engine drops that line (and only that one)."""
    import logging

    from registry.store import make_engine

    make_engine(Settings.from_env(home=tmp_path, db_url="postgresql+psycopg://u:p@127.0.0.1:9/none"))
    log = logging.getLogger("psycopg")
    with caplog.at_level(logging.WARNING, logger="psycopg"):
        log.warning("error ignored terminating %r: %s", "<psycopg.Pipeline [INERROR]>", "pipeline aborted")
        log.warning("connection lost")
    assert [record.getMessage() for record in caplog.records] == ["connection lost"]


def test_a_postgresql_driver_write_begins_with_its_first_statement_and_stays_all_or_nothing(
    home: Path, postgres_url: str
) -> None:
    """The hot write paths' transaction on PostgreSQL opens with their first statement (BEGIN goes in
    the same round trip, not one of its own): it is READ COMMITTED, what a failed write did is rolled
    back, and the pooled connection goes back as it came (not in autocommit: an ORM write after it is
    still one transaction)."""
    from psycopg.pq import TransactionStatus

    made = "INSERT INTO registered_model (name, description, next_version, created_at, updated_at)"
    reg = Registry(home=home, db_url=postgres_url)
    try:
        with reg.db.driver_write() as raw:
            (isolation,) = raw.execute("SELECT current_setting('transaction_isolation')").fetchone()
            assert raw.info.transaction_status == TransactionStatus.INTRANS
            raw.execute(f"{made} VALUES ('kept', '', 1, now(), now())")
        assert isolation == "read committed"
        for failure in ("SELECT 1 / 0", None):  # the driver's error, and one raised by the caller
            with pytest.raises((DatabaseError, RuntimeError)), reg.db.driver_write() as raw:
                raw.execute(f"{made} VALUES ('half', '', 1, now(), now())")
                if failure is None:
                    raise RuntimeError("a check failed mid-write")
                raw.execute(failure)
        assert [m.name for m in reg.list_models()] == ["kept"]
        with reg.db.engine.connect() as conn:  # the one connection used above (the pool is FIFO)
            assert conn.connection.driver_connection.autocommit is False
        with pytest.raises(RuntimeError), reg.db.write() as session:
            session.connection().exec_driver_sql(f"{made} VALUES ('orm', '', 1, now(), now())")
            raise RuntimeError("rolled back")
        assert [m.name for m in reg.list_models()] == ["kept"]
    finally:
        reg.close()
