"""Several hosts on one machine, for the tests of a shared registry: each host is a Linux network
namespace (a veth pair to a bridge in the root namespace, its own address) with its own home and
supervisor, all sharing one real PostgreSQL database.

The PostgreSQL server of the test suite listens on loopback only, so the lab puts a small TCP relay
on the bridge's address in front of it (a thread of the test process); every host reaches the
database at `10.N.0.1:<relay port>`, as a host reaches a database server across a network.
Needs root and `ip` (iproute2); `Lab.available()` says why not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import wait_until
from sqlalchemy.engine import make_url

VENV_BIN = Path(sys.executable).parent
MODELDECK = str(VENV_BIN / "modeldeck")


def available() -> str | None:
    """None when this machine can make the lab, else why it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is missing"
    probe = f"mdprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Relay:
    """Accepts TCP connections on `listen` and pipes each to `target` (threads; closed with the lab)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        self.server.close()


@dataclass
class Host:
    """One host of the lab: its namespace, address, home and environment."""

    name: str
    netns: str
    address: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`modeldeck ARGS` on this host (in its namespace, with its home)."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.netns, MODELDECK, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"modeldeck {' '.join(args)} on {self.name} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        """A process in this host's namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], env=self.env, text=True, **kwargs)

    def start(self) -> None:
        self.run("supervisor", "start", "--metrics", "0.0.0.0:9464", timeout=120)


class Lab:
    """`count` hosts named a, b, c... on a bridge, sharing the PostgreSQL database `db_url`."""

    def __init__(self, root: Path, db_url: str, count: int = 3) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.subnet = 100 + int(self.tag, 16) % 150
        self.bridge = f"mdbr{self.tag}"
        self.gateway = f"10.{self.subnet}.0.1"
        self.root = root
        self.db_url = db_url
        self.hosts: dict[str, Host] = {}
        self.relay: Relay | None = None
        self._count = count

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        url = make_url(self.db_url)
        self.relay = Relay((self.gateway, 0), (url.host or "127.0.0.1", url.port or 5432))
        shared = url.set(host=self.gateway, port=self.relay.port).render_as_string(hide_password=False)
        for index in range(self._count):
            name = "abcdefgh"[index]
            netns = f"md{self.tag}{name}"
            outer, inner = f"v{self.tag}{name}0", f"v{self.tag}{name}1"
            address = f"10.{self.subnet}.0.{11 + index}"
            ip("netns", "add", netns)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", netns)
            ip("link", "set", outer, "master", self.bridge)
            ip("link", "set", outer, "up")
            ip("netns", "exec", netns, "ip", "addr", "add", f"{address}/24", "dev", inner)
            ip("netns", "exec", netns, "ip", "link", "set", inner, "up")
            ip("netns", "exec", netns, "ip", "link", "set", "lo", "up")
            ip("netns", "exec", netns, "ip", "route", "add", "default", "via", self.gateway)
            home = self.root / name
            home.mkdir(parents=True)
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith("MODELDECK_") and key not in ("PYTEST_XDIST_WORKER",)
            }
            env.update(
                MODELDECK_HOME=str(home),
                MODELDECK_DB_URL=shared,
                MODELDECK_HOST_NAME=name,
                MODELDECK_HOST_ADDRESS=address,
                PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            )
            self.hosts[name] = Host(name, netns, address, home, env)

    def close(self) -> None:
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.run("supervisor", "stop", "--servers", timeout=60, check=False)
        for host in self.hosts.values():
            pids = subprocess.run(
                ["ip", "netns", "pids", host.netns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        if self.relay is not None:
            self.relay.close()

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]


LOAD = """
import json, sys, time, threading, httpx
url, stop, out = sys.argv[1], sys.argv[2], sys.argv[3]
body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[0.1, 0.2, 0.3]]}}
counts = {"ok": 0, "failed": 0, "errors": [], "versions": {}}
lock = threading.Lock()
def run():
    with httpx.Client(timeout=10) as client:
        import os
        while not os.path.exists(stop):
            try:
                r = client.post(url, json=body)
                with lock:
                    if r.status_code == 200:
                        counts["ok"] += 1
                        v = r.headers.get("x-model-version", "?")
                        counts["versions"][v] = counts["versions"].get(v, 0) + 1
                    else:
                        counts["failed"] += 1
                        counts["errors"].append(f"{r.status_code} {r.text[:120]}")
            except Exception as exc:
                with lock:
                    counts["failed"] += 1
                    counts["errors"].append(repr(exc)[:160])
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
import os
while any(t.is_alive() for t in threads):  # the counts so far, for the test to wait on
    with lock:
        snapshot = json.dumps(counts)
    open(out + ".tmp", "w").write(snapshot)
    os.replace(out + ".tmp", out + ".now")
    time.sleep(0.1)
counts["errors"] = counts["errors"][:20]
open(out, "w").write(json.dumps(counts))
"""


class LoadCounts(dict[str, Any]):
    """A load's counts: ok, failed, errors, versions (by the X-Model-Version header), filled when its
    block ends; `now()` reads them while it runs."""

    def __init__(self, progress: Path) -> None:
        super().__init__()
        self.progress = progress

    def now(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.progress.read_text()))
        except (OSError, ValueError):  # not written yet
            return {"ok": 0, "failed": 0, "errors": [], "versions": {}}


@contextlib.contextmanager
def load(client: Host, url: str, work: Path) -> Iterator[LoadCounts]:
    """Requests to `url` from `client`'s namespace (4 threads) from their first answer until the block
    ends; the counts it yields are complete after it."""
    stop, out = work / f"stop-{uuid.uuid4().hex[:6]}", work / f"load-{uuid.uuid4().hex[:6]}.json"
    script = work / "load.py"
    script.write_text(LOAD)
    proc = client.popen([sys.executable, str(script), url, str(stop), str(out)])
    result = LoadCounts(out.with_name(out.name + ".now"))
    try:
        wait_until(lambda: result.now()["ok"] > 0, what="the load's first answer")
        yield result
    finally:
        stop.touch()
        proc.wait(timeout=60)
        result.update(json.loads(out.read_text()))
