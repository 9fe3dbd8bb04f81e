"""The supervisor's control protocol, defined once: requests, answers and the states they carry.

The control API (`registry.serving.control`) decodes each request body into its dataclass here, the
supervisor answers with these dataclasses, and the client (`registry.serving.client`) decodes the
answers back into them, so the CLI and the console read attributes, not dictionary keys.

`Message.decode` is strict for requests: an unknown field, a value of the wrong JSON type or an
unknown state is an `OptionError` naming the field (a 400 from the control API). Answers are decoded
leniently (an unknown field is ignored, so a newer supervisor's answers still read). `Message.as_dict`
gives the JSON shape, key for key in declaration order, which is what `--json` prints; fields left at
`OMIT` are left out. Messages also read like that JSON (`answer["deployments"]`) for scripts and tests
written against the JSON answers.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, NotRequired, TypedDict, TypeVar, Union

from registry.serving.options import OptionError

M = TypeVar("M", bound="Message")


class WorkerState(enum.StrEnum):
    """A worker's state, as it reports it (see `registry.serving.lifecycle`)."""

    LOADING = "loading"
    LOADED = "loaded"
    STANDBY = "standby"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class DeploymentState(enum.StrEnum):
    """A deployment's state as the supervisor sees it."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    CRASH_LOOPING = "crash-looping"
    FAILED = "failed"
    STOPPED = "stopped"


class Role(enum.StrEnum):
    """What a worker does for its deployment."""

    ACTIVE = "active"
    STANDBY = "standby"
    #: Started for a change not made yet (loading, or loaded and waiting for the switch).
    INCOMING = "incoming"
    #: Leaving service (draining or stopping).
    OUTGOING = "outgoing"
    #: A canary's or shadow's version, answering on a private socket what the active workers send it.
    CANDIDATE = "candidate"


class Omitted(enum.Enum):
    """The type of `OMIT`: a field left out of the JSON (not null)."""

    OMIT = "omit"


OMIT = Omitted.OMIT

_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


class Message:
    """Base of every protocol dataclass: decoding with errors naming the field, and the JSON shape."""

    #: Whether `decode` refuses fields it does not know (requests: yes; answers: no).
    strict: ClassVar[bool] = False

    @classmethod
    def decode(cls: type[M], data: Any, where: str = "") -> M:
        """`data` (parsed JSON) as this message; an `OptionError` naming the field if it does not fit."""
        if not isinstance(data, dict):
            raise OptionError(where or "body", f"'{where}' must be an object, not {_json_type(data)}")
        plan = _plan(cls)
        if cls.strict:
            for key in data:
                if key not in plan.names:
                    name = _join(where, key)
                    known = ", ".join(sorted(plan.names))
                    raise OptionError(name, f"'{name}' is not a field of this request (known: {known})")
        values: dict[str, Any] = {}
        for field_name, kinds, nullable, required, omissible in plan.fields:
            value = data.get(field_name)
            if value is not None:
                values[field_name] = _convert(where, field_name, value, kinds)
            elif required:
                if nullable and field_name in data:  # a field that must be there, possibly null
                    values[field_name] = None
                    continue
                name = _join(where, field_name)
                raise OptionError(name, f"'{name}' is required: {_wanted(kinds[0])}")
            elif omissible and nullable and field_name in data:
                values[field_name] = None  # there, and null (not left out)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: fields in order, enums as strings, fields left at `OMIT` left out."""
        return {
            f.name: _plain(value)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if (value := getattr(self, f.name)) is not OMIT
        }

    def __getitem__(self, key: str) -> Any:
        """Read the message like its JSON (`status["deployments"]`), for scripts and tests."""
        value = getattr(self, key, OMIT) if key in _plan(type(self)).names else OMIT
        if value is OMIT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in _plan(type(self)).names and getattr(self, key) is not OMIT


# ---------------------------------------------------------------------- requests
@dataclass
class DeployRequest(Message):
    """POST /deploy: serve `ref` as deployment `name` (default: the model's name)."""

    strict = True
    ref: str
    name: str | None = None
    host: str | None = None
    port: int | None = None
    workers: int | None = None
    #: Checked key by key against `registry.serving.options.DEPLOY_OPTIONS`.
    options: dict[str, Any] = field(default_factory=dict)
    actor: str = ""
    reason: str = ""
    #: Deliver progressively: "canary" (a rising share of requests) or "shadow" (a copy of each);
    #: None: switch all traffic at once.
    rollout: str | None = None
    #: The canary's steps and checks (`registry.monitoring.canary.AnalysisSettings`' fields).
    analysis: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutRequest(Message):
    """POST /promote or /abort: end the deployment's canary or shadow, its candidate serving or not."""

    strict = True
    name: str
    actor: str = ""
    reason: str = ""


@dataclass
class RollbackRequest(Message):
    """POST /rollback: put the standby (or version `to`) back in service."""

    strict = True
    name: str
    to: int | None = None
    actor: str = ""
    reason: str = ""


@dataclass
class StopRequest(Message):
    """POST /stop: forget the deployment, then drain and stop its workers."""

    strict = True
    name: str
    actor: str = ""
    reason: str = ""


@dataclass
class ScaleRequest(Message):
    """POST /scale: run `workers` processes for the deployment."""

    strict = True
    name: str
    workers: int
    actor: str = ""
    reason: str = ""


@dataclass
class ShutdownRequest(Message):
    """POST /shutdown: stop the daemon (and, with `stop_servers`, its model servers)."""

    strict = True
    stop_servers: bool = False


# ---------------------------------------------------------------------- answers
@dataclass
class WorkerStatus(Message):
    """One worker process of a deployment."""

    pid: int
    version: int
    role: Role
    state: WorkerState
    uptime_s: float


@dataclass
class DeploymentStatus(Message):
    """One deployment: what the registry wants (its row), and what runs for it."""

    name: str
    model: str
    version: int
    standby_version: int | None
    host: str
    port: int
    workers: int
    options: dict[str, Any]
    updated_at: str | None
    url: str
    outside_url: str | None
    status: DeploymentState
    message: str
    restarts: int
    workers_running: int
    processes: list[WorkerStatus]
    #: The bearer token clients must send (only for a deployment with auth; None if unusable).
    token: str | Omitted | None = OMIT
    #: Why nothing was done (e.g. it already serves that version).
    note: str | Omitted = OMIT
    #: The canary or shadow under way (left out when none is).
    rollout: RolloutStatus | Omitted = OMIT


@dataclass
class RolloutStatus(Message):
    """A canary or shadow under way: its candidate, where it stands and its checks' last verdicts."""

    mode: str
    version: int
    #: running, promoting or aborting.
    stage: str
    #: The canary's step (1-based) and every step's share in percent; 0 and [] for a shadow.
    step: int
    steps: list[float]
    weight: float
    started: float
    step_elapsed: float
    #: Seconds until the step is judged for the next one (None for a shadow: promoted by hand).
    next_check: float | None
    settings: dict[str, Any]
    #: Each check's name, verdict (pass, fail, wait), both versions' figures and why.
    checks: list[dict[str, Any]]
    #: The serving workers' counts: forwarded to the candidate, answered by them instead (it could not
    #: take them), copies sent to a shadow, dropped with its queue full, lost on the way.
    traffic: dict[str, int] = field(default_factory=dict)


@dataclass
class Stopped(Message):
    """The answer of /stop."""

    name: str
    status: DeploymentState = DeploymentState.STOPPED


@dataclass
class SupervisorInfo(Message):
    """The supervisor daemon itself."""

    pid: int
    home: str
    since: float
    #: False while deployments found at start are still being brought up.
    settled: bool
    metrics: str | None
    metrics_note: str
    targets: str
    otlp: str | None


@dataclass
class Status(Message):
    """GET /status: the supervisor and every deployment, by name."""

    supervisor: SupervisorInfo
    deployments: list[DeploymentStatus]


@dataclass
class Stopping(Message):
    """The answer of /shutdown (the daemon stops after answering)."""

    stopping: bool = True


@dataclass
class ErrorBody(Message):
    """What went wrong: the message, the log lines that say why, and the field at fault if one is."""

    message: str
    log: list[str] = field(default_factory=list)
    field: str | Omitted = OMIT


@dataclass
class ErrorAnswer(Message):
    """Every 4xx/5xx answer of the control API."""

    error: ErrorBody


# ---------------------------------------------------------------------- monitor snapshot
class LivePoint(TypedDict):
    """One point of a deployment's live series (`registry.monitoring.timeseries`): one pull of its
    workers. Plain JSON on the wire and in the console's charts, so a TypedDict, not a dataclass."""

    seq: int
    t: float
    version: int
    requests: int
    rps: float
    ok: int
    client_errors: int
    server_errors: int
    rows: int
    rows_per_call: float | None
    in_flight: float
    p50: float | None
    p95: float | None
    p99: float | None
    mean_latency: float | None
    workers: int
    stale: int
    cpu: float | None
    rss: float | None
    threads: float | None
    fds: float | None
    latency_buckets: list[float]
    #: Per worker (pid as a string): cpu, rss, threads, fds, or None when they could not be read.
    processes: dict[str, dict[str, float] | None]
    #: During a canary or shadow, each serving version's requests, rps, server_errors and p99.
    by_version: NotRequired[dict[str, dict[str, float | None]]]


@dataclass
class Performance(Message):
    """Model performance: realised from labels, and estimated without them (None until known)."""

    realised: dict[str, Any] | None
    estimated: dict[str, Any] | None


@dataclass
class DeploymentFigures(Message):
    """One deployment's live figures: the newest point, the points after the cursor, drift."""

    live: LivePoint | None
    points: list[LivePoint]
    drift: dict[str, Any] | None
    performance: Performance


@dataclass
class MonitoringHealth(Message):
    """How monitoring itself fares: rollups, failed pulls, dropped samples, the prediction store."""

    rollups: dict[str, Any]
    pull_errors: dict[str, int]
    sample_dropped: dict[str, int]
    outcomes: dict[str, Any]
    store_error: str | None


@dataclass
class MonitorSnapshot(Message):
    """GET /monitor: what a console needs per refresh."""

    cursor: int
    host: dict[str, Any]
    deployments: dict[str, DeploymentFigures]
    monitoring: MonitoringHealth


# ---------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class _Plan:
    """How to decode one message class, worked out once: per field its name, the kinds its value may
    have, whether null is allowed, whether it must be there, whether it may be left out (`OMIT`)."""

    names: frozenset[str]
    fields: tuple[tuple[str, tuple[Any, ...], bool, bool, bool], ...]


_PLANS: dict[type, _Plan] = {}
_KINDS: dict[Any, tuple[Any, ...]] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        fields = []
        for item in dataclasses.fields(cls):
            options = _options(hints[item.name])
            required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
            fields.append(
                (item.name, _kinds(hints[item.name]), None in options, required, item.default is OMIT)
            )
        plan = _PLANS[cls] = _Plan(frozenset(f.name for f in dataclasses.fields(cls)), tuple(fields))
    return plan


def _kinds(hint: Any) -> tuple[Any, ...]:
    """The kinds a value of `hint` may have (None and `Omitted` aside), worked out once per hint."""
    kinds = _KINDS.get(hint)
    if kinds is None:
        kinds = _KINDS[hint] = tuple(c for c in _options(hint) if c is not None and c is not Omitted)
    return kinds


def _join(where: str, key: str | int) -> str:
    """The field's name as errors give it: `options.redact`, `deployments[0].status`."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _options(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union hint (`int | None` -> (int, None)); a single type alone."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(None if a is type(None) else a for a in typing.get_args(hint))
    return (hint,)


def _wanted(kind: Any) -> str:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in kind)
    if isinstance(kind, type) and issubclass(kind, Message):
        return "an object"
    return _TYPE_NAMES.get(typing.get_origin(kind) or kind, "a value")


def _convert(where: str, key: str | int, value: Any, kinds: tuple[Any, ...]) -> Any:
    """`value` (not None) as one of `kinds`, or an `OptionError` naming the field."""
    for kind in kinds:
        if kind is Any:
            return value
        origin = typing.get_origin(kind) or kind
        if origin is list:
            if isinstance(value, list):
                (item,) = typing.get_args(kind) or (Any,)
                if item is Any:
                    return value
                name, items = _join(where, key), _kinds(item)
                return [None if v is None else _convert(name, i, v, items) for i, v in enumerate(value)]
        elif origin is dict:
            if isinstance(value, dict):
                _, item = typing.get_args(kind) or (str, Any)
                if item is Any:
                    return value
                name, items = _join(where, key), _kinds(item)
                return {k: None if v is None else _convert(name, k, v, items) for k, v in value.items()}
        elif _fits(value, origin):
            return value
        elif issubclass(origin, enum.Enum):
            if isinstance(value, str):
                try:
                    return origin(value)
                except ValueError:
                    name = _join(where, key)
                    raise OptionError(name, f"'{name}' must be {_wanted(origin)}, not {value!r}") from None
        elif issubclass(origin, Message):
            if isinstance(value, dict):
                return origin.decode(value, _join(where, key))
        elif typing.is_typeddict(origin) and isinstance(value, dict):
            return value  # plain JSON by design (see `LivePoint`)
    name = _join(where, key)
    raise OptionError(name, f"'{name}' must be {_wanted(kinds[0])}, not {_json_type(value)}")


def _fits(value: Any, kind: type) -> bool:
    """Whether `value` is of JSON type `kind` (a bool is no number; an int is a number)."""
    if kind is float:
        return type(value) in (int, float)
    return type(value) is kind


def _json_type(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list"}
    return "null" if value is None else names.get(type(value), "an object")


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return value.as_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
