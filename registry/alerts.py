"""Objectives, alerts, silences and the alert webhook as the registry stores them.

An objective says what share of a deployment's events must be good over time, as the SRE workbook's
service-level objectives do: `availability` (requests not answered 5xx), `latency` (requests answered
within `threshold` seconds), `drift` (seconds in which the drift status is below the level
`threshold`: 1 warn, 2 drift) and `performance` (seconds in which a classifier's accuracy, realised
from labels or else estimated, is at least `threshold`; off until set). The supervisor judges each
with multi-window burn rates (`registry.monitoring.burn`): an alert fires when the error budget burns
at least `burn` times too fast over both the long and the short window of one of the objective's
`windows`, and resolves when the short window no longer does. Every deployment has every kind, at
its default until set.

Alerts live in the `alert` table (pending, firing, then resolved; or cleared when a pending one
recovers before firing), each transition also in the ledger; webhook notifications are outbox rows
(`alert_delivery`) written in the same transaction as the transition, so none is lost when the
supervisor dies, and sent until the receiver takes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from registry import reads, writes
from registry.actor import current_actor
from registry.errors import RegistryError
from registry.info import AlertInfo, SilenceInfo
from registry.schema import (
    Alert,
    AlertDelivery,
    Deployment,
    Objective,
    RegisteredModel,
    Setting,
    Silence,
    utcnow,
)

if TYPE_CHECKING:
    from registry.core import Registry

AVAILABILITY, LATENCY, DRIFT, PERFORMANCE = "availability", "latency", "drift", "performance"
KINDS = (AVAILABILITY, LATENCY, DRIFT, PERFORMANCE)
PENDING, FIRING, RESOLVED, CLEARED = "pending", "firing", "resolved", "cleared"
ACTIVE_STATES = (PENDING, FIRING)
DRIFT_LEVELS = {"warn": 1.0, "drift": 2.0}
WEBHOOK = "alert_webhook"
#: Each kind's alert name, in webhook notifications and in the Prometheus rules alike.
ALERT_NAMES = {
    AVAILABILITY: "ModeldeckAvailability",
    LATENCY: "ModeldeckLatency",
    DRIFT: "ModeldeckDrift",
    PERFORMANCE: "ModeldeckPerformance",
}

#: The SRE workbook's two paging pairs for a 30-day objective: 2% of the budget in an hour, 5% in six.
SRE_WINDOWS: list[dict[str, Any]] = [
    {"long": 3600.0, "short": 300.0, "burn": 14.4, "severity": "critical"},
    {"long": 21600.0, "short": 1800.0, "burn": 6.0, "severity": "warning"},
]
#: Drift and performance are states, not rates of failures: warn when one held most of half an hour.
DRIFT_WINDOWS: list[dict[str, Any]] = [{"long": 1800.0, "short": 300.0, "burn": 1.0, "severity": "warning"}]
LONGEST_WINDOW = 21600.0
#: The latency histogram's largest bound (`registry.monitoring.metrics.LATENCY_BUCKETS[-1]`): slower
#: requests all fall in its +Inf bucket, so a threshold above it cannot be judged.
MAX_LATENCY = 2.5
#: Ended alerts are kept this long (the ledger keeps their transitions for good), sent notifications less.
ALERT_RETENTION, SENT_RETENTION = 90 * 86400.0, 7 * 86400.0
_SEVERITY = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ObjectiveError(RegistryError):
    """An objective, silence or webhook that cannot be stored as given (the message says which part)."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective of one deployment; `default` when nobody set it."""

    deployment: str
    kind: str
    target: float
    threshold: float | None
    windows: list[dict[str, Any]]
    enabled: bool = True
    default: bool = False
    author: str = ""

    @property
    def budget(self) -> float:
        """The share of events that may be bad."""
        return 1.0 - self.target

    def describe(self) -> str:
        """One line, as `modeldeck objectives` prints it."""
        if not self.enabled:
            return f"{self.kind}: off"
        if self.kind == LATENCY:
            what = f"{format_percent(self.target)} of requests within {(self.threshold or 0) * 1000:g} ms"
        elif self.kind == DRIFT:
            level = next((k for k, v in DRIFT_LEVELS.items() if v == self.threshold), "drift")
            what = f"drift status below {level!r} {format_percent(self.target)} of the time"
        elif self.kind == PERFORMANCE:
            floor = format_percent(self.threshold or 0.0)
            share = format_percent(self.target)
            what = f"accuracy at least {floor} (realised, else estimated) {share} of the time"
        else:
            what = f"{format_percent(self.target)} of requests not 5xx"
        pairs = ", ".join(
            f"{w['severity']} at {w['burn']:g}x over {format_duration(w['long'])}/"
            f"{format_duration(w['short'])}"
            for w in self.windows
        )
        return f"{self.kind}: {what} ({pairs})" + (" [default]" if self.default else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_objective(deployment: str, kind: str) -> ObjectiveSpec:
    """What `kind` is for a deployment nobody set it for."""
    if kind == AVAILABILITY:
        return ObjectiveSpec(deployment, kind, 0.995, None, list(SRE_WINDOWS), default=True)
    if kind == LATENCY:
        return ObjectiveSpec(deployment, kind, 0.99, 0.5, list(SRE_WINDOWS), default=True)
    if kind == DRIFT:
        return ObjectiveSpec(deployment, kind, 0.5, DRIFT_LEVELS["drift"], list(DRIFT_WINDOWS), default=True)
    if kind == PERFORMANCE:  # no accuracy is right for every model: off until set
        return ObjectiveSpec(deployment, kind, 0.5, 0.8, list(DRIFT_WINDOWS), enabled=False, default=True)
    raise ObjectiveError(f"no objective kind {kind!r}; choose one of {', '.join(KINDS)}")


# ---------------------------------------------------------------------- objectives
def objectives(registry: Registry, deployment: str) -> list[ObjectiveSpec]:
    """Every kind's objective of the deployment `deployment`, stored or default."""
    with registry.db.read() as session:
        _model_of(session, deployment)
    return all_objectives(registry, [deployment])[deployment]


def all_objectives(registry: Registry, deployments: list[str]) -> dict[str, list[ObjectiveSpec]]:
    """Objectives of each of `deployments` (one query)."""
    with registry.db.read() as session:
        rows = session.exec(select(Objective).where(col(Objective.deployment).in_(deployments))).all()
    stored = {(r.deployment, r.kind): r for r in rows}
    out: dict[str, list[ObjectiveSpec]] = {}
    for name in deployments:
        out[name] = [
            _spec(stored[name, kind]) if (name, kind) in stored else default_objective(name, kind)
            for kind in KINDS
        ]
    return out


def set_objective(
    registry: Registry,
    deployment: str,
    kind: str,
    *,
    target: float | None = None,
    threshold: float | None = None,
    enabled: bool | None = None,
    windows: list[dict[str, Any]] | None = None,
    reason: str = "",
) -> ObjectiveSpec:
    """Change `kind`'s objective of `deployment` (what is not given keeps its current value) and record
    it in the ledger; `target` is a share (0.999), `threshold` seconds (latency), a level (drift) or
    the accuracy floor (performance)."""
    change = {"target": target, "threshold": threshold, "enabled": enabled, "windows": windows}
    return set_objectives(registry, deployment, {kind: change}, reason=reason)[0]


def set_objectives(
    registry: Registry, deployment: str, changes: dict[str, dict[str, Any]], *, reason: str = ""
) -> list[ObjectiveSpec]:
    """Change several kinds at once (`{kind: {"target": ..., ...}}`, None keeping a value): all are
    checked before any is written, and written in one transaction, each with its ledger event."""
    unknown = [k for k in changes if k not in KINDS]
    if unknown:
        raise ObjectiveError(f"no objective kind {unknown[0]!r}; choose one of {', '.join(KINDS)}")
    current = {o.kind: o for o in objectives(registry, deployment)}
    specs = []
    for kind, change in changes.items():
        kept = {k: v for k, v in change.items() if v is not None}
        spec = replace(current[kind], **kept, default=False, author=current_actor())
        _check(spec)
        specs.append(spec)
    with registry.db.write() as session:
        model = _model_of(session, deployment)
        for spec in specs:
            row = session.exec(
                select(Objective).where(Objective.deployment == deployment, Objective.kind == spec.kind)
            ).first() or Objective(deployment=deployment, kind=spec.kind, target=spec.target)
            row.enabled, row.target, row.threshold = spec.enabled, spec.target, spec.threshold
            row.windows, row.author, row.updated_at = [dict(w) for w in spec.windows], spec.author, utcnow()
            session.add(row)
            session.flush()
            writes.record(
                session.connection(),
                model,
                "objective_set",
                spec.author,
                deployment=deployment,
                reason=reason,
                detail={"objective": spec.describe(), **spec.as_dict()},
            )
    return specs


#: What `modeldeck objectives set` and the console take, as KEY=VALUE words of one line.
TEXT_KEYS = ("availability", "latency", "latency-target", "drift", "performance", "windows")


def set_from_text(registry: Registry, deployment: str, text: str, *, reason: str = "") -> list[ObjectiveSpec]:
    """Objectives from one line: `availability=99.9 latency=250ms latency-target=99 drift=warn
    windows=1h/5m@14.4:critical,6h/30m@6` (`off` turns a kind off)."""
    given: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or key not in TEXT_KEYS or not value:
            raise ObjectiveError(f"{word!r}: write KEY=VALUE with KEY one of {', '.join(TEXT_KEYS)}")
        given[key.replace("-", "_")] = value
    return set_objectives(registry, deployment, parse_changes(**given), reason=reason)


def parse_changes(
    *,
    availability: str | None = None,
    latency: str | None = None,
    latency_target: str | None = None,
    drift: str | None = None,
    performance: str | None = None,
    windows: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The changes a user typed (`99.9`, `250ms`, `warn`, `off`, `1h/5m@14.4:critical,...`) per kind;
    `windows` go to the kinds set here, or to availability and latency when only they are given."""
    changes: dict[str, dict[str, Any]] = {}
    if availability is not None:
        changes[AVAILABILITY] = _switch(availability, lambda: {"target": parse_percent(availability)})
    if latency is not None or latency_target is not None:
        change = (
            {} if latency is None else _switch(latency, lambda: {"threshold": parse_duration(latency, "ms")})
        )
        if latency_target is not None:
            change["target"] = parse_percent(latency_target)
        changes[LATENCY] = change
    if drift is not None:
        if drift != "off" and drift not in DRIFT_LEVELS:
            raise ObjectiveError(f"drift takes warn, drift or off; got {drift!r}")
        changes[DRIFT] = _switch(drift, lambda: {"threshold": DRIFT_LEVELS[drift]})
    if performance is not None:
        changes[PERFORMANCE] = _switch(performance, lambda: {"threshold": parse_percent(performance)})
    if windows is not None:  # alone: the kinds that are rates of failures (drift and performance are states)
        parsed = parse_windows(windows)
        for kind in list(changes) or [AVAILABILITY, LATENCY]:
            changes.setdefault(kind, {})["windows"] = parsed
    if not changes:
        raise ObjectiveError(f"nothing to set: give {', '.join(TEXT_KEYS)}")
    return changes


def _switch(value: str, settings: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return {"enabled": False} if value == "off" else {"enabled": True, **settings()}


def parse_windows(text: str) -> list[dict[str, Any]]:
    """`1h/5m@14.4:critical,6h/30m@6` as burn-rate windows (severity defaults to critical for the first,
    warning for the second)."""
    out = []
    for index, part in enumerate(text.split(",")):
        spans, at, rest = part.strip().partition("@")
        long, slash, short = spans.partition("/")
        burn, _, severity = rest.partition(":")
        if not (at and slash and burn):
            raise ObjectiveError(
                f"a window is LONG/SHORT@BURN[:SEVERITY], e.g. 1h/5m@14.4:critical; got {part!r}"
            )
        try:
            factor = float(burn) if burn.isascii() else math.nan
        except ValueError:
            raise ObjectiveError(f"{burn!r} is not a burn rate (a number, e.g. 14.4)") from None
        out.append(
            {
                "long": parse_duration(long),
                "short": parse_duration(short),
                "burn": factor,
                "severity": severity or ("critical", "warning")[min(index, 1)],
            }
        )
    return out


def reset_objectives(registry: Registry, deployment: str, kind: str | None = None) -> None:
    """Back to the defaults: `kind`, or every kind."""
    if kind is not None and kind not in KINDS:
        raise ObjectiveError(f"no objective kind {kind!r}; choose one of {', '.join(KINDS)}")
    with registry.db.write() as session:
        model = _model_of(session, deployment)
        query = select(Objective).where(Objective.deployment == deployment)
        if kind is not None:
            query = query.where(Objective.kind == kind)
        for row in session.exec(query).all():
            session.delete(row)
        writes.record(
            session.connection(),
            model,
            "objective_reset",
            current_actor(),
            deployment=deployment,
            detail={"kind": kind or "all"},
        )


def _check(spec: ObjectiveSpec) -> None:
    """An ObjectiveError naming the objective and the part of it that cannot work."""
    try:
        _check_parts(spec)
    except ObjectiveError as exc:
        raise ObjectiveError(f"{spec.kind} objective: {exc}") from None


def _check_parts(spec: ObjectiveSpec) -> None:
    if not (math.isfinite(spec.target) and 0.0 < spec.target < 1.0):
        raise ObjectiveError(f"the target must be between 0 and 100% (exclusive); got {spec.target:.6g}")
    threshold = spec.threshold if spec.threshold is not None and math.isfinite(spec.threshold) else None
    if spec.kind == LATENCY and not (threshold and 0 < threshold <= MAX_LATENCY):
        raise ObjectiveError(
            f"the latency threshold must be a time above 0 and at most {MAX_LATENCY:g} s (the latency "
            "histogram's largest bound: slower requests are not told apart), e.g. 250ms"
        )
    if spec.kind == DRIFT and threshold not in DRIFT_LEVELS.values():
        raise ObjectiveError("the drift level must be warn or drift")
    if spec.kind == PERFORMANCE and not (threshold and 0.0 < threshold < 1.0):
        raise ObjectiveError("the accuracy floor must be between 0 and 100% (exclusive), e.g. 90")
    if not spec.windows:
        raise ObjectiveError("it needs at least one burn-rate window")
    severities = [str(w.get("severity")) for w in spec.windows]
    if len(set(severities)) != len(severities):
        raise ObjectiveError(
            f"each window needs a severity of its own (an alert is one per severity); got {severities}"
        )
    for window in spec.windows:
        if set(window) != {"long", "short", "burn", "severity"}:
            raise ObjectiveError("each window has long, short, burn and severity")
        if not _SEVERITY.fullmatch(str(window["severity"])):
            raise ObjectiveError(
                f"a severity is a short word (letters, digits, - and _); got {window['severity']!r}"
            )
        long, short, burn = (float(window[k]) for k in ("long", "short", "burn"))
        if not (math.isfinite(long) and math.isfinite(short) and 1.0 <= short <= long <= LONGEST_WINDOW):
            raise ObjectiveError(
                "a window's short span must be at least 1s (the supervisor pulls once a second) and at "
                f"most its long one, which is at most {format_duration(LONGEST_WINDOW)}; "
                f"got {format_duration(long)}/{format_duration(short)}"
            )
        if not (math.isfinite(burn) and burn > 0) or burn * spec.budget > 1.0:
            raise ObjectiveError(
                f"burn rate {burn:g} can never be reached with a budget of {format_percent(spec.budget)} "
                f"(at most {1 / spec.budget:.3g})"
            )


def _spec(row: Objective) -> ObjectiveSpec:
    return ObjectiveSpec(
        row.deployment, row.kind, row.target, row.threshold, list(row.windows), row.enabled, author=row.author
    )


def _model_of(session: Any, deployment: str, required: bool = True) -> str:
    """The model `deployment` serves; for a deployment gone since (`required` False), its own name."""
    found = session.exec(
        select(RegisteredModel.name).join(Deployment).where(Deployment.name == deployment)
    ).first()
    if found is None and required:
        raise ObjectiveError(f"no deployment named {deployment!r} (deploy it first)")
    return deployment if found is None else str(found)


# ---------------------------------------------------------------------- silences
def add_silence(
    registry: Registry, deployment: str, duration: float, *, kind: str | None = None, reason: str = ""
) -> SilenceInfo:
    """Silence `deployment`'s alerts ("*": every deployment's) of `kind` (None: every kind) for
    `duration` seconds: they still change state and show, but the webhook is not told."""
    if kind is not None and kind not in KINDS:
        raise ObjectiveError(f"no objective kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not duration > 0:
        raise ObjectiveError("a silence needs a positive duration (e.g. 2h)")
    now = utcnow()
    row = Silence(
        deployment=deployment,
        kind=kind,
        author=current_actor(),
        reason=reason,
        created_at=now,
        expires_at=now + timedelta(seconds=duration),
    )
    with registry.db.write() as session:
        model = _model_of(session, deployment) if deployment != "*" else "*"
        session.add(row)
        session.flush()
        info = _silence(row)
        writes.record(
            session.connection(),
            model,
            "silence_added",
            row.author,
            deployment=None if deployment == "*" else deployment,
            reason=reason,
            detail=info.as_dict(),
        )
    return info


def end_silence(registry: Registry, silence_id: int) -> SilenceInfo:
    """End a silence now."""
    with registry.db.write() as session:
        row = session.get(Silence, silence_id)
        if row is None:
            raise ObjectiveError(f"no silence {silence_id}")
        row.expires_at = min(_aware(row.expires_at), utcnow())
        session.add(row)
        info = _silence(row)
        writes.record(
            session.connection(),
            row.deployment if row.deployment == "*" else _model_of(session, row.deployment, required=False),
            "silence_ended",
            current_actor(),
            deployment=None if row.deployment == "*" else row.deployment,
            detail=info.as_dict(),
        )
    return info


def silences(registry: Registry, include_expired: bool = False) -> list[SilenceInfo]:
    """Silences in force (or all), newest first."""
    with registry.db.reads() as run:
        found = reads.silences(run)
    now = utcnow()
    return found if include_expired else [s for s in found if s.expires_at > now]


def _silence(row: Silence) -> SilenceInfo:
    assert row.id is not None
    return SilenceInfo(
        row.id,
        row.deployment,
        row.kind,
        row.author,
        row.reason,
        _aware(row.created_at),
        _aware(row.expires_at),
    )


# ---------------------------------------------------------------------- alerts
def alerts(registry: Registry, *, active_only: bool = False, limit: int = 100) -> list[AlertInfo]:
    """Alerts newest first (pending and firing ones only, with `active_only`), each marked silenced
    when a silence covers it now."""
    with registry.db.reads() as run:
        return reads.alerts(run, active_only, limit)


def alert_info(row: Alert, silenced: bool = False) -> AlertInfo:
    assert row.id is not None
    return AlertInfo(
        row.id,
        row.deployment,
        row.model,
        row.version,
        row.kind,
        row.severity,
        row.state,
        _aware(row.started_at),
        _aware(row.fired_at) if row.fired_at else None,
        _aware(row.ended_at) if row.ended_at else None,
        row.reason,
        dict(row.figures),
        row.notified,
        silenced,
    )


def pending_deliveries(registry: Registry) -> int:
    """Webhook notifications not yet taken by the receiver."""
    with registry.db.read() as session:
        return len(
            session.exec(select(AlertDelivery.id).where(col(AlertDelivery.delivered_at).is_(None))).all()
        )


# ---------------------------------------------------------------------- transitions (the supervisor's)
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
    queued = 0
    with registry.db.write() as session:
        quiet = _silences_in(session, now)
        rows = session.exec(select(Alert).where(Alert.state == FIRING, Alert.notified != FIRING)).all()
        for row in rows:
            if not any(s.matches(row.deployment, row.kind, now) for s in quiet):
                _enqueue(session, row, url, payload, False)
                queued += 1
    return queued


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
    return [d for d in first.values() if _aware(d.next_attempt_at) <= now][:limit]


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
    return [_silence(r) for r in session.exec(select(Silence).where(Silence.expires_at > now)).all()]


# ---------------------------------------------------------------------- the webhook
def set_webhook(registry: Registry, url: str | None) -> int:
    """Where alert notifications go (Alertmanager's webhook JSON; to an Alertmanager's own
    `/api/v2/alerts` its alert list), or nowhere with None: the notifications not yet taken are then
    discarded (their number is returned). Queued ones go to the URL set when they are sent."""
    if url is not None:
        check_url(url)
    with registry.db.write() as session:
        row = session.get(Setting, WEBHOOK) or Setting(key=WEBHOOK)
        row.value, row.updated_at = {"url": url, "author": current_actor()}, utcnow()
        session.add(row)
        discarded = 0
        if url is None:
            for delivery in session.exec(
                select(AlertDelivery).where(col(AlertDelivery.delivered_at).is_(None))
            ):
                delivery.delivered_at, delivery.last_error = utcnow(), "discarded: the webhook was turned off"
                session.add(delivery)
                discarded += 1
    return discarded


def check_url(url: str) -> None:
    """An ObjectiveError unless `url` is an http(s) URL a client can post to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or url != url.strip()
        or any(c.isspace() for c in url)
        or len(url) > 2048
    ):
        raise ObjectiveError(
            "the webhook must be an http(s) URL with a host (and a port from 1 to 65535); "
            f"got {shown_url(url)!r}"
        )


def shown_url(url: str) -> str:
    """`url` with any password in it replaced by `***` (for output and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def webhook(registry: Registry) -> str | None:
    """The alert webhook's URL, or None."""
    with registry.db.read() as session:
        row = session.get(Setting, WEBHOOK)
    return None if row is None else row.value.get("url")


# ---------------------------------------------------------------------- text forms
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
MAX_DURATION = 3650 * 86400.0  # ten years: a silence, a window or a threshold longer is a typo
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """Seconds from "250ms", "30s", "5m", "2h", "1d" (a bare number is in `default_unit`)."""
    found = _DURATION.fullmatch(text) if text.isascii() else None
    if not found:
        raise ObjectiveError(f"{text!r} is not a duration (e.g. 250ms, 30s, 5m, 2h)")
    seconds = float(found.group(1)) * _UNITS[found.group(2) or default_unit]
    if seconds > MAX_DURATION:
        raise ObjectiveError(f"{text!r} is longer than {format_duration(MAX_DURATION)}")
    return seconds


def parse_percent(text: str) -> float:
    """A share from "99.9" or "99.9%"."""
    try:
        value = float(text.strip().rstrip("%")) if text.isascii() else math.nan
    except ValueError:
        raise ObjectiveError(f"{text!r} is not a percentage (e.g. 99.9)") from None
    if not 0 < value < 100:  # (NaN too)
        raise ObjectiveError(f"a target must be between 0 and 100 (exclusive); got {text}")
    return value / 100.0


def format_percent(share: float) -> str:
    """ "99.9%": a share as a percentage, no trailing zeros."""
    return f"{share * 100:.6g}%"


def format_duration(seconds: float) -> str:
    """ "2h", "5m", "90s": the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes of the UTC time written."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
