"""Short texts of live figures for table cells (sums over a model's deployments)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.info import AlertInfo


def _points(live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["live"] for d in live if d.get("live")]


def rps_text(live: list[dict[str, Any]]) -> str:
    points = _points(live)
    return f"{sum(p['rps'] for p in points):.1f}" if points else "-"


def p99_text(live: list[dict[str, Any]]) -> str:
    values = [p["p99"] for p in _points(live) if p.get("p99") is not None]
    return f"{max(values) * 1e3:.1f}ms" if values else "-"


def error_share(live: list[dict[str, Any]]) -> str:
    points = _points(live)
    requests = sum(p.get("requests") or 0 for p in points)  # (another host's heartbeat has no counts)
    if not requests:
        return "-"
    errors = sum(p["client_errors"] + p["server_errors"] for p in points)
    return f"{100 * errors / requests:.1f}"


def drift_text(live: list[dict[str, Any]]) -> str:
    verdicts = [(d.get("drift") or {}).get("status") for d in live]
    for level in ("damaged reference", "drift", "warn", "ok", "not enough data", "no reference"):
        if level in verdicts:
            return {"not enough data": "n/a", "no reference": "no ref", "damaged reference": "damaged"}.get(
                level, level
            )
    return "-"


def multivariate_text(drift: dict[str, Any] | None) -> str | None:
    """`PCA error x1.42  p<0.001  drift`: a drift report's multivariate signal (None when it has none:
    no reference, a profile saved before it, or too few inputs)."""
    signal = (drift or {}).get("multivariate")
    if not signal or signal.get("error_ratio") is None:
        return None
    p = signal.get("p_value")
    chance = "p -" if p is None else "p<0.001" if p < 0.001 else f"p={p:.3f}"
    return f"PCA error x{signal['error_ratio']:.2f}  {chance}  {signal['status']}"


def alert_text(alert: AlertInfo | None) -> str:
    """A deployment's alert in a list: FIRING, pending, quiet (silenced), or "-"."""
    if alert is None:
        return "-"
    if alert.silenced:
        return "quiet"
    return "FIRING" if alert.state == "firing" else alert.state


def state_text(live: dict[str, Any], supervisor_up: bool) -> str:
    """The deployment's state, with what its workers are doing meanwhile (`running, loading v3`)."""
    if not live:
        return "stopped" if supervisor_up else "down"
    doing = []
    for process in live.get("processes") or []:
        if process["state"] in ("loading", "loaded", "draining", "failed"):
            text = f"{'loading' if process['state'] == 'loaded' else process['state']} v{process['version']}"
            if text not in doing:
                doing.append(text)
    status = live.get("status", "?")
    rollout = live.get("rollout")
    if rollout:  # what a running deployment is trying: `canary v2 25%`, `shadow v2`
        share = f" {rollout['weight']:g}%" if rollout["mode"] == "canary" else ""
        doing.insert(0, f"{rollout['mode']} v{rollout['version']}{share}")
        if status == "running":
            return ", ".join(doing)
    return ", ".join([status, *doing])


def uptime_text(live: dict[str, Any]) -> str:
    """How long the serving workers have been up (the oldest of them)."""
    serving = [p["uptime_s"] for p in live.get("processes") or [] if p["role"] == "active"]
    if not serving:
        return "-"
    seconds = int(max(serving))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


_BLOCKS = "▁▂▃▄▅▆▇█"
_ASCII_LEVELS = "_.-=+*#"


def sparkline(values: Iterable[float], ascii: bool = False) -> str:
    """A one-line trend, one character per value, scaled to the largest (all zero: a flat line)."""
    levels = _ASCII_LEVELS if ascii else _BLOCKS
    values = list(values)
    if not values:
        return "-"
    top = max(values)
    if top <= 0:
        return levels[0] * len(values)
    return "".join(levels[round(v / top * (len(levels) - 1))] for v in values)
