"""Hosts as the CLI and the console show them (no Textual, no Typer: both import it)."""

from __future__ import annotations

from typing import Any

from registry.info import HostInfo

#: The columns of a host's line (`host_cells`), in the CLI's table and the console's.
HEADINGS = ("HOST", "STATE", "ADDRESS", "HEARTBEAT", "CPU", "MEM", "DEPLOYMENTS", "VERSION")


def age_text(seconds: float) -> str:
    """`3 s ago`, `4 min ago`, `2 h ago`, `5 d ago`: within the HEARTBEAT column's 10 cells."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit} ago"
    return f"{whole} s ago"


def deployments_text(host: HostInfo) -> str:
    """`web v2 x2, api v1 x1`: what the host runs, by name; a lost or stopped host's `web (unknown)`."""
    running = [
        (name, entry)
        for name, entry in sorted(host.deployments.items())
        if isinstance(entry, dict) and entry.get("state") not in (None, "stopped")
    ]
    if not running:
        return "-"
    if host.state != "up":
        return ", ".join(f"{name} (unknown)" for name, _ in running)
    return ", ".join(f"{name} v{_get(e, 'version')} x{_get(e, 'workers')}" for name, e in running)


def _get(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    return "?" if value is None else str(value)


def host_cells(host: HostInfo) -> list[str]:
    """HOST, STATE, ADDRESS, HEARTBEAT, CPU, MEM, DEPLOYMENTS, VERSION of one host."""
    return [
        host.name,
        host.state,
        host.address,
        age_text(host.heartbeat_age),
        "-" if host.cpu_percent is None else f"{host.cpu_percent:.0f}% of {host.cpus}",
        "-" if host.memory_percent is None else f"{host.memory_percent:.0f}%",
        deployments_text(host),
        host.version,
    ]
