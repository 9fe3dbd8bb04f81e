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

from sqlmodel import col, select

from registry import reads, writes
from registry.actor import current_actor
from registry.alert_text import (
    check_url,
    format_duration,
    format_percent,
    parse_duration,
    parse_percent,
    parse_windows,
)
from registry.errors import ObjectiveError
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
_SEVERITY = re.compile(r"[A-Za-z0-9_-]{1,32}")


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
        info = silence_info(row)
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
        row.expires_at = min(as_aware(row.expires_at), utcnow())
        session.add(row)
        info = silence_info(row)
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


def silence_info(row: Silence) -> SilenceInfo:
    assert row.id is not None
    return SilenceInfo(
        row.id,
        row.deployment,
        row.kind,
        row.author,
        row.reason,
        as_aware(row.created_at),
        as_aware(row.expires_at),
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
        as_aware(row.started_at),
        as_aware(row.fired_at) if row.fired_at else None,
        as_aware(row.ended_at) if row.ended_at else None,
        row.reason,
        dict(row.figures),
        row.notified,
        silenced,
    )


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


def webhook(registry: Registry) -> str | None:
    """The alert webhook's URL, or None."""
    with registry.db.read() as session:
        row = session.get(Setting, WEBHOOK)
    return None if row is None else row.value.get("url")


def as_aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes of the UTC time written."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
