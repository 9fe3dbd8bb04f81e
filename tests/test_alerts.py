"""Objectives, burn rates, alert transitions and their notifications, without a supervisor.

The burn-rate arithmetic is checked on made-up pulls (a second each); the registry's part (objectives,
silences, transitions, the outbox) against a real SQLite and PostgreSQL registry; the command line as a
user runs it. `test_alerting.py` runs it all under a real supervisor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_modeldeck

from registry import Registry, alert_text
from registry import alert_outbox as outbox
from registry import alerts as store
from registry.alerts import (
    AVAILABILITY,
    CLEARED,
    DRIFT,
    FIRING,
    LATENCY,
    PENDING,
    PERFORMANCE,
    RESOLVED,
    ObjectiveError,
    ObjectiveSpec,
)
from registry.deployments import save_deployment
from registry.info import DeploymentInfo
from registry.monitoring.burn import EventCounts, judge, next_state, reason, slower_than
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.serving.alerting import payload

LIVE = DeploymentInfo("live", "iris", 1, None, "127.0.0.1", 9999, 1)
WINDOWS = [{"long": 60.0, "short": 10.0, "burn": 2.0, "severity": "critical"}]


def availability(target: float = 0.99, windows: list[dict[str, Any]] = WINDOWS) -> ObjectiveSpec:
    return ObjectiveSpec("d", AVAILABILITY, target, None, windows)


def point(requests: float, errors: float = 0.0, buckets: list[float] | None = None) -> dict[str, Any]:
    return {"requests": requests, "server_errors": errors, "latency_buckets": buckets or []}


def states(objective: ObjectiveSpec, per_second: list[tuple[float, float]], start: float = 0.0) -> list[Any]:
    """The alert state after each second of (requests, 5xx) pulls, judged as the supervisor does."""
    counts, state, seen = EventCounts(), None, []
    for second, (requests, errors) in enumerate(per_second, start=1):
        counts.add(start + second, point(requests, errors), None, 1.0)
        [window] = judge(objective, counts, start + second)
        state = next_state(state if state in (PENDING, FIRING) else None, window)
        seen.append(state)
    return seen


def test_an_alert_needs_both_windows_burning_and_ends_with_the_short_one() -> None:
    good, failing = (100.0, 0.0), (100.0, 7.0)  # 7% failing against a 1% budget: burning 7x
    seen = states(availability(), [good] * 120 + [failing] * 30 + [good] * 30)
    assert set(seen[:120]) == {None}
    # 2% bad is a 2x burn: the short window (10 s) gets there after 3 s of failures (2.1%), the long
    # one (60 s) after 18 s (2.1%); pending in between.
    assert seen.index(PENDING) == 120 + 2
    fired = seen.index(FIRING)
    assert fired == 120 + 17 and set(seen[122:fired]) == {PENDING}
    assert set(seen[fired:150]) == {FIRING}
    # Good again: the short window stops burning within its 10 s (the long one still burns).
    resolved = seen.index(RESOLVED)
    assert resolved == 150 + 7  # 8 good seconds leave 2 failing ones in the short window: 1.4%
    assert set(seen[resolved + 1 :]) == {None}


def test_a_blip_the_long_window_does_not_confirm_clears_without_firing() -> None:
    seen = states(availability(), [(100.0, 0.0)] * 600 + [(100.0, 10.0)] * 3 + [(100.0, 0.0)] * 20)
    assert FIRING not in seen
    assert PENDING in seen and CLEARED in seen


def test_no_traffic_is_no_evidence_of_failure() -> None:
    seen = states(availability(), [(0.0, 0.0)] * 100)
    assert set(seen) == {None}


def test_slow_requests_are_counted_as_prometheus_interpolates_its_histogram() -> None:
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(np.log(0.004), 1.0, 20_000)
    edges = [0.0, *LATENCY_BUCKETS, np.inf]
    counts = np.histogram(latencies, bins=edges)[0].astype(float).tolist()
    for bound in (0.001, 0.005, 0.01, 0.1):  # on a bucket's bound the count is exact
        assert slower_than(bound, counts) == pytest.approx(float((latencies > bound).sum()))
    # Inside a bucket, linear: 7.5 ms is half-way through (5 ms, 10 ms].
    inside = counts[LATENCY_BUCKETS.index(0.01)]
    assert slower_than(0.0075, counts) == pytest.approx(slower_than(0.01, counts) + inside / 2)
    assert slower_than(10.0, counts) == pytest.approx(counts[-1])  # beyond the last bound: the +Inf bucket


def test_a_latency_objective_burns_on_requests_over_its_threshold() -> None:
    objective = ObjectiveSpec("d", LATENCY, 0.99, 0.01, WINDOWS)
    fast = [0.0] * (len(LATENCY_BUCKETS) + 1)
    fast[LATENCY_BUCKETS.index(0.005)] = 100.0
    slow = list(fast)
    slow[LATENCY_BUCKETS.index(0.05)] = 10.0  # 10 of 110 requests over 25 ms
    counts = EventCounts()
    for second in range(1, 61):
        counts.add(second, point(100.0, buckets=fast), None, 1.0)
    for second in range(61, 81):
        counts.add(second, point(110.0, buckets=slow), None, 1.0)
    [window] = judge(objective, counts, 80)
    assert window.short_rate == pytest.approx((10 / 110) / 0.01)
    assert window.long_breached and window.short_breached


def test_drift_objective_counts_seconds_at_its_level() -> None:
    objective = ObjectiveSpec(
        "d", DRIFT, 0.5, 2.0, [{"long": 60.0, "short": 10.0, "burn": 1.0, "severity": "w"}]
    )
    counts = EventCounts()
    for second in range(1, 61):
        counts.add(second, point(1.0), "warn" if second <= 30 else "drift", 1.0)
    [window] = judge(objective, counts, 60)
    assert window.long_bad / window.long_events == pytest.approx(0.5)  # 30 of 60 s at "drift"
    assert window.short_rate == pytest.approx(2.0)
    warn_level = ObjectiveSpec("d", DRIFT, 0.5, 1.0, objective.windows)
    [window] = judge(warn_level, counts, 60)
    assert window.long_bad == window.long_events == 60  # "warn" or worse all along


def test_performance_objective_counts_seconds_under_its_accuracy_floor() -> None:
    windows = [{"long": 60.0, "short": 10.0, "burn": 1.0, "severity": "warning"}]
    objective = ObjectiveSpec("d", PERFORMANCE, 0.5, 0.9, windows)
    counts = EventCounts()
    for second in range(1, 61):  # unknown for 20 s (no labels, no estimate), then 10 s fine, then under
        under = None if second <= 20 else second > 30
        counts.add(second, point(1.0), None, 1.0, under)
    [window] = judge(objective, counts, 60)
    assert (window.long_events, window.long_bad) == (40, 30)  # seconds without a figure are no evidence
    assert window.long_breached and window.short_breached
    assert "of the time accuracy was under 90%" in reason(objective, window)


def test_thinned_totals_keep_an_hour_window_right_in_bounded_memory() -> None:
    counts = EventCounts()
    for second in range(1, 3 * 3600 + 1):
        counts.add(second, point(10.0, 0.1), None, 1.0)
    events, bad = counts.window(availability(), 3600.0, 3 * 3600)
    assert 36_000 <= events <= 36_000 + 60 * 10  # the start falls on a total kept at most a minute before
    assert bad / events == pytest.approx(0.01)
    # A total a second for 10 min, every 10 s to an hour, a minute beyond: 600 + 300 + 120.
    assert len(counts._times) <= 600 + 300 + 2 * 60 + 2


# ---------------------------------------------------------------------- the registry's part
@pytest.fixture
def deployed(registry: Registry, iris_model: Any) -> Registry:
    registry.register(iris_model, "iris")
    save_deployment(registry, LIVE, "deployed")
    return registry


def test_every_deployment_has_every_objective_at_its_default_until_set(deployed: Registry) -> None:
    found = {o.kind: o for o in store.objectives(deployed, "live")}
    assert set(found) == {AVAILABILITY, LATENCY, DRIFT, PERFORMANCE}
    assert all(o.default for o in found.values())
    assert not found[PERFORMANCE].enabled  # no accuracy floor fits every model: off until set
    changed = store.set_objective(deployed, "live", LATENCY, threshold=0.25, target=0.995, reason="SLA")
    assert (changed.threshold, changed.target, changed.default) == (0.25, 0.995, False)
    again = {o.kind: o for o in store.objectives(deployed, "live")}
    assert again[LATENCY] == changed and again[AVAILABILITY].default
    event = deployed.history("iris").events[-1]
    assert event.kind == "objective_set" and event.reason == "SLA" and event.deployment == "live"
    store.reset_objectives(deployed, "live")
    assert all(o.default for o in store.objectives(deployed, "live"))


@pytest.mark.parametrize(
    ("kind", "change", "says"),
    [
        (AVAILABILITY, {"target": 1.0}, "between 0 and 100%"),
        (LATENCY, {"threshold": -1.0}, "latency threshold must be a time above 0 and at most 2.5 s"),
        (LATENCY, {"threshold": 10.0}, "at most 2.5 s"),  # slower requests share the +Inf bucket
        (
            AVAILABILITY,
            {"windows": [{"long": 60, "short": 5, "burn": float("nan"), "severity": "x"}]},
            "burn rate",
        ),
        (AVAILABILITY, {"windows": [{"long": 60, "short": 0.5, "burn": 2, "severity": "x"}]}, "at least 1s"),
        (
            AVAILABILITY,
            {"windows": [{"long": 60, "short": 5, "burn": 2, "severity": "x"}] * 2},
            "a severity of its own",
        ),
        (AVAILABILITY, {"windows": [{"long": 60, "short": 5, "burn": 2, "severity": "{{x}}"}]}, "short word"),
        (DRIFT, {"threshold": 3.0}, "drift level must be warn or drift"),
        ("speed", {}, "no objective kind 'speed'"),
        (PERFORMANCE, {"enabled": True, "threshold": 90.0}, "accuracy floor must be between 0 and 100%"),
        (
            AVAILABILITY,
            {"windows": [{"long": 5, "short": 60, "burn": 2, "severity": "x"}]},
            "at most its long",
        ),
        (
            AVAILABILITY,
            {"windows": [{"long": 60, "short": 5, "burn": 500, "severity": "x"}]},
            "never be reached",
        ),
        (AVAILABILITY, {"windows": [{"long": 60, "short": 5}]}, "long, short, burn and severity"),
    ],
)
def test_an_objective_that_cannot_work_is_refused_naming_the_part(
    deployed: Registry, kind: str, change: dict[str, Any], says: str
) -> None:
    with pytest.raises(ObjectiveError, match=says):
        store.set_objective(deployed, "live", kind, **change)
    assert all(o.default for o in store.objectives(deployed, "live"))  # nothing stored


def test_objectives_of_a_deployment_that_does_not_exist_are_refused(deployed: Registry) -> None:
    with pytest.raises(ObjectiveError, match="no deployment named 'ghost'"):
        store.set_objective(deployed, "ghost", AVAILABILITY, target=0.99)


def _transition(
    registry: Registry, alert: Any, state: str, url: str | None = "http://127.0.0.1:1/hook"
) -> Any:
    return outbox.save_transition(
        registry,
        alert,
        state,
        deployment="live",
        model="iris",
        version=1,
        kind=AVAILABILITY,
        severity="critical",
        reason=f"now {state}",
        figures={"window": "1h/5m"},
        url=url,
        payload=payload,
    )


def _outbox(registry: Registry) -> list[tuple[str, str]]:
    """Every notification not yet taken, in order, as (status, the payload's status)."""
    from sqlmodel import col, select

    from registry.schema import AlertDelivery

    with registry.db.read() as session:
        query = (
            select(AlertDelivery)
            .where(col(AlertDelivery.delivered_at).is_(None))
            .order_by(col(AlertDelivery.id))
        )
        return [(d.status, d.payload["alerts"][0]["status"]) for d in session.exec(query)]


def test_a_transition_writes_the_alert_its_event_and_its_notification_together(deployed: Registry) -> None:
    pending = _transition(deployed, None, PENDING)
    assert _outbox(deployed) == []  # the webhook hears of firing and resolved only
    firing = _transition(deployed, pending, FIRING)
    assert firing.id == pending.id and firing.fired_at is not None and firing.notified == FIRING
    resolved = _transition(deployed, firing, RESOLVED)
    assert resolved.ended_at is not None
    assert _outbox(deployed) == [(FIRING, FIRING), (RESOLVED, RESOLVED)]
    kinds = [e.kind for e in deployed.history("iris").events if e.kind.startswith("alert_")]
    assert kinds == ["alert_pending", "alert_firing", "alert_resolved"]
    [shown] = store.alerts(deployed)
    assert shown.state == RESOLVED and store.alerts(deployed, active_only=True) == []
    body = outbox.due_deliveries(deployed)[0].payload
    assert body["version"] == "4" and body["alerts"][0]["labels"]["deployment"] == "live"
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"


def test_an_alerts_notifications_go_in_order_however_their_retries_fall(deployed: Registry) -> None:
    firing = _transition(deployed, None, FIRING)
    [first] = outbox.due_deliveries(deployed)
    outbox.delivery_done(deployed, first.id, "HTTP 503", retry_in=3600)  # the receiver is down
    _transition(deployed, firing, RESOLVED)
    assert outbox.due_deliveries(deployed) == []  # resolved waits behind its firing, due or not
    outbox.delivery_done(deployed, first.id, None)
    [then] = outbox.due_deliveries(deployed)
    assert then.status == RESOLVED


def test_resolved_is_told_even_under_a_silence_when_firing_was(deployed: Registry) -> None:
    firing = _transition(deployed, None, FIRING)
    store.add_silence(deployed, "live", 3600)
    _transition(deployed, firing, RESOLVED)  # else the receiver's incident stays open for good
    assert _outbox(deployed) == [(FIRING, FIRING), (RESOLVED, RESOLVED)]


def test_old_ended_alerts_and_sent_notifications_are_pruned_the_rest_kept(deployed: Registry) -> None:
    told = _transition(deployed, None, FIRING)  # fired and resolved, both notifications taken
    outbox.delivery_done(deployed, outbox.due_deliveries(deployed)[0].id, None)
    _transition(deployed, told, RESOLVED)
    outbox.delivery_done(deployed, outbox.due_deliveries(deployed)[0].id, None)
    owed = _transition(deployed, None, FIRING)  # fired and resolved, resolved not taken yet
    outbox.delivery_done(deployed, outbox.due_deliveries(deployed)[0].id, None)
    _transition(deployed, owed, RESOLVED)
    _transition(deployed, None, FIRING, url=None)  # a third, still firing
    assert outbox.prune(deployed, keep_alerts=0.0, keep_sent=0.0) == 1 + 3  # the first alert, 3 sent
    assert [a.state for a in store.alerts(deployed)] == [FIRING, RESOLVED]
    assert outbox.pending_deliveries(deployed) == 1  # what is owed stays


def test_turning_the_webhook_off_discards_what_it_was_owed(deployed: Registry) -> None:
    _transition(deployed, None, FIRING)
    assert store.set_webhook(deployed, None) == 1
    assert outbox.pending_deliveries(deployed) == 0


@pytest.mark.parametrize(
    "url",
    ["http://[::1]:x/hook", "http://127.0.0.1:99999/", " http://a/", "http://exa mple.com/", "ftp://a/"],
)
def test_a_webhook_a_client_cannot_post_to_is_refused(deployed: Registry, url: str) -> None:
    with pytest.raises(ObjectiveError, match="must be an http"):
        store.set_webhook(deployed, url)


def test_a_webhook_password_is_never_shown() -> None:
    assert (
        alert_text.shown_url("https://alice:s3cret@relay.example/hook")
        == "https://alice:***@relay.example/hook"
    )
    assert alert_text.shown_url("http://relay.example/hook") == "http://relay.example/hook"


def test_a_silence_of_a_deployment_stopped_since_can_still_be_ended(deployed: Registry) -> None:
    from registry.deployments import remove_deployment

    silence = store.add_silence(deployed, "live", 3600)
    remove_deployment(deployed, "live", "stopped")
    store.end_silence(deployed, silence.id)
    assert store.silences(deployed) == []


def test_names_that_are_not_deployments_or_kinds_are_refused(deployed: Registry) -> None:
    with pytest.raises(ObjectiveError, match="no deployment named 'ghost'"):
        store.objectives(deployed, "ghost")
    with pytest.raises(ObjectiveError, match="no objective kind 'bogus'"):
        store.reset_objectives(deployed, "live", "bogus")


def test_windows_alone_go_to_the_rate_objectives_with_a_severity_each() -> None:
    changes = store.parse_changes(windows="1h/5m@14.4,6h/30m@6")
    assert set(changes) == {AVAILABILITY, LATENCY}  # drift and performance are states: their own windows
    assert [w["severity"] for w in changes[AVAILABILITY]["windows"]] == ["critical", "warning"]
    with pytest.raises(ObjectiveError, match="not a duration"):
        store.parse_changes(windows="\uff16s/1s@2")  # full-width digits are no number here


def test_a_clock_stepped_back_judges_the_newest_counts_not_none() -> None:
    counts = EventCounts()
    for second in range(1, 31):
        counts.add(10_000.0 + second, point(100.0, 5.0), None, 1.0)
    for second in range(1, 11):  # the wall clock went back an hour
        counts.add(6_400.0 + second, point(100.0, 5.0), None, 1.0)
    [window] = judge(availability(), counts, 6_410.0)
    assert window.short_events > 0 and window.short_breached


def test_a_post_that_cannot_even_start_is_an_error_to_retry_not_a_crash() -> None:
    import asyncio

    import httpx

    from registry.serving.alerting import _post

    async def post() -> str | None:
        async with httpx.AsyncClient() as client:
            return await _post(client, "http://[::1]:x/hook", {"alerts": []})

    assert "InvalidURL" in (asyncio.run(post()) or "")


def test_a_silenced_alert_shows_but_is_told_only_once_the_silence_ends(deployed: Registry) -> None:
    silence = store.add_silence(deployed, "live", 3600, kind=AVAILABILITY, reason="maintenance")
    assert silence.author and silence.expires_at > silence.created_at
    firing = _transition(deployed, None, FIRING)
    assert firing.silenced and firing.notified == "" and _outbox(deployed) == []
    assert store.alerts(deployed, active_only=True)[0].silenced
    assert outbox.notify_unsent(deployed, "http://127.0.0.1:1/hook", payload) == 0  # still silenced
    store.end_silence(deployed, silence.id)
    assert store.silences(deployed) == []
    assert outbox.notify_unsent(deployed, "http://127.0.0.1:1/hook", payload) == 1
    assert outbox.notify_unsent(deployed, "http://127.0.0.1:1/hook", payload) == 0  # once
    assert _outbox(deployed) == [(FIRING, FIRING)]


def test_an_alert_resolved_before_the_webhook_heard_it_fire_is_not_announced(deployed: Registry) -> None:
    firing = _transition(deployed, None, FIRING, url=None)
    _transition(deployed, firing, RESOLVED)
    assert _outbox(deployed) == []


def test_a_refused_notification_waits_its_backoff_and_is_kept_until_taken(deployed: Registry) -> None:
    _transition(deployed, None, FIRING)
    [delivery] = outbox.due_deliveries(deployed)
    outbox.delivery_done(deployed, delivery.id, "HTTP 503", retry_in=3600)
    assert outbox.due_deliveries(deployed) == [] and outbox.pending_deliveries(deployed) == 1
    outbox.delivery_done(deployed, delivery.id, None)
    assert outbox.pending_deliveries(deployed) == 0


# ---------------------------------------------------------------------- the command line
def test_the_command_line_sets_objectives_silences_and_the_webhook(tmp_path: Path, iris_model: Any) -> None:
    with Registry(home=tmp_path) as reg:
        reg.register(iris_model, "iris")
        save_deployment(reg, LIVE, "deployed")
    done = run_modeldeck(
        tmp_path,
        "objectives",
        "set",
        "live",
        "--availability",
        "99.9",
        "--latency",
        "250ms",
        "--windows",
        "1h/5m@14.4:critical,6h/30m@6",
        "-m",
        "SLA",
    )
    assert done.exit_code == 0, done.stderr
    assert "availability: 99.9% of requests not 5xx (critical at 14.4x over 1h/5m" in done.stdout
    assert "latency: 99% of requests within 250 ms" in done.stdout
    shown = json.loads(run_modeldeck(tmp_path, "objectives", "show", "live", "--json").stdout)
    assert {o["kind"]: o["default"] for o in shown} == {
        AVAILABILITY: False,
        LATENCY: False,
        DRIFT: True,
        PERFORMANCE: True,
    }
    bad = run_modeldeck(tmp_path, "objectives", "set", "live", "--availability", "101")
    assert bad.exit_code == 1 and "between 0 and 100" in bad.stderr
    bad = run_modeldeck(tmp_path, "objectives", "set", "live", "--windows", "1h-5m")
    assert bad.exit_code == 1 and "LONG/SHORT@BURN" in bad.stderr
    silenced = run_modeldeck(tmp_path, "alerts", "silence", "live", "--for", "2h", "-m", "deploy window")
    assert silenced.exit_code == 0, silenced.stderr
    assert run_modeldeck(tmp_path, "alerts", "webhook", "ftp://x").exit_code == 1
    assert run_modeldeck(tmp_path, "alerts", "webhook", "http://127.0.0.1:9/hook").exit_code == 0
    listed = json.loads(run_modeldeck(tmp_path, "alerts", "--json").stdout)
    assert listed["alerts"] == [] and listed["webhook"] == "http://127.0.0.1:9/hook"
    [silence] = listed["silences"]
    assert silence["deployment"] == "live" and silence["reason"] == "deploy window"
    text = run_modeldeck(tmp_path, "alerts").stdout
    assert "no pending or firing alerts" in text and f"silence {silence['id']}: all alerts of live" in text
