"""Worker processes as the supervisor sees them: spawn, signal, watch, and re-adopt after a restart.

Workers run in their own session, so they outlive the supervisor. Their pids (with start times, so a
recycled pid is never mistaken for one) are kept in the run directory's state file, from which a new
supervisor adopts them. Most workers are forked from the preloader (`registry.serving.preloader`),
with their command line rewritten to the one `spawn` gives (`python -m registry.serving.lifecycle
--home H ...`): `adopt` and `workers_of` find both kinds alike. A forked worker is not the supervisor's
child: it is watched by pid and start time, and its exit status comes from the preloader that reaped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from registry.errors import SupervisorError
from registry.files import append_private, read_private, write_atomic
from registry.serving.connections import CONNECTION_OPTIONS
from registry.serving.protocol import WorkerState
from registry.serving.rundir import RunDir

#: Worker states, as reported by the worker (see `registry.serving.lifecycle`); defined once, in
#: `registry.serving.protocol.WorkerState`.
LOADING, LOADED, STANDBY, SERVING, DRAINING, STOPPED, FAILED = WorkerState
_MODULE = "registry.serving.lifecycle"
log = logging.getLogger("modeldeck.supervisor")


@dataclass(eq=False)
class Worker:
    """One worker process of a deployment, serving (active) or kept warm (standby)."""

    pid: int
    version: int
    create_time: float
    popen: subprocess.Popen[bytes] | None = None
    #: Forked by the preloader (not this process's child): its exit status once the preloader told it,
    #: and how to read the preloader's pending notices (see `registry.serving.preloader`).
    exited: int | None = None
    notices: Callable[[], None] | None = None
    forked: bool = False
    state: str = LOADING
    error: str = ""
    #: Set when the supervisor asked it to exit, so its death is not a crash.
    leaving: bool = False
    started: float = field(default_factory=time.time)

    @property
    def started_here(self) -> bool:
        """Started by this supervisor (spawned or forked), not adopted from a previous one."""
        return self.popen is not None or self.forked

    def take_report(self, report: dict[str, Any]) -> None:
        """Take the state (and error) a report of this worker says."""
        with contextlib.suppress(ValueError):  # a state this supervisor does not know: kept as it was
            self.state = WorkerState(report.get("state", self.state))
        self.error = str(report.get("error", "")) or self.error

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.exited is not None:
            return False
        try:
            process = psutil.Process(self.pid)
            return process.create_time() == self.create_time and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    @property
    def exit_code(self) -> int | None:
        """How it exited (Popen's returncode: -N for signal N); None while it runs, or if unknown (an
        adopted worker, or a forked one whose preloader died first)."""
        if self.popen is not None:
            return self.popen.returncode
        if self.exited is None and self.notices is not None:
            self.notices()
        return self.exited

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.leaving = True
        self.send(signal.SIGKILL)

    async def wait_for(self, states: set[str], timeout: float) -> bool:
        """Until the worker reports one of `states` (True), or dies or times out (False)."""
        deadline = time.monotonic() + timeout
        while self.state not in states:
            if not self.alive() or time.monotonic() > deadline:
                return self.state in states
            await asyncio.sleep(0.005)
        return True

    async def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to be started."""

    home: Path
    deployment: str
    model: str
    version: int
    fd: int
    options: dict[str, Any]
    drain_grace: float


def spawn(spec: WorkerSpec, rundir: RunDir, token_file: Path | None) -> Worker:
    """Start a worker in standby (a new interpreter: see `registry.serving.preloader` for the forked
    way): it loads and warms up, then waits to be told to serve."""
    log_path = rundir.deployment_log(spec.deployment)
    command = [sys.executable, "-m", _MODULE, *worker_args(spec, rundir, token_file)]
    with append_private(log_path) as log:
        popen = subprocess.Popen(
            command,
            pass_fds=(spec.fd,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=worker_env(),
        )
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        create_time = 0.0
    return Worker(pid=popen.pid, version=spec.version, create_time=create_time, popen=popen)


def worker_env() -> dict[str, str]:
    """The environment a worker runs with: the supervisor's, output unbuffered (it goes to the log)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def worker_args(spec: WorkerSpec, rundir: RunDir, token_file: Path | None) -> list[str]:
    """The arguments of `python -m registry.serving.lifecycle` for `spec`. The first eight (home,
    deployment, model, version) identify the worker in `workers_of`."""
    options = spec.options
    command = [
        "--home", str(spec.home),
        "--deployment", spec.deployment,
        "--model", spec.model,
        "--version", str(spec.version),
        "--fd", str(spec.fd),
        "--report", str(rundir.report_socket),
        "--monitor-dir", str(rundir.workers),
        "--log", str(rundir.deployment_log(spec.deployment)),
        "--standby",
        "--batching", str(options.get("batching", "auto")),
        "--max-body-bytes", str(int(float(options.get("max_body_mb", 8)) * 1024 * 1024)),
        "--drain-grace", str(spec.drain_grace),
    ]  # fmt: skip
    for key in CONNECTION_OPTIONS:
        if options.get(key) is not None:
            command.append(f"--{key.replace('_', '-')}={options[key]}")
    if options.get("redact"):
        command.append("--redact")
    if options.get("monitoring") is False:
        command.append("--no-monitoring")
    if options.get("monitoring") is False or options.get("prediction_store") is False:
        command.append("--no-prediction-store")
    if options.get("predict_timeout"):
        command += ["--predict-timeout", str(float(options["predict_timeout"]))]
    if options.get("otlp"):
        command.append(f"--otlp={options['otlp']}")
    if token_file is not None:
        command += ["--token-file", str(token_file)]
    return command


def adopt(entry: dict[str, Any]) -> Worker | None:
    """The worker a state-file entry names, if that very process still runs."""
    try:
        process = psutil.Process(int(entry["pid"]))
        if process.create_time() != entry["create_time"] or _MODULE not in " ".join(process.cmdline()):
            return None
    except (psutil.Error, KeyError, ValueError, TypeError):
        return None
    # An incoming worker may still load or already serve: its report (asked for by SIGHUP) tells.
    state = {"active": SERVING, "standby": STANDBY}.get(str(entry.get("role")), LOADING)
    # Its uptime runs from when the process started, not from when this supervisor found it.
    return Worker(
        pid=process.pid,
        version=int(entry["version"]),
        create_time=entry["create_time"],
        state=state,
        started=float(entry["create_time"]),
    )


def workers_of(home: Path) -> list[Worker]:
    """Every live worker process started for `home` (its `--home` names this very directory), whoever
    started it: what a supervisor killed between spawning and recording may have left behind."""
    home_path = os.path.realpath(home)
    found = []
    for process in psutil.process_iter(["cmdline", "create_time", "status"]):
        argv = process.info["cmdline"] or []
        if _MODULE not in argv or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if os.path.realpath(_option(argv, "--home") or "/nonexistent") != home_path:
            continue
        try:
            version = int(_option(argv, "--version") or 0)
        except ValueError:
            version = 0
        found.append(Worker(pid=process.pid, version=version, create_time=process.info["create_time"]))
    return found


def _option(argv: list[str], name: str) -> str | None:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        return None


def save_state(rundir: RunDir, deployments: dict[str, dict[str, Any]]) -> None:
    """Write the state file atomically (a 0600 temp file in the checked run directory, renamed);
    nothing is written, and an error logged, if the run directory is no longer private."""
    try:
        rundir.check()
    except SupervisorError as exc:
        log.error("state not saved: %s", exc)
        return
    data = json.dumps({"pid": os.getpid(), "deployments": deployments}, indent=1).encode()
    write_atomic(rundir.state_file, data)


def load_state(rundir: RunDir) -> dict[str, dict[str, Any]]:
    """The deployments' workers the last supervisor recorded."""
    deployments = _read_state(rundir).get("deployments")
    return dict(deployments) if isinstance(deployments, dict) else {}


def state_owner(rundir: RunDir) -> int | None:
    """The pid of the supervisor that last wrote the state file."""
    pid = _read_state(rundir).get("pid")
    return pid if isinstance(pid, int) else None


def _read_state(rundir: RunDir) -> dict[str, Any]:
    """The state file (never read through a symlink or from another user's file)."""
    rundir.check()
    try:
        state = json.loads(read_private(rundir.state_file))
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}
