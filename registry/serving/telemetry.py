"""Whether a model server exports OpenTelemetry, and where to (opt-in; free when off).

On with `--otlp URL` (`modeldeck serve`, `modeldeck deploy`, `modeldeck supervisor start`) or the
standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT` variables; off
with `--otlp off`, `OTEL_SDK_DISABLED=true`, or per signal `OTEL_{TRACES,METRICS}_EXPORTER=none`.
This module imports no OpenTelemetry: `registry.serving.otel_export` does, and is imported only when
something is to be exported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.serving.options import OFF, OptionError

if TYPE_CHECKING:
    from registry.serving.otel_export import Telemetry

INSTALL = "pip install 'modeldeck[otel]'"
#: The one OTLP protocol exported (OTLP/HTTP with protobuf bodies), and the variables that choose one.
PROTOCOL = "http/protobuf"
PROTOCOL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
)
#: The packages of the `otel` extra.
_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")

log = logging.getLogger("modeldeck.worker")


@dataclass(frozen=True)
class Targets:
    """What to export: each signal's OTLP/HTTP URL, "" for the exporter's own `OTEL_*` reading, None
    for not at all."""

    traces: str | None
    metrics: str | None


def installed() -> bool:
    """Whether the `otel` extra (the OpenTelemetry SDK and its OTLP/HTTP exporter) is installed."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _MODULES)
    except ModuleNotFoundError:
        return False


def require_installed(otlp: str | None) -> None:
    """OptionError (one line naming the extra) when `--otlp URL` is asked for without the extra."""
    if otlp and otlp != OFF and not installed():
        raise OptionError("otlp", f"--otlp needs OpenTelemetry, which is not installed: {INSTALL}")


def unsupported_protocol(env: Mapping[str, str] = os.environ) -> str | None:
    """One line naming the first `OTEL_EXPORTER_OTLP_*PROTOCOL` variable set to another protocol than
    http/protobuf (grpc, http/json: the exporter would send OTLP/HTTP protobuf regardless), else None."""
    for name in PROTOCOL_VARIABLES:
        value = env.get(name, "").strip()
        if value and value.lower() != PROTOCOL:
            return (
                f"{name}={value} is not supported: modeldeck exports OTLP as {PROTOCOL} only "
                f"(set {PROTOCOL} or unset it)"
            )
    return None


def require_usable(otlp: str | None, env: Mapping[str, str] = os.environ) -> None:
    """OptionError (one line) when export would be on, by `otlp` or by `env`, over a protocol that
    modeldeck does not send."""
    problem = unsupported_protocol(env) if targets(otlp, env) is not None else None
    if problem:
        raise OptionError("otlp", problem)


def targets(otlp: str | None, env: Mapping[str, str] = os.environ) -> Targets | None:
    """Where this server exports to: `otlp` (a flag's URL, or `off`) wins over the `OTEL_*`
    environment; None when nothing is to be exported."""
    if otlp == OFF or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None

    def target(signal: str) -> str | None:
        if env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none":
            return None
        if otlp:
            return f"{otlp}/v1/{signal.lower()}"
        given = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return "" if given else None

    found = Targets(traces=target("TRACES"), metrics=target("METRICS"))
    return found if (found.traces, found.metrics) != (None, None) else None


def start(otlp: str | None, *, deployment: str, model: str, version: int) -> Telemetry | None:
    """The server's exporter of spans and metrics, or None when off (nothing is imported then).
    Wanted but not installed, or not startable: the log says why, and the server serves without it."""
    wanted = targets(otlp)
    if wanted is None:
        return None
    if not installed():
        log.warning("OpenTelemetry export is configured but OpenTelemetry is not installed (%s)", INSTALL)
        return None
    problem = unsupported_protocol()
    if problem:
        log.warning("OpenTelemetry export is off: %s", problem)
        return None
    from registry.serving.otel_export import Telemetry

    try:
        return Telemetry(wanted, deployment=deployment, model=model, version=version)
    except Exception:  # a bad OTEL_* setting: serving matters more than its telemetry
        log.exception("OpenTelemetry export not started")
        return None
