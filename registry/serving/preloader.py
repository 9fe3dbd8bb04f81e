"""The supervisor's side of the preloader: start it, fork workers through it, fall back when it is gone.

One preloader (`registry.serving.preload`) per supervisor, on a private SOCK_SEQPACKET socket pair.
A worker forked from it is ready in a fraction of the time a new interpreter takes (the imports are
done), and shares the preloaded pages with its siblings. When the preloader is not ready, died, or
does not answer, `spawn` starts the worker the classic way (`registry.serving.processes.spawn`) and
the preloader is started again (after a backoff that doubles while it keeps dying).

`MODELDECK_PRELOAD=off` in the supervisor's environment turns it off (every worker spawned anew).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from registry.files import append_private
from registry.serving.preload import LIFECYCLE, PRELOAD_ENVIRONMENT, TITLE_ROOM
from registry.serving.processes import Worker, WorkerSpec, spawn, worker_args, worker_env
from registry.serving.rundir import RunDir

log = logging.getLogger("modeldeck.supervisor")
#: How long after the supervisor's first preloader started a spawn waits for it to be ready (its
#: imports take what a spawned worker's take, so waiting is not slower); later, and while a preloader
#: started again after a failure imports, workers are spawned anew.
STARTUP_SECONDS = 30.0
#: The longest a fork request may wait for its answer before the classic spawn takes over.
FORK_SECONDS = 5.0
#: Seconds before starting a preloader again after it died; doubled per failure, up to MAX_BACKOFF.
BACKOFF, MAX_BACKOFF = 1.0, 60.0
#: The longest the supervisor waits for the exit status of a forked worker it found dead.
EXIT_NOTICE_SECONDS = 0.5
#: The arguments of a worker that must fit in the preloader's command line (module, home, deployment,
#: model, version), else the worker is spawned the classic way.
IDENTITY_ARGS = 8


def enabled_by_environment() -> bool:
    return os.environ.get("MODELDECK_PRELOAD", "on").strip().lower() not in ("0", "off", "no", "false")


class Preloader:
    """Forks workers from a preloaded process; spawns them anew when that is not possible."""

    def __init__(self, rundir: RunDir, enabled: bool | None = None) -> None:
        self.rundir = rundir
        self.enabled = enabled_by_environment() if enabled is None else enabled
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.ready = asyncio.Event()
        self.started = 0.0
        self.room = 0
        self.failures = 0
        self.closed = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._forked: dict[int, Worker] = {}
        self._exits: dict[int, int] = {}  # exit notices that came before the fork's answer
        self._restart: asyncio.TimerHandle | None = None

    @property
    def log_path(self) -> Path:
        return self.rundir.logs / "preloader.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.ready.is_set() else None

    def start(self) -> None:
        """Start the preloader (it imports in the background; `spawn` waits for it when it must)."""
        if not self.enabled or self.closed or self.process is not None:
            return
        self._restart = None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [
            sys.executable, "-m", "registry.serving.preload",
            "--home", str(self.rundir.home), "--control-fd", str(theirs.fileno()), " " * TITLE_ROOM,
        ]  # fmt: skip
        env = {**worker_env(), **PRELOAD_ENVIRONMENT}  # no thread (BLAS, jemalloc) before a fork
        try:
            with append_private(self.log_path) as output:
                self.process = subprocess.Popen(
                    command,
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,  # not stopped by a terminal's ^C meant for the supervisor
                    env=env,
                )
        except OSError as exc:
            mine.close()
            log.warning("preloader not started (%s): workers are spawned anew", exc)
            self.failures += 1
            self._again()
            return
        finally:
            theirs.close()
        self.room = sum(len(os.fsencode(arg)) + 1 for arg in command)
        self.started = time.monotonic()
        self.sock = mine
        mine.setblocking(False)
        asyncio.get_running_loop().add_reader(mine.fileno(), self._read)

    async def spawn(self, spec: WorkerSpec, token_file: Path | None) -> Worker:
        """A worker for `spec` in standby: forked from the preloader if it can, else spawned anew."""
        if self.process is not None and not self.ready.is_set() and self.failures == 0:
            wait = self.started + STARTUP_SECONDS - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), max(0.0, wait))
        if self.ready.is_set():
            try:
                return await self._fork(spec, token_file)
            except (OSError, TimeoutError, ValueError) as exc:
                log.warning("%s: preloader failed to fork (%s): spawning anew", spec.deployment, exc)
                if isinstance(exc, (OSError, TimeoutError)):
                    self._lost(str(exc) or type(exc).__name__)
        return spawn(spec, self.rundir, token_file)

    async def _fork(self, spec: WorkerSpec, token_file: Path | None) -> Worker:
        args = worker_args(spec, self.rundir, token_file)
        identity = [sys.executable, "-m", LIFECYCLE, *args[:IDENTITY_ARGS]]
        if sum(len(os.fsencode(arg)) + 1 for arg in identity) > self.room:
            raise ValueError("the worker's command line would not fit in the preloader's")
        assert self.sock is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request = {
            "id": request_id,
            "argv": args,
            "env": worker_env(),
            "log": str(self.rundir.deployment_log(spec.deployment)),
        }
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [spec.fd])
            reply = await asyncio.wait_for(future, FORK_SECONDS)
        finally:
            self._pending.pop(request_id, None)
        if "pid" not in reply:
            raise ValueError(str(reply.get("error", reply)))
        pid = int(reply["pid"])
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            create_time = 0.0
        worker = Worker(
            pid=pid, version=spec.version, create_time=create_time, forked=True, notices=self._read_exits
        )
        worker.exited = self._exits.pop(pid, None)
        if worker.exited is None:
            self._forked[pid] = worker
        return worker

    def _read_exits(self) -> None:
        """Read the preloader's pending messages now, waiting up to `EXIT_NOTICE_SECONDS` when a
        forked worker that is already dead (a zombie, say) has no exit status yet: the preloader
        reaps it and tells at once, so its crash is recorded with how it exited."""
        deadline = time.monotonic() + EXIT_NOTICE_SECONDS
        self._read()
        while self.sock is not None and time.monotonic() < deadline:
            if not any(w.exited is None and not w.alive() for w in self._forked.values()):
                return
            select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            self._read()

    def _read(self) -> None:
        """Every message waiting on the control socket: readiness, fork answers, exit statuses."""
        while self.sock is not None:
            try:
                data = self.sock.recv(65_536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(str(exc))
                return
            if not data:
                self._lost("it exited")
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if "ready" in message:
                self.ready.set()
                self.failures = 0
                log.info("preloader %s ready in %.1f s", message["ready"], time.monotonic() - self.started)
            elif "exited" in message:
                pid, status = int(message["exited"]), int(message["status"])
                worker = self._forked.pop(pid, None)
                if worker is not None:
                    worker.exited = status
                else:
                    self._exits[pid] = status
            else:
                future = self._pending.get(message.get("id"))
                if future is not None and not future.done():
                    future.set_result(message)

    def _lost(self, why: str) -> None:
        """The preloader is gone or broken: stop it, and start it again after a backoff."""
        if self.sock is None and self.process is None:
            return
        log.warning("preloader lost (%s): workers are spawned anew until it is back", why)
        self._stop()
        self.failures += 1
        self._again()

    def _again(self) -> None:
        if self.closed or self._restart is not None:
            return
        delay = min(MAX_BACKOFF, BACKOFF * 2 ** max(0, self.failures - 1))
        self._restart = asyncio.get_running_loop().call_later(delay, self.start)

    def _stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()  # a preloader that still runs exits at the end of its control socket
            self.sock = None
        if self.process is not None:
            try:
                self.process.wait(0.5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.ready.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the preloader is gone"))
        for worker in self._forked.values():
            worker.notices = None  # nobody reaps it now: its exit status stays unknown
        self._forked.clear()

    def close(self) -> None:
        """Stop the preloader (the workers it forked go on: they are in sessions of their own)."""
        self.closed = True
        if self._restart is not None:
            self._restart.cancel()
        self._stop()
