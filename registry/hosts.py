"""The hosts of a shared (PostgreSQL) registry: a supervisor joins with its host, beats every
`HEARTBEAT_EVERY` seconds and leaves when it stops; everyone else reads the list (`registry.reads`).

Times are the database's own (`CURRENT_TIMESTAMP`), written and judged there, so a host's clock never
decides whether another host is lost.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from registry.core import Registry
from registry.errors import RegistryError
from registry.info import HostInfo
from registry.reads import LOST_AFTER, list_hosts
from registry.schema import Deployment, Host

__all__ = ["HEARTBEAT_EVERY", "LOST_AFTER", "beat", "forget", "hosts", "join", "leave", "taken_by"]

#: Seconds between two heartbeats of a supervisor.
HEARTBEAT_EVERY = 2.0
# SQLModel sets __table__ on every table class but does not declare it to type checkers.
_HOSTS = Host.__table__  # type: ignore[attr-defined]
_NOW = sa.func.current_timestamp()


def join(
    registry: Registry,
    name: str,
    *,
    address: str,
    version: str,
    cpus: int,
    memory_bytes: int,
    pid: int,
    exporter: str | None,
    deployments: dict[str, Any],
) -> None:
    """Add this host to the registry's hosts, or take its row back after a restart (its record of
    what it acted on is kept: `deployments` merges over it)."""
    values = {
        "address": address,
        "version": version,
        "cpus": cpus,
        "memory_bytes": memory_bytes,
        "pid": pid,
        "exporter": exporter,
        "started_at": _NOW,
        "heartbeat_at": _NOW,
        "stopped_at": None,
    }
    with registry.db.write() as session:
        conn = session.connection()
        known = conn.execute(
            sa.select(_HOSTS.c.deployments).where(_HOSTS.c.name == name).with_for_update()
        ).first()
        if known is None:
            conn.execute(sa.insert(_HOSTS).values(name=name, deployments=deployments, **values))
        else:
            merged = {**dict(known[0] or {}), **deployments}
            conn.execute(sa.update(_HOSTS).where(_HOSTS.c.name == name).values(deployments=merged, **values))


def taken_by(existing: HostInfo | None, address: str, pid_alive: bool) -> str | None:
    """Why a supervisor at `address` may not take the host name of `existing`: another supervisor that
    still beats uses it (on another machine, or another home of this one: its pid still runs here).
    None when the name is free, stopped, lost, or this machine's supervisor's before a restart."""
    if existing is None or existing.state != "up":
        return None
    if existing.address != address:
        where = f"at {existing.address}"
    elif pid_alive:
        where = f"on this machine (pid {existing.pid}, another home)"
    else:
        return None
    return (
        f"host name {existing.name!r} is used by a running supervisor {where}, whose heartbeat is "
        f"{existing.heartbeat_age:.0f} s old; give this one another name with MODELDECK_HOST_NAME"
    )


def beat(
    registry: Registry,
    name: str,
    *,
    cpu_percent: float | None,
    memory_percent: float | None,
    exporter: str | None,
    deployments: dict[str, Any],
) -> bool:
    """Record that `name` is alive, with its load and what each of its deployments does; False when
    its row is gone (someone forgot the host: join again)."""
    with registry.db.write() as session:
        done = session.connection().execute(
            sa.update(_HOSTS)
            .where(_HOSTS.c.name == name)
            .values(
                heartbeat_at=_NOW,
                stopped_at=None,
                cpu_percent=cpu_percent,
                memory_percent=memory_percent,
                exporter=exporter,
                deployments=deployments,
            )
        )
        return bool(done.rowcount)


def leave(registry: Registry, name: str) -> None:
    """Mark `name` stopped (a clean stop), so it reads as stopped rather than lost."""
    with registry.db.write() as session:
        session.connection().execute(
            sa.update(_HOSTS).where(_HOSTS.c.name == name).values(stopped_at=_NOW, heartbeat_at=_NOW)
        )


def hosts(registry: Registry) -> list[HostInfo]:
    """Every host, by name, judged up, lost or stopped by the database's clock."""
    with registry.db.reads() as run:
        return list_hosts(run)


def forget(registry: Registry, name: str) -> HostInfo:
    """Remove a host that is stopped or lost (a decommissioned machine); one that beats is refused."""
    known = {h.name: h for h in hosts(registry)}
    found = known.get(name)
    if found is None:
        raise RegistryError(f"no host {name!r} (known: {', '.join(sorted(known)) or 'none'})")
    if found.state == "up":
        raise RegistryError(
            f"host {name!r} is up (heartbeat {found.heartbeat_age:.0f} s ago): stop its supervisor first"
        )
    with registry.db.write() as session:
        placed = sorted(
            row.name for row in session.exec(select(Deployment)).all() if name in (row.placement or [])
        )
        if placed:
            raise RegistryError(
                f"host {name!r} still has deployments placed on it: {', '.join(placed)}; stop them "
                "(modeldeck stop NAME) or move them (modeldeck scale NAME K --on HOSTS) first"
            )
        session.connection().execute(sa.delete(_HOSTS).where(_HOSTS.c.name == name))
    return found
