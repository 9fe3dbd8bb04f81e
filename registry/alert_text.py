"""Objectives, silences and webhooks as people type and read them: durations, percentages, burn-rate
windows, URLs (checked, and shown without their password)."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

from registry.errors import ObjectiveError

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
MAX_DURATION = 3650 * 86400.0  # ten years: a silence, a window or a threshold longer is a typo
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """Seconds from "250ms", "30s", "5m", "2h", "1d" (a bare number is in `default_unit`)."""
    found = _DURATION.fullmatch(text) if text.isascii() else None
    if not found:
        raise ObjectiveError(f"{text!r} is not a duration (e.g. 250ms, 30s, 5m, 2h)")
    seconds = float(found.group(1)) * _UNITS[found.group(2) or default_unit]
    if seconds > MAX_DURATION:
        raise ObjectiveError(f"{text!r} is longer than {format_duration(MAX_DURATION)}")
    return seconds


def parse_percent(text: str) -> float:
    """A share from "99.9" or "99.9%"."""
    try:
        value = float(text.strip().rstrip("%")) if text.isascii() else math.nan
    except ValueError:
        raise ObjectiveError(f"{text!r} is not a percentage (e.g. 99.9)") from None
    if not 0 < value < 100:  # (NaN too)
        raise ObjectiveError(f"a target must be between 0 and 100 (exclusive); got {text}")
    return value / 100.0


def format_percent(share: float) -> str:
    """ "99.9%": a share as a percentage, no trailing zeros."""
    return f"{share * 100:.6g}%"


def format_duration(seconds: float) -> str:
    """ "2h", "5m", "90s": the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def parse_windows(text: str) -> list[dict[str, Any]]:
    """`1h/5m@14.4:critical,6h/30m@6` as burn-rate windows (severity defaults to critical for the first,
    warning for the second)."""
    out = []
    for index, part in enumerate(text.split(",")):
        spans, at, rest = part.strip().partition("@")
        long, slash, short = spans.partition("/")
        burn, _, severity = rest.partition(":")
        if not (at and slash and burn):
            raise ObjectiveError(
                f"a window is LONG/SHORT@BURN[:SEVERITY], e.g. 1h/5m@14.4:critical; got {part!r}"
            )
        try:
            factor = float(burn) if burn.isascii() else math.nan
        except ValueError:
            raise ObjectiveError(f"{burn!r} is not a burn rate (a number, e.g. 14.4)") from None
        out.append(
            {
                "long": parse_duration(long),
                "short": parse_duration(short),
                "burn": factor,
                "severity": severity or ("critical", "warning")[min(index, 1)],
            }
        )
    return out


def check_url(url: str) -> None:
    """An ObjectiveError unless `url` is an http(s) URL a client can post to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or url != url.strip()
        or any(c.isspace() for c in url)
        or len(url) > 2048
    ):
        raise ObjectiveError(
            "the webhook must be an http(s) URL with a host (and a port from 1 to 65535); "
            f"got {shown_url(url)!r}"
        )


def shown_url(url: str) -> str:
    """`url` with any password in it replaced by `***` (for output and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
