"""Helpers shared by several test modules (imported as `helpers`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import skops
from click.testing import CliRunner, Result

_START: Any = None
#: One iris row, as the load generators send it.
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def _set_start(barrier: Any) -> None:
    global _START
    _START = barrier


def wait_for_the_others() -> None:
    """In a `four_processes` child: block until all four children are ready, then go together."""
    _START.wait(timeout=60)


@pytest.fixture(scope="module")
def four_processes() -> Iterator[Callable[..., list[Any]]]:
    """`run(func, *args)`: `func(*args)` in each of four spawned processes at the same moment.

    The processes are started once for the module and share a barrier that `func` waits on first
    (`wait_for_the_others`); each of the four calls therefore runs in a different process, since a
    process waiting at the barrier takes no other call. They are forked from a fork server (one per
    test process, single-threaded, which has imported the registry once) rather than each started
    and importing anew: the import was most of their cost.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["registry.core", "helpers"])
    barrier = ctx.Barrier(4)
    with ctx.Pool(4, initializer=_set_start, initargs=(barrier,)) as pool:

        def run(func: Callable[..., Any], *args: Any) -> list[Any]:
            barrier.reset()  # in case an earlier round broke it
            return pool.starmap_async(func, [args] * 4, chunksize=1).get(timeout=120)

        yield run


#: Ports handed out by `free_port`: below the kernel's ephemeral range (32768 up), where port 0 binds
#: and client connections land, and split between xdist workers, so that two test processes never
#: pick the same port in the moment between choosing it and a server binding it.
_PORTS_PER_WORKER = 1500
_next_port = itertools.count()


def free_port() -> int:
    """A TCP port free on loopback right now, that no other test process of this run will pick."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    base = 17000 + (worker % 10) * _PORTS_PER_WORKER
    for _ in range(_PORTS_PER_WORKER):
        port = base + (os.getpid() + next(_next_port)) % _PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + _PORTS_PER_WORKER}")


def hostile_skops(marker: Path) -> bytes:
    """A .skops payload that calls `builtins.eval` while it loads, creating `marker` if it runs."""
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"
    text = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode"}
    args = {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": [text | {"content": json.dumps(code), "is_json": True, "__id__": 2}],
        "__id__": 3,
    }
    schema = {
        "__class__": "eval",
        "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode",
        "content": args,
        "__id__": 1,
        "protocol": 2,
        "_skops_version": skops.__version__,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def _modeldeck_entry(argv: tuple[str, ...]) -> None:
    from console.quick import main

    main(list(argv))


def run_modeldeck(home: Path, *args: str, stdin: str | None = None, typer_only: bool = False) -> Result:
    """The `modeldeck` command on `home`'s registry, run in this process as its installed entry point
    runs it (`console.quick.main`: a read verb's quick path, else Typer), or with `typer_only` through
    the Typer command line alone: its exit code, stdout and stderr apart. A process of its own costs
    about a second of CPU a call, the suite's scarcest resource; the tests that are about the process
    itself (its imports, its start, the installed command) still start one."""
    entry: click.Command = _modeldeck_entry
    if typer_only:
        import typer

        from console.cli import app

        entry = typer.main.get_command(app)
    env = {"MODELDECK_HOME": str(home), "MODELDECK_DB_URL": None, "MODELDECK_ARTIFACTS_DIR": None}
    return CliRunner().invoke(entry, list(args), input=stdin, env=env, catch_exceptions=False)


def wait_until(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy (returned); AssertionError naming `what` after `timeout` s.

    Polls every 10 ms at first, then less often, up to every 100 ms: a condition that holds at once
    costs nothing more, and one that takes seconds (a worker's start, a supervisor's pass) is not
    asked 50 times a second, each asking a supervisor or opening a registry. A condition that holds
    for under 100 ms may be missed: wait for what stays true (a state held, an event recorded)."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
        pause = min(0.1, pause * 1.5)


def next_second() -> str:
    """Wait until the wall clock's second (local `HH:MM:SS`) changes; return the new one.

    For tests that need two events in different seconds: waits under a second (0.5 s on average),
    where a fixed `time.sleep(1.1)` always took the full 1.1 s."""
    now = time.strftime("%H:%M:%S")
    return wait_until(lambda: (later := time.strftime("%H:%M:%S")) != now and later, 5, "the next second")


def error_of(response: Any) -> dict[str, Any]:
    """The error a model server answered, checked to be in its route's protocol shape, as one dict.

    On Open Inference Protocol routes (`/v2...`) the body must be the spec's `{"error": "<message>"}`;
    elsewhere MLflow's `{"error_code": "<CODE>", "message": "<message>"}`. Returned: the body with the
    message under `message` too, beside its `code`, `field` and where given `row` and `details`."""
    body = response.json()
    path = response.request.url.path
    if path == "/v2" or path.startswith("/v2/"):
        assert isinstance(body.get("error"), str) and "error_code" not in body, body
        return {**body, "message": body["error"]}
    assert "error" not in body and isinstance(body.get("message"), str), body
    assert isinstance(body.get("error_code"), str) and body["error_code"].isupper(), body
    return body


def kill_leftovers(home: Path) -> None:
    """SIGKILL every process whose command line names `home` (what a failed test left running)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if str(home) in " ".join(process.info["cmdline"] or []):
            process.kill()


def stop_supervisor(client: Any, home: Path) -> None:
    """Shut `client`'s supervisor down with its servers, close the client, kill any leftover of `home`."""
    try:
        client.shutdown(stop_servers=True)
    finally:
        client.close()
        kill_leftovers(home)


@dataclass
class Load:
    """`clients` threads posting `body` (default `ROW`) on kept-alive connections until stopped;
    answers with the `expect`ed status counted by `x-model-version`, every answer counted by version
    and status in `answers`, failures (other statuses, transport errors) listed. With `warm`, entering
    waits for that many answers."""

    url: str
    clients: int = 4
    timeout: float = 10
    pause: float = 0.0
    warm: int = 0
    body: dict[str, Any] = field(default_factory=lambda: ROW)
    expect: int = 200
    versions: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # exact counts from several threads

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.warm:
            wait_until(lambda: self.answered > self.warm, what="the load to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=self.timeout, verify=False) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/invocations", json=self.body)
                    version = response.headers.get("x-model-version", "")
                    with self._lock:
                        self.answers[version, str(response.status_code)] += 1
                        if response.status_code == self.expect:
                            self.versions[version] += 1
                    if response.status_code != self.expect:
                        self.failures.append(f"{response.status_code} {response.text}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                if self.pause:
                    time.sleep(self.pause)

    @property
    def answered(self) -> int:
        return sum(self.versions.values())

    def more(self, count: int = 30) -> None:
        """Wait until `count` more requests were answered."""
        seen = self.answered
        wait_until(lambda: self.answered >= seen + count, what=f"{count} more answers")


@contextlib.contextmanager
def iris_home(
    factory: pytest.TempPathFactory,
    name: str,
    strengths: tuple[float, ...] = (1.0, 0.5),
    reference: bool = True,
) -> Iterator[Path]:
    """A new home, MODELDECK_HOME while the block runs (MODELDECK_DB_URL unset), holding one iris
    LogisticRegression version per regularisation strength in `strengths`, each with the iris frame as
    its reference sample unless `reference` is False."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from registry import Registry

    home = factory.mktemp(name)
    X, y = load_iris(return_X_y=True, as_frame=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(home))
        with Registry(home=home) as reg:
            for c in strengths:
                model = LogisticRegression(C=c, max_iter=500).fit(X, y)
                reg.register(model, "iris", reference=X if reference else None)
        yield home


def iris_rows_with_broken_correlation(seed: int = 0) -> list[list[float]]:
    """The 150 iris rows with petal length and petal width each shuffled on its own: every feature's
    distribution is the reference's, but the petal measurements (correlated 0.96) no longer go together."""
    import numpy as np
    from sklearn.datasets import load_iris

    rows = load_iris().data.copy()
    rng = np.random.default_rng(seed)
    for column in (2, 3):
        rows[:, column] = rng.permutation(rows[:, column])
    return rows.tolist()


def need_prometheus(*tools: str) -> None:
    """Skip unless `tools` (prometheus, promtool) are on PATH; fail instead under
    MODELDECK_REQUIRE_PROMETHEUS=1 (CI installs them with .ci/prometheus.sh)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not on PATH"
    if os.environ.get("MODELDECK_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(f"Prometheus required (MODELDECK_REQUIRE_PROMETHEUS=1) but {reason}")
    pytest.skip(f"real-Prometheus tests skipped: {reason}; run .ci/prometheus.sh (Debian's package)")


def promtool(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Prometheus' own checker, run as a user would."""
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def lose_artifact(registry: Any, sha256: str) -> None:
    """Make a stored blob missing: its file, and on a shared (PostgreSQL) registry its database copy,
    which a host with no file would otherwise fetch."""
    from registry.blobs import SharedArtifactStore

    registry.artifacts.path_of(sha256).unlink()
    if isinstance(registry.artifacts, SharedArtifactStore):
        import sqlalchemy as sa

        with registry.db.write() as session:
            for table in ("blob_chunk", "blob"):
                session.connection().execute(sa.text(f"DELETE FROM {table} WHERE sha256 = :s"), {"s": sha256})
