"""The serving supervisor: one daemon per home that makes running model servers match the registry.

It owns each deployment's socket and runs its workers (`registry.serving.lifecycle`) behind it. A
swap is all or nothing: it loads the new version in standby while the old one serves, writes the
deployment row and its ledger event in one transaction, promotes the new workers, and only then drains
the old ones (a failed write changes nothing; a failed promotion is reverted, row included); the old
version stays warm as a standby so a rollback is a switch. Workers are in the state file from the
moment they are spawned, so a new supervisor adopts, promotes or stops every one of them. Workers
that crash are restarted with exponential backoff; a version that keeps crashing is rolled back to the
standby. Every step goes to the event ledger. Actions arrive through the control API
(`registry.serving.control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from registry import history as ledger
from registry.core import Registry, current_actor
from registry.deployments import list_deployments, open_actions, remove_deployment, save_deployment
from registry.errors import DatabaseError, RegistryError, SupervisorError
from registry.info import DeploymentInfo
from registry.monitoring.rollups import DEFAULT_RETENTION
from registry.serving import logs
from registry.serving.addresses import local_url, outside_url
from registry.serving.exporter import write_targets
from registry.serving.options import (
    check_deploy,
    check_host,
    check_name,
    check_options,
    check_port,
    check_workers,
)
from registry.serving.processes import (
    SERVING,
    STANDBY,
    Worker,
    WorkerSpec,
    adopt,
    load_state,
    save_state,
    spawn,
    state_owner,
    workers_of,
)
from registry.serving.rundir import RunDir
from registry.serving.scraper import Scraper
from registry.serving.worker import ServeError, bind_socket, is_loopback, serving_token

log = logging.getLogger("modeldeck.supervisor")
T = TypeVar("T")
FIRST_PORT = 8080
#: Missed metrics pulls in a row after which an active worker counts as not answering.
SILENT_PULLS = 3


@dataclass
class Policy:
    """How the supervisor treats swaps and crashes."""

    keep_standby: bool = True
    auto_rollback: bool = True
    drain_grace: float = 5.0
    load_timeout: float = 180.0
    crash_limit: int = 3
    crash_window: float = 60.0
    max_backoff: float = 30.0
    drift_every: float = 10.0
    window_rows: int = 10_000
    window_seconds: float = 3600.0
    retention: dict[int, timedelta] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    #: Where the Prometheus exporter listens ("host:port"; None: no exporter).
    metrics_address: str | None = "127.0.0.1:9464"
    #: An active worker that answers no metrics pull for this long is killed and restarted (0: never).
    hang_timeout: float = 10.0
    #: Where workers export OpenTelemetry (an OTLP/HTTP URL) unless their deployment says (`otlp` option).
    otlp: str | None = None


@dataclass(eq=False)
class Runtime:
    """What runs for one deployment right now."""

    spec: DeploymentInfo
    sock: socket.socket | None = None
    active: list[Worker] = field(default_factory=list)
    standby: list[Worker] = field(default_factory=list)
    #: Started for a change not made yet (loading, or loaded and waiting for the switch).
    incoming: list[Worker] = field(default_factory=list)
    #: Leaving service (draining or stopping).
    outgoing: list[Worker] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    restarts: int = 0
    #: False until a version of this deployment first served (a new deployment has no "previous").
    served: bool = True
    status: str = "starting"
    message: str = ""
    healing: bool = False

    @property
    def standby_version(self) -> int | None:
        return self.standby[0].version if self.standby else None


class Supervisor:
    """Runs the deployments of one home. All methods run on the supervisor's event loop."""

    def __init__(self, home: Path, policy: Policy | None = None) -> None:
        self.registry = Registry(home=home)
        self.home = self.registry.settings.home
        self.rundir = RunDir.of(self.home).create()
        self.policy = policy or Policy()
        self.runtimes: dict[str, Runtime] = {}
        self.workers: dict[int, Worker] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.actor = f"supervisor@{current_actor().rpartition('@')[2]}"
        self.started = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reports: socket.socket | None = None
        #: Ledger writes (and compensating writes) the database refused for now, retried in order.
        self._pending: deque[Callable[[], Any]] = deque()
        self._flushing = asyncio.Lock()
        self._retrying = False
        self.reconciled = asyncio.Event()
        #: Deployments whose workers are still being brought up after this supervisor started.
        self.starting: set[str] = set()
        #: The exporter's "host:port" once it listens (see `registry.serving.control`).
        self.exporter: str | None = None
        self._hung: dict[int, str] = {}  # pid -> why it was killed (for the crash's ledger entry)
        #: Deployments shown degraded because a worker does not answer, with the message shown.
        self._silent: dict[str, str] = {}
        #: Why the exporter is not where it was asked (fell back to a free port, or none); "" if it is.
        self.exporter_note = ""
        self.scraper = Scraper(
            self,
            drift_every=self.policy.drift_every,
            window_rows=self.policy.window_rows,
            window_seconds=self.policy.window_seconds,
            retention=self.policy.retention,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Listen for worker reports, adopt what still runs, then bring the rest up from the DB."""
        loop = asyncio.get_running_loop()
        self._reports = self.rundir.bind(self.rundir.report_socket, socket.SOCK_DGRAM)
        self._reports.setblocking(False)
        loop.add_reader(self._reports.fileno(), self._read_reports)
        self._spawn_task(self._reconcile())
        self._spawn_task(self._watch())
        self._spawn_task(self.scraper.run())

    async def close(self, stop_servers: bool = False) -> None:
        """Stop watching; with `stop_servers`, drain and stop every worker (the DB keeps them wanted)."""
        if stop_servers:
            for runtime in list(self.runtimes.values()):
                async with self._lock(runtime.spec.name):
                    await self._retire(runtime.active + runtime.standby + runtime.incoming + runtime.outgoing)
                    runtime.active, runtime.standby, runtime.incoming, runtime.outgoing = [], [], [], []
            self._save_state()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(DatabaseError):  # what is left is closed at the next start
            await self._flush()
        await self.scraper.store_rollups(close=True)
        if self._reports is not None:
            asyncio.get_running_loop().remove_reader(self._reports.fileno())
            self._reports.close()
        self.registry.close()

    # ------------------------------------------------------------------ actions
    async def deploy(
        self,
        ref: str,
        *,
        name: str | None = None,
        host: str | None = None,
        port: int | None = None,
        workers: int | None = None,
        options: dict[str, Any] | None = None,
        actor: str = "",
        reason: str = "",
    ) -> dict[str, Any]:
        """Serve `ref` as deployment `name` (default: the model's name); answers when traffic moved."""
        name, host, port, workers, options = check_deploy(name, host, port, workers, options)
        await self.reconciled.wait()
        info = await self._db(self.registry.get, ref)
        name = check_name(name or info.name)
        async with self._lock(name):
            runtime = self.runtimes.get(name)
            if runtime is not None and runtime.spec.model != info.name:
                raise SupervisorError(
                    f"deployment {name!r} serves model {runtime.spec.model!r}, not {info.name!r}"
                )
            if runtime is not None:
                self._check_unchanged(runtime, host, port)
                same = bool(runtime.active) and runtime.spec.version == info.version
                same = same and runtime.status == "running"
                if same and workers in (None, len(runtime.active)):
                    return self._describe(runtime, note=f"{name} already serves {info.name}:{info.version}")
            else:
                runtime = await self._new_runtime(name, info.name, info.version, host, port, workers, options)
                same = False
            try:
                await self._flush()
                await self._db(
                    self.registry.record_event,
                    info.name,
                    ledger.DEPLOY_REQUESTED,
                    actor=actor or None,
                    deployment=name,
                    from_version=runtime.spec.version if runtime.served else None,
                    to_version=info.version,
                    reason=reason,
                )
                if same and workers is not None:
                    await self._scale(runtime, workers, actor, reason)
                else:
                    await self._switch(runtime, info.version, ledger.SWITCHED, actor, reason, workers)
            except BaseException:
                if not runtime.served:  # a new deployment that never served: leave nothing behind
                    self.runtimes.pop(name, None)
                    if runtime.sock is not None:
                        runtime.sock.close()
                    self._save_state()
                raise
            return self._describe(runtime)

    async def rollback(
        self, name: str, to: int | None = None, *, actor: str = "", reason: str = ""
    ) -> dict[str, Any]:
        """Put the standby (or version `to`) back in service; a switch when it is warm."""
        await self.reconciled.wait()
        async with self._lock(name):
            runtime = self._runtime(name)
            current = runtime.spec.version
            target = (
                to if to is not None else runtime.standby_version or await self._previous_version(runtime)
            )
            if target is None:
                raise SupervisorError(f"{name} has no earlier version to roll back to; name one with --to")
            if target == current and runtime.active:
                raise SupervisorError(f"{name} already serves version {current}")
            await self._db(self.registry.get, f"{runtime.spec.model}:{target}")
            await self._switch(runtime, target, ledger.ROLLED_BACK, actor, reason)
            return self._describe(runtime)

    async def stop(self, name: str, *, actor: str = "", reason: str = "") -> dict[str, Any]:
        """Forget the deployment `name` in the registry, then drain and stop every worker of it."""
        await self.reconciled.wait()
        async with self._lock(name):
            runtime = self._runtime(name)
            try:
                await self._flush()
                await self._db(
                    remove_deployment, self.registry, name, ledger.STOPPED, actor=actor or None, reason=reason
                )
            except Exception as exc:
                raise self._unchanged(runtime, "stop", exc) from None
            leaving = runtime.active + runtime.standby + runtime.incoming + runtime.outgoing
            runtime.outgoing, runtime.active, runtime.standby, runtime.incoming = leaving, [], [], []
            self._save_state()
            await self._retire(leaving)
            if runtime.sock is not None:
                runtime.sock.close()
            del self.runtimes[name]
            self._save_state()
            return {"name": name, "status": "stopped"}

    async def scale(self, name: str, workers: int, *, actor: str = "", reason: str = "") -> dict[str, Any]:
        """Run `workers` processes for `name` (the standby keeps at most as many)."""
        workers = check_workers(workers)
        await self.reconciled.wait()
        async with self._lock(name):
            runtime = self._runtime(name)
            await self._scale(runtime, workers, actor, reason)
            return self._describe(runtime)

    async def _scale(self, runtime: Runtime, workers: int, actor: str, reason: str) -> None:
        """Like a switch: new workers wait in standby until the row is written; extra ones go after."""
        if not 1 <= workers <= 64:
            raise SupervisorError("workers must be between 1 and 64")
        spec = runtime.spec
        before = len(runtime.active)
        added = await self._load(runtime, spec.version, workers - before, actor) if before < workers else []
        target = replace(spec, workers=workers)
        detail = {"workers": workers, "before": before}
        try:
            await self._commit(target, ledger.SCALED, actor, spec.version, reason, detail)
        except BaseException as exc:
            self._give_back(runtime, added, [])
            if not isinstance(exc, Exception):
                raise
            error = self._unchanged(runtime, f"scaling to {workers} workers", exc)
            if added:  # the load it recorded gets its outcome
                why = f"scaling to {workers} workers not recorded: {exc}"
                await self._event(spec, ledger.FAILED, actor, spec.version, why, None, spec.version)
            raise error from None
        try:
            await self._promote(runtime, added)
        except BaseException as exc:
            await self._revert(runtime, spec, added, [], exc, f"scaling to {workers} workers")
        runtime.spec = target
        runtime.incoming = [w for w in runtime.incoming if w not in added]
        runtime.active += added
        extra, runtime.active = runtime.active[workers:], runtime.active[:workers]
        stale, runtime.standby = runtime.standby[workers:], runtime.standby[:workers]
        runtime.outgoing += extra + stale
        self._save_state()
        await self._retire(extra + stale)
        runtime.outgoing = [w for w in runtime.outgoing if w not in extra + stale]
        self._save_state()

    def status(self) -> dict[str, Any]:
        """Every deployment with its workers, and the supervisor itself."""
        return {
            "supervisor": {
                "pid": os.getpid(),
                "home": str(self.home),
                "since": self.started,
                "settled": self.reconciled.is_set() and not self.starting,
                "metrics": f"http://{self.exporter}/metrics" if self.exporter else None,
                "metrics_note": self.exporter_note,
                "targets": str(self.targets_file),
                "otlp": self.policy.otlp,
            },
            "deployments": [
                self._describe(r) for r in sorted(self.runtimes.values(), key=lambda r: r.spec.name)
            ],
        }

    # ------------------------------------------------------------------ swaps
    async def _switch(
        self, runtime: Runtime, version: int, kind: str, actor: str, reason: str, workers: int | None = None
    ) -> None:
        """Move traffic of `runtime` to `version`, all or nothing.

        The incoming workers (the warm standby, or new ones loaded now) wait in standby while the
        deployment row and its ledger event are written in one transaction; only then are they
        promoted and the old ones drained. If the write fails they go (back to standby) and nothing
        changed; if promotion fails, the old workers (never drained) keep serving and the row is
        written back (`_revert`). Either way the error says what happened and what serves."""
        spec = runtime.spec
        previous = spec.version if runtime.served else None
        count = workers or spec.workers
        warm = [w for w in runtime.standby if w.version == version and w.alive() and w.state == STANDBY]
        warm = warm[:count]
        started = time.monotonic()
        if warm:
            runtime.standby = [w for w in runtime.standby if w not in warm]
            runtime.incoming += warm
            incoming = warm
        else:
            incoming = await self._load(runtime, version, count, actor, record_ready=False)
        keep = self.policy.keep_standby and previous is not None and previous != version
        target = replace(spec, version=version, workers=count, standby_version=previous if keep else None)
        pids = [w.pid for w in incoming]
        ready = (
            []
            if warm
            else [
                (
                    ledger.READY,
                    {
                        "actor": self.actor,
                        "deployment": spec.name,
                        "to_version": version,
                        "detail": {"seconds": round(time.monotonic() - started, 3), "workers": pids},
                    },
                )
            ]
        )
        doing = f"switch to {spec.model}:{version}"
        try:
            await self._commit(
                target, kind, actor, previous, reason, {"warm": bool(warm), "workers": pids}, ready
            )
        except BaseException as exc:
            self._give_back(runtime, incoming, warm)
            if not isinstance(exc, Exception):
                raise
            error = self._unchanged(runtime, doing, exc)
            await self._event(
                spec, ledger.FAILED, actor, version, f"{doing} not recorded: {exc}", None, previous
            )
            raise error from None
        try:
            await self._promote(runtime, incoming)
        except BaseException as exc:
            await self._revert(runtime, spec, incoming, warm, exc, doing)
        outgoing = runtime.active
        stale = [w for w in runtime.standby if not keep or w.version != previous]
        runtime.spec, runtime.active, runtime.served = target, incoming, True
        runtime.incoming = [w for w in runtime.incoming if w not in incoming]
        runtime.standby = [w for w in runtime.standby if w not in stale]
        runtime.outgoing += outgoing + stale
        runtime.status, runtime.message = "running", ""
        runtime.crashes.clear()
        self._save_state()
        drained = await self._drain(runtime, outgoing, keep=keep)
        await self._retire(stale)
        runtime.outgoing = [w for w in runtime.outgoing if w not in outgoing + stale]
        self._save_state()
        if outgoing:
            await self._record(
                partial(
                    self.registry.record_event,
                    target.model,
                    ledger.DRAINED,
                    actor=self.actor,
                    deployment=target.name,
                    from_version=previous,
                    detail={"workers": [w.pid for w in outgoing], "standby": [w.pid for w in drained]},
                )
            )
        if len(runtime.active) < target.workers:  # a smaller standby took over: add the rest behind it
            self._spawn_task(self._restart(runtime, 0, crashed=False))

    async def _commit(
        self,
        spec: DeploymentInfo,
        kind: str,
        actor: str,
        from_version: int | None,
        reason: str,
        detail: dict[str, Any],
        preceding: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        """Write the deployment row and its ledger event in one transaction, after any pending writes."""
        await self._flush()
        await self._db(
            save_deployment,
            self.registry,
            spec,
            kind,
            actor=actor or None,
            from_version=from_version,
            reason=reason,
            detail=detail,
            preceding=preceding or [],
        )

    def _give_back(self, runtime: Runtime, incoming: list[Worker], warm: list[Worker]) -> None:
        """Undo taking `incoming` for a change: the warm standby goes back, new workers are killed
        (they never served)."""
        runtime.incoming = [w for w in runtime.incoming if w not in incoming]
        for worker in incoming:
            if worker not in warm:
                worker.kill()
        runtime.standby = warm + runtime.standby
        self._save_state()

    async def _revert(
        self,
        runtime: Runtime,
        before: DeploymentInfo,
        incoming: list[Worker],
        warm: list[Worker],
        exc: BaseException,
        doing: str,
    ) -> NoReturn:
        """Promotion failed after the row was written: take the incoming workers out of service (the
        old ones never stopped serving), write the previous row back (retried until the database takes
        it), and raise an error that says so."""
        if not isinstance(exc, Exception):  # cancelled: the next supervisor start reconciles
            self._give_back(runtime, incoming, [])
            raise exc
        runtime.incoming = [w for w in runtime.incoming if w not in incoming]
        runtime.outgoing += incoming
        self._save_state()
        parked = await self._drain(runtime, [w for w in incoming if w in warm], keep=True)
        await self._retire([w for w in incoming if w not in parked])
        runtime.outgoing = [w for w in runtime.outgoing if w not in incoming]
        why = f"{doing} failed after it was recorded: {exc}"
        undo: Callable[[], object]  # writes the previous row back
        if runtime.served:
            undo = partial(
                save_deployment,
                self.registry,
                before,
                ledger.REVERTED,
                actor=self.actor,
                from_version=incoming[0].version if incoming else before.version,
                reason=why,
            )
            now = f"{before.name} serves {before.model}:{before.version} again"
        else:
            undo = partial(
                remove_deployment, self.registry, before.name, ledger.FAILED, actor=self.actor, reason=why
            )
            now = f"{before.name} was not deployed"
        self._save_state()
        await self._record(undo)
        status = exc.status if isinstance(exc, SupervisorError) else 500
        raise SupervisorError(f"{before.name}: {why}; put back: {now}", status)

    def _unchanged(self, runtime: Runtime, doing: str, exc: Exception) -> SupervisorError:
        """The error of a change that was not made: why, and what still serves."""
        spec = runtime.spec
        if runtime.served and runtime.active:
            now = f"{spec.name} still serves {spec.model}:{spec.version}"
        else:
            now = f"nothing runs for {spec.name}"
        status = 503 if isinstance(exc, DatabaseError) else getattr(exc, "status", 500)
        tail = exc.log_tail if isinstance(exc, SupervisorError) else []
        return SupervisorError(f"{spec.name}: {doing} not done: {exc}; {now}", status, tail)

    async def _load(
        self, runtime: Runtime, version: int, count: int, actor: str, record_ready: bool = True
    ) -> list[Worker]:
        """Start `count` standby workers of `version` and wait until all have loaded and warmed up.

        They are recorded (as incoming) as soon as they are spawned. On failure they are killed,
        nothing else changes, and a SupervisorError carries the reason."""
        spec = runtime.spec
        await self._event(spec, ledger.LOADING, actor or self.actor, version)
        if runtime.sock is None:  # adopted workers hold the old socket; bind the port again beside it
            runtime.sock = bind_socket(spec.host, spec.port, listen=False, reuse_port=True)
        token = serving_token(self.home) if spec.options.get("auth") else None
        worker_spec = WorkerSpec(
            self.home,
            spec.name,
            spec.model,
            version,
            runtime.sock.fileno(),
            {"otlp": self.policy.otlp, **spec.options} if self.policy.otlp else spec.options,
            self.policy.drain_grace,
        )
        token_file = self.home / "serving-token" if token else None
        started = time.monotonic()
        workers = self._track([spawn(worker_spec, self.rundir, token_file) for _ in range(count)])
        runtime.incoming += workers
        self._save_state()
        try:
            timeout = self.policy.load_timeout
            ready = await asyncio.gather(*(w.wait_for({STANDBY}, timeout) for w in workers))
        except BaseException:
            self._give_back(runtime, workers, [])
            raise
        if all(ready):
            if record_ready:
                await self._record(
                    partial(
                        self.registry.record_event,
                        spec.model,
                        ledger.READY,
                        actor=self.actor,
                        deployment=spec.name,
                        to_version=version,
                        detail={
                            "seconds": round(time.monotonic() - started, 3),
                            "workers": [w.pid for w in workers],
                        },
                    )
                )
            return workers
        late = [w for w, ok in zip(workers, ready, strict=True) if not ok and w.alive()]
        self._give_back(runtime, workers, [])
        await asyncio.gather(*(w.wait_exit(5) for w in workers))
        why = self._load_failure(workers, ready, late)
        tail = logs.tail(self.rundir.deployment_log(spec.name), 20)
        previous = spec.version if runtime.served else None
        await self._event(
            spec, ledger.FAILED, actor or self.actor, version, why, {"log": tail[-10:]}, previous
        )
        serving = f"; {spec.name} still serves version {spec.version}" if runtime.active else ""
        raise SupervisorError(f"{spec.model}:{version} failed to start: {why}{serving}", 500, tail)

    def _load_failure(self, workers: list[Worker], ready: list[bool], late: list[Worker]) -> str:
        """Why a load failed: the worker's own error, the load timeout, or how it exited."""
        failed = next((w for w in workers if w.error), None)
        if failed is not None:
            return failed.error
        if late:  # killed by us when the time was up: its exit status (-9) says nothing
            return f"did not load within {self.policy.load_timeout:g} s (load timeout)"
        dead = next(w for w, ok in zip(workers, ready, strict=True) if not ok)
        return (
            f"worker exited with status {dead.exit_code}" if dead.exit_code is not None else "worker exited"
        )

    async def _promote(self, runtime: Runtime, workers: list[Worker]) -> None:
        """Tell `workers` to serve and wait until they all do; the caller undoes a failure."""
        for worker in workers:
            worker.send(signal.SIGUSR1)
        serving = await asyncio.gather(*(w.wait_for({SERVING}, 30) for w in workers))
        for worker, ok in zip(workers, serving, strict=True):
            if not ok:
                why = worker.error or ("it exited" if not worker.alive() else "not serving within 30 s")
                raise SupervisorError(
                    f"{runtime.spec.name}: worker {worker.pid} (version {worker.version}) did not start "
                    f"serving: {why}",
                    500,
                )

    async def _drain(self, runtime: Runtime, workers: list[Worker], keep: bool) -> list[Worker]:
        """Drain `workers`; kept as standby when `keep`, else stopped. The ones now in standby."""
        if not workers:
            return []
        if not keep:
            await self._retire(workers)
            return []
        for worker in workers:
            worker.send(signal.SIGUSR2)
        timeout = self.policy.drain_grace + 15
        parked = await asyncio.gather(*(w.wait_for({STANDBY}, timeout) for w in workers))
        kept = [w for w, ok in zip(workers, parked, strict=True) if ok]
        await self._retire([w for w in workers if w not in kept])
        runtime.standby = kept + runtime.standby
        return kept

    async def _retire(self, workers: list[Worker]) -> None:
        """Drain and stop `workers` (SIGTERM, then SIGKILL after the grace period)."""
        for worker in workers:
            worker.leaving = True
            worker.send(signal.SIGTERM)
        done = await asyncio.gather(*(w.wait_exit(self.policy.drain_grace + 15) for w in workers))
        for worker, exited in zip(workers, done, strict=True):
            if not exited:
                worker.kill()

    async def _start_active(self, runtime: Runtime, count: int) -> None:
        workers = await self._load(runtime, runtime.spec.version, count, self.actor)
        try:
            await self._promote(runtime, workers)
        except BaseException:
            self._give_back(runtime, workers, [])
            raise
        runtime.incoming = [w for w in runtime.incoming if w not in workers]
        runtime.active += workers

    # ------------------------------------------------------------------ ledger writes
    async def _event(
        self,
        spec: DeploymentInfo,
        kind: str,
        actor: str,
        version: int,
        reason: str = "",
        detail: dict[str, Any] | None = None,
        from_version: int | None = None,
    ) -> None:
        """Record a step of `spec`'s deployment towards `version` (now, or later if the DB is busy)."""
        await self._record(
            partial(
                self.registry.record_event,
                spec.model,
                kind,
                actor=actor or self.actor,
                deployment=spec.name,
                from_version=from_version,
                to_version=version,
                reason=reason,
                detail=detail or {},
            )
        )

    async def _record(self, write: Callable[[], Any]) -> None:
        """Make a ledger (or compensating) write now or, while the database refuses, later: in order,
        retried until it lands, and always before the next change is written (`_flush`)."""
        self._pending.append(write)
        if self._retrying:  # the database is busy: the retry task writes it, in order, without waiting here
            return
        try:
            await self._flush()
        except DatabaseError as exc:
            log.warning("ledger write postponed (%d pending): %s", len(self._pending), exc)
            if not self._retrying:
                self._retrying = True
                self._spawn_task(self._retry_pending())

    async def _flush(self) -> None:
        """Write the pending writes in order; a DatabaseError leaves the rest pending and is raised."""
        async with self._flushing:
            while self._pending:
                try:
                    await self._db(self._pending[0])
                except DatabaseError:
                    raise
                except RegistryError as exc:  # e.g. the model was deleted since: nothing to retry
                    log.warning("ledger write dropped: %s", exc)
                self._pending.popleft()

    async def _retry_pending(self) -> None:
        delay = 0.25
        try:
            while self._pending:
                await asyncio.sleep(delay)
                with contextlib.suppress(DatabaseError):
                    await self._flush()
                delay = min(5.0, delay * 2)
        finally:
            self._retrying = False

    # ------------------------------------------------------------------ crashes
    async def _watch(self) -> None:
        """Notice dead and hung workers; rotate logs."""
        ticks = 0
        while True:
            await asyncio.sleep(0.2)
            ticks += 1
            for runtime in list(self.runtimes.values()):
                if runtime.lock.locked():
                    continue
                for worker in [
                    w for w in runtime.active + runtime.standby if not w.leaving and not w.alive()
                ]:
                    self._crashed(runtime, worker)
                self._check_answers(runtime)
            for worker in [w for w in self.workers.values() if w.leaving and not w.alive()]:
                self._forget(worker)
                self._hung.pop(worker.pid, None)  # retired before its crash was seen
            if ticks % 25 == 0:
                for path in self.rundir.logs.glob("*.log"):
                    logs.rotate_if_large(path)

    def _check_answers(self, runtime: Runtime) -> None:
        """Kill an active worker that answered no pull for `hang_timeout` seconds (stopped, or its
        event loop stuck): the crash path then restarts it. Meanwhile, from `SILENT_PULLS` missed
        pulls on, the deployment is "degraded" rather than "running"."""
        timeout = self.policy.hang_timeout
        if timeout <= 0:
            return
        quiet = []
        for worker in runtime.active:
            missed = self.scraper.missed.get(worker.pid, 0)
            if worker.leaving or worker.pid in self._hung or worker.state != SERVING:
                continue
            if missed < SILENT_PULLS or not worker.alive():
                continue
            seconds = self.scraper.silent_for(worker.pid)
            if seconds >= timeout:
                self._kill_hung(runtime, worker, seconds)
            else:
                quiet.append((worker, seconds))
        name = runtime.spec.name
        if quiet and runtime.status in ("running", "degraded"):
            worker, seconds = quiet[0]
            runtime.status = "degraded"
            runtime.message = self._silent[name] = f"worker {worker.pid} has not answered for {seconds:.0f} s"
        elif not quiet and name in self._silent:  # it answers again (or was killed: the crash path)
            shown = self._silent.pop(name)
            if runtime.status == "degraded" and runtime.message == shown:
                runtime.status, runtime.message = "running", ""

    def _kill_hung(self, runtime: Runtime, worker: Worker, seconds: float) -> None:
        """SIGKILL a worker that stopped answering; `_crashed` records why and restarts it."""
        why = f"worker {worker.pid} did not answer for {seconds:.0f} s; killed and restarted"
        log.warning("%s: %s", runtime.spec.name, why)
        self._hung[worker.pid] = why
        runtime.message = why
        worker.send(signal.SIGKILL)

    def _crashed(self, runtime: Runtime, worker: Worker) -> None:
        spec = runtime.spec
        was_active = worker in runtime.active
        runtime.active = [w for w in runtime.active if w is not worker]
        runtime.standby = [w for w in runtime.standby if w is not worker]
        self._forget(worker)
        now = time.monotonic()
        if was_active:
            runtime.crashes.append(now)
        recent = sum(1 for t in runtime.crashes if now - t <= self.policy.crash_window)
        tail = logs.tail(self.rundir.deployment_log(spec.name), 10)
        self._spawn_task(
            self._record(
                partial(
                    self.registry.record_event,
                    spec.model,
                    ledger.CRASHED,
                    actor=self.actor,
                    deployment=spec.name,
                    from_version=worker.version,
                    reason=self._hung.pop(worker.pid, None)
                    or f"worker {worker.pid} ({'active' if was_active else 'standby'}) exited"
                    + (f" with status {worker.exit_code}" if worker.exit_code is not None else ""),
                    detail={"pid": worker.pid, "exit_code": worker.exit_code, "log": tail},
                )
            )
        )
        self._save_state()
        if not was_active or runtime.healing:
            return
        runtime.status = "degraded"
        if recent >= self.policy.crash_limit:
            runtime.status = "crash-looping"
            runtime.message = (
                f"version {spec.version} crashed {recent} times in {self.policy.crash_window:g} s"
            )
            standby = runtime.standby_version
            if self.policy.auto_rollback and standby is not None and standby != spec.version:
                self._spawn_task(self._auto_rollback(runtime, standby))
                return
        backoff = min(self.policy.max_backoff, 0.5 * 2 ** max(0, recent - 1))
        self._spawn_task(self._restart(runtime, backoff))

    async def _restart(self, runtime: Runtime, backoff: float, crashed: bool = True) -> None:
        """Bring `runtime` back to its worker count after `backoff` seconds (after a crash, or to add
        workers behind a smaller standby that took over)."""
        runtime.healing = True
        try:
            await asyncio.sleep(backoff)
            async with self._lock(runtime.spec.name):
                if self.runtimes.get(runtime.spec.name) is not runtime:
                    return
                missing = runtime.spec.workers - len(runtime.active)
                if missing <= 0:
                    return
                try:
                    await self._start_active(runtime, missing)
                except (SupervisorError, ServeError) as exc:  # ServeError: e.g. the token became unusable
                    runtime.status, runtime.message = "failed", str(exc)
                    return
                if runtime.status == "degraded":
                    runtime.status = "running"
                self._save_state()
                if not crashed:
                    return
                runtime.restarts += missing
                await self._record(
                    partial(
                        self.registry.record_event,
                        runtime.spec.model,
                        ledger.RESTARTED,
                        actor=self.actor,
                        deployment=runtime.spec.name,
                        to_version=runtime.spec.version,
                        reason=f"after {backoff:g} s backoff",
                        detail={"workers": [w.pid for w in runtime.active]},
                    )
                )
        finally:
            runtime.healing = False
        if len(runtime.active) < runtime.spec.workers and runtime.status != "failed":
            self._spawn_task(self._restart(runtime, min(self.policy.max_backoff, backoff * 2)))

    async def _auto_rollback(self, runtime: Runtime, standby: int) -> None:
        why = f"crash loop: {runtime.message}; rolled back to the standby, version {standby}"
        try:
            async with self._lock(runtime.spec.name):
                await self._switch(runtime, standby, ledger.ROLLED_BACK, self.actor, why)
            runtime.message = why
        except SupervisorError as exc:
            runtime.status, runtime.message = "failed", f"automatic rollback failed: {exc}"

    # ------------------------------------------------------------------ start-up
    async def _reconcile(self) -> None:
        """Adopt workers a previous supervisor left running, stop the ones nothing wants (strays of
        this home included), close the actions it left unfinished, then bring up what the DB wants."""
        try:
            adopted = load_state(self.rundir)
            owner = state_owner(self.rundir)
            wanted = await self._db(list_deployments, self.registry)
            leaving: list[Worker] = []
            for spec in wanted:
                entry = adopted.pop(spec.name, {})
                runtime = Runtime(spec=spec)
                self.runtimes[spec.name] = runtime
                for item in entry.get("workers", []):
                    worker = adopt(item)
                    if worker is not None:
                        self._track([worker])
                        self._place(runtime, worker, str(item.get("role")))
                await self._reclaim(runtime)
                self.starting.add(spec.name)
            for entry in adopted.values():  # deployments the DB no longer wants
                leaving += self._track([w for w in map(adopt, entry.get("workers", [])) if w is not None])
            strays = [w for w in workers_of(self.home) if w.pid not in self.workers]
            if strays:
                log.warning("stopping %d worker(s) of this home that nothing tracks", len(strays))
            self._spawn_task(self._retire(self._track(leaving + strays)))
            self._sweep_sockets()
            await self._close_open_actions(owner)
            self._save_state()
            for runtime in self.runtimes.values():
                self._spawn_task(self._bring_up(runtime))
        finally:
            self.reconciled.set()

    def _place(self, runtime: Runtime, worker: Worker, role: str) -> None:
        """Put an adopted worker where its recorded role and the DB's wish say: serving the DB's
        version, its standby, incoming for it (promoted once loaded), or else leaving once replaced."""
        spec = runtime.spec
        if role == "active" and worker.version == spec.version:
            runtime.active.append(worker)
        elif role == "standby" and self.policy.keep_standby and worker.version == spec.standby_version:
            runtime.standby.append(worker)
        elif role == "incoming" and worker.version == spec.version:
            runtime.incoming.append(worker)
        else:
            runtime.outgoing.append(worker)

    async def _close_open_actions(self, owner: int | None) -> None:
        """Give each action the last supervisor left without an outcome its outcome (failed)."""
        who = f" (pid {owner})" if owner else ""
        for event in await self._db(open_actions, self.registry):
            what = "the deploy" if event["kind"] == ledger.DEPLOY_REQUESTED else "loading"
            await self._record(
                partial(
                    self.registry.record_event,
                    event["model_name"],
                    ledger.FAILED,
                    actor=self.actor,
                    deployment=event["deployment"],
                    from_version=event["from_version"],
                    to_version=event["to_version"],
                    reason=f"supervisor stopped during {what}{who}",
                )
            )

    async def _reclaim(self, runtime: Runtime) -> None:
        """Ask adopted workers for their state and the deployment's socket (SIGHUP); wait a moment."""
        adopted = [w for _, w in _roles(runtime)]
        for worker in adopted:
            worker.send(signal.SIGHUP)
        deadline = time.monotonic() + 2.0
        while adopted and runtime.sock is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if adopted and runtime.sock is None:
            log.warning("%s: adopted workers did not hand the socket back; binding again", runtime.spec.name)

    async def _bring_up(self, runtime: Runtime) -> None:
        """Start the workers (then the standby) a deployment lacks after a supervisor start; stop the
        adopted ones it no longer wants once the wanted ones serve."""
        spec = runtime.spec
        try:
            async with self._lock(spec.name):
                await self._adopt_incoming(runtime)
                missing = spec.workers - len(runtime.active)
                if missing > 0:
                    runtime.status = "starting"
                    await self._start_active(runtime, missing)
                    await self._record(
                        partial(
                            self.registry.record_event,
                            spec.model,
                            ledger.RESTARTED,
                            actor=self.actor,
                            deployment=spec.name,
                            to_version=spec.version,
                            reason="supervisor started",
                            detail={"workers": [w.pid for w in runtime.active]},
                        )
                    )
                runtime.status = "running"
                self._save_state()
                leaving = runtime.outgoing
                if self.policy.keep_standby and not runtime.standby:  # the old version: park it warm
                    await self._drain(
                        runtime, [w for w in leaving if w.version == spec.standby_version], True
                    )
                await self._retire([w for w in leaving if w not in runtime.standby])
                runtime.outgoing = [w for w in runtime.outgoing if w not in leaving]
                self._save_state()
        except (SupervisorError, ServeError) as exc:
            runtime.status, runtime.message = "failed", str(exc)
            return
        finally:
            self.starting.discard(spec.name)
        standby = spec.standby_version
        if self.policy.keep_standby and standby is not None and not runtime.standby:
            async with self._lock(spec.name):
                try:
                    loaded = await self._load(runtime, standby, spec.workers, self.actor)
                    runtime.incoming = [w for w in runtime.incoming if w not in loaded]
                    runtime.standby = loaded
                except SupervisorError as exc:
                    log.warning("%s: standby version %s did not load: %s", spec.name, standby, exc)
                self._save_state()

    async def _adopt_incoming(self, runtime: Runtime) -> None:
        """Workers of the DB's version that the last supervisor started but had not put in service
        (it stopped after recording the switch): promote the ones that load, stop the rest."""
        incoming = list(runtime.incoming)
        if not incoming:
            return
        loaded = await asyncio.gather(
            *(w.wait_for({STANDBY, SERVING}, self.policy.load_timeout) for w in incoming)
        )
        room = max(0, runtime.spec.workers - len(runtime.active))
        taken = [w for w, ok in zip(incoming, loaded, strict=True) if ok][:room]
        runtime.incoming = taken
        runtime.outgoing += [w for w in incoming if w not in taken]
        try:
            await self._promote(runtime, taken)
        except SupervisorError as exc:  # start afresh instead
            log.warning("%s: adopted workers did not serve: %s", runtime.spec.name, exc)
            self._give_back(runtime, taken, [])
            return
        runtime.incoming = []
        runtime.active += taken

    # ------------------------------------------------------------------ helpers
    async def _new_runtime(
        self,
        name: str,
        model: str,
        version: int,
        host: str | None,
        port: int | None,
        workers: int | None,
        options: dict[str, Any] | None,
    ) -> Runtime:
        name, host = check_name(name), check_host(host or "127.0.0.1")  # checked again: names become paths
        port = None if port is None else check_port(port)
        taken = {r.spec.port: r.spec.name for r in self.runtimes.values() if r.spec.host == host}
        opts = check_options(options)
        opts["auth"] = not is_loopback(host) and not opts.pop("no_auth", False)
        if opts["auth"]:
            await self._db(serving_token, self.home)  # refused now if unusable (empty, short, readable)
        if port is not None and port in taken:
            raise SupervisorError(f"port {port} is already used by deployment {taken[port]!r}", 409)
        if port is None:
            port = FIRST_PORT
            while port in taken or not _port_free(host, port):
                port += 1
        try:
            sock = bind_socket(host, port, listen=False, reuse_port=True)
        except ServeError as exc:
            raise SupervisorError(str(exc), 409) from None
        spec = DeploymentInfo(
            name=name,
            model=model,
            version=version,
            standby_version=None,
            host=host,
            port=port,
            workers=workers or 1,
            options=opts,
        )
        runtime = Runtime(spec=spec, sock=sock, status="starting", served=False)
        self.runtimes[name] = runtime
        return runtime

    def _check_unchanged(self, runtime: Runtime, host: str | None, port: int | None) -> None:
        spec = runtime.spec
        if (host and host != spec.host) or (port and port != spec.port):
            raise SupervisorError(
                f"deployment {spec.name!r} listens on {spec.host}:{spec.port}; stop it first to move it", 409
            )

    def _runtime(self, name: str) -> Runtime:
        runtime = self.runtimes.get(name)
        if runtime is None:
            known = ", ".join(sorted(self.runtimes)) or "none"
            raise SupervisorError(f"no deployment {name!r}; running: {known}", 404)
        return runtime

    async def _previous_version(self, runtime: Runtime) -> int | None:
        """The version that served before the current one, from the ledger."""
        events = (await self._db(self.registry.history, runtime.spec.model)).events
        served = [
            e.to_version
            for e in events
            if e.deployment == runtime.spec.name and e.kind in (ledger.SWITCHED, ledger.ROLLED_BACK)
        ]
        earlier = [v for v in served if v is not None and v != runtime.spec.version]
        return earlier[-1] if earlier else None

    def _lock(self, name: str) -> asyncio.Lock:
        runtime = self.runtimes.get(name)
        if runtime is not None:
            return runtime.lock
        return self.locks.setdefault(name, asyncio.Lock())

    def _describe(self, runtime: Runtime, note: str = "") -> dict[str, Any]:
        spec = runtime.spec
        result = {
            **spec.as_dict(),
            "url": local_url(spec.host, spec.port),
            "outside_url": outside_url(spec.host, spec.port),
            "status": runtime.status,
            "message": runtime.message,
            "restarts": runtime.restarts,
            "workers_running": len(runtime.active),
            "processes": [w.as_dict(role) for role, w in _roles(runtime)],
        }
        if spec.options.get("auth"):
            try:
                result["token"] = serving_token(self.home)
            except ServeError as exc:  # changed on disk since: say so instead of failing the status
                result["token"], result["message"] = None, str(exc)
        if note:
            result["note"] = note
        return result

    @property
    def targets_file(self) -> Path:
        return self.home / "prometheus" / "targets.json"

    def _save_state(self) -> None:
        try:
            write_targets(self.targets_file, self.exporter)
        except OSError as exc:
            log.warning("could not write %s: %s", self.targets_file, exc)
        save_state(
            self.rundir,
            {
                name: {
                    "host": r.spec.host,
                    "port": r.spec.port,
                    "workers": [_entry(w, role) for role, w in _roles(r)],
                }
                for name, r in self.runtimes.items()
            },
        )

    async def _db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking registry call off the event loop."""
        return await asyncio.to_thread(call, *args, **kwargs)

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _read_reports(self) -> None:
        """Workers' state reports (JSON datagrams; an adopted worker attaches its listening socket)."""
        assert self._reports is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._reports, 65_536, 4)
            except (BlockingIOError, InterruptedError):
                return
            try:
                report = json.loads(data)
                worker = self.workers.get(int(report["pid"]))
            except (ValueError, KeyError, TypeError):
                worker = None
            if worker is None:
                for fd in fds:
                    os.close(fd)
                continue
            worker.state = str(report.get("state", worker.state))
            worker.error = str(report.get("error", "")) or worker.error
            final = report.get("metrics")
            if isinstance(final, dict) and isinstance(final.get("requests"), dict):
                self.scraper.final(str(report.get("deployment")), worker, final)
            for fd in fds:
                self._reclaim_socket(worker, fd)

    def _reclaim_socket(self, worker: Worker, fd: int) -> None:
        """Keep the socket an adopted worker handed back, for the deployment it serves."""
        runtime = next((r for r in self.runtimes.values() if worker in (w for _, w in _roles(r))), None)
        if runtime is None or runtime.sock is not None:
            os.close(fd)
            return
        runtime.sock = socket.socket(fileno=fd)
        runtime.sock.set_inheritable(True)

    def _track(self, workers: list[Worker]) -> list[Worker]:
        for worker in workers:
            self.workers[worker.pid] = worker
        return workers

    def _forget(self, worker: Worker) -> None:
        """Stop tracking a worker that is gone, and remove the monitoring socket it left behind."""
        if self.workers.get(worker.pid) is worker:
            del self.workers[worker.pid]
        if worker.pid not in self.workers:
            self.rundir.worker_socket(worker.pid).unlink(missing_ok=True)

    def _sweep_sockets(self) -> None:
        """Remove monitoring sockets of workers this supervisor does not run (killed ones leave theirs)."""
        for path in self.rundir.workers.glob("*.sock"):
            if not path.stem.isdigit() or int(path.stem) not in self.workers:
                path.unlink(missing_ok=True)


def _roles(runtime: Runtime) -> list[tuple[str, Worker]]:
    """Every worker of `runtime` with its role: active, standby, incoming or outgoing."""
    return (
        [("active", w) for w in runtime.active]
        + [("standby", w) for w in runtime.standby]
        + [("incoming", w) for w in runtime.incoming]
        + [("outgoing", w) for w in runtime.outgoing]
    )


def _entry(worker: Worker, role: str) -> dict[str, Any]:
    return {"pid": worker.pid, "create_time": worker.create_time, "version": worker.version, "role": role}


def _port_free(host: str, port: int) -> bool:
    try:
        bind_socket(host, port, listen=False).close()
        return True
    except ServeError:
        return False
