"""Workers' state reports on the supervisor's datagram socket, read by a real supervisor's event loop:
a report that arrives before the supervisor knows the worker's pid (a forked worker loads while its pid
is on its way from the preloader) is kept for it, not dropped."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from registry.serving.processes import LOADING, STANDBY, Worker
from registry.serving.supervisor import Supervisor


def _send(supervisor: Supervisor, message: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, str(supervisor.rundir.report_socket))


def test_a_report_sent_before_the_pid_is_known_is_taken_when_it_is(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "home")

    async def scenario() -> tuple[Worker, Worker, Worker]:
        supervisor.reports.open()
        try:
            report = {"pid": 999_001, "deployment": "iris", "version": 2}
            _send(supervisor, json.dumps({**report, "state": "loading"}).encode())
            _send(supervisor, json.dumps({**report, "state": "standby"}).encode())
            _send(supervisor, json.dumps({**report, "pid": 999_002, "state": "standby"}).encode())
            _send(supervisor, b"not json")  # read and ignored
            _send(supervisor, b"[1, 2]")
            await asyncio.sleep(0.05)  # the loop reads them all: nobody has these pids yet
            forked = Worker(pid=999_001, version=2, create_time=1.0, forked=True)
            other_version = Worker(pid=999_002, version=3, create_time=1.0, forked=True)
            (unreported,) = supervisor.state.track([Worker(pid=999_003, version=2, create_time=1.0)])
            supervisor.state.track([forked, other_version])
            return forked, other_version, unreported
        finally:
            supervisor.reports.close()

    try:
        forked, other_version, unreported = asyncio.run(scenario())
    finally:
        supervisor.registry.close()
    assert forked.state == STANDBY  # its last report, so its load is not left waiting for the timeout
    assert other_version.state == LOADING  # a report of another version (a reused pid) is not its own
    assert unreported.state == LOADING
    assert supervisor.state.early_reports == {}  # taken or dropped: nothing kept for tracked pids
