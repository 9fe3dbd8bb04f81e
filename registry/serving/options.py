"""Checks of every serving option and deployment name, shared by the CLI, the control API and the supervisor.

Each check returns the value in its canonical type or raises `OptionError` naming the field with one
message, the same wherever the value came from (a flag, a JSON body, a stored deployment).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from registry.errors import RegistryError

#: Deployment names become log file names: letters, digits, '.', '_' and '-', never a path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_WORKERS = 64
MAX_BODY_MB = 1024.0
MAX_SECONDS = 24 * 3600.0
MAX_CONNECTIONS = 1_000_000
BATCHING = ("auto", "on", "off")
OFF = "off"


class OptionError(RegistryError):
    """A serving option or name that cannot be used; `field` is its key in the control API."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def flag(field: str) -> str:
    """The command-line spelling of a field: `max_body_mb` -> `--max-body-mb`."""
    return "--" + field.replace("_", "-")


def check_name(name: Any) -> str:
    """A deployment name that is safe as a file name (no '/', no leading '.', at most 128 characters)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise OptionError(
            "name",
            f"deployment name {name!r} is not allowed: use up to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def check_port(port: Any) -> int:
    """A TCP port 1-65535. 0 ("any free port") is refused: leaving the port out picks a free one and
    records it, so the registry always holds the port that really serves."""
    value = _whole(port)
    if value is None or not 1 <= value <= 65535:
        raise OptionError(
            "port", f"--port must be between 1 and 65535 (leave it out for a free port), not {port!r}"
        )
    return value


def check_host(host: Any) -> str:
    """An IP address to bind (v4 or v6) or `localhost`."""
    if host == "localhost":
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise OptionError("host", f"--host must be an IP address or localhost, not {host!r}") from None


def check_workers(workers: Any) -> int:
    value = _whole(workers)
    if value is None or not 1 <= value <= MAX_WORKERS:
        raise OptionError("workers", f"workers must be between 1 and {MAX_WORKERS}, not {workers!r}")
    return value


def check_max_body_mb(megabytes: Any) -> float:
    value = _number(megabytes)
    if value is None or not 0 < value <= MAX_BODY_MB:
        raise OptionError(
            "max_body_mb", f"--max-body-mb must be above 0 and at most {MAX_BODY_MB:g}, not {megabytes!r}"
        )
    return value


def check_seconds(field: str, seconds: Any, *, positive: bool = False) -> float:
    """A duration in seconds: at least 0 (above 0 if `positive`), at most a day."""
    value = _number(seconds)
    low_ok = value is not None and (value > 0 if positive else value >= 0)
    if value is None or not low_ok or value > MAX_SECONDS:
        bound = "above 0" if positive else "at least 0"
        raise OptionError(
            field, f"{flag(field)} must be {bound} and at most {MAX_SECONDS:g} seconds, not {seconds!r}"
        )
    return value


def check_max_connections(count: Any) -> int:
    value = _whole(count)
    if value is None or not 1 <= value <= MAX_CONNECTIONS:
        raise OptionError(
            "max_connections", f"--max-connections must be between 1 and {MAX_CONNECTIONS}, not {count!r}"
        )
    return value


def check_batching(mode: Any) -> str:
    if mode not in BATCHING:
        raise OptionError("batching", f"--batching must be auto, on or off, not {mode!r}")
    return str(mode)


def check_metrics_address(address: Any) -> str | None:
    """The Prometheus exporter's `HOST:PORT`, or None for `off`."""
    if address == "off":
        return None
    host, colon, port = str(address).rpartition(":")
    try:
        if not colon:
            raise OptionError("metrics", "")
        return f"{check_host(host.strip('[]') or '127.0.0.1')}:{check_port(port)}"
    except OptionError:
        raise OptionError("metrics", f"--metrics must be HOST:PORT or off, not {address!r}") from None


def check_otlp(url: Any) -> str:
    """An OTLP/HTTP receiver's base URL (`http[s]://HOST:PORT`, as `OTEL_EXPORTER_OTLP_ENDPOINT`;
    `/v1/traces` and `/v1/metrics` are added), or `off`. A path is refused: `.../v1/traces` would
    become `.../v1/traces/v1/traces` (a receiver under a path prefix: `OTEL_EXPORTER_OTLP_*ENDPOINT`)."""
    if url == OFF:
        return OFF
    try:
        parts = urlsplit(url if isinstance(url, str) else "")
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and not (parts.query or parts.fragment) and parts.path in ("", "/")
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        ok = False
    if not ok:
        raise OptionError(
            "otlp",
            "--otlp must be the base URL http(s)://HOST:PORT of an OTLP receiver (/v1/traces and "
            f"/v1/metrics are added), or off, not {url!r}",
        )
    return url.rstrip("/")


def _check_flag(field: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise OptionError(field, f"option {field} must be true or false, not {value!r}")
        return value

    return check


@dataclass(frozen=True)
class Option:
    """A deployment option: its JSON type in a control request, and the check of its value."""

    kind: type
    check: Callable[[Any], Any]


#: Every option a deployment may carry, with its JSON type and check (a deploy with another key is
#: refused). The one definition: the CLI, the control API and the supervisor all check against it.
DEPLOY_OPTIONS: dict[str, Option] = {
    "batching": Option(str, check_batching),
    "max_body_mb": Option(float, check_max_body_mb),
    "redact": Option(bool, _check_flag("redact")),
    "no_auth": Option(bool, _check_flag("no_auth")),
    "monitoring": Option(bool, _check_flag("monitoring")),
    "prediction_store": Option(bool, _check_flag("prediction_store")),
    "max_connections": Option(int, check_max_connections),
    "idle_timeout": Option(float, lambda v: check_seconds("idle_timeout", v, positive=True)),
    "header_timeout": Option(float, lambda v: check_seconds("header_timeout", v, positive=True)),
    "body_timeout": Option(float, lambda v: check_seconds("body_timeout", v, positive=True)),
    "predict_timeout": Option(float, lambda v: check_seconds("predict_timeout", v, positive=True)),
    "otlp": Option(str, check_otlp),
}
_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def check_option_types(options: dict[str, Any]) -> None:
    """Refuse an option value of the wrong JSON type (a control request's `options.KEY`); the value
    itself is checked by `check_options`. Unknown keys are left to `check_options`."""
    for key, value in options.items():
        option = DEPLOY_OPTIONS.get(key)
        if option is None or value is None:
            continue
        fits = type(value) in (int, float) if option.kind is float else type(value) is option.kind
        if not fits:
            names = {**_JSON_TYPES, bool: "a boolean", list: "a list", dict: "an object"}
            got = names.get(type(value), "an object")
            raise OptionError(
                f"options.{key}", f"'options.{key}' must be {_JSON_TYPES[option.kind]}, not {got}"
            )


def check_options(options: Any) -> dict[str, Any]:
    """A deployment's options dict, every key known and every value checked (None values dropped)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise OptionError("options", f"options must be an object, not {type(options).__name__}")
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key not in DEPLOY_OPTIONS:
            known = ", ".join(sorted(DEPLOY_OPTIONS))
            raise OptionError("options", f"unknown deployment option {key!r} (known: {known})")
        if value is not None:
            checked[key] = DEPLOY_OPTIONS[key].check(value)
    return checked


def check_deploy(
    name: Any, host: Any, port: Any, workers: Any, options: Any
) -> tuple[str | None, str | None, int | None, int | None, dict[str, Any]]:
    """The arguments of a deploy, checked (None stays None: the default applies)."""
    return (
        None if name is None else check_name(name),
        None if host is None else check_host(host),
        None if port is None else check_port(port),
        None if workers is None else check_workers(workers),
        check_options(options),
    )


def _whole(value: Any) -> int | None:
    """An int from an int or a string of digits (never a bool or a float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,12}", value.strip()):
        return int(value)
    return None


def _number(value: Any) -> float | None:
    """A finite float from an int, float or numeric string (never a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
