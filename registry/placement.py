"""Desired state through the database: on a shared (PostgreSQL) registry, any CLI or console changes
what a deployment should be (deploy, roll back, stop, scale, canary, promote, abort) and where
(its placement, one or more hosts); the supervisors of the placed hosts act on it.

A request is one transaction: the deployment's row locked, its `desired` state and `placement`
written with its `generation` bumped, and a `requested` event in the ledger; on commit PostgreSQL
notifies `CHANNEL`, which wakes every supervisor at once (they also poll). Two operators acting on
the same deployment are serialised by the row lock: each gets its own generation, the later one wins,
and the earlier one's wait says by whom it was superseded. Desired state is absolute (a version, a
number of workers), so a host that was down makes the newest request when it comes back, not each
one it missed. Each host records the generation it acted on and how it went in its own row of
`host` (`registry.hosts`), which `wait` reads; the steps go to the ledger as for a local change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from registry import history as ledger
from registry import queries, writes
from registry.actor import HOST_NAME, current_actor
from registry.core import Registry
from registry.errors import RegistryError
from registry.info import HostInfo
from registry.refs import Ref
from registry.schema import Deployment, Host, ModelVersion, RegisteredModel, utcnow

#: The PostgreSQL notification channel a request is announced on (its payload: the deployment's name).
CHANNEL = "modeldeck_placement"
#: The actions a request can carry.
ACTIONS = ("deploy", "canary", "shadow", "rollback", "scale", "stop", "promote", "abort")
#: The first port a new deployment is given when none is asked for (as the supervisor's).
FIRST_PORT = 8080
#: The advisory lock (PostgreSQL) under which a request judges ports.
PORTS_LOCK = 0x6D64_706F_7274


class PlacementError(RegistryError):
    """A request that cannot be written (nothing was changed)."""


@dataclass(frozen=True)
class Requested:
    """A written request: the deployment, its new generation and the hosts that must act on it."""

    name: str
    model: str
    generation: int
    placement: list[str]
    desired: dict[str, Any]


@dataclass
class Outcome:
    """What one placed host made of a request (None fields: it has not acted yet)."""

    host: str
    state: str  # up, lost, stopped, unknown (never joined)
    generation: int = 0
    outcome: str | None = None  # done, failed
    message: str = ""
    version: int | None = None
    workers: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def check_placement(hosts: list[str]) -> list[str]:
    """Host names, each valid, without repeats, in the order given."""
    names: list[str] = []
    for host in hosts:
        if not HOST_NAME.match(host):
            raise PlacementError(f"--on: {host!r} is not a host name (letters, digits, '.', '_', '-')")
        if host not in names:
            names.append(host)
    if not names:
        raise PlacementError("--on: name at least one host")
    return names


def request(
    registry: Registry,
    action: str,
    name: str,
    *,
    ref: str | None = None,
    to: int | None = None,
    workers: int | None = None,
    placement: list[str] | None = None,
    bind: str | None = None,
    port: int | None = None,
    options: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    actor: str | None = None,
    reason: str = "",
) -> Requested:
    """Write what deployment `name` should become, for its placed hosts to make; see the module.

    `ref` is the version to serve (deploy, canary, shadow), `to` the one to roll back to (default:
    the standby), `workers` per host, `placement` the hosts (default: unchanged; a new deployment
    needs one), `bind`, `port` and `options` only for a new deployment."""
    if action not in ACTIONS:
        raise PlacementError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if placement is not None:
        placement = check_placement(placement)
    info = registry.get(ref) if ref is not None else None
    actor = actor or current_actor()
    with registry.db.write() as session:
        conn = session.connection()
        row = session.exec(select(Deployment).where(Deployment.name == name).with_for_update()).first()
        if row is None:
            if action != "deploy" or info is None:
                raise PlacementError(f"no deployment {name!r}: deploy a version to it first")
            if not placement:
                raise PlacementError(f"{name} is new: say which hosts serve it (--on HOST[,HOST])")
            model_id = writes.lock_model(conn, info.name)[0]
            row = Deployment(
                name=name,
                model_id=model_id,
                version_id=queries.version_id(conn, Ref(info.name, version=info.version)),
                host=bind or "127.0.0.1",
                port=port or _free_port(session),
                workers=workers or 1,
                options=dict(options or {}),
                state="requested",
                placement=[],
            )
            current: int | None = None
        else:
            if bind not in (None, row.host) or port not in (None, row.port):
                raise PlacementError(
                    f"deployment {name!r} listens on {row.host}:{row.port}; stop it first to move it"
                )
            current = _version_number(session, row.version_id)
        model = _model_name(session, row.model_id)
        if info is not None and info.name != model:
            raise PlacementError(f"deployment {name!r} serves model {model!r}, not {info.name!r}")
        desired = _desired(session, row, action, info.version if info else None, to, workers, analysis)
        desired.update(actor=actor, reason=reason, action=action)
        row.placement = placement or list(row.placement or [])
        if conn.dialect.name == "postgresql":  # one request at a time judges ports (a new row locks nothing)
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PORTS_LOCK)))
        _check_port(session, name, row.port, row.placement)
        if action == "stop":  # a host that never joined or was forgotten cannot release it: do it here
            joined = set(session.exec(select(Host.name)).all())
            row.placement = [h for h in row.placement if h in joined]
        row.generation = (row.generation or 0) + 1
        row.desired = desired
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        writes.record(
            conn,
            model,
            ledger.REQUESTED,
            actor,
            deployment=name,
            from_version=current,
            to_version=desired.get("version"),
            reason=reason,
            detail={
                "action": action,
                "generation": row.generation,
                "placement": row.placement,
                "workers": desired.get("workers"),
            },
        )
        if action == "stop" and not row.placement:
            session.delete(row)
            writes.record(
                conn, model, ledger.STOPPED, actor, deployment=name, from_version=current, reason=reason
            )
        if conn.dialect.name == "postgresql":  # delivered on commit, to every listening supervisor
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, name)))
        return Requested(name, model, row.generation, list(row.placement), desired)


def _desired(
    session: Any,
    row: Deployment,
    action: str,
    version: int | None,
    to: int | None,
    workers: int | None,
    analysis: dict[str, Any] | None,
) -> dict[str, Any]:
    """The absolute state a request asks for, from what the row wants now."""
    before = dict(row.desired or {})
    # A change sets its own fields over the rest of the spec: the last request's while a placed host
    # has still to make it (two operators at once keep both changes), else what serves now (a local
    # change since, such as a crash loop's rollback, is not undone by an unrelated request).
    base = before if before and _pending(session, row) else {}
    wanted: dict[str, Any] = {
        "version": base.get("version") or _version_number(session, row.version_id),
        "workers": base.get("workers") or row.workers,
        "rollout": None,
        "stopped": False,
    }
    if workers is not None:
        wanted["workers"] = workers
    if action in ("deploy", "canary", "shadow"):
        assert version is not None
        if action == "deploy":
            wanted["version"] = version
        else:  # the serving version stays what it is; the candidate is tried beside it
            wanted["rollout"] = {"mode": action, "version": version, "analysis": dict(analysis or {})}
    elif action == "rollback":
        target = to if to is not None else _standby(session, row)
        if target is None:
            raise PlacementError(f"{row.name} has no standby to roll back to; name a version with --to")
        if to is not None:
            _check_version(session, row.model_id, to)
        wanted["version"] = target
    elif action in ("promote", "abort"):
        rollout = before.get("rollout") or _rollout_running(session, row)
        if not rollout:
            raise PlacementError(f"{row.name} has no canary or shadow under way to {action}")
        if action == "promote":
            wanted["version"] = rollout["version"]
    elif action == "stop":
        wanted["stopped"] = True
    return wanted


def claim_unplaced(registry: Registry, host: str) -> list[str]:
    """Place on `host` every deployment placed nowhere (written before the registry had hosts), so a
    registry that grows a second host does not have every host start every old deployment: the first
    supervisor to join, the one that served them, keeps them. The names claimed."""
    with registry.db.write() as session:
        rows = session.exec(select(Deployment).with_for_update()).all()
        claimed = [row for row in rows if not row.placement]
        for row in claimed:
            row.placement = [host]
            session.add(row)
        return [row.name for row in claimed]


def released(registry: Registry, name: str, host: str, generation: int) -> bool:
    """Host `host` stopped serving `name` for request `generation`: take it out of the placement and
    record `stopped` for it; when no host is left, delete the deployment. True if it was deleted.
    A newer request since (a deploy after the stop) keeps the row as it is."""
    with registry.db.write() as session:
        row = session.exec(select(Deployment).where(Deployment.name == name).with_for_update()).first()
        if row is None or row.generation != generation:
            return False
        left = [h for h in (row.placement or []) if h != host]
        model = _model_name(session, row.model_id)
        version = _version_number(session, row.version_id)
        desired = dict(row.desired or {})
        if left:
            row.placement = left
            session.add(row)
        else:
            session.delete(row)
        writes.record(
            session.connection(),
            model,
            ledger.STOPPED,
            desired.get("actor") or current_actor(),
            deployment=name,
            from_version=version,
            reason=desired.get("reason", ""),
            detail={"generation": generation, "host": host, "hosts_left": left},
        )
        return not left


def outcomes(hosts: list[HostInfo], name: str, placement: list[str]) -> list[Outcome]:
    """What each placed host last did with `name`, from the hosts' rows."""
    known = {h.name: h for h in hosts}
    found: list[Outcome] = []
    for host in placement:
        info = known.get(host)
        if info is None:
            found.append(Outcome(host, "unknown"))
            continue
        acted = dict(info.deployments.get(name) or {})
        found.append(
            Outcome(
                host,
                info.state,
                generation=int(acted.get("generation") or 0),
                outcome=acted.get("outcome"),
                message=str(acted.get("message") or ""),
                version=acted.get("version"),
                workers=acted.get("workers"),
                detail=acted,
            )
        )
    return found


def wait(
    read_hosts: Callable[[], list[HostInfo]],
    requested: Requested,
    timeout: float = 300.0,
    on_change: Callable[[list[Outcome]], None] | None = None,
    every: float = 0.05,
) -> list[Outcome]:
    """Poll the hosts' rows until every placed host that is up has acted on `requested` (or on a newer
    request: then it was superseded), or `timeout`; lost and unknown hosts are not waited for."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, int, str | None, str]] = []
    while True:
        found = outcomes(read_hosts(), requested.name, requested.placement)
        now = [(o.host, o.generation, o.outcome, o.state) for o in found]
        if now != seen and on_change is not None:
            on_change(found)
        seen = now
        pending = [o for o in found if o.state == "up" and o.generation < requested.generation]
        if not pending or time.monotonic() > deadline:
            return found
        time.sleep(every)


def _placed_entries(session: Any, row: Deployment) -> dict[str, dict[str, Any]]:
    """Per placed host that joined: what its heartbeat says of this deployment (`{}` if nothing)."""
    placed = list(row.placement or [])
    found = session.exec(select(Host).where(Host.name.in_(placed))).all()  # type: ignore[attr-defined]
    return {host.name: dict((host.deployments or {}).get(row.name) or {}) for host in found}


def _pending(session: Any, row: Deployment) -> bool:
    """Whether a placed host has not acted on the deployment's last request yet."""
    entries = _placed_entries(session, row)
    acted = {name: int(entry.get("generation") or 0) for name, entry in entries.items()}
    return any(acted.get(host, 0) < (row.generation or 0) for host in row.placement or [])


def _rollout_running(session: Any, row: Deployment) -> dict[str, Any] | None:
    """A canary or shadow a placed host runs that no request asked for (started on that host
    itself), as its heartbeat tells it."""
    running = [entry["rollout"] for entry in _placed_entries(session, row).values() if entry.get("rollout")]
    return dict(running[0]) if running else None


def _check_port(session: Any, name: str, port: int | None, placement: list[str]) -> None:
    """Refuse a port another deployment uses on one of the same hosts (whatever address each binds:
    0.0.0.0:8080 and 127.0.0.1:8080 both answer a local client of one host)."""
    others = session.exec(select(Deployment).where(Deployment.name != name, Deployment.port == port)).all()
    for other in others:
        shared = sorted(set(other.placement or []) & set(placement))
        if shared or not other.placement:
            where = f" on {', '.join(shared)}" if shared else ""
            raise PlacementError(
                f"port {port} is already used by deployment {other.name!r}{where}; choose another with --port"
            )


def _free_port(session: Any) -> int:
    """The first port from 8080 no deployment of the registry uses (on any host: a deployment may
    later be placed on more hosts)."""
    used = set(session.exec(select(Deployment.port)).all())
    port = FIRST_PORT
    while port in used:
        port += 1
    return port


def _model_name(session: Any, model_id: int) -> str:
    model = session.get(RegisteredModel, model_id)
    assert model is not None  # a deployment's model cannot be deleted while it is deployed
    return str(model.name)


def _version_number(session: Any, version_id: int | None) -> int | None:
    version = session.get(ModelVersion, version_id) if version_id is not None else None
    return version.version if version is not None else None


def _standby(session: Any, row: Deployment) -> int | None:
    return _version_number(session, row.standby_version_id)


def _check_version(session: Any, model_id: int, number: int) -> None:
    found = session.exec(
        select(ModelVersion.id).where(ModelVersion.model_id == model_id, ModelVersion.version == number)
    ).first()
    if found is None:
        raise PlacementError(f"no version {number} of this deployment's model")
