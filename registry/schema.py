"""SQLModel tables of the registry: the system of record.

Times are timezone-aware UTC datetimes (`timestamptz` on PostgreSQL, UTC text on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC: the form every table stores."""
    return datetime.now(UTC)


class RegisteredModel(SQLModel, table=True):
    """A named model; its versions are numbered from 1 by `next_version`."""

    __tablename__ = "registered_model"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    description: str = ""
    next_version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    """One immutable version: its artifact, what it expects and what it was trained with."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="registered_model.id", index=True)
    version: int
    artifact_sha256: str = Field(index=True, max_length=64)
    artifact_size: int
    artifact_format: str = "skops"
    trusted_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    estimator_class: str
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    python_version: str
    sklearn_version: str
    numpy_version: str
    signature: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    output: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    description: str = ""
    reference_sha256: str | None = Field(default=None, max_length=64)
    reference_rows: int = 0
    #: The drift profile fitted on the reference sample at registration (None: no reference, or older).
    profile_sha256: str | None = Field(default=None, max_length=64)
    source: str = ""
    origin: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    parent_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = ""
    archived_at: datetime | None = None


class ModelAlias(SQLModel, table=True):
    """A movable name (`champion`, `staging`, ...) for one version of a model."""

    __tablename__ = "model_alias"

    model_id: int = Field(foreign_key="registered_model.id", primary_key=True)
    alias: str = Field(primary_key=True, max_length=64)
    version_id: int = Field(foreign_key="model_version.id", index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class ModelTag(SQLModel, table=True):
    """A key/value tag on a whole model."""

    __tablename__ = "model_tag"

    model_id: int = Field(foreign_key="registered_model.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=128)
    value: str = ""


class VersionTag(SQLModel, table=True):
    """A key/value tag on one version."""

    __tablename__ = "version_tag"

    version_id: int = Field(foreign_key="model_version.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=128)
    value: str = ""


class Deployment(SQLModel, table=True):
    """Desired state of one deployment: what should serve, where, with how many workers."""

    __tablename__ = "deployment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    model_id: int = Field(foreign_key="registered_model.id", index=True)
    version_id: int = Field(foreign_key="model_version.id", index=True)
    standby_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    host: str = "127.0.0.1"
    port: int | None = None
    workers: int = 1
    state: str = "running"
    #: Serving options: auth (bearer token beyond loopback), batching, max_body_mb, redact.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The hosts that serve it (several hosts on one PostgreSQL registry); empty: the home's one supervisor.
    placement: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    #: Bumped by every change requested through the database (`registry.placement`).
    generation: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    #: What that change asks for: version, workers, rollout, stopped (see `registry.placement`).
    desired: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Append-only ledger: who did what to which model, when, and from which version to which."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    model_name: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=64)
    actor: str = ""
    deployment: str | None = Field(default=None, max_length=128)
    alias: str | None = Field(default=None, max_length=64)
    from_version: int | None = None
    to_version: int | None = None
    reason: str = ""
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class MetricRollup(SQLModel, table=True):
    """Serving figures of one deployment's version over a 10 s or 1 min window, kept for charts'
    history (two versions serving in one window, around a switch, each have their row)."""

    __tablename__ = "metric_rollup"
    __table_args__ = (
        UniqueConstraint("deployment", "resolution", "at", "version", name="uq_rollup_window_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True, max_length=128)
    model: str = Field(max_length=128)
    version: int
    resolution: int  # seconds: 10 or 60
    at: datetime = Field(index=True)  # window start, UTC
    requests: float = 0.0
    ok: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    cpu: float | None = None
    rss: float | None = None
    drift_status: str | None = Field(default=None, max_length=32)
    drift_share: float | None = None


class PerformanceRollup(SQLModel, table=True):
    """Realised performance of one deployment's version over the predictions it made in one minute,
    rewritten as their labels arrive (see `registry.monitoring.performance`)."""

    __tablename__ = "performance_rollup"
    __table_args__ = (UniqueConstraint("deployment", "at", "version", name="uq_performance_window"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True, max_length=128)
    model: str = Field(max_length=128)
    version: int
    at: datetime = Field(index=True)  # minute the predictions were made in, UTC
    predicted: int = 0
    labelled: int = 0
    accuracy: float | None = None
    f1: float | None = None
    log_loss: float | None = None
    mae: float | None = None
    rmse: float | None = None
    label_delay: float | None = None  # median seconds from prediction to label


class Objective(SQLModel, table=True):
    """One service-level objective of a deployment (see `registry.alerts`): a deployment without a row
    of a kind has that kind's default."""

    __tablename__ = "objective"
    __table_args__ = (UniqueConstraint("deployment", "kind", name="uq_objective_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=32)  # availability, latency, drift
    enabled: bool = True
    target: float  # the share of good events (requests, or seconds of drift judgments) aimed at
    threshold: float | None = None  # latency: seconds; drift: the level (1 warn, 2 drift)
    #: Burn-rate windows, each {"long": s, "short": s, "burn": factor, "severity": name}.
    windows: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    author: str = ""
    updated_at: datetime = Field(default_factory=utcnow)


class Alert(SQLModel, table=True):
    """An objective's alert through its life: pending, firing, resolved (or cleared unfired)."""

    __tablename__ = "alert"

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True, max_length=128)
    model: str = Field(max_length=128)
    version: int
    kind: str = Field(max_length=32)
    severity: str = Field(max_length=32)
    state: str = Field(index=True, max_length=16)  # pending, firing, resolved, cleared
    started_at: datetime = Field(default_factory=utcnow)  # pending (or firing) since
    fired_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""
    #: The figures of the evaluation that last changed the state (burn rates, ratios, windows).
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    notified: str = Field(default="", max_length=16)  # the last state sent to the webhook


class Silence(SQLModel, table=True):
    """No notification for alerts of `deployment` ("*": every one) and `kind` (None: every kind)
    until `expires_at`."""

    __tablename__ = "silence"

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(max_length=128)
    kind: str | None = Field(default=None, max_length=32)
    author: str = ""
    reason: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class AlertDelivery(SQLModel, table=True):
    """A webhook notification to send (an outbox row): kept until the receiver took it."""

    __tablename__ = "alert_delivery"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(index=True)
    status: str = Field(max_length=16)  # firing or resolved
    url: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = Field(default=None, index=True)
    last_error: str = ""


class Setting(SQLModel, table=True):
    """A setting of the whole registry (the alert webhook's URL)."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class Host(SQLModel, table=True):
    """A supervisor's host on a shared (PostgreSQL) registry, kept by its heartbeat."""

    __tablename__ = "host"

    name: str = Field(primary_key=True, max_length=128)
    address: str = Field(max_length=255)
    version: str = Field(max_length=32)
    cpus: int = 1
    memory_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    pid: int = 0
    exporter: str | None = Field(default=None, max_length=255)
    started_at: datetime = Field(default_factory=utcnow)
    #: Written with the database's clock, and judged against it (`registry.hosts`).
    heartbeat_at: datetime = Field(default_factory=utcnow)
    #: Set when its supervisor stopped cleanly (else a silent host is lost).
    stopped_at: datetime | None = None
    cpu_percent: float | None = None
    memory_percent: float | None = None
    #: Per deployment it runs: the generation it acted on, its outcome, and live figures.
    deployments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Blob(SQLModel, table=True):
    """An artifact stored in the database (PostgreSQL registries), by sha256, in `BlobChunk`s."""

    __tablename__ = "blob"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    chunks: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class BlobChunk(SQLModel, table=True):
    """One piece of a `Blob`, in order."""

    __tablename__ = "blob_chunk"

    sha256: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
