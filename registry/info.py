"""Plain, session-free views of registry rows that the API returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601 UTC)."""
        # Every subclass is a dataclass; mypy cannot know that of the mixin itself.
        return _jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass
class VersionInfo(_AsDict):
    """One model version as stored, with its current aliases and tags."""

    name: str
    version: int
    estimator_class: str
    created_at: datetime
    created_by: str
    artifact_sha256: str
    artifact_size: int
    trusted_types: list[str]
    params: dict[str, Any]
    signature: dict[str, Any]
    output: dict[str, Any]
    metrics: dict[str, float]
    description: str
    python_version: str
    sklearn_version: str
    numpy_version: str
    reference_sha256: str | None
    reference_rows: int
    source: str
    origin: dict[str, Any]
    parent_version: int | None
    archived: bool
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    profile_sha256: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class VersionSummary(_AsDict):
    """What a listing shows of a version; `Registry.get` gives the full VersionInfo."""

    name: str
    version: int
    estimator_class: str
    description: str
    metrics: dict[str, float]
    created_at: datetime
    created_by: str
    archived: bool
    artifact_sha256: str
    parent_version: int | None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class ModelInfo(_AsDict):
    """A registered model with a summary of its versions."""

    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    versions: int
    latest_version: int | None
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class EventInfo(_AsDict):
    """One entry of the append-only ledger."""

    at: datetime
    model: str
    kind: str
    actor: str
    deployment: str | None
    alias: str | None
    from_version: int | None
    to_version: int | None
    reason: str
    detail: dict[str, Any]


@dataclass
class StateAt(_AsDict):
    """What a model looked like at one moment, replayed from the ledger."""

    at: datetime
    versions: list[int]
    aliases: dict[str, int]
    serving: dict[str, int]


@dataclass
class History(_AsDict):
    """A model's ledger up to a moment, and its state at that moment."""

    model: str
    events: list[EventInfo]
    state: StateAt


@dataclass
class DeploymentInfo(_AsDict):
    """The desired state of one deployment, as the registry stores it."""

    name: str
    model: str
    version: int
    standby_version: int | None
    host: str
    port: int
    workers: int
    options: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    #: The hosts that serve it on a shared registry (`registry.placement`); empty: this home's supervisor.
    placement: list[str] = field(default_factory=list)
    #: The number of the last change requested through the database, and what it asks for.
    generation: int = 0
    desired: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostInfo:
    """A host of a shared registry as its heartbeat left it (`registry.hosts`)."""

    name: str
    address: str
    version: str
    cpus: int
    memory_bytes: int
    pid: int
    exporter: str | None
    started_at: datetime
    #: Seconds since its last heartbeat, by the database's clock.
    heartbeat_age: float
    #: "up", "lost" (no heartbeat for `registry.hosts.LOST_AFTER` seconds) or "stopped".
    state: str
    cpu_percent: float | None = None
    memory_percent: float | None = None
    #: Per deployment it runs: generation acted on, outcome, message, version, workers, live figures.
    deployments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertInfo:
    """An objective's alert (see `registry.alerts`); `silenced` when a silence covers it now."""

    id: int
    deployment: str
    model: str
    version: int
    kind: str
    severity: str
    state: str
    started_at: datetime
    fired_at: datetime | None
    ended_at: datetime | None
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    notified: str = ""
    silenced: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "fired_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


@dataclass(frozen=True)
class SilenceInfo:
    """A silence of alerts (see `registry.alerts.add_silence`)."""

    id: int
    deployment: str
    kind: str | None
    author: str
    reason: str
    created_at: datetime
    expires_at: datetime

    def describe(self, until: str) -> str:
        """`all alerts of iris until 14:30 by ana@host: deploying a fix` (`until`: the expiry as shown)."""
        where = "every deployment" if self.deployment == "*" else self.deployment
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind or 'all'} alerts of {where} until {until} by {self.author}{why}"

    def matches(self, deployment: str, kind: str, now: datetime) -> bool:
        return self.deployment in ("*", deployment) and self.kind in (None, kind) and self.expires_at > now

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"], data["expires_at"] = self.created_at.isoformat(), self.expires_at.isoformat()
        return data
