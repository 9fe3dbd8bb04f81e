"""Deployments as the registry stores them: the desired state the serving supervisor reconciles to.

Each change of a deployment row is written in the same transaction as its ledger event, so the
ledger and the table never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from registry import history as ledger
from registry import queries, reads, writes
from registry.core import Registry, current_actor
from registry.info import DeploymentInfo
from registry.refs import Ref
from registry.schema import Deployment, Event, ModelVersion, RegisteredModel, utcnow


def list_deployments(registry: Registry) -> list[DeploymentInfo]:
    """Every deployment, by name (one statement: the console polls it every second, the supervisor on
    every reconcile; see `registry.reads`)."""
    with registry.db.reads() as run:
        return reads.list_deployments(run)


def get_deployment(registry: Registry, name: str) -> DeploymentInfo | None:
    """One deployment, or None."""
    with registry.db.read() as session:
        row = session.exec(select(Deployment).where(Deployment.name == name)).first()
        return _info(session, row) if row is not None else None


def save_deployment(
    registry: Registry,
    spec: DeploymentInfo,
    kind: str,
    *,
    actor: str | None = None,
    from_version: int | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
    preceding: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Create or update the deployment `spec.name` and record `kind` in the ledger, atomically.

    `preceding` events (kind, fields) are recorded first in the same transaction (a swap's `ready`)."""
    with registry.db.write() as session:
        conn = session.connection()
        for earlier, fields in preceding:
            writes.record(conn, spec.model, earlier, **{"actor": current_actor(), **fields})
        model_id = writes.lock_model(conn, spec.model)[0]
        version_id = queries.version_id(conn, Ref(spec.model, version=spec.version))
        standby_id = (
            queries.version_id(conn, Ref(spec.model, version=spec.standby_version))
            if spec.standby_version is not None
            else None
        )
        row = session.exec(select(Deployment).where(Deployment.name == spec.name)).first()
        if row is None:
            row = Deployment(name=spec.name, model_id=model_id, version_id=version_id)
        row.model_id, row.version_id, row.standby_version_id = model_id, version_id, standby_id
        row.host, row.port, row.workers = spec.host, spec.port, spec.workers
        row.options, row.state, row.updated_at = dict(spec.options), "running", utcnow()
        if not row.placement and spec.placement:  # a new deployment, or one from before hosts: placed here
            row.placement = list(spec.placement)
        session.add(row)
        session.flush()
        writes.record(
            conn,
            spec.model,
            kind,
            actor or current_actor(),
            deployment=spec.name,
            from_version=from_version,
            to_version=spec.version,
            reason=reason,
            detail=detail or {},
        )


def remove_deployment(
    registry: Registry, name: str, kind: str, *, actor: str | None = None, reason: str = ""
) -> DeploymentInfo | None:
    """Delete the deployment `name` and record `kind` (stopped) in the ledger; None if there was none."""
    with registry.db.write() as session:
        row = session.exec(select(Deployment).where(Deployment.name == name)).first()
        if row is None:
            return None
        info = _info(session, row)
        session.delete(row)
        writes.record(
            session.connection(),
            info.model,
            kind,
            actor or current_actor(),
            deployment=name,
            from_version=info.version,
            reason=reason,
        )
        return info


# SQLModel sets __table__ on every table class but does not declare it to type checkers.
_EVENTS = Event.__table__  # type: ignore[attr-defined]


def _last(kinds: Sequence[str]) -> Any:
    return sa.func.max(sa.case((_EVENTS.c.kind.in_(list(kinds)), _EVENTS.c.id)))


_OPEN = (
    sa.select(
        _EVENTS.c.deployment,
        _last([ledger.DEPLOY_REQUESTED]),
        _last([ledger.LOADING]),
        _last(sorted(ledger.ACTION_OUTCOMES)),
        _last(sorted(ledger.LOAD_OUTCOMES)),
    )
    .where(_EVENTS.c.deployment.is_not(None))
    .group_by(_EVENTS.c.deployment)
)


def open_actions(registry: Registry) -> list[dict[str, Any]]:
    """Ledger actions that never got an outcome, one per deployment: the last `deploy_requested`
    with no switch, rollback, failure, scale or stop after it, or else the last `loading` with no
    `ready` or outcome after it (what a supervisor killed mid-deploy leaves)."""
    with registry.db.connect() as conn:
        opened: list[int] = []
        for _, requested, loading, outcome, loaded in conn.execute(_OPEN):
            if requested is not None and requested > (outcome or 0):
                opened.append(requested)
            elif loading is not None and loading > (loaded or 0):
                opened.append(loading)
        if not opened:
            return []
        rows = conn.execute(sa.select(_EVENTS).where(_EVENTS.c.id.in_(opened)).order_by(_EVENTS.c.id))
        return [dict(row._mapping) for row in rows]


def _info(session: Session, row: Deployment) -> DeploymentInfo:
    model = session.get(RegisteredModel, row.model_id)
    version = session.get(ModelVersion, row.version_id)
    standby = session.get(ModelVersion, row.standby_version_id) if row.standby_version_id else None
    assert model is not None and version is not None
    return DeploymentInfo(
        name=row.name,
        model=model.name,
        version=version.version,
        standby_version=standby.version if standby else None,
        host=row.host,
        port=row.port or 0,
        workers=row.workers,
        options=dict(row.options or {}),
        updated_at=row.updated_at,
        placement=list(row.placement or []),
        generation=row.generation or 0,
        desired=dict(row.desired or {}),
    )
