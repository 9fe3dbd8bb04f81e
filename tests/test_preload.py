"""Workers forked from the preloader, with a real supervisor daemon, real uvicorn workers and signals.

One supervisor runs for the module (iris LogisticRegressions and a DummyClassifier that draws its
predictions from numpy's global generator); each test deploys what it needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import ROW, Load, free_port, iris_home, stop_supervisor, wait_until

from registry import Registry
from registry.serving.client import SupervisorClient
from registry.serving.processes import workers_of
from registry.serving.rundir import RunDir

pytestmark = pytest.mark.slow
FLAGS = ("--drain-grace=1", "--metrics=127.0.0.1:0")


@dataclass
class Served:
    home: Path
    client: SupervisorClient

    def deployment(self, name: str) -> dict:
        return next(d for d in self.client.status()["deployments"] if d["name"] == name)

    def active(self, name: str) -> list[int]:
        return [p["pid"] for p in self.deployment(name)["processes"] if p["role"] == "active"]

    def supervisor_pid(self) -> int:
        return int(self.client.status()["supervisor"]["pid"])

    def preloaders(self) -> list[psutil.Process]:
        """The live preloader processes of this home."""
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            argv = process.info["cmdline"] or []
            if "registry.serving.preload" not in argv or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if _home_of(argv) == os.path.realpath(self.home):
                found.append(process)
        return found

    def log(self) -> str:
        return RunDir.of(self.home).supervisor_log.read_text()

    def readies(self) -> int:
        """How many preloaders the supervisors of this home reported ready."""
        return self.log().count(" ready in ")

    def ready_preloader(self, readies: int = 1) -> psutil.Process:
        """The one preloader of this home, once the supervisors' log says `readies` were ready."""
        wait_until(lambda: self.readies() >= readies, what="the preloader to be ready")
        (process,) = wait_until(lambda: self.preloaders() if len(self.preloaders()) == 1 else None)
        return process

    def start(self) -> None:
        self.client.ensure_running(*FLAGS)


def _open_files(pid: int) -> set[str]:
    """What each descriptor of process `pid` refers to (`socket:[inode]` for a socket)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def _home_of(argv: list[str]) -> str:
    return os.path.realpath(argv[argv.index("--home") + 1]) if "--home" in argv else ""


def predict(port: int, rows: list[list[float]] | None = None) -> httpx.Response:
    body = {"inputs": rows} if rows is not None else ROW
    return httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30, verify=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from sklearn.datasets import load_iris
    from sklearn.dummy import DummyClassifier

    with iris_home(tmp_path_factory, "preload", (1.0, 0.5, 0.1)) as home:
        X, y = load_iris(return_X_y=True, as_frame=True)
        with Registry(home=home) as reg:
            # No random_state: each prediction draws from numpy's global generator.
            reg.register(DummyClassifier(strategy="uniform").fit(X, y), "dice", reference=X)
        served = Served(home, SupervisorClient(home))
        served.start()
        try:
            yield served
        finally:
            stop_supervisor(served.client, home)


def test_a_forked_worker_serves_predictions_and_looks_like_a_spawned_one(served: Served) -> None:
    preloader = served.ready_preloader()
    # The care fork needs starts here: the process that forks has no other thread (BLAS pools included).
    assert preloader.num_threads() == 1
    port = free_port()
    served.client.deploy("iris:1", port=port, workers=2)
    pids = served.active("iris")
    assert len(pids) == 2
    for pid in pids:
        worker = psutil.Process(pid)
        assert worker.ppid() == preloader.pid
        assert worker.pid == os.getsid(worker.pid)  # a session of its own: outlives the supervisor
        argv = worker.cmdline()
        assert argv[1:3] == ["-m", "registry.serving.lifecycle"]
        assert _home_of(argv) == os.path.realpath(served.home)
        assert argv[argv.index("--version") + 1] == "1"
    assert sorted(w.pid for w in workers_of(served.home)) == sorted(pids)
    # The preloader's control socket (its supervisor's line) is closed in the workers.
    argv = preloader.cmdline()
    control = os.readlink(f"/proc/{preloader.pid}/fd/{argv[argv.index('--control-fd') + 1]}")
    assert control.startswith("socket:")
    for pid in pids:
        assert control not in _open_files(pid)
    for _ in range(10):
        response = predict(port)
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == "1"
        assert response.json()["predictions"] == [0]


def test_two_deployments_of_different_models_fork_from_one_preloader(served: Served) -> None:
    preloader = served.ready_preloader()
    iris_port, dice_port = free_port(), free_port()
    served.client.deploy("iris:2", port=iris_port, name="iris-two")
    served.client.deploy("dice", port=dice_port, name="dice-one")
    for name in ("iris-two", "dice-one"):
        (pid,) = served.active(name)
        assert psutil.Process(pid).ppid() == preloader.pid
    assert predict(iris_port).headers["x-model-name"] == "iris"
    assert predict(dice_port).headers["x-model-name"] == "dice"
    assert predict(dice_port).json()["predictions"][0] in (0, 1, 2)
    served.client.stop("iris-two")
    served.client.stop("dice-one")


def test_forked_workers_do_not_share_the_random_state(served: Served) -> None:
    """Forked from one process, two workers would draw the same numbers unless each is reseeded."""
    preloader = served.ready_preloader()
    ports = {"dice-a": free_port(), "dice-b": free_port()}
    for name, port in ports.items():
        served.client.deploy("dice", port=port, name=name)
        (pid,) = served.active(name)
        assert psutil.Process(pid).ppid() == preloader.pid
    rows = [[5.1, 3.5, 1.4, 0.2]] * 64
    draws = {
        name: [predict(port, rows).json()["predictions"] for _ in range(3)] for name, port in ports.items()
    }
    assert draws["dice-a"] != draws["dice-b"]
    for name in ports:
        served.client.stop(name)


def test_a_killed_forked_worker_is_restarted_from_the_preloader(served: Served) -> None:
    preloader = served.ready_preloader()
    port = free_port()
    served.client.deploy("iris:1", port=port, name="crashy")
    (victim,) = served.active("crashy")
    with Load(f"http://127.0.0.1:{port}", clients=2, timeout=30, warm=10) as load:
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: served.active("crashy") not in ([], [victim]), what="a new worker")
        load.more()
    assert len(load.failures) <= 2, load.failures  # those in flight on the killed worker's connections
    (new,) = served.active("crashy")
    assert psutil.Process(new).ppid() == preloader.pid
    with Registry(home=served.home) as reg:
        crashed = [e for e in reg.history("iris").events if e.kind == "crashed" and e.deployment == "crashy"]
    # Not the supervisor's child, yet its exit status is known: the preloader reaped it and told.
    assert crashed[-1].detail["pid"] == victim
    assert crashed[-1].detail["exit_code"] == -signal.SIGKILL
    assert f"exited with status {-signal.SIGKILL}" in crashed[-1].reason
    served.client.stop("crashy")


def test_forked_workers_outlive_a_killed_supervisor_and_are_adopted(served: Served) -> None:
    old_preloader = served.ready_preloader()
    port = free_port()
    served.client.deploy("iris:1", port=port, name="kept")
    served.client.deploy("iris:2", name="kept")  # version 1 stays warm on standby
    before = sorted(p["pid"] for p in served.deployment("kept")["processes"])
    old = served.supervisor_pid()
    readies = served.readies()
    with Load(f"http://127.0.0.1:{port}", clients=2, warm=10) as load:
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie")
        # The preloader ends with its supervisor; the workers it forked serve on.
        wait_until(lambda: not old_preloader.is_running() or old_preloader.status() == "zombie")
        load.more(50)
        served.start()
        served.client.wait_settled()
        assert sorted(p["pid"] for p in served.deployment("kept")["processes"]) == before
        preloader = served.ready_preloader(readies + 1)
        assert preloader.pid != old_preloader.pid
        served.client.rollback("kept")  # the adopted standby serves: a switch, no load
        served.client.deploy("iris:3", name="kept")  # a new version: forked by the new preloader
        load.more()
    assert load.failures == []
    (pid,) = served.active("kept")
    assert psutil.Process(pid).ppid() == preloader.pid
    assert predict(port).headers["x-model-version"] == "3"
    served.client.stop("kept")


def test_when_the_preloader_dies_workers_are_spawned_anew_and_it_comes_back(served: Served) -> None:
    preloader = served.ready_preloader()
    supervisor = served.supervisor_pid()
    lost, readies = served.log().count("preloader lost"), served.readies()
    port = free_port()
    served.client.deploy("iris:1", port=port, name="fallback")
    (forked,) = served.active("fallback")
    preloader.kill()
    wait_until(lambda: served.log().count("preloader lost") > lost, what="the supervisor to notice")
    served.client.deploy("iris:2", name="fallback")
    (spawned,) = served.active("fallback")
    assert psutil.Process(spawned).ppid() == supervisor  # spawned anew: a new interpreter
    assert predict(port).headers["x-model-version"] == "2"
    # The forked worker (on standby now, its preloader gone) still switches back in.
    assert forked in [p["pid"] for p in served.deployment("fallback")["processes"]]
    served.client.rollback("fallback")
    assert predict(port).headers["x-model-version"] == "1"
    # The supervisor started a new preloader, and forks from it again.
    new = served.ready_preloader(readies + 1)
    assert new.pid != preloader.pid
    served.client.deploy("iris:3", name="fallback")
    (pid,) = served.active("fallback")
    assert psutil.Process(pid).ppid() == new.pid
    assert predict(port).headers["x-model-version"] == "3"
    served.client.stop("fallback")


def test_with_preloading_off_every_worker_is_spawned_anew(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with iris_home(tmp_path_factory, "no-preload", (1.0,), reference=False) as home:
        monkeypatch.setenv("MODELDECK_PRELOAD", "off")
        client = SupervisorClient(home)
        client.ensure_running(*FLAGS)
        try:
            port = free_port()
            client.deploy("iris:1", port=port)
            status = client.status()
            (process,) = status["deployments"][0]["processes"]
            assert psutil.Process(process["pid"]).ppid() == status["supervisor"]["pid"]
            assert predict(port).status_code == 200
            assert Served(home, client).preloaders() == []
        finally:
            stop_supervisor(client, home)
