"""This supervisor as one host of a shared (PostgreSQL) registry.

It joins the registry's hosts, beats every `HEARTBEAT_EVERY` seconds with its load and what each of
its deployments does, and makes the requests written through the database (`registry.placement`) for
the deployments placed on it: woken at once by PostgreSQL's LISTEN/NOTIFY (a thread holds the
listening connection), and every `POLL` seconds in case a notification was lost with a connection.
Each request is made with the supervisor's own actions (a switch, a rollback, a scale, a canary...)
whose steps go to the ledger as a local change's do; the generation it acted on and the outcome go
to this host's row, where the requester waits for them. A host never trusts an older observation:
before each action it reads the row again and acts on the newest request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from registry import hosts, placement
from registry.actor import host_address
from registry.blobs import SharedArtifactStore
from registry.deployments import get_deployment
from registry.errors import DatabaseError, RegistryError, SupervisorError
from registry.files import write_atomic
from registry.info import DeploymentInfo
from registry.serving.supervision.actions import Actions
from registry.serving.supervision.state import State
from registry.serving.worker import ServeError

log = logging.getLogger("modeldeck.supervisor")
#: Seconds between two looks at the database when no notification came.
POLL = 2.0
#: The figures of a deployment's newest point a heartbeat carries (what another host's console charts).
LIVE_KEYS = ("t", "rps", "p50", "p95", "p99", "requests", "client_errors", "server_errors", "cpu", "rss")
#: The file in the home that remembers the host name it last ran as.
HOST_NAME_FILE = "host-name"
#: How many deployments this host keeps its outcome for after they left it.
KEPT_OUTCOMES = 200


class HostAgent:
    """Joins, beats, and reconciles the deployments placed on this host (only on a shared registry)."""

    def __init__(self, state: State, actions: Actions, live: Any) -> None:
        self.state = state
        self.actions = actions
        #: The scraper: the newest point per deployment and the host's load (`series`, `host`).
        self.live = live
        self.name = state.host_name
        #: Where other hosts reach this one (`MODELDECK_HOST_ADDRESS`, else the default route's address).
        self.address = host_address() if self.name is not None else ""
        #: Set once this supervisor holds its host's row: only then does it mark it stopped on close.
        self.joined = False
        #: Per deployment: the generation this host last acted on, its outcome and message.
        self.acted: dict[str, dict[str, Any]] = {}
        self.wake = asyncio.Event()
        self.applying: set[str] = set()
        self.listening = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0

    @property
    def enabled(self) -> bool:
        return self.name is not None

    def owns(self, spec: DeploymentInfo) -> bool:
        """Whether this supervisor runs `spec`: placed here, or placed nowhere (a single host)."""
        return not self.enabled or not spec.placement or self.name in spec.placement

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Join the registry's hosts (taking back what this host acted on before a restart) and start
        listening; a no-op on a SQLite home."""
        if not self.enabled:
            return
        state = self.state
        mine = {h.name: h for h in await state.db(hosts.hosts, state.registry)}.get(str(self.name))
        if mine is not None and mine.pid != os.getpid():
            taken = hosts.taken_by(mine, self.address, psutil.pid_exists(mine.pid))
            if taken:
                raise SupervisorError(taken)
        await self._check_renamed()
        if mine is not None:
            self.acted = {k: dict(v) for k, v in mine.deployments.items() if isinstance(v, dict)}
        await self._join(self.acted)
        self.joined = True
        claimed = await state.db(placement.claim_unplaced, state.registry, str(self.name))
        if claimed:
            log.info("host %s: placed here the deployments placed nowhere: %s", self.name, ", ".join(claimed))
        state.spawn_task(self._share_artifacts())
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._listen, args=(loop,), name="placement-listen", daemon=True
        )
        self._thread.start()
        state.spawn_task(self.run())

    async def _check_renamed(self) -> None:
        """Refuse to start under a new host name while deployments are placed on the name this home
        had (it would stop serving them without a word), and remember the name otherwise."""
        state = self.state
        recorded_path = state.home / HOST_NAME_FILE
        recorded = recorded_path.read_text().strip() if recorded_path.exists() else ""
        if recorded and recorded != self.name:
            left = [d.name for d in await state.db(_deployments, state) if recorded in d.placement]
            if left:
                raise SupervisorError(
                    f"this home ran as host {recorded!r}, where {', '.join(left)} "
                    f"{'is' if len(left) == 1 else 'are'} placed; start it as {recorded!r} "
                    f"(MODELDECK_HOST_NAME={recorded}) or move them first (modeldeck scale NAME K --on HOSTS)"
                )
        if recorded != self.name:
            write_atomic(recorded_path, f"{self.name}\n".encode())

    async def _share_artifacts(self) -> None:
        """Put what only this host's artifact cache holds into the database, for the other hosts."""
        store = self.state.registry.artifacts
        if isinstance(store, SharedArtifactStore):
            try:
                shared = await self.state.db(store.share_local)
            except (DatabaseError, OSError) as exc:
                log.warning("host %s: could not share its artifacts: %s", self.name, exc)
                return
            if shared:
                log.info(
                    "host %s: stored %d artifact(s) only it had in the registry's database", self.name, shared
                )

    async def close(self) -> None:
        """Stop listening and mark this host stopped (it is not lost: it said goodbye)."""
        self._stop.set()
        if not self.joined:
            return
        with contextlib.suppress(DatabaseError):
            await self.state.db(hosts.leave, self.state.registry, str(self.name))

    @property
    def exporter(self) -> str | None:
        """The exporter as other hosts reach it: this host's address for one bound to every interface."""
        bound = self.state.exporter
        if bound is None:
            return None
        bind, _, port = bound.rpartition(":")
        return f"{self.address}:{port}" if bind.strip("[]") in ("0.0.0.0", "::") else bound

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        await self.state.reconciled.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL)
            self.wake.clear()
            try:
                await self.sync()
                if time.monotonic() - self._last_beat >= hosts.HEARTBEAT_EVERY - 0.1:
                    await self.beat()
            except DatabaseError as exc:  # the database is away: keep serving, look again later
                log.warning("host %s: %s", self.name, exc)

    async def sync(self) -> None:
        """Start making every request this host has not acted on; stop what left its placement."""
        state = self.state
        rows = {spec.name: spec for spec in await state.db(_deployments, state)}
        for name, spec in rows.items():
            placed = self.name in spec.placement
            runtime = state.runtimes.get(name)
            if placed and spec.generation > int(self.acted.get(name, {}).get("generation") or 0):
                self._apply_soon(name)
            elif (
                not self.owns(spec) and runtime is not None and runtime.served and name not in state.starting
            ):
                self._apply_soon(name)  # moved away from this host: stop serving it here
        for name, runtime in list(state.runtimes.items()):
            if name not in rows and runtime.served and name not in state.starting and name in self.acted:
                self._apply_soon(name)  # stopped everywhere while this host was away

    def _apply_soon(self, name: str) -> None:
        if name not in self.applying:
            self.applying.add(name)
            self.state.spawn_task(self._apply(name))

    async def _apply(self, name: str) -> None:
        """Make the newest request for `name`, again while a newer one arrived meanwhile."""
        state = self.state
        try:
            while True:
                spec = await state.db(get_deployment, state.registry, name)
                if spec is None:  # gone from the registry: nothing may serve it here
                    if name in state.runtimes:
                        await self.actions.stop(name, actor=state.actor, reason="deleted", forget=False)
                    return
                generation = spec.generation
                if not self.owns(spec):
                    if name in state.runtimes:
                        await self.actions.stop(
                            name,
                            actor=state.actor,
                            reason=f"placed on {', '.join(spec.placement)}",
                            forget=False,
                        )
                    self.acted.pop(name, None)
                    return
                if generation <= int(self.acted.get(name, {}).get("generation") or 0):
                    return
                try:
                    message = await self._make(spec)
                    outcome = "done"
                except (SupervisorError, RegistryError, ServeError) as exc:
                    message, outcome = str(exc), "failed"
                    log.warning("host %s: request %d for %s failed: %s", self.name, generation, name, exc)
                except Exception as exc:  # a bug here must not retry the request every poll, unsaid
                    message, outcome = f"{type(exc).__name__}: {exc}", "failed"
                    log.exception("host %s: request %d for %s failed", self.name, generation, name)
                self.acted[name] = {"generation": generation, "outcome": outcome, "message": message}
                await self.beat()
        finally:
            self.applying.discard(name)

    async def _make(self, spec: DeploymentInfo) -> str:
        """Bring what runs here for `spec` to what its newest request asks; a sentence of what was done."""
        state, actions = self.state, self.actions
        desired = spec.desired
        name, actor, reason = spec.name, str(desired.get("actor") or ""), str(desired.get("reason") or "")
        runtime = state.runtimes.get(name)
        if desired.get("stopped"):
            if runtime is not None:
                await actions.stop(name, actor=actor, reason=reason, forget=False)
            await state.db(placement.released, state.registry, name, str(self.name), spec.generation)
            return "stopped"
        target = int(desired.get("version") or spec.version)
        workers = int(desired.get("workers") or spec.workers)
        rollout = desired.get("rollout")
        done: list[str] = []
        if runtime is None:
            options = dict(spec.options)
            if options.pop("auth", None) is False:  # as a host that served it already decided
                options["no_auth"] = True
            await actions.deploy(
                f"{spec.model}:{target}",
                name=name,
                host=spec.host,
                port=spec.port,
                workers=workers,
                options=options,
                actor=actor,
                reason=reason,
            )
            runtime = state.runtime(name)
            done.append(f"serves version {target}")
        if runtime.rollout is not None and (not rollout or rollout["version"] != runtime.rollout.version):
            if target == runtime.rollout.version:
                await actions.promote(name, actor=actor, reason=reason)
                return f"promoted version {target}"
            mode, candidate = runtime.rollout.mode, runtime.rollout.version
            await actions.abort(name, actor=actor, reason=reason or "aborted by request")
            done.append(f"{mode} of version {candidate} aborted")
        if runtime.spec.version != target or not runtime.active:
            if runtime.standby_version == target:
                await actions.rollback(name, target, actor=actor, reason=reason)
                asked = desired.get("action") == "rollback"
                done.append(
                    f"rolled back to version {target}"
                    if asked
                    else f"switched to version {target} (its standby)"
                )
            else:
                await actions.deploy(
                    f"{spec.model}:{target}", name=name, workers=workers, actor=actor, reason=reason
                )
                done.append(f"serves version {target}")
        if len(runtime.active) != workers:
            await actions.scale(name, workers, actor=actor, reason=reason)
            done.append(f"{workers} worker(s)")
        if rollout and runtime.rollout is None and runtime.spec.version != rollout["version"]:
            await actions.deploy(
                f"{spec.model}:{rollout['version']}",
                name=name,
                actor=actor,
                reason=reason,
                rollout=rollout["mode"],
                analysis=dict(rollout.get("analysis") or {}),
            )
            done.append(f"{rollout['mode']} of version {rollout['version']} started")
        return "; ".join(done) or f"already as asked (version {target}, {workers} worker(s))"

    # ------------------------------------------------------------------ heartbeat
    async def beat(self) -> None:
        """Tell the registry this host is alive, with its load and each deployment's state."""
        if not self.enabled:
            return
        self._last_beat = time.monotonic()
        host = dict(getattr(self.live, "host", {}) or {})
        total = host.get("memory_total") or 0
        memory = round(100 * host.get("memory_used", 0) / total, 1) if total else None
        self.acted = dict(list(self.acted.items())[-KEPT_OUTCOMES:])
        alive = await self.state.db(
            hosts.beat,
            self.state.registry,
            str(self.name),
            cpu_percent=host.get("cpu"),
            memory_percent=memory,
            exporter=self.exporter,
            deployments=self.figures(),
        )
        if not alive:  # forgotten while it ran: join again
            log.warning("host %s was removed from the registry's hosts; joining again", self.name)
            await self._join(self.figures())
        everyone = await self.state.db(hosts.hosts, self.state.registry)
        exporters = [(h.name, h.exporter) for h in everyone if h.exporter and h.state != "stopped"]
        if exporters != self.state.host_exporters:  # a host came, went or moved its exporter
            self.state.host_exporters = exporters
            self.state.save_state()

    async def _join(self, deployments: dict[str, Any]) -> None:
        await self.state.db(
            hosts.join,
            self.state.registry,
            str(self.name),
            address=self.address,
            version=_modeldeck_version(),
            cpus=psutil.cpu_count() or 1,
            memory_bytes=psutil.virtual_memory().total,
            pid=os.getpid(),
            exporter=self.exporter,
            deployments=deployments,
        )

    def figures(self) -> dict[str, Any]:
        """Per deployment: what this host acted on, and what runs here now with its newest figures."""
        figures: dict[str, Any] = {name: dict(acted) for name, acted in self.acted.items()}
        series = getattr(self.live, "series", {})
        for name, runtime in self.state.runtimes.items():
            entry = figures.setdefault(name, {})
            entry.update(
                state=str(runtime.status),
                version=runtime.spec.version,
                standby=runtime.standby_version,
                workers=len(runtime.active),
                port=runtime.spec.port,
                restarts=runtime.restarts,
            )
            if runtime.rollout is not None:
                entry["rollout"] = {
                    "mode": runtime.rollout.mode,
                    "version": runtime.rollout.version,
                    "weight": runtime.rollout.weight,
                }
            else:
                entry.pop("rollout", None)
            points = getattr(series.get(name), "points", None)
            if points:
                point = points[-1]
                entry["live"] = {key: point.get(key) for key in LIVE_KEYS}
        for name, entry in figures.items():
            if name not in self.state.runtimes:
                entry.update(state="stopped", workers=0)
                entry.pop("live", None)
        return figures

    # ------------------------------------------------------------------ notifications
    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hold a LISTEN connection and wake the loop on each notification (a thread: psycopg's blocking
        `notifies` with a timeout, so a stop is seen within a second); reconnect after a loss."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.state.registry.settings.db_url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        backoff = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {placement.CHANNEL}")
                    self.listening, backoff = True, 1.0
                    loop.call_soon_threadsafe(self.wake.set)  # what was requested while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            loop.call_soon_threadsafe(self.wake.set)
            except Exception as exc:  # any loss of the connection: polling covers it
                if self._stop.is_set():
                    break
                log.warning(
                    "host %s: not listening for requests (%s); polling every %.0f s", self.name, exc, POLL
                )
            self.listening = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)


def _deployments(state: State) -> list[DeploymentInfo]:
    from registry.deployments import list_deployments

    return list_deployments(state.registry)


def _modeldeck_version() -> str:
    try:
        return version("modeldeck")
    except PackageNotFoundError:
        return "unknown"
