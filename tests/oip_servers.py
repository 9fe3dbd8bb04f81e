"""Real model servers for the protocol tests: `modeldeck serve` processes on free loopback ports.

Imported as `oip_servers` (pytest puts tests/ on sys.path; conftest.py loads it as a plugin, so its
fixtures need no import):

- `Server`: a running server (`url`, `port`, `host_port` for tritonclient, `client()` for httpx);
- `register(home, models)`: registers `{name: (fitted estimator, reference frame)}` in `home`'s SQLite
  registry and returns the environment that points `modeldeck` at it;
- `serving(env, logs, {key: [ref, *serve options]}, host=...)`: starts one server per entry, waits
  until each is ready (failing with its log if one exits), yields `{key: Server}`, stops them all;
- `start_server(...)` / `wait_ready(server)`: the same for one server;
- `iris()`: the iris LogisticRegression and its frame (fitted once), to compare predictions with;
- fixture `iris_server` (module): `iris` (named float columns, integer classes, predict_proba) served
  with default options.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import free_port

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@dataclass
class Server:
    """A `modeldeck serve` process answering on 127.0.0.1:`port`."""

    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_port(self) -> str:
        """`127.0.0.1:PORT`, the form tritonclient's `url` takes."""
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, verify=False, **kwargs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def start_server(env: dict[str, str], log: Path, ref: str, *args: str, host: str = "127.0.0.1") -> Server:
    """`modeldeck serve ref --port <free> --host host *args` in the background, its output in `log`."""
    port = free_port()
    command = [sys.executable, "-m", "console.cli", "serve", ref, "--port", str(port), "--host", host, *args]
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return Server(port, process, log)


def wait_ready(server: Server, timeout: float = 60) -> None:
    """Until `GET /health/ready` answers 200; AssertionError with the log if the server exits or is slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited: {server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=1, verify=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready in {timeout} s: {server.log.read_text()}")


def register(home: Path, models: dict[str, tuple[Any, Any]]) -> dict[str, str]:
    """Register `{name: (estimator, reference)}` in `home` (SQLite); the env that serves from it."""
    from registry import Registry

    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        for name, (estimator, reference) in models.items():
            reg.register(estimator, name, reference=reference)
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    return env


@contextlib.contextmanager
def serving(
    env: dict[str, str], logs: Path, servers: dict[str, list[str]], host: str = "127.0.0.1"
) -> Iterator[dict[str, Server]]:
    """Start `{key: [ref, *serve options]}` bound to `host`, wait until all are ready, stop all after."""
    started: dict[str, Server] = {}
    try:
        for key, (ref, *options) in servers.items():
            started[key] = start_server(env, logs / f"{key}.log", ref, *options, host=host)
        for server in started.values():
            wait_ready(server)
        yield started
    finally:
        for server in started.values():
            server.stop()


@cache
def iris() -> tuple[Any, Any]:
    """The iris classifier (LogisticRegression on the named frame) and the frame it was fitted on."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    return LogisticRegression(max_iter=1000).fit(X, y), X


@pytest.fixture(scope="module")  # module scope: its tests share one xdist worker (tests/conftest.py)
def iris_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`iris` version 1 served by a real `modeldeck serve` on loopback (no token)."""
    home = tmp_path_factory.mktemp("oip-home")
    env = register(home, {"iris": iris()})
    with serving(env, tmp_path_factory.mktemp("oip-logs"), {"iris": ["iris"]}) as started:
        yield started["iris"]
