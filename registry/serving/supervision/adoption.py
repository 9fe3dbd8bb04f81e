"""Adoption: workers a previous supervisor left running are placed, asked for their socket, promoted
or stopped; and every worker's state reports (which carry a handed-back socket) are read."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from registry.errors import SupervisorError
from registry.serving.processes import SERVING, STANDBY, Worker
from registry.serving.protocol import Role
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.state import Runtime, State, roles

if TYPE_CHECKING:
    from registry.serving.scraper import Scraper

log = logging.getLogger("modeldeck.supervisor")


class Adoption:
    """Takes over the workers a previous supervisor of this home left running."""

    def __init__(self, state: State, pool: Pool) -> None:
        self.state = state
        self.pool = pool

    def place(self, runtime: Runtime, worker: Worker, role: str) -> None:
        """Put an adopted worker where its recorded role and the DB's wish say: serving the DB's
        version, its standby, incoming for it (promoted once loaded), or else leaving once replaced."""
        spec, keep = runtime.spec, self.state.policy.keep_standby
        if role == Role.ACTIVE and worker.version == spec.version:
            runtime.active.append(worker)
        elif role == Role.STANDBY and keep and worker.version == spec.standby_version:
            runtime.standby.append(worker)
        elif role == Role.INCOMING and worker.version == spec.version:
            runtime.incoming.append(worker)
        else:
            runtime.outgoing.append(worker)

    async def reclaim(self, runtime: Runtime) -> None:
        """Ask adopted workers for their state and the deployment's socket (SIGHUP); wait a moment."""
        adopted = [w for _, w in roles(runtime)]
        for worker in adopted:
            worker.send(signal.SIGHUP)
        deadline = time.monotonic() + 2.0
        while adopted and runtime.sock is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if adopted and runtime.sock is None:
            log.warning("%s: adopted workers did not hand the socket back; binding again", runtime.spec.name)

    async def adopt_incoming(self, runtime: Runtime) -> None:
        """Workers of the DB's version that the last supervisor started but had not put in service
        (it stopped after recording the switch): promote the ones that load, stop the rest."""
        incoming = list(runtime.incoming)
        if not incoming:
            return
        loaded = await asyncio.gather(
            *(w.wait_for({STANDBY, SERVING}, self.state.policy.load_timeout) for w in incoming)
        )
        room = max(0, runtime.spec.workers - len(runtime.active))
        taken = [w for w, ok in zip(incoming, loaded, strict=True) if ok][:room]
        runtime.incoming = taken
        runtime.outgoing += [w for w in incoming if w not in taken]
        try:
            await self.pool.promote(runtime, taken)
        except SupervisorError as exc:  # start afresh instead
            log.warning("%s: adopted workers did not serve: %s", runtime.spec.name, exc)
            self.pool.give_back(runtime, taken, [])
            return
        runtime.incoming = []
        runtime.active += taken


class Reports:
    """The datagram socket on which workers report their state (and adopted ones hand back theirs)."""

    def __init__(self, state: State, scraper: Scraper) -> None:
        self.state = state
        self.scraper = scraper
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Listen for reports on the event loop."""
        self._sock = self.state.rundir.bind(self.state.rundir.report_socket, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._read)

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()

    def _read(self) -> None:
        """Workers' state reports (JSON datagrams; an adopted worker attaches its listening socket)."""
        assert self._sock is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, 65_536, 4)
            except (BlockingIOError, InterruptedError):
                return
            report = _json_object(data)
            pid = report.get("pid")
            worker = self.state.workers.get(pid) if isinstance(pid, int) else None
            if worker is None:
                for fd in fds:
                    os.close(fd)
                if report:  # a forked worker can report before its pid is known
                    self.state.keep_early(report)
                continue
            worker.take_report(report)
            final = report.get("metrics")
            if isinstance(final, dict) and isinstance(final.get("requests"), dict):
                self.scraper.final(str(report.get("deployment")), worker, final)
            for fd in fds:
                self._reclaim_socket(worker, fd)

    def _reclaim_socket(self, worker: Worker, fd: int) -> None:
        """Keep the socket an adopted worker handed back, for the deployment it serves."""
        runtimes = self.state.runtimes.values()
        runtime = next((r for r in runtimes if worker in (w for _, w in roles(r))), None)
        if runtime is None or runtime.sock is not None:
            os.close(fd)
            return
        handed = socket.socket(fileno=fd)
        if handed.family == socket.AF_UNIX:  # a candidate's private socket, not the deployment's port
            handed.close()
            return
        runtime.sock = handed
        runtime.sock.set_inheritable(True)


def _json_object(data: bytes) -> dict[str, Any]:
    """A report's JSON object, or {} if it is not one."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
