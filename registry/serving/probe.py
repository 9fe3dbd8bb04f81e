"""Ask model servers directly whether they serve, for when no supervisor answers.

Model servers outlive their supervisor, so "no supervisor" does not mean "down": each deployment's
own port is asked `GET /health/ready` (never authenticated), all of them at once, each with a short
timeout, so a status with fifty deployments still answers within about one timeout.
"""

from __future__ import annotations

import http.client
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Seconds one probe may take: a server on loopback answers in about a millisecond.
PROBE_TIMEOUT = 0.5
SERVING, NOT_READY, DOWN = "serving", "not ready", "down"
#: Said after the state when it comes from probing rather than from the supervisor.
NO_SUPERVISOR = "supervisor down"


def probe_ready(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str:
    """`serving` (200), `not ready` (it answers, but not 200) or `down` (nothing answers in time)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/health/ready")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return DOWN
    finally:
        connection.close()
    return SERVING if status == 200 else NOT_READY


def probe_deployments(deployments: list[dict[str, Any]], timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """Deployment name -> `probe_ready` state; the deployments (name, host, port) are probed at once."""
    if not deployments:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(deployments))) as pool:
        states = pool.map(lambda d: probe_ready(d["host"], d["port"], timeout), deployments)
        return {d["name"]: state for d, state in zip(deployments, states, strict=True)}
