"""The registry's read queries, in plain SQL, once: run by the `Registry` (through its SQLAlchemy
connection) and by the light reader of the CLI and console (`registry.reader`, straight on sqlite3 or
psycopg, so a read verb imports neither SQLAlchemy nor SQLModel).

Each function takes a `Run`: `run(sql, params)` executes one statement (written with `?`
placeholders; a PostgreSQL runner turns them into `%s`) and returns its rows as tuples. Values come
as the driver gives them: SQLite's times are UTC text and its JSON is text, PostgreSQL's are
`datetime`s and parsed JSON; the helpers below make both the same Python values the ORM gave.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from registry import history as ledger
from registry.errors import ModelNotFound, VersionNotFound
from registry.info import (
    AlertInfo,
    DeploymentInfo,
    EventInfo,
    History,
    HostInfo,
    ModelInfo,
    SilenceInfo,
    VersionInfo,
    VersionSummary,
)
from registry.refs import Ref

#: Executes one statement with positional parameters and returns all its rows.
Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def _sqlite_time(text: str) -> datetime:
    """SQLite's stored UTC text (`2026-11-22 14:32:05.123456`, as SQLAlchemy writes it) as an aware
    datetime; parsing it with its offset appended is ~10x faster than `.replace(tzinfo=UTC)`."""
    try:
        return datetime.fromisoformat(text + "+00:00")
    except ValueError:  # a text that carries its own offset
        return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stored_time(value: Any) -> Any:
    """A stored time as the ORM gave it: SQLite's UTC text as an aware UTC datetime; PostgreSQL's
    `timestamptz` as the driver returns it; None stays None."""
    return _sqlite_time(value) if isinstance(value, str) else value


def utc_time(value: Any) -> datetime:
    """A stored time in UTC, whatever the database session's time zone."""
    return _sqlite_time(value) if isinstance(value, str) else value.astimezone(UTC)


def _loads(text: str) -> Any:
    """JSON text as Python values: orjson (several times faster per row), else the standard library
    for what orjson refuses and `json.dumps` writes (NaN, Infinity, integers beyond 64 bits). orjson
    loads on the first JSON value (it imports uuid and platform: a read verb that parses none skips it)."""
    global _orjson
    if _orjson is None:
        import orjson

        _orjson = orjson
    try:
        return _orjson.loads(text)
    except _orjson.JSONDecodeError:
        return json.loads(text)


_orjson: Any = None


def stored_json(value: Any) -> Any:
    """A JSON column's value: SQLite gives text, PostgreSQL the parsed value."""
    return _loads(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------- models
_MODEL_ID = "SELECT id FROM registered_model WHERE name = ?"
_KNOWN = "SELECT name FROM registered_model ORDER BY name LIMIT 20"


def model_id(run: Run, name: str) -> int:
    """The row id of a model; ModelNotFound naming the known models if there is none."""
    found = run(_MODEL_ID, (name,))
    if not found:
        known = [row[0] for row in run(_KNOWN, ())]
        hint = f"; known: {', '.join(known)}" if known else "; the registry is empty"
        raise ModelNotFound(f"no model {name!r}{hint}")
    return int(found[0][0])


_COUNTS = "SELECT model_id, count(*), max(version) FROM model_version {where}GROUP BY model_id"
_COUNTS_VISIBLE = _COUNTS.format(where="WHERE archived_at IS NULL ")
_COUNTS_ALL = _COUNTS.format(where="")
_MODEL_ALIASES = (
    "SELECT model_alias.model_id, model_alias.alias, model_version.version FROM model_alias "
    "JOIN model_version ON model_version.id = model_alias.version_id"
)
_MODEL_TAGS = "SELECT model_id, key, value FROM model_tag"
_MODELS = "SELECT id, name, description, created_at, updated_at FROM registered_model ORDER BY name"


def list_models(run: Run, include_archived: bool = False) -> list[ModelInfo]:
    """Every model, with its number of (non-archived) versions, newest version and aliases."""
    stats = {m: (n, latest) for m, n, latest in run(_COUNTS_ALL if include_archived else _COUNTS_VISIBLE, ())}
    aliases: dict[int, dict[str, int]] = {}
    for mid, alias, version in run(_MODEL_ALIASES, ()):
        aliases.setdefault(mid, {})[alias] = version
    tags: dict[int, dict[str, str]] = {}
    for mid, key, value in run(_MODEL_TAGS, ()):
        tags.setdefault(mid, {})[key] = value
    return [
        ModelInfo(
            name=name,
            description=description,
            created_at=stored_time(created),
            updated_at=stored_time(updated),
            versions=stats.get(mid, (0, None))[0],
            latest_version=stats.get(mid, (0, None))[1],
            aliases=aliases.get(mid, {}),
            tags=tags.get(mid, {}),
        )
        for mid, name, description, created, updated in run(_MODELS, ())
    ]


# ---------------------------------------------------------------------- versions
# By name (no separate model lookup: a round trip less on PostgreSQL); model_id comes with each row.
_SUMMARY = (
    "SELECT model_version.id, model_version.version, model_version.estimator_class, "
    "model_version.description, model_version.metrics, model_version.created_at, "
    "model_version.created_by, model_version.archived_at IS NOT NULL, model_version.artifact_sha256, "
    "model_version.parent_version, model_version.model_id FROM model_version "
    "JOIN registered_model ON registered_model.id = model_version.model_id WHERE registered_model.name = ? "
)
_SUMMARY_ALL = _SUMMARY + "ORDER BY model_version.version"
_SUMMARY_VISIBLE = _SUMMARY + "AND model_version.archived_at IS NULL ORDER BY model_version.version"
_VERSION_ALIASES = "SELECT version_id, alias FROM model_alias WHERE model_id = ? ORDER BY alias"
_VERSION_TAGS = (
    "SELECT version_tag.version_id, version_tag.key, version_tag.value FROM version_tag "
    "JOIN model_version ON model_version.id = version_tag.version_id WHERE model_version.model_id = ?"
)


def list_versions(run: Run, name: str, include_archived: bool = False) -> list[VersionSummary]:
    """Summaries of a model's versions, oldest first."""
    rows = run(_SUMMARY_ALL if include_archived else _SUMMARY_VISIBLE, (name,))
    if not rows:
        model_id(run, name)  # ModelNotFound, or a model with no (visible) versions
        return []
    params = (rows[0][-1],)
    aliases: dict[int, list[str]] = {}
    for vid, alias in run(_VERSION_ALIASES, params):
        aliases.setdefault(vid, []).append(alias)
    tags: dict[int, dict[str, str]] = {}
    for vid, key, value in run(_VERSION_TAGS, params):
        tags.setdefault(vid, {})[key] = value
    loads, parse = _loads, utc_time
    return [
        VersionSummary(
            name=name,
            version=version,
            estimator_class=cls,
            description=description,
            metrics=loads(metrics) if isinstance(metrics, str) else (metrics or {}),
            created_at=parse(created),
            created_by=by,
            archived=bool(archived),
            artifact_sha256=sha,
            parent_version=parent,
            aliases=aliases.get(vid, []),
            tags=tags.get(vid, {}),
        )
        for vid, version, cls, description, metrics, created, by, archived, sha, parent, _ in rows
    ]


#: The `model_version` columns a VersionInfo is made of, in this order.
VERSION_COLUMNS = (
    "id",
    "version",
    "estimator_class",
    "created_at",
    "created_by",
    "artifact_sha256",
    "artifact_size",
    "trusted_types",
    "params",
    "signature",
    "output",
    "metrics",
    "description",
    "python_version",
    "sklearn_version",
    "numpy_version",
    "reference_sha256",
    "reference_rows",
    "source",
    "origin",
    "parent_version",
    "archived_at",
    "profile_sha256",
)
_JSON_COLUMNS = frozenset({"trusted_types", "params", "signature", "output", "metrics", "origin"})
_TIME_COLUMNS = frozenset({"created_at", "archived_at"})
_VERSION_BASE = (
    f"SELECT {', '.join('model_version.' + c for c in VERSION_COLUMNS)} FROM model_version "
    "JOIN registered_model ON registered_model.id = model_version.model_id "
)
_VERSION_BY = {
    "version": _VERSION_BASE + "WHERE registered_model.name = ? AND model_version.version = ?",
    "alias": _VERSION_BASE
    + "JOIN model_alias ON model_alias.version_id = model_version.id AND model_alias.alias = ? "
    "WHERE registered_model.name = ?",
    "latest": _VERSION_BASE + "WHERE registered_model.name = ? AND model_version.archived_at IS NULL "
    "ORDER BY model_version.version DESC LIMIT 1",
    "latest_any": _VERSION_BASE
    + "WHERE registered_model.name = ? ORDER BY model_version.version DESC LIMIT 1",
}
_LABELS = (
    "SELECT 'a', alias, '' FROM model_alias WHERE version_id = ? "
    "UNION ALL SELECT 't', key, value FROM version_tag WHERE version_id = ?"
)


def _version_lookup(ref: Ref, include_archived: bool) -> tuple[str, tuple[Any, ...]]:
    if ref.alias is not None:
        return _VERSION_BY["alias"], (ref.alias, ref.name)
    if ref.version is not None:
        return _VERSION_BY["version"], (ref.name, ref.version)
    return _VERSION_BY["latest_any" if include_archived else "latest"], (ref.name,)


def version_row(values: Sequence[Any]) -> dict[str, Any]:
    """A `model_version` row (VERSION_COLUMNS, as the driver gave them) as the values the ORM gave."""
    row = dict(zip(VERSION_COLUMNS, values, strict=True))
    for key in _JSON_COLUMNS:
        row[key] = stored_json(row[key])
    for key in _TIME_COLUMNS:
        row[key] = stored_time(row[key])
    return row


def get_version(run: Run, ref: Ref, include_archived: bool = False) -> VersionInfo:
    """The full version a reference points at, with its aliases and tags."""
    return find_version(run, ref, include_archived)[1]


def find_version(run: Run, ref: Ref, include_archived: bool = False) -> tuple[int, VersionInfo]:
    """The row id and the full version a reference points at (two statements)."""
    found = run(*_version_lookup(ref, include_archived))
    if not found:
        raise not_found(run, ref)
    row = version_row(found[0])
    aliases: list[str] = []
    tags: dict[str, str] = {}
    for kind, key, value in run(_LABELS, (row["id"], row["id"])):
        if kind == "a":
            aliases.append(key)
        else:
            tags[key] = value
    return row["id"], version_info(ref.name, row, sorted(aliases), tags)


_ALIAS_NAMES = "SELECT alias FROM model_alias WHERE model_id = ?"
_NUMBERS = "SELECT version FROM model_version WHERE model_id = ? ORDER BY version"


def not_found(run: Run, ref: Ref) -> Exception:
    """The error for a reference that matched nothing, naming what does exist."""
    mid = model_id(run, ref.name)
    if ref.alias is not None:
        names = [row[0] for row in run(_ALIAS_NAMES, (mid,))]
        known = f"; its aliases: {', '.join(sorted(names))}" if names else "; it has no aliases"
        return VersionNotFound(f"model {ref.name!r} has no alias {ref.alias!r}{known}")
    numbers = [row[0] for row in run(_NUMBERS, (mid,))]
    if ref.version is None:
        return VersionNotFound(
            f"model {ref.name!r} has no versions" + (" that are not archived" if numbers else "")
        )
    known = f"; its versions: {number_ranges(numbers)}" if numbers else "; it has no versions"
    return VersionNotFound(f"model {ref.name!r} has no version {ref.version}{known}")


def number_ranges(numbers: list[int]) -> str:
    """`[1, 2, 3, 5]` as `'1-3, 5'`."""
    parts: list[list[int]] = []
    for n in numbers:
        if parts and parts[-1][-1] == n - 1:
            parts[-1].append(n)
        else:
            parts.append([n])
    return ", ".join(str(p[0]) if len(p) == 1 else f"{p[0]}-{p[-1]}" for p in parts)


def version_info(name: str, row: Any, aliases: list[str], tags: dict[str, str]) -> VersionInfo:
    """A VersionInfo from a `model_version` row (`version_row`'s dict or the dict just inserted)."""
    get = row.__getitem__
    return VersionInfo(
        name=name,
        version=get("version"),
        estimator_class=get("estimator_class"),
        created_at=get("created_at"),
        created_by=get("created_by"),
        artifact_sha256=get("artifact_sha256"),
        artifact_size=get("artifact_size"),
        trusted_types=list(get("trusted_types")),
        params=dict(get("params")),
        signature=dict(get("signature")),
        output=dict(get("output")),
        metrics=dict(get("metrics")),
        description=get("description"),
        python_version=get("python_version"),
        sklearn_version=get("sklearn_version"),
        numpy_version=get("numpy_version"),
        reference_sha256=get("reference_sha256"),
        reference_rows=get("reference_rows"),
        source=get("source"),
        origin=dict(get("origin") or {}),
        parent_version=get("parent_version"),
        archived=get("archived_at") is not None,
        aliases=aliases,
        tags=tags,
        profile_sha256=row.get("profile_sha256"),
    )


# ---------------------------------------------------------------------- ledger
_EVENT_COLUMNS = "at, model_name, kind, actor, deployment, alias, from_version, to_version, reason, detail"
_EVENTS_OF = f"SELECT {_EVENT_COLUMNS} FROM event WHERE model_name = ? ORDER BY at, id"
_RECENT = f"SELECT {_EVENT_COLUMNS} FROM event ORDER BY at DESC, id DESC LIMIT ?"


def _event(row: Sequence[Any]) -> EventInfo:
    at, model, kind, actor, deployment, alias, from_version, to_version, reason, detail = row
    return EventInfo(
        at=stored_time(at),
        model=model,
        kind=kind,
        actor=actor,
        deployment=deployment,
        alias=alias,
        from_version=from_version,
        to_version=to_version,
        reason=reason,
        detail=dict(stored_json(detail) or {}),
    )


def history(run: Run, name: str, moment: datetime) -> History:
    """The ledger of `name` up to `moment` (aware) and the state it leaves."""
    model_id(run, name)
    events = [_event(row) for row in run(_EVENTS_OF, (name,))]
    shown = [e for e in events if e.at <= moment]
    return History(model=name, events=shown, state=ledger.replay(events, moment))


def recent_events(run: Run, limit: int = 200) -> list[EventInfo]:
    """The newest `limit` ledger events of every model, newest first."""
    return [_event(row) for row in run(_RECENT, (limit,))]


# ---------------------------------------------------------------------- deployments
#: One statement for the whole list (the console polls it every second, the supervisor on every
#: reconcile).
_DEPLOYMENTS = (
    "SELECT deployment.name, registered_model.name, serving.version, standby.version, deployment.host, "
    "deployment.port, deployment.workers, deployment.options, deployment.updated_at, "
    "deployment.placement, deployment.generation, deployment.desired FROM deployment "
    "JOIN registered_model ON registered_model.id = deployment.model_id "
    "JOIN model_version AS serving ON serving.id = deployment.version_id "
    "LEFT OUTER JOIN model_version AS standby ON standby.id = deployment.standby_version_id "
    "ORDER BY deployment.name"
)


def list_deployments(run: Run) -> list[DeploymentInfo]:
    """Every deployment, by name."""
    return [
        DeploymentInfo(
            name=name,
            model=model,
            version=version,
            standby_version=standby,
            host=host,
            port=port or 0,
            workers=workers,
            options=dict(stored_json(options) or {}),
            updated_at=stored_time(updated_at),
            placement=list(stored_json(placement) or []),
            generation=generation or 0,
            desired=dict(stored_json(desired) or {}),
        )
        for (
            name,
            model,
            version,
            standby,
            host,
            port,
            workers,
            options,
            updated_at,
            placement,
            generation,
            desired,
        ) in run(_DEPLOYMENTS, ())
    ]


# ---------------------------------------------------------------------- hosts
#: The database's own clock beside each heartbeat: a host's age never depends on the reader's clock.
_HOSTS = (
    "SELECT name, address, version, cpus, memory_bytes, pid, exporter, started_at, heartbeat_at, "
    "stopped_at, cpu_percent, memory_percent, deployments, CURRENT_TIMESTAMP FROM host ORDER BY name"
)
#: Seconds without a heartbeat after which a host is lost (it beats every 2 s).
LOST_AFTER = 10.0


def list_hosts(run: Run) -> list[HostInfo]:
    """Every host of a shared registry, by name, judged up, lost or stopped by the database's clock."""
    hosts = []
    for row in run(_HOSTS, ()):
        name, address, version, cpus, memory, pid, exporter, started, beat, stopped = row[:10]
        cpu, mem, deployments, now = row[10:]
        age = max(0.0, (utc_time(now) - utc_time(beat)).total_seconds())
        state = "stopped" if stopped is not None else "lost" if age > LOST_AFTER else "up"
        hosts.append(
            HostInfo(
                name=name,
                address=address,
                version=version,
                cpus=cpus,
                memory_bytes=memory,
                pid=pid,
                exporter=exporter,
                started_at=utc_time(started),
                heartbeat_age=round(age, 1),
                state=state,
                cpu_percent=cpu,
                memory_percent=mem,
                deployments=dict(stored_json(deployments) or {}),
            )
        )
    return hosts


# ---------------------------------------------------------------------- alerts
_ALERTS = (
    "SELECT id, deployment, model, version, kind, severity, state, started_at, fired_at, ended_at, reason, "
    "figures, notified FROM alert {where}ORDER BY id DESC LIMIT ?"
)
_ACTIVE_ALERTS = _ALERTS.format(where="WHERE state IN ('pending', 'firing') ")
_ALL_ALERTS = _ALERTS.format(where="")
_SILENCES = "SELECT id, deployment, kind, author, reason, created_at, expires_at FROM silence"


def alerts(run: Run, active_only: bool = True, limit: int = 100) -> list[AlertInfo]:
    """Alerts newest first (pending and firing ones only, with `active_only`: what the console polls
    every second), each marked silenced when a silence covers it now."""
    rows = run(_ACTIVE_ALERTS if active_only else _ALL_ALERTS, (limit,))
    if not rows:
        return []
    now = datetime.now(UTC)
    quiet = [s for s in silences(run) if s.expires_at > now]
    out = []
    for row in rows:
        ident, deployment, model, version, kind, severity, state = row[:7]
        started, fired, ended, why, figures, told = row[7:]
        out.append(
            AlertInfo(
                ident,
                deployment,
                model,
                version,
                kind,
                severity,
                state,
                utc_time(started),
                utc_time(fired) if fired is not None else None,
                utc_time(ended) if ended is not None else None,
                why,
                dict(stored_json(figures) or {}),
                told,
                any(s.matches(deployment, kind, now) for s in quiet),
            )
        )
    return out


def silences(run: Run) -> list[SilenceInfo]:
    """Every silence, expired ones too, newest first."""
    rows = run(_SILENCES, ())
    return sorted(
        (
            SilenceInfo(i, deployment, kind, author, reason, utc_time(created), utc_time(expires))
            for i, deployment, kind, author, reason, created, expires in rows
        ),
        key=lambda s: -s.id,
    )
