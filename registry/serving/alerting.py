"""The supervisor's alerting: objectives judged once a second, alert transitions stored, the webhook told.

Every second the points the scraper made since the last pass are counted per deployment
(`registry.monitoring.burn.EventCounts`) and each enabled objective's windows are judged. A window
whose state changes (`burn.next_state`) is written with its ledger event and, when the webhook must
hear of it, its notification, in one transaction (`registry.alerts.save_transition`). The sender
posts what the outbox holds, oldest first, and retries a refused or failed post with a backoff (1 s
doubling to 60 s) until the receiver takes it; the outbox is in the database, so a supervisor killed
at any moment sends, after its restart, what it had not (a kill between the receiver's answer and
the row's update sends that one again: Alertmanager and most relays drop a repeat by fingerprint).

After a restart the supervisor takes over the pending and firing alerts from the database and judges
a deployment only once it has counted a short window's worth of pulls, so an alert neither resolves
nor fires again for want of data. A deployment that is stopped resolves its alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from registry import alert_outbox as outbox
from registry import alert_text
from registry import alerts as store
from registry.alerts import ALERT_NAMES, FIRING, PENDING, PERFORMANCE, RESOLVED, AlertInfo, ObjectiveSpec
from registry.errors import RegistryError
from registry.monitoring.burn import EventCounts, WindowBurn, judge, next_state, reason

if TYPE_CHECKING:
    from registry.serving.supervisor import Supervisor

log = logging.getLogger("modeldeck.alerts")

#: Labelled predictions in the performance window before the realised accuracy counts (else estimated).
MIN_LABELLED = 30
PRUNE_EVERY = 3600.0  # seconds between deletions of old alerts and sent notifications
#: How often objectives, silences and the webhook's URL are read again from the database.
REFRESH_EVERY = 5.0
SEND_TIMEOUT = 5.0
FIRST_RETRY, LAST_RETRY = 1.0, 60.0
NEVER = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"
#: Alertmanager resolves an alert it has not heard of for its resolve_timeout (5 min by default): firing
#: alerts are sent to its API again this often, as Prometheus does.
RESEND_EVERY = 60.0
#: Where an alert is: (deployment, objective kind, severity).
Key = tuple[str, str, str]


class Alerting:
    """Objectives, alert states and webhook notifications of one supervisor."""

    def __init__(self, supervisor: Supervisor, interval: float = 1.0) -> None:
        self.supervisor = supervisor
        self.interval = interval
        self.counts: dict[str, EventCounts] = {}
        self.objectives: dict[str, list[ObjectiveSpec]] = {}
        self.active: dict[Key, AlertInfo] = {}
        self.url: str | None = None
        self._cursors: dict[str, int] = {}
        self._refreshed = 0.0
        self._pruned = 0.0
        self._wake = asyncio.Event()
        self._resent = time.monotonic()

    async def run(self) -> None:
        """Take over the stored alerts, then judge once a second; the sender runs beside."""
        db = self.supervisor.state.db
        for alert in await db(outbox.active_alerts, self.supervisor.registry):
            self.active[alert.deployment, alert.kind, alert.severity] = alert
        self.supervisor.state.spawn_task(self.send())
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except RegistryError as exc:  # the database is busy: judge again next time
                log.warning("alerts not judged: %s", exc)
            except Exception:
                log.exception("alerts not judged")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def tick(self, now: float | None = None) -> None:
        """Count new points, judge every objective, store what changed."""
        now = time.time() if now is None else now
        registry, db = self.supervisor.registry, self.supervisor.state.db
        names = list(self.supervisor.runtimes)
        if now - self._refreshed >= REFRESH_EVERY or set(names) - set(self.objectives):
            self._refreshed = now
            self.objectives = await db(store.all_objectives, registry, names)
            url = await db(store.webhook, registry)
            if url is not None and await db(outbox.notify_unsent, registry, url, payload) > 0:
                self._wake.set()
            self.url = url
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            await db(outbox.prune, registry)
        self._count(now)
        for name in names:
            counts = self.counts.get(name)
            if counts is None:
                continue
            for objective in self.objectives.get(name, []):
                if objective.enabled and counts.covered >= min(w["short"] for w in objective.windows):
                    for window in judge(objective, counts, now):
                        await self._judge(name, objective, window)
        configured = {
            (name, o.kind, str(w["severity"]))
            for name, found in self.objectives.items()
            for o in found
            if o.enabled
            for w in o.windows
        }
        for key, alert in list(self.active.items()):
            if key[0] not in self.supervisor.runtimes and self.supervisor.reconciled.is_set():
                why = "the deployment was stopped"
                await self._change(key, alert, RESOLVED, why, {**alert.figures, "summary": why})
            elif key[0] in self.objectives and key not in configured:
                why = "its objective was turned off or no longer has this window"
                await self._change(key, alert, RESOLVED, why, {**alert.figures, "summary": why})

    def _count(self, now: float) -> None:
        scraper = self.supervisor.scraper
        for name, series in scraper.series.items():
            counts = self.counts.setdefault(name, EventCounts())
            status = (scraper.drift.get(name) or {}).get("status")
            under = self._under_floor(name)
            for point in series.since(self._cursors.get(name, 0)):
                counts.add(point["t"], point, status, scraper.interval, under)
                self._cursors[name] = point["seq"]
        for name in [n for n in self.counts if n not in scraper.series]:
            del self.counts[name]
            self._cursors.pop(name, None)

    def _under_floor(self, name: str) -> bool | None:
        """Whether `name`'s accuracy is under its performance objective's floor: realised from labels
        when at least `MIN_LABELLED` predictions got one, else estimated; None when neither is known
        or the objective is off."""
        objective = next((o for o in self.objectives.get(name, []) if o.kind == PERFORMANCE), None)
        if objective is None or not objective.enabled:
            return None
        scraper = self.supervisor.scraper
        realised = scraper.realised.get(name) or {}
        accuracy = realised.get("accuracy") if (realised.get("labelled") or 0) >= MIN_LABELLED else None
        if accuracy is None:
            accuracy = (scraper.estimates.figures.get(name) or {}).get("accuracy")
        return None if accuracy is None else accuracy < (objective.threshold or 0.0)

    async def _judge(self, name: str, objective: ObjectiveSpec, window: WindowBurn) -> None:
        key = (name, objective.kind, window.severity)
        alert = self.active.get(key)
        state = next_state(alert.state if alert else None, window)
        if state is None or (alert is not None and state == alert.state):
            return
        await self._change(key, alert, state, reason(objective, window), window.figures())

    async def _change(
        self, key: Key, alert: AlertInfo | None, state: str, why: str, figures: dict[str, Any]
    ) -> None:
        name, kind, severity = key
        runtime = self.supervisor.runtimes.get(name)
        model = runtime.spec.model if runtime else alert.model if alert else name
        version = runtime.spec.version if runtime else alert.version if alert else 0
        saved = await self.supervisor.state.db(
            outbox.save_transition,
            self.supervisor.registry,
            alert,
            state,
            deployment=name,
            model=model,
            version=version,
            kind=kind,
            severity=severity,
            reason=why,
            figures=figures,
            url=self.url,
            payload=payload,
        )
        log.warning("alert %s: %s %s (%s): %s", state, name, kind, severity, why)
        if state in (PENDING, FIRING):
            self.active[key] = saved
        else:
            self.active.pop(key, None)
        if saved.notified == state:
            self._wake.set()

    async def send(self) -> None:
        """Post the outbox's notifications until each is taken, retrying with a backoff."""
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT, trust_env=False) as client:
            while True:
                self._wake.clear()
                try:
                    await self._send_due(client)
                    await self._resend(client)
                except RegistryError as exc:
                    log.warning("alert notifications not sent: %s", exc)
                except Exception:  # a bug must not end the sending for good: log it, go on
                    log.exception("alert notifications not sent")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), FIRST_RETRY)

    async def _send_due(self, client: httpx.AsyncClient) -> None:
        """Post what is due to the webhook set now (read again: it may have changed since the last
        refresh; none set: they wait)."""
        registry, db = self.supervisor.registry, self.supervisor.state.db
        due = await db(outbox.due_deliveries, registry)
        url = await db(store.webhook, registry) if due else None
        if url is None:
            return
        for delivery in due:
            assert delivery.id is not None
            error = await _post(client, url, delivery.payload)
            retry = min(LAST_RETRY, FIRST_RETRY * 2**delivery.attempts)
            await db(outbox.delivery_done, registry, delivery.id, error, retry)
            if error is not None:
                log.warning(
                    "alert webhook %s refused notification %d (attempt %d, again in %g s): %s",
                    alert_text.shown_url(url),
                    delivery.id,
                    delivery.attempts + 1,
                    retry,
                    error,
                )

    async def _resend(self, client: httpx.AsyncClient) -> None:
        """Firing alerts again to an Alertmanager's API (best effort: the outbox has the transitions)."""
        url = self.url
        if url is None or not is_alertmanager_api(url) or time.monotonic() - self._resent < RESEND_EVERY:
            return
        self._resent = time.monotonic()
        firing = [a for a in self.active.values() if a.state == FIRING and a.notified == FIRING]
        if firing:
            error = await _post(client, url, {"alerts": [payload(a)["alerts"][0] for a in firing]})
            if error is not None:
                log.warning("firing alerts not sent again to %s: %s", alert_text.shown_url(url), error)


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> str | None:
    """None when the receiver took it (2xx), else why not. A URL ending in `/api/v2/alerts` is an
    Alertmanager's own API, which takes the alert list."""
    content = [_postable(a) for a in body["alerts"]] if is_alertmanager_api(url) else body
    try:
        response = await client.post(url, json=content)
    except Exception as exc:  # unreachable, refused, timed out, or a URL httpx cannot use: retried
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if response.is_success:
        return None
    where = (
        f" (to {response.headers['location']})"
        if response.is_redirect and "location" in response.headers
        else ""
    )
    return f"HTTP {response.status_code}{where}: {response.text[:200]}"


def is_alertmanager_api(url: str) -> bool:
    return url.rstrip("/").endswith("/api/v2/alerts")


def _postable(entry: dict[str, Any]) -> dict[str, Any]:
    """An alert as Alertmanager's API takes it."""
    keys = ("labels", "annotations", "startsAt", "endsAt", "generatorURL")
    return {k: entry[k] for k in keys if entry[k] != NEVER}


def payload(alert: AlertInfo) -> dict[str, Any]:
    """Alertmanager's webhook message (version 4) for one alert's transition."""
    labels = {
        "alertname": ALERT_NAMES[alert.kind],
        "deployment": alert.deployment,
        "model": alert.model,
        "version": str(alert.version),
        "objective": alert.kind,
        "severity": alert.severity,
        "service": "modeldeck",
    }
    annotations = {
        "summary": f"{alert.deployment} ({alert.model} v{alert.version}): {alert.kind} objective "
        f"{'burning' if alert.state == FIRING else 'recovered'} ({alert.severity})",
        "description": alert.reason,
        "window": str(alert.figures.get("window", "")),
    }
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    entry = {
        "status": alert.state,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _rfc3339(alert.fired_at or alert.started_at),
        "endsAt": _rfc3339(alert.ended_at) if alert.ended_at else NEVER,
        "generatorURL": "",
        "fingerprint": fingerprint,
    }
    group = {"alertname": labels["alertname"], "deployment": alert.deployment}
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": alert.state,
        "receiver": "modeldeck",
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [entry],
    }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
