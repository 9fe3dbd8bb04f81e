"""Deployments as the registry stores them: the desired state the serving supervisor reconciles to.

Each change of a deployment row is written in the same transaction as its ledger event, so the
ledger and the table never disagree.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from registry import queries, writes
from registry.core import Registry, current_actor
from registry.info import DeploymentInfo
from registry.refs import Ref
from registry.schema import Deployment, ModelVersion, RegisteredModel, utcnow

_DEPLOYMENTS = Deployment.__table__  # type: ignore[attr-defined]
_SERVING = ModelVersion.__table__.alias("serving")  # type: ignore[attr-defined]
_STANDBY = ModelVersion.__table__.alias("standby")  # type: ignore[attr-defined]
_MODELS = RegisteredModel.__table__  # type: ignore[attr-defined]
#: One statement for the whole list (the console polls it every second, the supervisor on every
#: reconcile): loading ORM rows and then each row's model and versions cost ~100 lookups for 50.
_LIST = (
    sa.select(
        _DEPLOYMENTS.c.name,
        _MODELS.c.name,
        _SERVING.c.version,
        _STANDBY.c.version,
        _DEPLOYMENTS.c.host,
        _DEPLOYMENTS.c.port,
        _DEPLOYMENTS.c.workers,
        _DEPLOYMENTS.c.options,
        _DEPLOYMENTS.c.updated_at,
    )
    .join(_MODELS, _MODELS.c.id == _DEPLOYMENTS.c.model_id)
    .join(_SERVING, _SERVING.c.id == _DEPLOYMENTS.c.version_id)
    .outerjoin(_STANDBY, _STANDBY.c.id == _DEPLOYMENTS.c.standby_version_id)
    .order_by(_DEPLOYMENTS.c.name)
)


def list_deployments(registry: Registry) -> list[DeploymentInfo]:
    """Every deployment, by name."""
    with registry.db.connect() as conn:
        return [
            DeploymentInfo(
                name=name,
                model=model,
                version=version,
                standby_version=standby,
                host=host,
                port=port or 0,
                workers=workers,
                options=dict(options or {}),
                updated_at=updated_at,
            )
            for name, model, version, standby, host, port, workers, options, updated_at in conn.execute(_LIST)
        ]


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
) -> None:
    """Create or update the deployment `spec.name` and record `kind` in the ledger, atomically."""
    with registry.db.write() as session:
        conn = session.connection()
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
    )
