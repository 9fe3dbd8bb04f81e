"""Attacks by another local user (`nobody`) on a home run by root, and the files a supervisor leaves.

Before the fix a home path of 80+ characters put the run directory at `$TMPDIR/modeldeck-<uid>/<digest>`,
which another user could create first and fill with symlinks and a socket of theirs; the home was
0755 and the database, logs and token readable by everyone; an empty token meant no auth; and a
SIGKILLed worker's monitoring socket stayed forever.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faults
import pytest
from helpers import free_port, wait_until

from registry import Registry
from registry.serving.client import SupervisorClient
from registry.serving.rundir import RunDir
from registry.serving.worker import ServeError, serving_token

Nobody = Callable[..., subprocess.CompletedProcess[str]]

#: nobody's Python: try to open (or connect to) each path; print {path: errno or 0}.
TRY_OPEN = """
import json, os, socket, sys
result = {}
for path in sys.argv[1:]:
    try:
        if path.endswith(".sock"):
            s = socket.socket(socket.AF_UNIX); s.connect(path); s.close()
        else:
            os.close(os.open(path, os.O_RDONLY))
        result[path] = 0
    except OSError as exc:
        result[path] = exc.errno
print(json.dumps(result))
"""

#: nobody's fake supervisor: listen on a socket planted where the old run directory would be; count clients.
FAKE_SUPERVISOR = """
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o777)
server.listen(8)
open(log, "w").close()
while True:
    client, _ = server.accept()
    with open(log, "a") as handle:
        handle.write("connected\\n")
    client.close()
"""


def _register_iris(home: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        reg.register(LogisticRegression(max_iter=300).fit(X, y), "iris")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MODELDECK_DB_URL", "XDG_RUNTIME_DIR")}
    return {**env, "MODELDECK_HOME": str(home), **extra}


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        faults.modeldeck(*args), env=_env(home, **env), capture_output=True, text=True, timeout=120
    )


def _as_nobody_argv(*argv: str) -> list[str]:
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *argv]


def _nobody_opens(as_nobody: Nobody, paths: list[Path]) -> dict[str, int]:
    result = as_nobody([faults.SYSTEM_PYTHON, "-c", TRY_OPEN, *map(str, paths)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------- item 1
def test_another_user_preparing_the_old_run_path_gains_nothing(
    as_nobody: Nobody, shared_tmp: Path, tmp_path: Path
) -> None:
    """nobody creates the run directory a deep home used to get (under the shared temp dir) with
    symlinks to a root-owned 0600 file and a listening socket of theirs; root's supervisor starts."""
    shared_tmp.chmod(0o1777)  # the shared temp dir, as /tmp is
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    cache = Path(tempfile.mkdtemp(prefix="md-c-"))  # root's own cache dir (short, private)
    home = tmp_path / ("h" * 80)
    home.mkdir()
    _register_iris(home)
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    old = shared_tmp / "modeldeck-0" / digest
    plant = """
import os, sys
old, secret = sys.argv[1], sys.argv[2]
os.makedirs(old + "/w", mode=0o777)
os.chmod(os.path.dirname(old), 0o777); os.chmod(old, 0o777)
for name in ("state.json", "state.json.tmp", "supervisor.lock", "reports.sock", "w/1.sock"):
    os.symlink(secret, os.path.join(old, name))
"""
    planted = as_nobody([faults.SYSTEM_PYTHON, "-c", plant, str(old), str(secret)])
    assert planted.returncode == 0, planted.stderr
    log = shared_tmp / "connections"
    fake = subprocess.Popen(
        _as_nobody_argv(faults.SYSTEM_PYTHON, "-c", FAKE_SUPERVISOR, str(old / "supervisor.sock"), str(log)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {"TMPDIR": str(shared_tmp), "XDG_CACHE_HOME": str(cache)}
    try:
        wait_until(log.exists, 30, "nobody's fake supervisor to listen")
        started = _cli(home, "supervisor", "start", "--metrics=off", **env)
        assert started.returncode == 0, started.stderr
        status = _cli(home, "status", "--json", **env)
        assert status.returncode == 0, status.stderr

        assert secret.read_text() == "root's secret\n" and secret.stat().st_mode & 0o777 == 0o600
        assert log.read_text() == "", "a client talked to nobody's socket"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("XDG_CACHE_HOME", str(cache))
            patch.delenv("XDG_RUNTIME_DIR", raising=False)
            rundir = RunDir.of(home)
        assert rundir.path.parent == cache / "modeldeck" / "run"
        control = os.lstat(rundir.control_socket)
        assert (control.st_uid, control.st_mode & 0o777) == (0, 0o600)
        assert sorted(os.listdir(old)) == sorted(
            ["state.json", "state.json.tmp", "supervisor.lock", "reports.sock", "supervisor.sock", "w"]
        ), "the supervisor made or removed something in nobody's directory"
        tried = _nobody_opens(as_nobody, [rundir.control_socket, rundir.state_file, rundir.path])
        assert set(tried.values()) == {13}, tried  # EACCES on each
    finally:
        fake.kill()
        fake.wait()
        _cli(home, "supervisor", "stop", **env)
        shutil.rmtree(cache, ignore_errors=True)


def test_a_run_directory_of_another_user_is_refused_with_a_clear_message(
    tmp_path: Path, as_nobody: Nobody
) -> None:
    home = tmp_path / "home"
    rundir = RunDir.of(home).create()
    os.chown(rundir.path, 65534, 65534)
    result = _cli(home, "supervisor", "start", "--metrics=off")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: refusing the run directory {rundir.path}: it belongs to uid 65534, not to you (uid 0)"
    )
    assert not rundir.control_socket.exists()


# ---------------------------------------------------------------------------------------- item 3
@dataclass
class Deployed:
    home: Path
    client: SupervisorClient
    port: int

    def active_pids(self) -> list[int]:
        [deployment] = [d for d in self.client.status()["deployments"] if d["name"] == "iris"]
        return [p["pid"] for p in deployment["processes"] if p["role"] == "active"]


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    """iris deployed by root's supervisor, its home in a directory every user can reach."""
    if os.geteuid() != 0:
        pytest.skip("reliability test skipped: acting as the user nobody needs root (CI runs as root)")
    shared = Path(tempfile.mkdtemp(prefix="md-shared-", dir="/tmp"))
    shared.chmod(0o755)
    home = shared / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(home))
        _register_iris(home)
        client = SupervisorClient(home)
        try:
            client.ensure_running("--drain-grace=1", "--metrics=127.0.0.1:0")
            deployed = Deployed(home, client, free_port())
            client.deploy("iris", port=deployed.port)
            yield deployed
        finally:
            try:
                client.shutdown(stop_servers=True)
            finally:
                client.close()
                shutil.rmtree(shared, ignore_errors=True)


def test_another_user_reads_none_of_the_registry_logs_token_or_artifacts(
    deployed: Deployed, as_nobody: Nobody
) -> None:
    home = deployed.home
    serving_token(home)
    with Registry(home=home) as reg:
        blob = reg.artifacts.path_of(reg.get("iris:1").artifact_sha256)
    private = [
        home / "registry.db",
        home / "registry.db-wal",
        home / "registry.db-shm",
        home / "serving-token",
        home / "logs" / "supervisor.log",
        home / "logs" / "iris.log",
        home / "prometheus" / "targets.json",
        RunDir.of(home).state_file,
        blob,
    ]
    assert all(p.exists() for p in private)
    assert home.stat().st_mode & 0o777 == 0o700
    assert set(_nobody_opens(as_nobody, private).values()) == {13}
    home.chmod(0o755)  # a home an older modeldeck left open: every file is private by itself
    try:
        tried = _nobody_opens(as_nobody, private)
        assert sorted(p for p, e in tried.items() if e != 13) == [], tried
        assert {p.stat().st_mode & 0o777 for p in private if p.parent == home} == {0o600}
    finally:
        with Registry(home=home):  # opening it tightens the home again
            assert home.stat().st_mode & 0o777 == 0o700


# ---------------------------------------------------------------------------------------- item 2
@pytest.mark.parametrize(
    ("content", "mode", "why"),
    [
        ("", 0o600, "it is empty"),
        ("abc123\n", 0o600, "it is only 6 characters"),
        ("x" * 43, 0o644, "mode 0644"),
    ],
)
def test_an_unusable_token_fails_a_deploy_beyond_loopback(
    deployed: Deployed, content: str, mode: int, why: str
) -> None:
    token = deployed.home / "serving-token"
    token.unlink(missing_ok=True)
    token.write_text(content)
    token.chmod(mode)
    try:
        result = _cli(
            deployed.home,
            "deploy",
            "iris",
            "--name",
            "public",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        )
        assert result.returncode == 1
        assert (
            result.stderr.startswith(f"error: refusing the serving token {token}: ") and why in result.stderr
        )
        assert len(result.stderr.strip().splitlines()) == 1
        assert [d["name"] for d in deployed.client.status()["deployments"]] == ["iris"]
    finally:
        token.unlink()


def _create_tokens(barrier: Any, homes: list[str], results: Any) -> None:
    """In a spawned process: for each home, wait for the others, then all make its first token at once."""
    tokens = []
    for home in homes:
        barrier.wait(timeout=60)
        try:
            tokens.append(serving_token(Path(home)))
        except Exception as exc:  # the old code's loser: FileExistsError
            tokens.append(f"{type(exc).__name__}: {exc}")
    results.put(tokens)


def test_concurrent_first_starts_agree_on_one_token(tmp_path: Path) -> None:
    homes = [str(tmp_path / f"home{i}") for i in range(30)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_create_tokens, args=(barrier, homes, results)) for _ in range(6)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    disagreements = [h for i, h in enumerate(homes) if len({a[i] for a in answers}) != 1]
    assert disagreements == [], [a[int(disagreements[0].rpartition("home")[2])] for a in answers]
    for i, home in enumerate(homes):
        stored = (Path(home) / "serving-token").read_text().strip()
        assert stored == answers[0][i] and len(stored) >= 32
        assert sorted(os.listdir(home)) == ["serving-token"]  # no temp file left behind


def test_a_full_disk_during_first_creation_leaves_no_empty_token(small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(1024 * 1024)
    home = disk / "home"
    home.mkdir(mode=0o700)
    filler = disk / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    with pytest.raises(ServeError, match=r"cannot create the serving token .*: No space left"):
        serving_token(home)
    assert sorted(os.listdir(home)) == []  # neither an empty token nor a temp file
    filler.unlink()
    assert len(serving_token(home)) >= 32


# --------------------------------------------------------------------------------------- item 20
def _sockets(deployed: Deployed) -> set[str]:
    return {p.name for p in RunDir.of(deployed.home).workers.glob("*.sock")}


def test_a_killed_workers_monitoring_socket_is_removed(deployed: Deployed) -> None:
    [victim] = deployed.active_pids()
    assert f"{victim}.sock" in _sockets(deployed)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: deployed.active_pids() not in ([], [victim]), 30, "the supervisor to restart the worker"
    )
    [replacement] = deployed.active_pids()
    wait_until(lambda: f"{replacement}.sock" in _sockets(deployed), 30, "the new worker's socket")
    assert _sockets(deployed) == {f"{replacement}.sock"}  # 0 sockets of dead workers left


def test_stale_monitoring_sockets_are_swept_when_the_supervisor_starts(deployed: Deployed) -> None:
    workers = RunDir.of(deployed.home).workers
    [worker] = deployed.active_pids()
    deployed.client.shutdown()  # the workers keep serving; the next supervisor adopts them
    for pid in (1, 999_999_999):  # a pid that is not a worker, and one that never existed
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(workers / f"{pid}.sock"))
        stale.close()
    deployed.client.ensure_running("--drain-grace=1", "--metrics=127.0.0.1:0")
    deployed.client.wait_settled(60)
    assert deployed.active_pids() == [worker]
    assert _sockets(deployed) == {f"{worker}.sock"}  # 2 stale sockets swept, the adopted one kept
