"""A switch is all or nothing: the database locked mid-switch, and the supervisor SIGKILLed or SIGSTOPped
at every step of a deploy, under a steady client.

Each test asserts that the database, the ledger, the supervisor's `status` and the traffic (every
response's `x-model-version`) agree afterwards, that no worker of the home runs beyond what `status`
lists, and counts the requests lost (0: workers outlive their supervisor and only the deployment's
workers, never the daemon, hold connections).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faults
import httpx
import psutil
import pytest
from helpers import ROW, free_port, iris_home, kill_leftovers
from helpers import Load as SharedLoad
from helpers import wait_until as _wait

from registry import Registry
from registry.deployments import get_deployment, open_actions
from registry.errors import SupervisorError
from registry.serving.client import SupervisorClient
from registry.serving.processes import workers_of
from registry.serving.protocol import DeploymentStatus

FLAGS = ("--drain-grace=1", "--drift-every=1", "--metrics=off")


#: Two clients, each pausing 2 ms between requests; entering waits for the first answers.
Load = partial(SharedLoad, clients=2, timeout=20, pause=0.002, warm=20)


@dataclass
class Home:
    path: Path

    def client(self, *flags: str) -> SupervisorClient:
        """A client of this home with a supervisor running (started with `flags`)."""
        client = SupervisorClient(self.path)
        client.ensure_running(*FLAGS, *flags)
        client.wait_settled(60)
        return client

    def events(self, name: str) -> list:
        with Registry(home=self.path) as reg:
            return [e for e in reg.history("iris").events if e.deployment == name]

    def wanted(self, name: str) -> int | None:
        """The version the registry's deployment row says serves `name`."""
        with Registry(home=self.path) as reg:
            found = get_deployment(reg, name)
        return found.version if found else None

    def open_actions(self) -> list:
        with Registry(home=self.path) as reg:
            return open_actions(reg)

    def workers(self) -> set[int]:
        """Every live worker process of this home (whoever tracks it)."""
        return {w.pid for w in workers_of(self.path)}

    def lock(self) -> sqlite3.Connection:
        """Hold the registry database's write lock (release with `.rollback()`)."""
        conn = sqlite3.connect(self.path / "registry.db", isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        return conn


def _listed(client: SupervisorClient) -> set[int]:
    return {p["pid"] for d in client.status()["deployments"] for p in d["processes"]}


def _deployment(client: SupervisorClient, name: str) -> dict:
    return next(d for d in client.status()["deployments"] if d["name"] == name)


def _version_of(url: str) -> str:
    return httpx.post(f"{url}/invocations", json=ROW, timeout=10).headers["x-model-version"]


def _assert_agree(home: Home, client: SupervisorClient, name: str, url: str) -> int:
    """DB, ledger, status and traffic name one version, no action is open, and no worker of the home
    runs that status does not list; the version."""
    version = home.wanted(name)
    assert version is not None
    _wait(lambda: not home.open_actions(), what="every ledger action to have its outcome")
    served = [e for e in home.events(name) if e.kind in ("switched", "rolled_back", "reverted")]
    assert served[-1].to_version == version, [(e.kind, e.to_version) for e in served]
    _wait(lambda: _deployment(client, name)["status"] == "running", what="the deployment to run")
    deployment = _deployment(client, name)
    assert deployment["version"] == version
    assert {p["version"] for p in deployment["processes"] if p["role"] == "active"} == {version}
    _wait(lambda: home.workers() == _listed(client), what="no worker beyond what status lists")
    assert {_version_of(url) for _ in range(20)} == {str(version)}  # new connections, one version
    return version


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    with iris_home(tmp_path_factory, "switch", reference=False) as path:
        try:
            yield Home(path)
        finally:
            with SupervisorClient(path) as client:
                if client.running():
                    client.shutdown(stop_servers=True)
            kill_leftovers(path)


@pytest.fixture
def fresh(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """The module's home with no supervisor running, none left running afterwards."""
    yield home
    monkeypatch.delenv("MODELDECK_DB_TIMEOUT", raising=False)
    with SupervisorClient(home.path) as client:
        if not client.running():
            client.ensure_running(*FLAGS)
        client.wait_settled(60)
        for deployment in client.status()["deployments"]:
            client.stop(deployment["name"])
        client.shutdown()


def _deploy_in_background(home: Home, *args: str) -> Callable[[], subprocess.CompletedProcess[str]]:
    """Run `modeldeck deploy ...` as a child (like a user); the returned call waits for its result."""
    env = {**os.environ, "MODELDECK_HOME": str(home.path)}
    child = subprocess.Popen(
        faults.modeldeck("deploy", *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def result() -> subprocess.CompletedProcess[str]:
        out, err = child.communicate(timeout=120)
        return subprocess.CompletedProcess(child.args, child.returncode, out, err)

    return result


def _after(home: Home, name: str, mark: int, kind: str) -> Callable[[], bool]:
    return lambda: any(e.kind == kind for e in home.events(name)[mark:])


def test_a_switch_whose_database_write_fails_changes_nothing_and_says_so(
    fresh: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELDECK_DB_TIMEOUT", "1")
    # workers spawned anew, so the load takes the seconds the lock below must land in (a preloaded
    # worker loads in ~0.1 s, which can be over before it is taken; preloading is tested elsewhere)
    monkeypatch.setenv("MODELDECK_PRELOAD", "off")
    client = fresh.client()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client.deploy("iris:1", name="locked", port=port)
    before = fresh.workers()
    mark = len(fresh.events("locked"))
    with Load(url) as load:
        outcome: list[object] = []
        deploying = threading.Thread(
            target=lambda: outcome.append(
                _try(lambda: SupervisorClient(fresh.path).deploy("iris:2", name="locked"))
            )
        )
        deploying.start()
        _wait(_after(fresh, "locked", mark, "loading"), what="the load of version 2")
        holder = fresh.lock()  # held from the load until after the switch's write gave up
        try:
            deploying.join(60)
            (error,) = outcome
            assert isinstance(error, SupervisorError), error
            message = str(error)
            assert "switch to iris:2 not done" in message and "is locked" in message, message
            assert "locked still serves iris:1" in message, message
            load.more()
            assert fresh.wanted("locked") == 1 and _deployment(client, "locked")["version"] == 1
            assert fresh.workers() == before  # the loaded version 2 worker was stopped
        finally:
            holder.rollback()
            holder.close()
        load.more()
    # Not one request answered by version 2, none failed; everything agrees on version 1.
    assert load.failures == [] and set(load.versions) == {"1"}, (load.failures, load.versions)
    print(f"\nlocked switch: {load.answered} requests, all by version 1, 0 lost")
    assert _assert_agree(fresh, client, "locked", url) == 1
    failed = fresh.events("locked")[-1]
    assert failed.kind == "failed" and failed.to_version == 2 and "not recorded" in failed.reason
    # With the lock gone the same deploy succeeds and leaves no extra worker.
    assert client.deploy("iris:2", name="locked")["version"] == 2
    assert _assert_agree(fresh, client, "locked", url) == 2
    assert len(fresh.workers()) == 2  # version 2 serving, version 1 the warm standby


def test_a_promotion_that_fails_after_the_write_is_reverted(
    fresh: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # spawned anew, as above: a preloaded worker can load, and the switch commit, before the lock is
    # taken (seen in CI: version 2 was serving before the test looked for it loaded)
    monkeypatch.setenv("MODELDECK_PRELOAD", "off")
    client = fresh.client()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client.deploy("iris:1", name="revert", port=port)
    mark = len(fresh.events("revert"))
    with Load(url) as load:
        outcome: list[object] = []
        deploying = threading.Thread(
            target=lambda: outcome.append(
                _try(lambda: SupervisorClient(fresh.path).deploy("iris:2", name="revert"))
            )
        )
        deploying.start()
        _wait(_after(fresh, "revert", mark, "loading"), what="the load of version 2")
        holder = fresh.lock()  # the switch waits for the database (15 s) while its worker dies
        try:
            _wait(lambda: _incoming(client, "revert", "standby"), what="version 2 loaded")
            (victim,) = _incoming(client, "revert", "standby")
            os.kill(victim, signal.SIGKILL)
        finally:
            holder.rollback()
            holder.close()
        deploying.join(60)
        load.more()
    (error,) = outcome
    assert isinstance(error, SupervisorError) and "failed after it was recorded" in str(error), error
    assert "put back: revert serves iris:1 again" in str(error)
    assert load.failures == [] and set(load.versions) == {"1"}, (load.failures, load.versions)
    assert _assert_agree(fresh, client, "revert", url) == 1
    kinds = [e.kind for e in fresh.events("revert")[mark:]]
    assert kinds[-2:] == ["switched", "reverted"], kinds


def _incoming(client: SupervisorClient, name: str, state: str) -> list[int]:
    processes = _deployment(client, name)["processes"]
    return [p["pid"] for p in processes if p["role"] == "incoming" and p["state"] == state]


def _try(call: Callable[[], object]) -> object:
    try:
        return call()
    except SupervisorError as exc:
        return exc


@pytest.mark.parametrize("step", ["deploy_requested", "loading", "ready", "switched"])
def test_a_supervisor_killed_at_any_step_of_a_deploy_leaves_one_story(
    fresh: Home, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # workers spawned anew: each step lasts long enough to kill the supervisor in it (a preloaded
    # deploy can pass from the switch to its answer before the kill lands)
    monkeypatch.setenv("MODELDECK_PRELOAD", "off")
    # after the switch the supervisor drains the old worker before it answers: a request left
    # half-sent to that worker holds the drain for its whole grace, so the kill lands before the answer
    client = fresh.client("--drain-grace=10") if step == "switched" else fresh.client()
    name, port = f"kill-{step.replace('_', '-')}", free_port()
    url = f"http://127.0.0.1:{port}"
    client.deploy("iris:1", name=name, port=port)
    mark = len(fresh.events(name))
    supervisor = client.status()["supervisor"]["pid"]
    with Load(url) as load, contextlib.ExitStack() as held:
        if step == "switched":
            half_sent = held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
            half_sent.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        deploy = _deploy_in_background(fresh, "iris:2", "--name", name)
        holder = None
        if step == "ready":  # loaded, waiting for the switch's write: hold the database meanwhile
            _wait(_after(fresh, name, mark, "loading"), what="the load")
            holder = fresh.lock()
            _wait(lambda: _incoming(client, name, "standby"), what="version 2 loaded")
        else:
            _wait(_after(fresh, name, mark, step), timeout=60, what=step)
        os.kill(supervisor, signal.SIGKILL)
        if holder is not None:
            holder.rollback()
            holder.close()
        result = deploy()
        load.more()  # served without a supervisor
        started = time.monotonic()
        client = fresh.client()
        version = _assert_agree(fresh, client, name, url)
        recovered = time.monotonic() - started
        load.more()
    assert result.returncode == 1
    assert "stopped during the request" in result.stderr, result.stderr
    assert "no supervisor is running" not in result.stderr
    happened = "so the deploy happened" if version == 2 else "so the deploy did not happen"
    assert happened in result.stderr.replace("\n", " "), result.stderr
    if step == "switched":
        assert version == 2
    elif step != "deploy_requested":
        assert version == 1
    closed = [e for e in fresh.events(name)[mark:] if e.kind == "failed"]
    if version == 1:
        assert closed and "supervisor stopped during" in closed[-1].reason
    print(
        f"\nkilled after {step}: serving version {version}, {len(load.failures)} requests lost, "
        f"recovered (settled, all agree) in {recovered:.2f} s"
    )
    assert load.failures == [], load.failures


def test_a_supervisor_stopped_mid_deploy_finishes_it_when_continued(fresh: Home) -> None:
    client = fresh.client()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client.deploy("iris:1", name="paused", port=port)
    mark = len(fresh.events("paused"))
    supervisor = client.status()["supervisor"]["pid"]
    log = fresh.path / "logs" / "paused.log"
    with Load(url) as load:
        outcome: list[object] = []
        deploying = threading.Thread(
            target=lambda: outcome.append(
                _try(lambda: SupervisorClient(fresh.path).deploy("iris:2", name="paused"))
            )
        )
        deploying.start()
        _wait(_after(fresh, "paused", mark, "loading"), what="the load")
        # the new worker asked for (the ledger's "loading" comes just before): a SIGSTOP in between
        # would stop the supervisor before it asks, and nothing would load
        _wait(lambda: log.exists() and " v2 [" in log.read_text(), what="the new worker's first line")
        os.kill(supervisor, signal.SIGSTOP)
        try:  # stopped until the new worker has loaded (it reports to a supervisor that cannot listen)
            _wait(lambda: any(" v2 [" in x and x.endswith("standby") for x in log.read_text().splitlines()))
            load.more()  # serving goes on without the supervisor
        finally:
            os.kill(supervisor, signal.SIGCONT)
        continued = time.monotonic()
        deploying.join(60)
        recovered = time.monotonic() - continued
    (result,) = outcome
    assert isinstance(result, DeploymentStatus) and result.version == 2, result
    assert _assert_agree(fresh, client, "paused", url) == 2
    print(f"\nSIGSTOP mid-deploy: deploy finished {recovered:.2f} s after SIGCONT, {len(load.failures)} lost")
    assert load.failures == [] and load.versions["2"] > 0


def test_a_load_timeout_says_so_and_leaves_no_worker(fresh: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # workers spawned anew: a forked worker loads before the SIGSTOP below can land in its load
    monkeypatch.setenv("MODELDECK_PRELOAD", "off")
    client = fresh.client()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client.deploy("iris:1", name="slow", port=port)
    client.shutdown()  # servers keep serving; the next supervisor adopts them with a short load timeout
    client = fresh.client("--load-timeout=3")
    before = fresh.workers()
    outcome: list[object] = []
    deploying = threading.Thread(
        target=lambda: outcome.append(
            _try(lambda: SupervisorClient(fresh.path).deploy("iris:2", name="slow"))
        )
    )
    deploying.start()
    _wait(lambda: fresh.workers() - before, what="the new worker")
    (stuck,) = fresh.workers() - before
    os.kill(stuck, signal.SIGSTOP)  # it never finishes loading
    deploying.join(60)
    (error,) = outcome
    assert isinstance(error, SupervisorError)
    assert "did not load within 3 s (load timeout)" in str(error) and "-9" not in str(error), error
    assert "slow still serves version 1" in str(error)
    assert fresh.events("slow")[-1].reason == "did not load within 3 s (load timeout)"
    assert _assert_agree(fresh, client, "slow", url) == 1
    assert not psutil.pid_exists(stuck) or psutil.Process(stuck).status() == psutil.STATUS_ZOMBIE


def test_start_stops_strays_of_this_home_only(fresh: Home, tmp_path: Path) -> None:
    """Workers nothing recorded (a supervisor killed between spawning and recording one) are stopped
    at the next start; a worker of another home whose path starts the same is left alone."""
    import shutil
    import sys

    other = Path(f"{fresh.path}-other")
    shutil.copytree(fresh.path, other, ignore=shutil.ignore_patterns("run", "logs"))

    def worker(home: Path) -> subprocess.Popen[bytes]:
        sock = __import__("socket").socket()
        sock.bind(("127.0.0.1", 0))
        argv = [
            sys.executable,
            "-m",
            "registry.serving.lifecycle",
            "--home",
            str(home),
            "--deployment",
            "stray",
            "--model",
            "iris",
            "--version",
            "1",
            "--fd",
            str(sock.fileno()),
            "--standby",
        ]
        try:
            return subprocess.Popen(
                argv,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            sock.close()

    stray, foreign = worker(fresh.path), worker(other)
    try:
        _wait(lambda: stray.pid in fresh.workers(), what="the stray")
        client = fresh.client()
        _wait(lambda: stray.poll() is not None, timeout=30, what="the stray to be stopped")
        assert foreign.poll() is None and foreign.pid in {w.pid for w in workers_of(other)}
        assert fresh.workers() == _listed(client)
    finally:
        for process in (stray, foreign):
            process.kill()
            process.wait()
        shutil.rmtree(other, ignore_errors=True)


def test_rollback_scale_and_stop_with_the_database_locked_change_nothing(
    fresh: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELDECK_DB_TIMEOUT", "1")
    client = fresh.client()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client.deploy("iris:1", name="held", port=port)
    client.deploy("iris:2", name="held")  # version 1 is the warm standby
    before = sorted((p["pid"], p["role"]) for p in _deployment(client, "held")["processes"])
    with Load(url) as load:
        holder = fresh.lock()
        try:
            for action, doing in (
                (lambda: client.rollback("held"), "switch to iris:1 not done"),
                (lambda: client.scale("held", 2), "scaling to 2 workers not done"),
                (lambda: client.stop("held"), "stop not done"),
            ):
                with pytest.raises(SupervisorError) as refused:
                    action()
                assert doing in str(refused.value) and "held still serves iris:2" in str(refused.value)
                assert (
                    sorted((p["pid"], p["role"]) for p in _deployment(client, "held")["processes"]) == before
                )
                load.more(10)
        finally:
            holder.rollback()
            holder.close()
    assert load.failures == [] and set(load.versions) == {"2"}, (load.failures, load.versions)
    assert _assert_agree(fresh, client, "held", url) == 2
    # The refused rollback and scale have their outcome, written in order once the lock went.
    outcomes = ["failed", "loading", "ready", "failed"]
    _wait(lambda: [e.kind for e in fresh.events("held")][-4:] == outcomes, what="the outcomes")
    rollback, _, _, scale = fresh.events("held")[-4:]
    assert "switch to iris:1 not recorded" in rollback.reason and "scaling to 2" in scale.reason
