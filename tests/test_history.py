"""The ledger: reading `--at TIME`, replaying events to a moment, and `Registry.history`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from registry import EventInfo, Registry
from registry.history import parse_time, replay

NOW = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)  # 01:30 on Nov 23 in Kolkata (UTC+05:30, no DST)


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+05:30 for the test, so 'local' cannot be confused with UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# ---------------------------------------------------------------------- parse_time
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T14:32:05+01:00", datetime(2026, 11, 22, 13, 32, 5, tzinfo=UTC)),
        ("2026-11-22T14:32Z", datetime(2026, 11, 22, 14, 32, tzinfo=UTC)),
        ("2026-11-22t14:32z", datetime(2026, 11, 22, 14, 32, tzinfo=UTC)),
        ("2026-11-22 14:32", datetime(2026, 11, 22, 9, 2, tzinfo=UTC)),  # local time
        ("2026-11-22", datetime(2026, 11, 21, 18, 30, tzinfo=UTC)),  # local midnight
        ("14:32", datetime(2026, 11, 23, 9, 2, tzinfo=UTC)),  # today, local: it is Nov 23 there
        ("14:32:10", datetime(2026, 11, 23, 9, 2, 10, tzinfo=UTC)),
        ("today 14:32", datetime(2026, 11, 23, 9, 2, tzinfo=UTC)),
        ("yesterday 14:32", datetime(2026, 11, 22, 9, 2, tzinfo=UTC)),
        ("Yesterday 00:15", datetime(2026, 11, 21, 18, 45, tzinfo=UTC)),
        ("now", NOW),
        ("  NOW ", NOW),
        ("2h ago", NOW - timedelta(hours=2)),
        ("90m ago", NOW - timedelta(minutes=90)),
        ("1.5 hours ago", NOW - timedelta(minutes=90)),
        ("3 days ago", NOW - timedelta(days=3)),
        ("45 sec ago", NOW - timedelta(seconds=45)),
    ],
)
def test_parse_time_reads_the_forms_users_type(kolkata, text, expected):
    parsed = parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo == UTC


def test_parse_time_defaults_to_the_current_time():
    before = datetime.now(UTC)
    parsed = parse_time("now")
    assert before <= parsed <= datetime.now(UTC)
    assert before - timedelta(hours=2) <= parse_time("2h ago") <= datetime.now(UTC) - timedelta(hours=2)


@pytest.mark.parametrize(
    "text", ["garbage", "yesterday", "2 fortnights ago", "-2h ago", "2026-13-01", "", "14h32"]
)
def test_parse_time_refuses_garbage_and_names_the_accepted_forms(text):
    with pytest.raises(
        ValueError,
        match=r"cannot read time .*use e\.g\. '2026-11-22 14:32', '14:32', 'yesterday 14:32' or '2h ago'",
    ):
        parse_time(text, now=NOW)


# ---------------------------------------------------------------------- replay
def _event(minute: int, kind: str, **fields) -> EventInfo:
    base = {"deployment": None, "alias": None, "from_version": None, "to_version": None}
    return EventInfo(
        at=NOW + timedelta(minutes=minute),
        model="iris",
        kind=kind,
        actor="ana@laptop",
        reason="",
        detail={},
        **(base | fields),
    )


LEDGER = [
    _event(0, "registered", to_version=1),
    _event(1, "alias_set", alias="champion", to_version=1),
    _event(2, "registered", to_version=2),
    _event(3, "deploy_requested", deployment="iris-prod", to_version=1),
    _event(4, "switched", deployment="iris-prod", to_version=1),
    _event(5, "alias_set", alias="champion", from_version=1, to_version=2),
    _event(6, "switched", deployment="iris-prod", from_version=1, to_version=2),
    _event(7, "registered", to_version=3),
    _event(8, "rolled_back", deployment="iris-prod", from_version=2, to_version=1),
    _event(9, "tagged", to_version=3),
    _event(10, "deleted", from_version=3),
    _event(11, "alias_removed", alias="champion", from_version=2),
    _event(12, "stopped", deployment="iris-prod", from_version=1),
]


@pytest.mark.parametrize(
    ("minute", "versions", "aliases", "serving"),
    [
        (-1, [], {}, {}),
        (0, [1], {}, {}),  # an event at exactly the moment counts
        (1.5, [1], {"champion": 1}, {}),
        (3.5, [1, 2], {"champion": 1}, {}),  # requested is not serving yet
        (4.5, [1, 2], {"champion": 1}, {"iris-prod": 1}),
        (5.5, [1, 2], {"champion": 2}, {"iris-prod": 1}),
        (6.5, [1, 2], {"champion": 2}, {"iris-prod": 2}),
        (8.5, [1, 2, 3], {"champion": 2}, {"iris-prod": 1}),
        (10.5, [1, 2], {"champion": 2}, {"iris-prod": 1}),
        (11.5, [1, 2], {}, {"iris-prod": 1}),
        (60, [1, 2], {}, {}),
    ],
)
def test_replay_gives_the_state_at_each_moment(minute, versions, aliases, serving):
    moment = NOW + timedelta(minutes=minute)
    state = replay(LEDGER, moment)
    assert (state.at, state.versions, state.aliases, state.serving) == (moment, versions, aliases, serving)


def test_replay_of_two_deployments_and_an_empty_ledger():
    events = [
        _event(0, "switched", deployment="blue", to_version=1),
        _event(1, "switched", deployment="green", to_version=2),
        _event(2, "stopped", deployment="blue"),
    ]
    assert replay(events, NOW + timedelta(minutes=1)).serving == {"blue": 1, "green": 2}
    assert replay(events, NOW + timedelta(minutes=2)).serving == {"green": 2}
    assert replay([], NOW).versions == []


# ---------------------------------------------------------------------- Registry.history
def test_history_answers_where_an_alias_pointed_and_what_was_serving(registry: Registry, iris_model):
    moments = {}
    registry.register(iris_model, "iris", alias="champion")
    moments["one version"] = datetime.now(UTC)
    registry.register(iris_model, "iris")
    registry.record_event("iris", "switched", deployment="iris", to_version=1)
    moments["serving 1"] = datetime.now(UTC)
    registry.set_alias("iris", "champion", 2, reason="promote")
    registry.record_event("iris", "switched", deployment="iris", from_version=1, to_version=2)
    moments["promoted"] = datetime.now(UTC)
    registry.set_alias("iris", "champion", 1, reason="rollback")
    registry.record_event(
        "iris", "rolled_back", deployment="iris", from_version=2, to_version=1, actor="supervisor"
    )
    moments["rolled back"] = datetime.now(UTC)
    registry.record_event("iris", "stopped", deployment="iris")

    def state(name):
        return registry.history("iris", at=moments[name]).state

    assert (state("one version").versions, state("one version").aliases) == ([1], {"champion": 1})
    assert state("one version").serving == {}
    assert (state("serving 1").aliases, state("serving 1").serving) == ({"champion": 1}, {"iris": 1})
    assert (state("promoted").aliases, state("promoted").serving) == ({"champion": 2}, {"iris": 2})
    assert (state("rolled back").aliases, state("rolled back").serving) == ({"champion": 1}, {"iris": 1})
    now = registry.history("iris")
    assert (now.state.versions, now.state.aliases, now.state.serving) == ([1, 2], {"champion": 1}, {})

    shown = registry.history("iris", at=moments["promoted"]).events
    assert [e.kind for e in shown] == [
        "registered",
        "alias_set",
        "registered",
        "switched",
        "alias_set",
        "switched",
    ]
    assert all(e.at <= moments["promoted"] for e in shown)
    assert [e.kind for e in now.events][-2:] == ["rolled_back", "stopped"]
    assert now.events[-2].actor == "supervisor" and "@" in now.events[-3].actor
    assert [e.reason for e in now.events if e.kind == "alias_set"] == ["", "promote", "rollback"]


def test_history_takes_the_time_as_text(registry: Registry, iris_model):
    before = datetime.now(UTC)
    registry.register(iris_model, "iris")
    assert registry.history("iris", at="now").state.versions == [1]
    assert registry.history("iris", at=before.isoformat()).state.versions == []
    assert registry.history("iris", at="1 day ago").events == []
    with pytest.raises(ValueError, match="cannot read time 'soonish'"):
        registry.history("iris", at="soonish")


def test_history_keeps_deleted_versions_in_the_ledger(registry: Registry, iris_model):
    registry.register(iris_model, "iris")
    registry.register(iris_model, "iris")
    between = datetime.now(UTC)
    registry.delete("iris:2", reason="mistake")

    assert registry.history("iris", at=between).state.versions == [1, 2]
    history = registry.history("iris")
    assert history.state.versions == [1]
    last = history.events[-1]
    assert (last.kind, last.from_version, last.reason) == ("deleted", 2, "mistake")
    assert history.as_dict()["events"][-1]["at"].endswith("+00:00")


def test_an_impossible_clock_time_says_so():
    with pytest.raises(ValueError, match="25:00 is not a time of day"):
        parse_time("25:00")
