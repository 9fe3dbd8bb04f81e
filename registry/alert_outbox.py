"""The supervisor's side of alerts: each transition written with its ledger event and, when the webhook
must hear of it, its notification (an outbox row), in one transaction; the outbox read in order,
marked as the receiver takes it, and pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from registry import writes
from registry.alerts import CLEARED, FIRING, RESOLVED, alert_info, alerts, as_aware, silence_info
from registry.info import AlertInfo, SilenceInfo
from registry.schema import Alert, AlertDelivery, Silence, utcnow

if TYPE_CHECKING:
    from registry.core import Registry

#: Ended alerts are kept this long (the ledger keeps their transitions for good), sent notifications less.
ALERT_RETENTION, SENT_RETENTION = 90 * 86400.0, 7 * 86400.0

Payload = Callable[[AlertInfo], dict[str, Any]]


def active_alerts(registry: Registry) -> list[AlertInfo]:
    """Pending and firing alerts (what a starting supervisor takes over)."""
    return alerts(registry, active_only=True, limit=100_000)


def save_transition(
    registry: Registry,
    alert: AlertInfo | None,
    state: str,
    *,
    deployment: str,
    model: str,
    version: int,
    kind: str,
    severity: str,
    reason: str,
    figures: dict[str, Any],
    url: str | None,
    payload: Payload,
) -> AlertInfo:
    """Write an alert's new `state` (a new alert when `alert` is None), its ledger event and, when the
    webhook must hear of it, its notification: all in one transaction."""
    now = utcnow()
    with registry.db.write() as session:
        row = session.get(Alert, alert.id) if alert is not None else None
        if row is None:
            row = Alert(
                deployment=deployment,
                model=model,
                version=version,
                kind=kind,
                severity=severity,
                state=state,
                started_at=now,
            )
        row.state, row.reason, row.figures = state, reason, figures
        if state == FIRING and row.fired_at is None:
            row.fired_at, row.version = now, version
        if state in (RESOLVED, CLEARED):
            row.ended_at = now
        session.add(row)
        session.flush()
        silenced = any(s.matches(deployment, kind, now) for s in _silences_in(session, now))
        info = alert_info(row, silenced)
        if url is not None and _worth_telling(state, row.notified, silenced):
            info = _enqueue(session, row, url, payload, silenced)
        writes.record(
            session.connection(),
            model,
            f"alert_{state}",
            "supervisor",
            deployment=deployment,
            to_version=version,
            reason=reason,
            detail={"alert": row.id, "objective": kind, "severity": severity, **figures},
        )
    return info


def notify_unsent(registry: Registry, url: str, payload: Payload) -> int:
    """Queue the notifications alerts are owed (their silence ended, or the webhook was set since):
    a firing alert the webhook has not heard fire. The number queued."""
    now = utcnow()
    unsent = select(Alert).where(Alert.state == FIRING, Alert.notified != FIRING)
    with registry.db.read() as session:  # the supervisor asks every few seconds: write only when owed
        quiet = _silences_in(session, now)
        owed = [
            r.id for r in session.exec(unsent) if not any(s.matches(r.deployment, r.kind, now) for s in quiet)
        ]
    if not owed:
        return 0
    with registry.db.write() as session:
        rows = session.exec(unsent.where(col(Alert.id).in_(owed))).all()
        for row in rows:
            _enqueue(session, row, url, payload, False)
    return len(rows)


def due_deliveries(registry: Registry, limit: int = 20) -> list[AlertDelivery]:
    """Notifications to send now, oldest first, one per alert: an alert's next waits for the one
    before it (its resolved never overtakes its firing)."""
    with registry.db.read() as session:
        query = (
            select(AlertDelivery)
            .where(col(AlertDelivery.delivered_at).is_(None))
            .order_by(col(AlertDelivery.id))
        )
        waiting = list(session.exec(query).all())
    now, first = utcnow(), dict[int, AlertDelivery]()
    for delivery in waiting:
        first.setdefault(delivery.alert_id, delivery)
    return [d for d in first.values() if as_aware(d.next_attempt_at) <= now][:limit]


def delivery_done(registry: Registry, delivery_id: int, error: str | None, retry_in: float = 0.0) -> None:
    """The receiver took it (`error` None), or not: try again in `retry_in` seconds."""
    with registry.db.write() as session:
        row = session.get(AlertDelivery, delivery_id)
        if row is None:
            return
        row.attempts += 1
        if error is None:
            row.delivered_at = utcnow()
        else:
            row.last_error, row.next_attempt_at = error[:500], utcnow() + timedelta(seconds=retry_in)
        session.add(row)


def prune(registry: Registry, keep_alerts: float = ALERT_RETENTION, keep_sent: float = SENT_RETENTION) -> int:
    """Delete ended alerts older than `keep_alerts` seconds (the ledger keeps their transitions) and
    notifications taken more than `keep_sent` seconds ago; the rows deleted."""
    now = utcnow()
    with registry.db.write() as session:
        old = session.exec(
            select(Alert).where(
                col(Alert.state).in_((RESOLVED, CLEARED)),
                col(Alert.ended_at) < now - timedelta(seconds=keep_alerts),
            )
        ).all()
        owed = set(
            session.exec(select(AlertDelivery.alert_id).where(col(AlertDelivery.delivered_at).is_(None)))
        )
        old = [row for row in old if row.id not in owed]  # an alert the webhook is still owed stays
        sent = session.exec(
            select(AlertDelivery).where(col(AlertDelivery.delivered_at) < now - timedelta(seconds=keep_sent))
        ).all()
        for row in [*old, *sent]:
            session.delete(row)
    return len(old) + len(sent)


def _worth_telling(state: str, notified: str, silenced: bool) -> bool:
    """Firing unless silenced; resolved whenever the webhook heard it fire (a silence must not leave
    an incident open on the receiver's side)."""
    return (state == FIRING and not silenced) or (state == RESOLVED and notified == FIRING)


def _enqueue(session: Any, row: Alert, url: str, payload: Payload, silenced: bool) -> AlertInfo:
    row.notified = row.state
    session.add(row)
    session.flush()
    info = alert_info(row, silenced)
    session.add(AlertDelivery(alert_id=info.id, status=row.state, url=url, payload=payload(info)))
    return info


def _silences_in(session: Any, now: datetime) -> list[SilenceInfo]:
    return [silence_info(r) for r in session.exec(select(Silence).where(Silence.expires_at > now)).all()]


def pending_deliveries(registry: Registry) -> int:
    """Webhook notifications not yet taken by the receiver."""
    with registry.db.read() as session:
        return len(
            session.exec(select(AlertDelivery.id).where(col(AlertDelivery.delivered_at).is_(None))).all()
        )
