"""Ask model servers directly whether they serve, for when no supervisor answers.

Model servers outlive their supervisor, so "no supervisor" does not mean "down": each deployment's
own port is asked `GET /health/ready` (never authenticated), all of them at once on non-blocking
sockets, within one short timeout, so a status with fifty deployments still answers within about
one timeout.

Only the status line is read, as `http.client` reads it; the probe speaks HTTP itself on `selectors`
because `modeldeck status` and the console's first screen use it, and importing `http.client` (the
`email` package, `ssl`) and starting a thread pool cost more than the probes.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

#: Seconds one probe may take: a server on loopback answers in about a millisecond.
PROBE_TIMEOUT = 0.5
SERVING, NOT_READY, DOWN = "serving", "not ready", "down"
#: Said after the state when it comes from probing rather than from the supervisor.
NO_SUPERVISOR = "supervisor down"
#: What is read of an answer at most: its status line ends well within it.
_STATUS_LINE_MAX = 65536


@dataclass
class _Probe:
    """One deployment's probe: the addresses left to try, the socket, what it sent and read."""

    addresses: list[tuple[int, Any]]
    request: bytes
    sock: socket.socket | None = None
    sent: int = 0
    answer: bytearray = field(default_factory=bytearray)
    state: str | None = None


def _addresses(host: str, port: int) -> list[tuple[int, Any]]:
    """(family, socket address) to try in turn, as `socket.create_connection` tries them. A literal
    address needs no resolver (and no `idna` codec)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return [(family, (host, port))]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [(family, address) for family, _, _, _, address in found]


def _status(line: bytes) -> str:
    """The state a status line says, or DOWN for what `http.client` refuses (BadStatusLine)."""
    parts = line.decode("iso-8859-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        return DOWN
    try:
        status = int(parts[1])
    except ValueError:
        return DOWN
    if not 100 <= status <= 999:
        return DOWN
    return SERVING if status == 200 else NOT_READY


def _connect(probe: _Probe, selector: selectors.BaseSelector) -> None:
    """Start connecting to the probe's next address (DOWN when none is left)."""
    while probe.addresses:
        family, address = probe.addresses.pop(0)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            sock.close()
            continue
        probe.sock = sock
        selector.register(sock, selectors.EVENT_WRITE, probe)
        return
    probe.state = DOWN


def _step(probe: _Probe, selector: selectors.BaseSelector) -> None:
    """Advance one probe whose socket is ready: send the request, then read the status line."""
    sock = probe.sock
    assert sock is not None
    try:
        if probe.sent < len(probe.request):
            if probe.sent == 0 and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                raise ConnectionRefusedError  # this address failed: the next one, as create_connection
            probe.sent += sock.send(probe.request[probe.sent :])
            if probe.sent == len(probe.request):
                selector.modify(sock, selectors.EVENT_READ, probe)
            return
        chunk = sock.recv(4096)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        selector.unregister(sock)
        sock.close()
        probe.sock = None
        if probe.sent == 0:
            _connect(probe, selector)
        else:
            probe.state = DOWN
        return
    probe.answer += chunk
    line, newline, _ = probe.answer.partition(b"\n")
    if newline or not chunk or len(probe.answer) > _STATUS_LINE_MAX:
        probe.state = _status(bytes(line)) if newline else DOWN  # closed before a whole line: DOWN


def probe_all(targets: list[tuple[str, int]], timeout: float = PROBE_TIMEOUT) -> list[str]:
    """`probe_ready` of each (host, port), all at once within `timeout` seconds."""
    probes = []
    with selectors.DefaultSelector() as selector:
        for host, port in targets:
            host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
            shown = f"[{host}]" if ":" in host else host
            request = (
                f"GET /health/ready HTTP/1.1\r\nHost: {shown}:{port}\r\nAccept-Encoding: identity\r\n\r\n"
            ).encode("ascii", "replace")
            probe = _Probe(_addresses(host, port), request)
            probes.append(probe)
            _connect(probe, selector)
        deadline = time.monotonic() + timeout
        try:
            while any(p.state is None for p in probes):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in selector.select(left):
                    probe = key.data
                    _step(probe, selector)
                    if probe.state is not None and probe.sock is not None:
                        selector.unregister(probe.sock)
                        probe.sock.close()
                        probe.sock = None
        finally:
            for probe in probes:
                if probe.sock is not None:
                    probe.sock.close()
    return [probe.state or DOWN for probe in probes]


def probe_ready(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str:
    """`serving` (200), `not ready` (it answers, but not 200) or `down` (nothing answers in time)."""
    return probe_all([(host, port)], timeout)[0]


def probe_deployments(deployments: list[dict[str, Any]], timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """Deployment name -> `probe_ready` state; the deployments (name, host, port) are probed at once."""
    states = probe_all([(d["host"], d["port"]) for d in deployments], timeout)
    return {d["name"]: state for d, state in zip(deployments, states, strict=True)}
