"""Connection floods against a real model server (`modeldeck serve`, the same uvicorn setup as a
supervisor's workers), with a health probe alongside every 100 ms.

The adversarial run: ~20,000 idle sockets exhausted a worker's file descriptors (every client and
health check failed, the log grew 60 MB a minute), and one connection sent 965 MB of headers and grew
a worker by 800 MB. Here the timeouts are short (1 s, through `serve`'s flags) so nothing sleeps long.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import faults
import httpx
import psutil
import pytest
from helpers import free_port, wait_until

TIMEOUT = 1.0  # idle, header and body timeouts of the server under attack
CAP = 500  # its open-connection cap


@dataclass
class Target:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@dataclass
class Probe:
    """GET /health/live on a fresh connection every 100 ms, in a thread."""

    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = httpx.get(self.url, timeout=5).status_code
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(str(status))
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from registry import Registry

    home = tmp_path_factory.mktemp("floods")
    X, y = load_iris(return_X_y=True, as_frame=True)
    with Registry(home=home) as reg:
        reg.register(LogisticRegression(max_iter=500).fit(X, y), "iris")
    return home


@pytest.fixture(scope="module")
def target(home: Path) -> Iterator[Target]:
    """One server for the module (each test measures from its own baseline)."""
    port = free_port()
    log = home / "server.log"
    argv = faults.modeldeck(
        "serve", "iris", "--port", str(port), "--max-connections", str(CAP),
        "--idle-timeout", str(TIMEOUT), "--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT),
    )  # fmt: skip
    env = {**_env(), "MODELDECK_HOME": str(home)}
    process = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Target(port, process, log)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert process.poll() is None, f"another server answered on {port}: {log.read_text()}"
    yield server
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MODELDECK_DB_URL"}


@pytest.fixture
def probe(target: Target) -> Iterator[Probe]:
    probe = Probe(f"http://127.0.0.1:{target.port}/health/live")
    thread = threading.Thread(target=probe.run, daemon=True)
    thread.start()
    yield probe
    probe.stop.set()
    thread.join(10)


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_an_idle_connection_flood_neither_exhausts_fds_nor_stops_the_health_probe(
    target: Target, probe: Probe
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = min(3000, hard - 500)
    baseline_fds = target.ps.num_fds()
    log_before = target.log.stat().st_size
    idle: list[socket.socket] = []
    try:
        for _ in range(count):  # connect and never send a byte: six times the server's cap
            idle.append(target.connect())
        peak_fds = target.ps.num_fds()
        wait_until(lambda: all(_closed_by_peer(s) for s in idle), 15, "the server to close every idle socket")
        wait_until(
            lambda: target.ps.num_fds() <= baseline_fds + 2,
            15,
            f"the server's descriptors back to {baseline_fds} + 2 (peak {peak_fds})",
        )
        after = probe.ok + len(probe.failures)  # a few more probes after the flood, answered or not
        wait_until(lambda: probe.ok + len(probe.failures) >= after + 3, 15, "three more probes")
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    probe.stop.set()
    grown = target.log.stat().st_size - log_before
    print(f"{count} idle sockets: server fds {baseline_fds} -> peak {peak_fds} -> {target.ps.num_fds()}; "
          f"probes ok {probe.ok}, failed {len(probe.failures)}; log +{grown} B")  # fmt: skip
    assert peak_fds <= baseline_fds + CAP + 64, "open connections stay under the cap"
    assert probe.failures == [] and probe.ok > 0
    assert grown < 4096, target.log.read_text()[-2000:]


def test_endless_headers_get_431_and_do_not_grow_the_worker(target: Target, probe: Probe) -> None:
    rss_before = target.ps.memory_info().rss
    offered, answers = 0, []
    while offered < 100 * 1024 * 1024:  # connection after connection, until 100 MB were sent
        sent, answer = _header_flood(target, 100 * 1024 * 1024 - offered)
        offered += sent
        answers.append(answer)
    rss_grown = target.ps.memory_info().rss - rss_before
    after = probe.ok + len(probe.failures)  # the flood can end before the first probe: three more
    wait_until(lambda: probe.ok + len(probe.failures) >= after + 3, 15, "three more probes")
    probe.stop.set()
    grown_mb = rss_grown / 2**20
    print(f"{offered / 2**20:.0f} MB of headers, {len(answers)} connections: RSS +{grown_mb:.1f} MB; "
          f"probes ok {probe.ok}, failed {len(probe.failures)}")  # fmt: skip
    assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), {a[:40] for a in answers}
    assert rss_grown < 5 * 2**20
    assert probe.failures == [] and probe.ok > 0
    with target.connect() as many:  # many small headers: the count limit
        many.sendall(
            b"GET /health/live HTTP/1.1\r\n" + b"".join(b"x-%d: y\r\n" % i for i in range(150)) + b"\r\n"
        )
        assert many.recv(100).startswith(b"HTTP/1.1 431 ")


def _header_flood(target: Target, limit: int) -> tuple[int, bytes]:
    """Send one never-ending header line until the server cuts us off; (bytes sent, its answer)."""
    sock = target.connect()
    received = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    chunk = b"a" * 65536
    try:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        while sent < limit:
            sent += sock.send(chunk)
    except OSError:
        pass
    reader.join(10)
    sock.close()
    return sent, bytes(received)


@pytest.mark.parametrize(
    ("start", "trickle", "field"),
    [
        (b"GET /health/live HTTP/1.1\r\nHost: x\r\n", b"X", "headers"),  # slow headers
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b" ", "body"),  # slow body
        (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", b"X", "headers"),
        (b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b" ", "body"),
    ],
    ids=["slow-headers", "slow-body", "oip-slow-headers", "oip-slow-body"],
)
def test_a_slowloris_connection_gets_408_and_is_closed(
    target: Target, start: bytes, trickle: bytes, field: str
) -> None:
    sock = target.connect()
    sock.sendall(start)
    began = time.monotonic()
    answer = b""
    sock.settimeout(0.2)
    while time.monotonic() - began < 15:  # a byte every 200 ms would keep it open forever
        try:
            sock.sendall(trickle)
            got = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not got:
            break
        answer += got
    held = time.monotonic() - began
    sock.close()
    print(f"slowloris held the connection {held:.2f} s (timeout {TIMEOUT} s): {answer[:30]!r}")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert held < 10 * TIMEOUT
    body = json.loads(answer.partition(b"\r\n\r\n")[2])  # the route's protocol shape, naming the phase
    message = body["error"] if b" /v2/" in start else body["message"]
    assert body["field"] == field and field in message and body["code"] == "request_timeout", body
    assert ("error_code" in body) == (b" /v2/" not in start), body


def test_a_flood_of_bad_requests_adds_a_few_log_lines(target: Target) -> None:
    before = target.log.stat().st_size
    answers = []
    for request in [b"NOT HTTP AT ALL\r\n\r\n"] * 2000 + [b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000] * 300:
        with target.connect() as sock:
            sock.sendall(request)
            answers.append(sock.recv(100)[:12])
    grown = target.log.stat().st_size - before
    lines = target.log.read_text().splitlines()
    print(f"2,300 bad requests: log +{grown} B, {len(lines)} lines in all")
    assert set(answers) == {b"HTTP/1.1 400", b"HTTP/1.1 431"}
    assert grown < 8192, "\n".join(lines[-20:])
