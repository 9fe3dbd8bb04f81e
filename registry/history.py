"""The event ledger's vocabulary, replaying it to a point in time, and parsing `--at TIME`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from registry.info import EventInfo, StateAt

REGISTERED = "registered"
ALIAS_SET = "alias_set"
ALIAS_REMOVED = "alias_removed"
TAGGED = "tagged"
ARCHIVED = "archived"
RESTORED = "restored"
DELETED = "deleted"
DEPLOY_REQUESTED = "deploy_requested"
#: A change of a deployment's desired state written through the database, for its placed hosts to make.
REQUESTED = "requested"
#: Traffic of a deployment moved to `to_version` (deploy finished, rollback, ...).
SWITCHED = "switched"
ROLLED_BACK = "rolled_back"
STOPPED = "stopped"
LOADING = "loading"
READY = "ready"
DRAINED = "drained"
CRASHED = "crashed"
RESTARTED = "restarted"
FAILED = "failed"
SCALED = "scaled"
#: A switch failed after its row was written: traffic (and the row) went back to `to_version`.
REVERTED = "reverted"
#: A canary or shadow of `to_version` began beside `from_version` (detail: its steps and checks).
CANARY_STARTED = "canary_started"
SHADOW_STARTED = "shadow_started"
#: A canary passed a step and its candidate now takes the next share (detail: weight and checks).
CANARY_STEP = "canary_step"
#: A canary or shadow ended with its candidate serving (a switch), or with none of its traffic.
PROMOTED = "promoted"
ABORTED = "aborted"

_SERVING_STARTS = {SWITCHED, ROLLED_BACK, REVERTED, PROMOTED}
#: What ends an action a `deploy_requested` opened, and what ends a `loading` (see `open_actions`).
ACTION_OUTCOMES = frozenset(
    {SWITCHED, ROLLED_BACK, FAILED, SCALED, STOPPED, REVERTED, CANARY_STARTED, SHADOW_STARTED, PROMOTED}
)
LOAD_OUTCOMES = ACTION_OUTCOMES | {READY}


def replay(events: Iterable[EventInfo], at: datetime) -> StateAt:
    """The versions, aliases and serving versions that the events up to `at` leave in place."""
    versions: set[int] = set()
    aliases: dict[str, int] = {}
    serving: dict[str, int] = {}
    for event in events:
        if event.at > at:
            break
        if event.kind == REGISTERED and event.to_version is not None:
            versions.add(event.to_version)
        elif event.kind == DELETED and event.from_version is not None:
            versions.discard(event.from_version)
        elif event.kind == ALIAS_SET and event.alias and event.to_version is not None:
            aliases[event.alias] = event.to_version
        elif event.kind == ALIAS_REMOVED and event.alias:
            aliases.pop(event.alias, None)
        elif event.kind in _SERVING_STARTS and event.deployment and event.to_version is not None:
            serving[event.deployment] = event.to_version
        elif event.kind == STOPPED and event.deployment:
            serving.pop(event.deployment, None)
    return StateAt(at=at, versions=sorted(versions), aliases=dict(sorted(aliases.items())), serving=serving)


_PART = r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)"
_RELATIVE = re.compile(rf"^((?:{_PART}\s*)+)\s+ago$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A user's time as an aware UTC datetime.

    Accepts ISO 8601 (`2026-11-22T14:32`, `2026-11-22 14:32:05+01:00`), a clock time today
    (`14:32`), `yesterday 14:32`, `now`, and `90m ago` / `2h30m ago` / `3 days ago`. Times without
    an offset are local time.
    """
    now_utc = now or datetime.now(UTC)
    raw = text.strip().lower()
    if raw == "now":
        return now_utc
    relative = _RELATIVE.match(raw)
    if relative:
        parts = re.findall(_PART, relative.group(1))
        seconds = sum(float(amount) * _UNITS[unit[0]] for amount, unit in parts)
        return now_utc - timedelta(seconds=seconds)
    day_offset = 0
    if raw.startswith("yesterday"):
        day_offset, raw = 1, raw.removeprefix("yesterday").strip()
    elif raw.startswith("today"):
        raw = raw.removeprefix("today").strip()
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", raw):
        local_now = now_utc.astimezone()
        hour, minute, *second = (int(p) for p in raw.split(":"))
        try:
            moment = local_now.replace(
                hour=hour, minute=minute, second=second[0] if second else 0, microsecond=0
            )
        except ValueError:
            raise ValueError(f"cannot read time {text!r}: {raw} is not a time of day") from None
        moment -= timedelta(days=day_offset)
    else:
        try:
            moment = datetime.fromisoformat(raw.upper() if "t" in raw else raw)
        except ValueError:
            raise ValueError(
                f"cannot read time {text!r}: use e.g. '2026-11-22 14:32', '14:32', "
                "'yesterday 14:32' or '2h ago'"
            ) from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # local time
    return moment.astimezone(UTC)
