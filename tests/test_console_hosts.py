"""The console on a shared (PostgreSQL) registry: the Hosts view, the HOST column, figures and changes of
a deployment placed on another host, and where each event happened. A real supervisor runs as host
"b" (its own home, the same database); the console runs here as host "a", with no supervisor of its
own. Also the real console in a pseudo-terminal at 80x24, and a SQLite home, where nothing changes.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from console_deck import ROW, banner, settle, wait_until
from helpers import free_port, kill_leftovers, stop_supervisor
from terminal import Terminal, modeldeck

from registry import Registry, hosts, placement

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _iris(reg: Registry) -> None:
    """Two iris versions, so there is something to roll back to."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    for c in (1.0, 0.5):
        reg.register(LogisticRegression(C=c, max_iter=500).fit(X, y), "iris", reference=X)


@dataclass
class Shared:
    url: str
    home: Path  # host a's: the console's
    reg: Registry
    port: int  # where b serves deployment `iris`

    def version(self) -> str:
        answer = httpx.post(f"http://127.0.0.1:{self.port}/invocations", json=ROW, timeout=10)
        return answer.headers["x-model-version"]

    def host(self, name: str) -> Any:
        return next(h for h in hosts.hosts(self.reg) if h.name == name)

    def deploy(self, ref: str) -> None:
        asked = placement.request(
            self.reg, "deploy", "iris", ref=ref, placement=["b"], bind="127.0.0.1", port=self.port
        )
        (b,) = placement.wait(lambda: hosts.hosts(self.reg), asked, timeout=60)
        assert (b.generation, b.outcome) == (asked.generation, "done"), b


@pytest.fixture
def shared(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shared]:
    """Host b's supervisor serving deployment `iris` (version 2, 1 its warm standby), placed on b through the
    database; this process is host a."""
    from registry.serving.client import SupervisorClient

    home_a, home_b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("MODELDECK_HOME", str(home_a))
    monkeypatch.setenv("MODELDECK_DB_URL", postgres_url)
    monkeypatch.setenv("MODELDECK_HOST_NAME", "a")
    monkeypatch.delenv("MODELDECK_ARTIFACTS_DIR", raising=False)
    env = {**os.environ, "MODELDECK_HOME": str(home_b), "MODELDECK_HOST_NAME": "b"}
    with Registry(home=home_a, db_url=postgres_url) as reg:
        _iris(reg)
        started = subprocess.run(
            [*modeldeck("supervisor", "start", "--metrics=off", "--drain-grace=1")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            assert started.returncode == 0, started.stderr
            deck = Shared(postgres_url, home_a, reg, free_port())
            deck.deploy("iris:1")
            deck.deploy("iris:2")
            assert deck.version() == "2"
            yield deck
        finally:
            stop_supervisor(SupervisorClient(home_b), home_b)
            kill_leftovers(home_a)


def _cells(app: Any, table_id: str) -> dict[str, dict[str, str]]:
    """Each row of the screen's table by its first cell: label -> cell, hidden columns too."""
    found = app.screen.query(table_id)
    if not found:
        return {}
    table = found.first()
    rows = (table.full_row(i) for i in range(table.row_count))
    return {row[0]: dict(zip(table.labels, row, strict=True)) for row in rows}


async def test_hosts_view_host_column_and_changes_made_by_the_other_host(shared: Shared) -> None:
    from console.app import ModeldeckApp
    from console.screens.hosts import HostsScreen
    from console.screens.versions import VersionsScreen
    from console.widgets.confirm import Confirm

    app = ModeldeckApp(shared.home, refresh_seconds=0.2)
    app.NOTIFICATION_TIMEOUT = 60
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("5")
        assert isinstance(app.screen, HostsScreen)
        await wait_until(pilot, lambda: "b" in _cells(app, "#hosts"))
        b = _cells(app, "#hosts")["b"]
        assert (b["STATE"], b["DEPLOYMENTS"]) == ("up", "iris v2 x1")
        assert b["HEARTBEAT"].endswith(" s ago") and b["ADDRESS"]
        assert "supervisor" not in banner(app)  # none runs here: no alarm, nothing placed here

        await pilot.press("2")
        for _ in range(20):  # traffic, so b's heartbeat carries figures
            httpx.post(f"http://127.0.0.1:{shared.port}/invocations", json=ROW, timeout=10, verify=False)
        await wait_until(pilot, lambda: _cells(app, "#deployments").get("iris", {}).get("REQ/S", "-") != "-")
        row = _cells(app, "#deployments")["iris"]
        assert row["HOST"] == "b" and row["SERVING"] == "iris:2" and row["STANDBY"] == "1"
        assert (row["STATE"], row["WORKERS"]) == ("running", "1/1")  # b's word, not "down"
        assert float(row["REQ/S"]) >= 0

        await pilot.press("m")  # its charts, from b's heartbeats (this host's supervisor has none)
        await wait_until(pilot, lambda: bool(getattr(app.screen, "points", None)))
        summary = str(app.screen.query_one("#summary").render())
        assert "iris: version 2, 1 worker" in summary and "on b: from its heartbeats" in summary
        assert app.screen.points[-1]["requests"] >= 0 and app.screen.points[-1]["version"] == 2
        await pilot.press("escape", "l")  # its log is on b, and the view says so rather than "no log yet"
        await wait_until(pilot, lambda: "its log is there" in str(app.screen.query_one("#status").render()))
        await pilot.press("escape")
        await wait_until(pilot, lambda: bool(_cells(app, "#deployments")))

        await pilot.press("r")  # roll back: a request through the database, made by b's supervisor
        await settle(pilot, app, 0.2)
        assert isinstance(app.screen, Confirm)
        assert "Roll back iris: iris:2 → version 1 (warm standby)?" in str(
            app.screen.query_one("#question").render()
        )
        await pilot.press("y")
        await wait_until(pilot, lambda: "done in" in banner(app))
        said = banner(app)
        assert said.startswith("rolling back iris: done in ") and "b: rolled back to version 1" in said
        assert shared.version() == "1"
        entry = shared.host("b").deployments["iris"]
        assert (entry["version"], entry["outcome"]) == (1, "done")
        await wait_until(pilot, lambda: _cells(app, "#deployments")["iris"]["SERVING"] == "iris:1")

        await pilot.press("1", "enter")  # deploy version 2 again from its model's versions
        await wait_until(pilot, lambda: isinstance(app.screen, VersionsScreen))
        await settle(pilot, app, 0.2)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, Confirm))
        assert "now serving iris:1 on b" in str(app.screen.query_one("#detail").render())
        await pilot.press("y")
        await wait_until(pilot, lambda: "deploying iris:2: done in" in banner(app))
        assert "b: " in banner(app) and shared.version() == "2"

        await pilot.press("3")  # one ledger: where each event happened
        await wait_until(pilot, lambda: any(r["EVENT"] == "rolled_back" for r in _events(app)))
        where = {(r["EVENT"], r["HOST"]) for r in _events(app)}
        assert ("rolled_back", "b") in where and ("requested", "a") in where
    asked = [e for e in shared.reg.history("iris").events if e.kind == "requested"][-2:]
    assert [(e.reason, e.detail["action"]) for e in asked] == [
        ("from the console", "rollback"),
        ("from the console", "deploy"),
    ]


def _events(app: Any) -> list[dict[str, str]]:
    found = app.screen.query("#events")
    if not found:
        return []
    table = found.first()
    return [dict(zip(table.labels, table.full_row(i), strict=True)) for i in range(table.row_count)]


async def test_a_sqlite_home_has_no_hosts_and_looks_as_before(tmp_path: Path, monkeypatch) -> None:
    from console.app import ModeldeckApp
    from console.screens.help import HelpScreen
    from console.screens.hosts import NOT_SHARED

    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    Registry(home=tmp_path).close()
    app = ModeldeckApp(tmp_path, refresh_seconds=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert not [w for w in app.screen.query("Static") if "Hosts" in str(w.render())]
        await pilot.press("escape", "5")
        await settle(pilot, app)
        assert str(app.screen.query_one("#note").render()) == NOT_SHARED
        assert not app.screen.query_one("#hosts").display
        await pilot.press("2")
        await settle(pilot, app)
        assert "HOST" not in app.screen.query_one("#deployments").labels


# ---------------------------------------------------------------------- the real console at 80x24
def _join(reg: Registry, name: str, deployments: dict[str, Any]) -> None:
    hosts.join(
        reg,
        name,
        address=f"10.0.0.{len(name)}",
        version="1.4.0",
        cpus=8,
        memory_bytes=16 << 30,
        pid=1,
        exporter=None,
        deployments=deployments,
    )


def _beat(reg: Registry, name: str, deployments: dict[str, Any]) -> None:
    hosts.beat(reg, name, cpu_percent=37.0, memory_percent=42.0, exporter=None, deployments=deployments)


def test_the_hosts_view_reads_at_80x24(postgres_url: str, tmp_path: Path) -> None:
    """Host web-1 up (kept beating), b lost with `api` placed on it: every column a person needs fits,
    a lost host is in another colour and its deployments unknown, here and in the deployments view."""
    running = {"web": {"state": "running", "version": 2, "workers": 2, "generation": 1}}
    with Registry(home=tmp_path / "a", db_url=postgres_url) as reg:
        _iris(reg)
        _join(reg, "web-1", running)
        _beat(reg, "web-1", running)  # with its load
        _join(reg, "b", {"api": {"state": "running", "version": 1, "workers": 1, "generation": 1}})
        placement.request(reg, "deploy", "api", ref="iris:1", placement=["b"], bind="127.0.0.1", port=1)
        with reg.db.write() as session:  # b's last heartbeat was half a minute ago, by the database's clock
            session.connection().execute(
                sa.text(
                    "UPDATE host SET heartbeat_at = CURRENT_TIMESTAMP - interval '30 seconds' "
                    "WHERE name = 'b'"
                )
            )
        stop = threading.Event()

        def beating() -> None:
            while not stop.wait(1.0):
                _beat(reg, "web-1", running)

        beater = threading.Thread(target=beating, daemon=True)
        beater.start()
        env: dict[str, str | None] = {
            "MODELDECK_HOME": str(tmp_path / "a"),
            "MODELDECK_DB_URL": postgres_url,
            "MODELDECK_HOST_NAME": "a",
            "MODELDECK_CONFIG": str(tmp_path / "no-settings.toml"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
        try:
            with Terminal(modeldeck("console", "--refresh", "0.5"), size=(80, 24), env=env) as term:
                term.wait_for("iris")
                term.send("5")
                term.wait_for("HEARTBEAT")
                up = term.wait_for("web v2 x2")
                lost = term.wait_for("api (unknown)")
                assert term.lines()[up].split()[:2] == ["web-1", "up"]
                assert term.lines()[lost].split()[:2] == ["b", "lost"]
                assert "37% of 8" in term.lines()[up] and " s ago" in term.lines()[up]
                header = term.lines()[term.row_of("HEARTBEAT")]
                for column in ("HOST", "STATE", "HEARTBEAT", "CPU", "DEPLOYMENTS"):
                    assert column in header, header
                term.send("down")  # the cursor's row is drawn in the cursor's colours: off b's row

                def coloured() -> bool:  # "lost" in the theme's error colour, the rest of the row not
                    line, cells = term.lines()[lost], term.screen.buffer[lost]
                    return cells[line.index("lost")].fg != cells[line.index("b ")].fg

                term.wait_until(coloured, "the lost host's state is not in the error colour")
                assert "Quit" in term.lines()[-1]  # the footer is still the last line
                term.send("2")
                row = term.wait_for("b?")
                assert term.lines()[row].split()[:3] == ["api", "b?", "iris:1"]
                assert "unknown" in term.lines()[row] and "down" not in term.lines()[row]
                term.send("q")
                assert term.wait_exit() == 0
        finally:
            stop.set()
            beater.join(5)


# ---------------------------------------------------------------------- the texts, host by host
def _host(name: str, state: str, deployments: dict[str, Any]) -> Any:
    from datetime import UTC, datetime

    from registry.info import HostInfo

    return HostInfo(
        name, "10.0.0.1", "1", 2, 1 << 30, 1, None, datetime.now(UTC), 1.0, state, 5.0, 6.0, deployments
    )


def test_a_deployment_on_two_hosts_one_lost_reads_as_each_host_says() -> None:
    from console.backend import placed_live, placed_point
    from console.host_text import deployments_text
    from console.operations import placed_progress
    from registry.info import DeploymentInfo
    from registry.placement import Outcome

    entry = {"state": "running", "version": 2, "workers": 2, "live": {"t": 5.0, "rps": 3.0, "p99": 0.02}}
    b, c = _host("b", "up", {"web": entry}), _host("c", "lost", {"web": entry})
    web = DeploymentInfo("web", "m", 2, 1, "0.0.0.0", 8080, 2, placement=["b", "c"])
    live = placed_live(web, [b, c])
    assert (live["status"], live["workers_running"]) == ("b running, c unknown", 2)  # c's are not counted
    assert live["live"] == {"rps": 3.0, "p99": 0.02, "seq": 5.0}
    assert placed_live(web, [_host("b", "lost", {"web": entry}), c])["status"] == "unknown"
    assert placed_live(web, [_host("b", "stopped", {}), c])["workers_running"] == "?"
    two = {
        "state": "running",
        "version": 2,
        "workers": 1,
        "live": {"t": 6.0, "rps": 1.0, "p99": 0.05, "requests": 4},
    }
    point = placed_point(web, [b, _host("c", "up", {"web": two})])
    assert point is not None and (point["rps"], point["p99"], point["workers"], point["t"]) == (
        4.0,
        0.05,
        3,
        6.0,
    )
    assert point["requests"] == 4 and point["version"] == 2  # b's point had no count: 0, not None
    assert placed_point(web, [_host("b", "lost", {"web": entry}), c]) is None  # lost hosts draw nothing
    assert (deployments_text(b), deployments_text(c)) == ("web v2 x2", "web (unknown)")
    found = [
        Outcome("b", "up", 4, "done", "rolled back to version 1"),
        Outcome("c", "lost", 2),
        Outcome("d", "up", 3),
        Outcome("e", "up", 5, "done", "stopped"),
    ]
    assert placed_progress("rolling back web", 4, found) == (
        "rolling back web: b: rolled back to version 1; c: lost: makes it when it is back; d: waiting; "
        "e: superseded by request 5: stopped"
    )
    assert "d: did not make it within 300 s" in placed_progress("", 4, found, final=True)
