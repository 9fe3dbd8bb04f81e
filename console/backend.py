"""What the console reads and does, without any UI: the registry for browsing, the supervisor for acting.

Every call blocks (screens run them in worker threads) and raises `RegistryError` subclasses with a
message a person can act on. Reading the registry never needs the supervisor; live figures and actions
do, and their absence is reported in `Overview.supervisor_problem` so the UI can show a banner and keep
polling.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import RegistryError, SupervisorError
from registry.info import (
    AlertInfo,
    DeploymentInfo,
    EventInfo,
    HostInfo,
    ModelInfo,
    SilenceInfo,
    StateAt,
    VersionInfo,
    VersionSummary,
)
from registry.reader import Reader, open_reader
from registry.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from registry import Registry
    from registry.placement import Outcome, Requested
    from registry.serving.client import SupervisorClient

if TYPE_CHECKING:
    from registry.serving.protocol import DeploymentStatus, Stopped

#: Seconds a refresh waits for the supervisor: a slow one must not stall the console's figures.
READ_TIMEOUT = 3.0
#: Seconds a change placed on other hosts waits for each of them to make it (as the CLI's `--on`).
PLACED_WAIT = 300.0


@dataclass
class Overview:
    """One refresh of the console's data."""

    models: list[ModelInfo]
    deployments: list[DeploymentInfo]
    #: deployment name -> the supervisor's view (status, workers, live point, drift); while it is down,
    #: the state each deployment's own port answers (`serving (sup. down)`), none if nothing does.
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    supervisor_up: bool = False
    #: why live figures are missing (no supervisor, or it did not answer in time)
    supervisor_problem: str = ""
    #: pending and firing alerts, newest first (the registry's: they outlive the supervisor)
    alerts: list[AlertInfo] = field(default_factory=list)
    #: a shared (PostgreSQL) registry: hosts, and deployments placed on them
    shared: bool = False
    #: this host's name on a shared registry (`registry.actor.host_label`)
    this_host: str = ""
    #: every host of a shared registry as its heartbeat left it, by name (none on SQLite)
    hosts: list[HostInfo] = field(default_factory=list)

    def placed_elsewhere(self, deployment: DeploymentInfo) -> bool:
        """Whether `deployment` is placed on a host other than this one: its figures come from the
        placed hosts' heartbeats and its changes go through the database (`registry.placement`), not
        this host's supervisor (never on SQLite: nothing is placed there)."""
        return any(host != self.this_host for host in deployment.placement)

    def host_state(self, name: str) -> str:
        """up, lost, stopped, or unknown (a host that never joined)."""
        return next((h.state for h in self.hosts if h.name == name), "unknown")

    def deployed(self, model: str) -> list[DeploymentInfo]:
        return [d for d in self.deployments if d.model == model]

    def firing(self, deployment: str) -> bool:
        """Whether an unsilenced alert of `deployment` fires (lists mark its row "!")."""
        alert = self.alert_of(deployment)
        return alert is not None and alert.state == "firing" and not alert.silenced

    def alert_of(self, deployment: str) -> AlertInfo | None:
        """The deployment's most pressing alert: firing before pending, unsilenced before silenced."""
        found = [a for a in self.alerts if a.deployment == deployment]
        return min(found, key=alert_rank, default=None)


class Backend:
    """The registry of one home and its supervisor client.

    Browsing reads through `registry.reader` (sqlite3/psycopg, no SQLAlchemy: the first screen shows
    sooner) while it can; the `Registry` (and the supervisor client) open on first use: for a change,
    for what the reader does not cover, or for good once a read through the reader fails (the
    `Registry` then explains the error, reconnects to a restarted PostgreSQL, and so on)."""

    def __init__(self, home: Path | None = None) -> None:
        self.settings = Settings.from_env(home=home)
        self._reader: Reader | None = open_reader(self.settings)
        self._registry: Registry | None = None
        self._client: SupervisorClient | None = None
        self._opening = threading.Lock()  # screens' workers may ask for the first time at once
        self._role_read_only: str | None = None  # why the reader's PostgreSQL role may not write
        self._role_asked = False
        if self._reader is None:  # an older schema, a missing or read-only database: as before
            self._open_registry()

    def _open_registry(self) -> Registry:
        with self._opening:
            if self._registry is None:
                from registry import Registry

                self._registry = Registry(settings=self.settings)
            return self._registry

    @property
    def registry(self) -> Registry:
        """The home's `Registry`, opened on first use."""
        return self._open_registry()

    @property
    def client(self) -> SupervisorClient:
        """The home's supervisor client, made on first use."""
        with self._opening:
            if self._client is None:
                from registry.serving.client import SupervisorClient

                self._client = SupervisorClient(self.settings.home, timeout=600)
            return self._client

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def read_only(self) -> str | None:
        """Why this process may not write the registry (None: it may): a SQLite file it may not
        write (the reader does not open one: the `Registry` opens it read-only), or a PostgreSQL role
        that may only read (asked once, on the reader's connection)."""
        if self._registry is not None:
            return self._registry.db.read_only
        reader = self._reader
        if reader is not None and not self._role_asked:
            try:
                self._role_read_only = reader.read_only_reason()
            except Exception:  # a driver error: the Registry meets it again and explains it
                self._role_read_only = None
            self._role_asked = True
        return self._role_read_only

    def _read(self, through_reader: Any, through_registry: Any) -> Any:
        """`through_reader(reader)` while the reader works, else `through_registry(registry)`."""
        reader = self._reader
        if reader is not None:
            try:
                return through_reader(reader)
            except RegistryError:  # not found, ...: the same error the Registry gives
                raise
            except Exception:  # a driver error: from now on, the Registry
                self._reader = None
                reader.close()
        return through_registry(self._open_registry())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._reader is not None:
            self._reader.close()
        if self._registry is not None:
            self._registry.close()

    def list_models(self) -> list[ModelInfo]:
        return self._read(lambda r: r.list_models(), lambda reg: reg.list_models())

    def deployments(self) -> list[DeploymentInfo]:
        def through_registry(reg: Registry) -> list[DeploymentInfo]:
            from registry.deployments import list_deployments

            return list_deployments(reg)

        return self._read(lambda r: r.deployments(), through_registry)

    @property
    def shared(self) -> bool:
        """Whether the registry is shared by several hosts (PostgreSQL); a SQLite home has one."""
        return not self.settings.is_sqlite

    def hosts(self) -> list[HostInfo]:
        """The hosts of a shared registry (none on SQLite)."""
        if not self.shared:
            return []

        def through_registry(reg: Registry) -> list[HostInfo]:
            from registry.hosts import hosts

            return hosts(reg)

        return self._read(lambda r: r.hosts(), through_registry)

    def placed_elsewhere(self, name: str) -> DeploymentInfo | None:
        """Deployment `name` when it is placed on a host other than this one (its figures are in
        their heartbeats, not this host's supervisor), else None."""
        if not self.shared:
            return None
        from registry.actor import host_label

        spec = next((d for d in self.deployments() if d.name == name), None)
        here = host_label()
        return spec if spec is not None and any(h != here for h in spec.placement) else None

    def overview(self) -> Overview:
        """Models and deployments from the registry, and live figures when the supervisor answers; on
        a shared registry also the hosts, and the figures of deployments placed elsewhere from them."""
        overview = Overview(self.list_models(), self.deployments(), alerts=self.active_alerts())
        if self.shared:
            from registry.actor import host_label

            overview.shared, overview.this_host, overview.hosts = True, host_label(), self.hosts()
        elsewhere = {d.name: d for d in overview.deployments if overview.placed_elsewhere(d)}
        try:
            self._supervisor_may_answer()
            status = self.client.status(timeout=READ_TIMEOUT)
            monitor = self.client.live(timeout=READ_TIMEOUT)
        except SupervisorError as exc:
            overview.supervisor_problem = str(exc)
            overview.live = probed_states([d for d in overview.deployments if d.name not in elsewhere])
        else:
            overview.supervisor_up = True
            for deployment in status.deployments:
                seen = monitor.deployments.get(deployment.name)
                overview.live[deployment.name] = {**deployment.as_dict(), **(seen.as_dict() if seen else {})}
        for d in elsewhere.values():  # never this host's supervisor's word on another host's deployment
            overview.live[d.name] = placed_live(d, overview.hosts)
        return overview

    def _supervisor_may_answer(self) -> None:
        """SupervisorError, as the client raises it, while no control socket exists: checked before
        the client loads (its protocol and httpx), so the first screen of a console whose supervisor
        is down, and each refresh, shows without them."""
        if self._client is not None:
            return
        from registry.serving.rundir import RunDir

        home = self.settings.home.expanduser().resolve()
        if not RunDir.of(home).control_socket.exists():
            raise SupervisorError(f"no supervisor is running for {home}", 503)

    def active_alerts(self) -> list[AlertInfo]:
        def through_registry(reg: Registry) -> list[AlertInfo]:
            from registry.alerts import alerts

            return alerts(reg, active_only=True)

        return self._read(lambda r: r.active_alerts(), through_registry)

    def alerts(self, limit: int = 200) -> tuple[list[AlertInfo], list[SilenceInfo]]:
        """Alerts of every state, newest first, and the silences in force (the alerts view)."""
        from registry import alerts

        return alerts.alerts(self.registry, limit=limit), alerts.silences(self.registry)

    def objectives(self, deployment: str) -> list[Any]:
        from registry import alerts

        return alerts.objectives(self.registry, deployment)

    def set_objectives(self, deployment: str, text: str) -> list[Any]:
        """Objectives from `availability=99.9 latency=250ms latency-target=99 drift=warn` (`off` turns
        one off), as `modeldeck objectives set` takes them."""
        from registry import alerts

        return alerts.set_from_text(self.registry, deployment, text, reason="from the console")

    def silence(self, deployment: str, text: str) -> SilenceInfo:
        """Silence `deployment`'s alerts: `2h` or `2h the reason`."""
        from registry import alerts

        duration, _, reason = text.strip().partition(" ")
        seconds = alerts.parse_duration(duration)
        return alerts.add_silence(
            self.registry, deployment, seconds, reason=reason.strip() or "from the console"
        )

    def unsilence(self, deployment: str) -> list[SilenceInfo]:
        """End the silences that cover `deployment` (its own, not those of every deployment)."""
        from registry import alerts

        return [
            alerts.end_silence(self.registry, s.id)
            for s in alerts.silences(self.registry)
            if s.deployment == deployment
        ]

    def events(self, limit: int = 500) -> list[EventInfo]:
        return self._read(lambda r: r.recent_events(limit), lambda reg: reg.recent_events(limit))

    def steps(self, deployment: str, since: datetime) -> list[tuple[str, datetime]]:
        """The ledger's events (kind, time) for `deployment` since `since`, oldest first (an action's
        progress)."""
        recent = self.events(20)
        return [(e.kind, e.at) for e in reversed(recent) if e.deployment == deployment and e.at >= since]

    def versions(self, model: str) -> list[VersionSummary]:
        return self._read(lambda r: r.versions(model), lambda reg: reg.versions(model))

    def version(self, ref: str) -> VersionInfo:
        return self._read(lambda r: r.get(ref), lambda reg: reg.get(ref))

    def set_alias(self, ref: str, alias: str) -> VersionInfo:
        found = self.registry.get(ref)
        return self.registry.set_alias(found.name, alias, found.version, reason="from the console")

    def serving_at(self, moment: datetime) -> dict[str, StateAt]:
        """Every model's state (versions, aliases, what each deployment served) at `moment`."""
        return {m.name: self.registry.history(m.name, moment).state for m in self.list_models()}

    def drift_history(self, deployment: str, minutes: int = 30) -> list[tuple[float, float]]:
        """(time, drifted share of features) of the stored 10 s rollups of the last `minutes`."""
        from registry.monitoring.rollups import read_rollups

        since = datetime.now(UTC) - timedelta(minutes=minutes)
        rows = read_rollups(self.registry.db, deployment, 10, since)
        return [(r["at"].timestamp(), r["drift_share"]) for r in rows if r["drift_share"] is not None]

    def live_performance(self, left: VersionInfo, right: VersionInfo) -> dict[int, dict[str, Any] | None]:
        """Realised performance of two versions of a model over the last day (the prediction store)."""
        import time

        from registry.monitoring.performance import live_by_version

        versions = {left.version: left.output, right.version: right.output}
        return live_by_version(self.registry.settings.home, versions, left.name, 24 * 3600.0, time.time())

    def log_path(self, deployment: str) -> Path:
        return self.client.rundir.deployment_log(deployment)

    def deploy(self, ref: str, name: str | None = None, rollout: str | None = None) -> DeploymentStatus:
        """Serve `ref`, or (`rollout`: canary or shadow) try it beside what serves, with the default steps."""
        return self.client.deploy(ref, name=name, reason="from the console", rollout=rollout)

    def promote(self, name: str) -> DeploymentStatus:
        return self.client.promote(name, reason="from the console")

    def abort(self, name: str) -> DeploymentStatus:
        return self.client.abort(name, reason="from the console")

    def rollback(self, name: str, to: int | None = None) -> DeploymentStatus:
        return self.client.rollback(name, to, reason="from the console")

    def stop(self, name: str) -> Stopped:
        return self.client.stop(name, reason="from the console")

    def request(self, action: str, name: str, ref: str | None = None) -> Requested:
        """Write `action` (deploy, canary, shadow, rollback, stop, promote, abort) for deployment `name`,
        placed on other hosts, through the database (`registry.placement`): their supervisors make it."""
        from registry import placement

        return placement.request(self.registry, action, name, ref=ref, reason="from the console")

    def wait_placed(
        self, requested: Requested, on_change: Callable[[list[Outcome]], None] | None = None
    ) -> list[Outcome]:
        """Wait until every placed host that is up made `requested` (lost ones are not waited for),
        telling `on_change` each time what the hosts did changes; what each host did."""
        from registry import hosts, placement

        reg = self.registry
        return placement.wait(lambda: hosts.hosts(reg), requested, PLACED_WAIT, on_change)


def alert_rank(alert: AlertInfo) -> tuple[int, int, int]:
    """Sort key: firing before pending, unsilenced before silenced, newest first."""
    return (alert.state != "firing", alert.silenced, -alert.id)


def placed_live(deployment: DeploymentInfo, hosts: list[HostInfo]) -> dict[str, Any]:
    """A deployment placed on other hosts as their heartbeats tell it, in the shape the supervisor's
    status has for the console's cells: its state (`running`; a lost or stopped host's `unknown`,
    never `down`; `b running, c unknown` when they differ), the workers running on the hosts that are
    up, a rollout under way, and one live point (req/s summed, the worst p99)."""
    known = {h.name: h for h in hosts}
    states: dict[str, str] = {}
    workers, points, rollout = 0, [], None
    for name in deployment.placement:
        host = known.get(name)
        if host is None or host.state != "up":
            states[name] = "unknown"
            continue
        entry = dict(host.deployments.get(deployment.name) or {})
        states[name] = str(entry.get("state") or "starting")
        workers += int(entry.get("workers") or 0)
        rollout = rollout or entry.get("rollout")
        if entry.get("live"):
            points.append(entry["live"])
    distinct = set(states.values())
    status = next(iter(distinct)) if len(distinct) == 1 else ", ".join(f"{h} {s}" for h, s in states.items())
    live: dict[str, Any] = {
        "status": status,
        "workers_running": workers if distinct != {"unknown"} else "?",
        "placed": states,
    }
    if rollout:
        live["rollout"] = rollout
    if points:
        p99s = [p["p99"] for p in points if p.get("p99") is not None]
        live["live"] = {
            "rps": sum(p.get("rps") or 0.0 for p in points),
            "p99": max(p99s) if p99s else None,
            "seq": max(p.get("t") or 0.0 for p in points),
        }
    return live


def placed_point(deployment: DeploymentInfo, hosts: list[HostInfo]) -> dict[str, Any] | None:
    """One chart point (the shape of the supervisor's `LivePoint`) of a deployment placed on other
    hosts, from their newest heartbeats: requests and errors summed, the worst latencies; None when
    no host that is up has sent figures. Per-worker CPU and memory stay on the serving hosts."""
    figures = []
    for host in hosts:
        entry = host.deployments.get(deployment.name) or {}
        if host.name in deployment.placement and host.state == "up" and entry.get("live"):
            figures.append((entry, entry["live"]))
    if not figures:
        return None

    def total(key: str) -> float:
        return sum(live.get(key) or 0 for _, live in figures)

    def worst(key: str) -> float | None:
        seen = [live[key] for _, live in figures if live.get(key) is not None]
        return max(seen) if seen else None

    return {
        "t": max(live.get("t") or 0.0 for _, live in figures),
        "version": max(int(entry.get("version") or deployment.version) for entry, _ in figures),
        "workers": int(sum(entry.get("workers") or 0 for entry, _ in figures)),
        "stale": 0,
        "rps": total("rps"),
        "requests": int(total("requests")),
        "client_errors": int(total("client_errors")),
        "server_errors": int(total("server_errors")),
        "p50": worst("p50"),
        "p95": worst("p95"),
        "p99": worst("p99"),
        "processes": {},
    }


def probed_states(deployments: list[DeploymentInfo]) -> dict[str, dict[str, Any]]:
    """Without a supervisor: what each deployment's own `/health/ready` says, for the state column
    (`serving (sup. down)`: short enough for its 20 cells at 80 columns, with the banner saying the
    supervisor is not running); deployments whose port does not answer are left out (`down`)."""
    from registry.serving.probe import DOWN, probe_deployments

    states = probe_deployments([d.as_dict() for d in deployments])
    return {
        name: {"status": f"{state} (sup. down)", "workers_running": "?"}
        for name, state in states.items()
        if state != DOWN
    }
