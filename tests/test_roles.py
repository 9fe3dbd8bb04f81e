"""Least privilege on a shared PostgreSQL registry (`modeldeck db roles`, `registry/roles.py`): the three
group roles made from the printed SQL on a real server, a LOGIN user in each, and what each user's
real connections may and may not do. A reader browses (the read verbs, the console's backend and the
console itself, which says read-only by itself) and every write of its is refused before any
statement, with the role named; an operator registers and requests but neither beats for a host nor
writes rollups; a supervisor beats, writes rollups, events and alerts, and deletes a deployment.

Roles are the cluster's, not the test database's: each test's have a unique suffix and are dropped at
its end. The test role needs CREATEROLE (`.ci/postgres.sh` gives it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from console_deck import banner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from console.cli import app as cli_app
from registry import Registry, alert_outbox, alerts, hosts, placement, roles
from registry.deployments import list_deployments, remove_deployment, save_deployment
from registry.errors import DatabaseError
from registry.info import DeploymentInfo
from registry.monitoring.performance import prune_performance_rollups, write_performance_rollups
from registry.monitoring.rollups import prune_rollups, read_rollups, write_rollups
from registry.settings import Settings
from registry.store import Database, upgrade_schema

ROOT = Path(__file__).resolve().parent.parent
QUICK = [sys.executable, "-m", "console"]  # the installed `modeldeck` command (console.quick.main)
PASSWORD = "role-test"
runner = CliRunner()


@dataclass
class Lab:
    """A registry at head owned by the test role, the three groups, and a LOGIN user in each."""

    owner_url: str
    names: roles.RoleNames
    users: dict[str, str]  # "reader" / "operator" / "supervisor" -> the LOGIN role's name
    tmp: Path

    def url(self, kind: str) -> str:
        return _as_user(self.owner_url, self.users[kind])

    def registry(self, kind: str) -> Registry:
        return Registry(home=self.tmp / kind, db_url=self.url(kind))

    def counts(self) -> dict[str, int]:
        """Rows per table, as the owner sees them."""
        engine = create_engine(self.owner_url)
        try:
            with engine.connect() as conn:
                return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in roles.TABLES}
        finally:
            engine.dispose()


def _as_user(url: str, user: str) -> str:
    return make_url(url).set(username=user, password=PASSWORD).render_as_string(hide_password=False)


def _need_createrole(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            allowed = conn.execute(
                text("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar()
    finally:
        engine.dispose()
    if not allowed:
        message = "the test role may not create roles (CREATEROLE): run .ci/postgres.sh"
        if os.environ.get("MODELDECK_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def made(postgres_url: str) -> Iterator[list[str]]:
    """Roles a test makes (append their names); each dropped at the end with what was granted to it."""
    _need_createrole(postgres_url)
    names: list[str] = []
    yield names
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            existing = [
                n
                for n in names
                if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": n}).first()
            ]
            if existing:
                listed = ", ".join(existing)
                conn.execute(text(f"GRANT {listed} TO current_user"))  # DROP OWNED needs membership
                conn.execute(text(f"DROP OWNED BY {listed}"))
                conn.execute(text(f"DROP ROLE {listed}"))
    finally:
        engine.dispose()


def _users(owner_url: str, groups: dict[str, str], made: list[str]) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    users = {kind: f"mdu_{kind[:3]}_{suffix}" for kind in groups}
    engine = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for kind, group in groups.items():
                made.append(users[kind])
                conn.execute(text(f"CREATE ROLE {users[kind]} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}"))
    finally:
        engine.dispose()
    return users


def _options(names: roles.RoleNames) -> list[str]:
    return ["--reader", names.reader, "--operator", names.operator, "--supervisor", names.supervisor]


def _psql(url: str, sql: str) -> None:
    """Run `sql` with psql, as `modeldeck db roles | psql ...` does."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (Debian's postgresql-client; .ci/postgres.sh installs it)")
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        [psql, conninfo, "-q", "-v", "ON_ERROR_STOP=1"], input=sql, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def lab(postgres_url: str, made: list[str], tmp_path: Path, iris_model, monkeypatch) -> Lab:
    """iris:1 (@champion), host h1, deployment `web` requested on it; the roles from the printed SQL."""
    with Registry(home=tmp_path / "owner", db_url=postgres_url) as reg:
        reg.register(iris_model, "iris", alias="champion")
        hosts.join(
            reg,
            "h1",
            address="127.0.0.1",
            version="t",
            cpus=1,
            memory_bytes=1,
            pid=1,
            exporter=None,
            deployments={},
        )
        placement.request(reg, "deploy", "web", ref="iris:1", placement=["h1"])
    suffix = uuid.uuid4().hex[:8]
    names = roles.RoleNames(f"mdr_{suffix}", f"mdo_{suffix}", f"mds_{suffix}")
    made.extend(names.all)
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "owner"))
    monkeypatch.setenv("MODELDECK_DB_URL", postgres_url)
    printed = runner.invoke(cli_app, ["db", "roles", *_options(names)])
    assert printed.exit_code == 0, printed.output
    assert f"CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE {names.reader}" in printed.stdout
    _psql(postgres_url, printed.stdout)
    groups = {"reader": names.reader, "operator": names.operator, "supervisor": names.supervisor}
    users = _users(postgres_url, groups, made)
    monkeypatch.delenv("MODELDECK_DB_URL")
    return Lab(postgres_url, names, users, tmp_path)


def _quick(lab: Lab, kind: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MODELDECK_HOME": str(lab.tmp / kind),
        "MODELDECK_DB_URL": lab.url(kind),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
    }
    return subprocess.run([*QUICK, *args], env=env, capture_output=True, text=True, timeout=120)


def _refused(exc: pytest.ExceptionInfo[DatabaseError], user: str) -> None:
    message = str(exc.value)
    assert f"is read-only: role {user} may only read this registry; nothing was changed" in message, message
    assert "\n" not in message


def test_the_sql_covers_every_table_and_serial_of_the_schema(lab: Lab) -> None:
    """The roles name every table the migrations made (a new table must be given its writers) and
    the sequences of the serial ids they insert; the ledger is append-only for every role."""
    engine = create_engine(lab.owner_url)
    try:
        with engine.connect() as conn:
            tables = set(
                conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            )
            sequences = set(
                conn.execute(
                    text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
                ).scalars()
            )

            def may(role: str, table: str, privilege: str) -> bool:
                return bool(
                    conn.execute(
                        text(f"SELECT has_table_privilege('{role}', '{table}', '{privilege}')")
                    ).scalar()
                )

            assert tables == set(roles.TABLES)
            assert sequences == {f"{t}_id_seq" for t in roles.SERIAL}
            assert tables - {"alembic_version"} == set(roles.OPERATOR_WRITES) | set(roles.SUPERVISOR_WRITES)
            for user in lab.users.values():
                assert all(may(user, t, "SELECT") for t in tables)
                assert not any(may(user, "event", p) for p in ("UPDATE", "DELETE", "TRUNCATE"))
                assert not any(may(user, "alembic_version", p) for p in ("INSERT", "UPDATE", "DELETE"))
            reader = lab.users["reader"]
            assert not any(
                may(reader, t, p) for t in tables for p in ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
            )
            # a table a later migration adds (made by the tables' owner) is readable by every role
            conn.execute(text("CREATE TABLE later_migration (id integer)"))
            conn.commit()
            assert all(may(user, "later_migration", "SELECT") for user in lab.users.values())
            # --apply again (after an upgrade): the roles exist; a grant beyond the list is taken back
            conn.execute(text(f"GRANT INSERT ON host TO {lab.names.operator}"))
            conn.commit()
            assert may(lab.users["operator"], "host", "INSERT")
            names = lab.names
            applied = runner.invoke(
                cli_app,
                ["db", "roles", *_options(names), "--apply"],
                env={"MODELDECK_DB_URL": lab.owner_url, "MODELDECK_HOME": str(lab.tmp / "owner")},
            )
            assert applied.exit_code == 0, applied.output
            conn.rollback()  # a new transaction sees the grants as they are now
            assert applied.stdout.startswith(
                f"roles {names.reader}, {names.operator}, {names.supervisor} set on"
            )
            assert not may(lab.users["operator"], "host", "INSERT") and may(
                lab.users["operator"], "host", "DELETE"
            )
            assert may(lab.users["supervisor"], "host", "INSERT") and may(
                lab.users["reader"], "event", "SELECT"
            )
    finally:
        engine.dispose()


def test_the_reader_browses_and_every_write_is_refused_with_its_role(
    lab: Lab, iris_model, tmp_path: Path, monkeypatch
) -> None:
    user = lab.users["reader"]
    shown = {"models": "iris", "versions iris": "champion", "show iris@champion": "iris:1"}
    shown |= {"history iris": "registered", "hosts": "h1"}
    for verb, expected in shown.items():
        done = _quick(lab, "reader", *verb.split())
        assert done.returncode == 0, (verb, done.stderr)
        assert expected in done.stdout, (verb, done.stdout)
    before = lab.counts()

    from console.backend import Backend

    with monkeypatch.context() as env:
        env.setenv("MODELDECK_DB_URL", lab.url("reader"))  # the console's Backend reads the environment
        backend = Backend(tmp_path / "reader-console")
        try:
            assert backend.read_only == f"role {user} may only read this registry"
            assert [m.name for m in backend.list_models()] == ["iris"]
            assert [d.name for d in backend.deployments()] == ["web"]
            assert backend.active_alerts() == []
            assert backend.alerts() == ([], [])  # through a Registry, opened read-only
            assert backend.registry.db.read_only == backend.read_only
        finally:
            backend.close()

    with lab.registry("reader") as reg:
        assert reg.db.role == user
        with pytest.raises(DatabaseError) as exc:
            reg.register(iris_model, "iris")
        _refused(exc, user)
        with pytest.raises(DatabaseError) as exc:
            reg.set_alias("iris", "staging", 1)
        _refused(exc, user)
        with pytest.raises(DatabaseError) as exc:
            placement.request(reg, "scale", "web", workers=2)
        _refused(exc, user)
        with pytest.raises(DatabaseError) as exc:
            alerts.add_silence(reg, "web", 3600, reason="quiet")
        _refused(exc, user)
    done = _quick(lab, "reader", "tag", "iris", "team=fraud")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert f"role {user} may only read this registry" in errors[0] and "Traceback" not in done.stderr
    assert lab.counts() == before  # nothing was written, not even an artifact's blob

    refused = runner.invoke(
        cli_app,
        ["db", "roles", *_options(lab.names), "--apply"],
        env={"MODELDECK_DB_URL": lab.url("reader"), "MODELDECK_HOME": str(tmp_path / "reader")},
    )
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: cannot set up the roles on ") and refused.stderr.count("\n") == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_console_says_read_only_by_itself_for_a_reader(lab: Lab, monkeypatch) -> None:
    from console.app import ModeldeckApp

    monkeypatch.setenv("MODELDECK_DB_URL", lab.url("reader"))
    app = ModeldeckApp(lab.tmp / "reader", refresh_seconds=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        assert app.read_only and "[read-only]" in app.sub_title
        assert "read-only" in banner(app)
        table = app.screen.query_one("#models")
        assert table.row_count == 1 and table.get_row_at(0)[0] == "iris"


def test_the_operator_registers_and_requests_but_neither_beats_nor_writes_rollups(
    lab: Lab, iris, iris_model
) -> None:
    from sklearn.linear_model import LogisticRegression

    with lab.registry("operator") as reg:
        assert reg.db.read_only is None and reg.db.role == lab.users["operator"]
        assert reg.register(iris_model, "iris", alias="staging").version == 2
        other = LogisticRegression(C=0.5, max_iter=1000).fit(*iris)  # its own artifact: discarded with it
        assert reg.register(other, "iris").version == 3
        reg.tag("iris:2", {"team": "fraud"})
        reg.tag("iris", {"owner": "ops"})
        reg.describe("iris", "flowers")
        reg.archive("iris:3")
        reg.archive("iris:3", restore=True)
        reg.delete("iris:3")
        asked = placement.request(reg, "deploy", "web", ref="iris@staging")
        assert asked.generation == 2
        alerts.set_objective(reg, "web", "availability", target=0.99)
        silence = alerts.add_silence(reg, "web", 3600, reason="maintenance")
        alerts.end_silence(reg, silence.id)
        alerts.set_webhook(reg, "http://127.0.0.1:9/hook")
        alerts.set_webhook(reg, None)
        assert [v.version for v in reg.versions("iris")] == [1, 2]

        before = lab.counts()
        with pytest.raises(DatabaseError, match="permission denied for table host"):
            hosts.join(
                reg,
                "h9",
                address="127.0.0.1",
                version="t",
                cpus=1,
                memory_bytes=1,
                pid=1,
                exporter=None,
                deployments={},
            )
        with pytest.raises(DatabaseError, match="permission denied for table host"):
            hosts.beat(reg, "h1", cpu_percent=1.0, memory_percent=1.0, exporter=None, deployments={})
        with pytest.raises(DatabaseError, match="permission denied for table metric_rollup"):
            write_rollups(reg.db, [_rollup_row()])
        with (
            pytest.raises(DatabaseError, match="permission denied for table event"),
            reg.db.write() as session,  # the ledger is append-only
        ):
            session.execute(text("UPDATE event SET reason = 'rewritten'"))
        assert lab.counts() == before


def test_the_supervisor_beats_writes_rollups_events_alerts_and_deletes_a_deployment(
    lab: Lab, iris_model
) -> None:
    with lab.registry("supervisor") as reg:
        assert reg.db.read_only is None
        hosts.join(
            reg,
            "h2",
            address="127.0.0.1",
            version="t",
            cpus=2,
            memory_bytes=1,
            pid=2,
            exporter=None,
            deployments={},
        )
        assert hosts.beat(
            reg, "h2", cpu_percent=5.0, memory_percent=5.0, exporter=None, deployments={"web": {}}
        )
        hosts.leave(reg, "h2")
        assert {h.name: h.state for h in hosts.hosts(reg)}["h2"] == "stopped"

        row = _rollup_row()
        write_rollups(reg.db, [row])
        write_rollups(reg.db, [row])  # a second part of the same window: merged (UPDATE)
        assert [r["requests"] for r in read_rollups(reg.db, "web", 10)] == [20.0]
        prune_rollups(reg.db)
        write_performance_rollups(reg.db, [_performance_row()])
        write_performance_rollups(reg.db, [_performance_row()])  # rewritten as labels arrive
        prune_performance_rollups(reg.db, keep=timedelta(days=3650))

        reg.record_event("iris", "loading", deployment="web", to_version=1)
        firing = alert_outbox.save_transition(
            reg,
            None,
            "firing",
            payload=lambda info: {"alert": info.id},
            url="http://127.0.0.1:9/hook",
            **_alert(),
        )
        (delivery,) = alert_outbox.due_deliveries(reg)
        alert_outbox.delivery_done(reg, delivery.id, None)
        alert_outbox.save_transition(reg, firing, "resolved", payload=lambda info: {}, url=None, **_alert())
        assert alert_outbox.prune(reg, keep_alerts=0.0, keep_sent=0.0) == 2

        save_deployment(reg, DeploymentInfo("api", "iris", 1, None, "127.0.0.1", 8181, 1), "switched")
        assert remove_deployment(reg, "api", "stopped") is not None
        generation = next(d for d in list_deployments(reg) if d.name == "web").generation
        assert placement.released(reg, "web", "h1", generation)  # the last placed host stopped: deleted
        assert [d.name for d in list_deployments(reg)] == []

        before = lab.counts()
        with pytest.raises(DatabaseError, match="permission denied for table"):
            reg.register(iris_model, "iris")
        with pytest.raises(DatabaseError, match="permission denied for table model_alias"):
            reg.set_alias("iris", "staging", 1)
        assert lab.counts() == before


def test_roles_on_an_older_schema_are_never_asked_to_upgrade_it(
    postgres_url: str, made: list[str], tmp_path
) -> None:
    """The schema is its owner's to upgrade: a reader reads it as it is and is told a write would need
    the upgrade; an operator (who may write rows) is told who can upgrade it, and nothing changes."""
    old = Database(Settings.from_env(tmp_path / "owner", postgres_url), upgrade=False)
    assert upgrade_schema(old, "0008") == "0008"
    old.dispose()
    suffix = uuid.uuid4().hex[:8]
    groups = {"reader": f"mdr_{suffix}", "operator": f"mdo_{suffix}"}
    made.extend(groups.values())
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for group in groups.values():
                conn.execute(text(f"CREATE ROLE {group} NOLOGIN"))
                conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {group}"))
            conn.execute(text(f"GRANT INSERT ON event TO {groups['operator']}"))
    finally:
        engine.dispose()
    users = _users(postgres_url, groups, made)
    url = {kind: _as_user(postgres_url, user) for kind, user in users.items()}

    with Registry(home=tmp_path / "reader", db_url=url["reader"]) as reg:
        assert reg.db.stale_schema == "0008"
        with pytest.raises(DatabaseError, match=r"would need upgrading to 0009\); nothing was changed"):
            reg.set_alias("iris", "champion", 1)
    with pytest.raises(DatabaseError) as exc:
        Registry(home=tmp_path / "operator", db_url=url["operator"])
    message = str(exc.value)
    assert (
        f"at schema revision 0008 and this modeldeck needs 0009, which role {users['operator']} may not make"
        in message
    )
    assert "run `modeldeck db upgrade` as the owner of its tables (nothing was changed)" in message
    check = Database(Settings.from_env(tmp_path / "owner", postgres_url), upgrade=False)
    try:
        from registry.store import current_revision

        assert current_revision(check) == "0008"
    finally:
        check.dispose()


def test_db_roles_refuses_sqlite_and_bad_names(tmp_path: Path) -> None:
    env = {"MODELDECK_HOME": str(tmp_path), "MODELDECK_DB_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = runner.invoke(cli_app, ["db", "roles"], env=env)
    assert (
        done.exit_code == 1 and "a SQLite registry's access control is its file's permissions" in done.stderr
    )
    done = runner.invoke(cli_app, ["db", "roles", "--reader", "Robert'); DROP"], env=env)
    assert done.exit_code == 1 and "a role name here is 1-63 lower-case letters" in done.stderr
    done = runner.invoke(cli_app, ["db", "roles", "--operator", "modeldeck_reader"], env=env)
    assert done.exit_code == 1 and "three different names" in done.stderr


def test_db_roles_on_a_database_without_the_schema_says_to_create_it(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {"MODELDECK_HOME": str(tmp_path), "MODELDECK_DB_URL": postgres_url}
    done = runner.invoke(cli_app, ["db", "roles"], env=env)
    assert done.exit_code == 1 and "has no modeldeck schema" in done.stderr, done.stderr
    assert "run `modeldeck db upgrade` first" in done.stderr


def _rollup_row() -> dict:
    return {
        "deployment": "web",
        "model": "iris",
        "version": 1,
        "resolution": 10,
        "at": datetime(2030, 1, 1, tzinfo=UTC),
        "requests": 10.0,
        "ok": 10.0,
        "client_errors": 0.0,
        "server_errors": 0.0,
        "p50": 0.001,
        "p95": 0.002,
        "p99": 0.003,
        "cpu": 1.0,
        "rss": 1e8,
        "drift_status": None,
        "drift_share": None,
    }


def _performance_row() -> dict:
    return {
        "deployment": "web",
        "model": "iris",
        "version": 1,
        "at": datetime(2030, 1, 1, tzinfo=UTC),
        "predicted": 10,
        "labelled": 5,
        "label_delay": 1.0,
        "accuracy": 0.9,
        "f1": None,
        "log_loss": None,
        "mae": None,
        "rmse": None,
    }


def _alert() -> dict:
    return {
        "deployment": "web",
        "model": "iris",
        "version": 1,
        "kind": "availability",
        "severity": "page",
        "reason": "errors",
        "figures": {},
    }
