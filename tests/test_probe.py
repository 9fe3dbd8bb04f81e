"""The probe of deployments' own ports (`registry.serving.probe`), against real listening sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from registry.serving.probe import DOWN, NOT_READY, SERVING, probe_deployments, probe_ready


class Server:
    """A TCP server on 127.0.0.1 that answers every request with `reply` (None: never answers)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                data += chunk
            self.requests.append(data)
            if self.reply is None:
                self.held.append(conn)  # silent: holds the connection open
                continue
            conn.sendall(self.reply)
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def servers() -> Iterator[dict[str, Server]]:
    made = {
        "ok": Server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        "starting": Server(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"),
        "not-http": Server(b"SSH-2.0-OpenSSH_9.6\r\n"),
        "hangs-up": Server(b""),
        "silent": Server(None),
    }
    yield made
    for server in made.values():
        server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_each_answer_gives_its_state_all_within_one_timeout(servers: dict[str, Server]) -> None:
    deployments = [{"name": name, "host": "127.0.0.1", "port": s.port} for name, s in servers.items()]
    deployments.append({"name": "nothing", "host": "127.0.0.1", "port": closed_port()})
    started = time.monotonic()
    states = probe_deployments(deployments, timeout=1.0)
    took = time.monotonic() - started
    assert states == {
        "ok": SERVING,
        "starting": NOT_READY,
        "not-http": DOWN,
        "hangs-up": DOWN,
        "silent": DOWN,
        "nothing": DOWN,
    }
    assert took < 5, f"the probes run at once, within about one timeout: took {took:.2f} s"
    request = servers["ok"].requests[0]
    assert request.startswith(b"GET /health/ready HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{servers['ok'].port}\r\n".encode() in request


def test_every_interface_is_asked_on_loopback_and_names_are_resolved(servers: dict[str, Server]) -> None:
    port = servers["ok"].port
    assert probe_ready("0.0.0.0", port) == SERVING
    assert probe_ready("localhost", port) == SERVING  # ::1 refused, then 127.0.0.1, as create_connection
    assert probe_ready("no-such-host.invalid", port) == DOWN
    assert probe_deployments([]) == {}
