"""Rollups of the supervisor's one-second points into 10 s and 1 min windows, kept in the registry DB.

Points are summed into the window they fall in; a window is closed when a point of a later window
arrives and waits in memory until written. A failed write keeps the rows for the next flush (the
live view never depends on the DB). Old rollups are pruned by resolution (a day of 10 s windows and a
month of 1 min windows by default).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from registry.monitoring.timeseries import quantile
from registry.schema import MetricRollup
from registry.store import Database

log = logging.getLogger("modeldeck.supervisor")
RESOLUTIONS = (10, 60)
DEFAULT_RETENTION = {10: timedelta(days=1), 60: timedelta(days=30)}
#: Rollups kept in memory while the DB refuses them (beyond this the oldest are dropped).
MAX_PENDING = 100_000
_TABLE = MetricRollup.__table__  # type: ignore[attr-defined]


@dataclass
class _Window:
    deployment: str
    model: str
    version: int
    resolution: int
    start: float
    counts: dict[str, float] = field(
        default_factory=lambda: {"requests": 0.0, "ok": 0.0, "client_errors": 0.0, "server_errors": 0.0}
    )
    buckets: list[float] | None = None
    cpu: list[float] = field(default_factory=list)
    rss: float | None = None
    drift: dict[str, Any] | None = None

    def add(self, point: dict[str, Any], drift: dict[str, Any] | None) -> None:
        for key in self.counts:
            self.counts[key] += point.get(key) or 0.0
        buckets = point.get("latency_buckets")
        if buckets:
            self.buckets = (
                list(buckets)
                if self.buckets is None
                else [a + b for a, b in zip(self.buckets, buckets, strict=True)]
            )
        if point.get("cpu") is not None:
            self.cpu.append(point["cpu"])
        if point.get("rss") is not None:
            self.rss = max(self.rss or 0.0, point["rss"])
        self.drift = drift or self.drift

    def row(self) -> dict[str, Any]:
        counts = self.buckets or []
        return {
            "deployment": self.deployment,
            "model": self.model,
            "version": self.version,
            "resolution": self.resolution,
            "at": datetime.fromtimestamp(self.start, UTC),
            **self.counts,
            "p50": quantile(0.5, counts) if counts else None,
            "p95": quantile(0.95, counts) if counts else None,
            "p99": quantile(0.99, counts) if counts else None,
            "cpu": sum(self.cpu) / len(self.cpu) if self.cpu else None,
            "rss": self.rss,
            "drift_status": (self.drift or {}).get("status"),
            "drift_share": (self.drift or {}).get("drifted_share"),
        }


class Rollups:
    """Open windows per deployment and resolution, and the closed ones waiting to be written."""

    def __init__(self, resolutions: Iterable[int] = RESOLUTIONS) -> None:
        self.resolutions = tuple(resolutions)
        self._open: dict[tuple[str, int], _Window] = {}
        self.pending: list[dict[str, Any]] = []

    def add(self, deployment: str, model: str, point: dict[str, Any], drift: dict[str, Any] | None) -> None:
        """Count one point (from `DeploymentSeries.ingest`) into its windows."""
        for resolution in self.resolutions:
            start = point["t"] // resolution * resolution
            key = (deployment, resolution)
            window = self._open.get(key)
            if window is not None and (window.start != start or window.version != point["version"]):
                self._close(key)
                window = None
            if window is None:
                window = self._open[key] = _Window(deployment, model, point["version"], resolution, start)
            window.add(point, drift)

    def close_all(self) -> None:
        for key in list(self._open):
            self._close(key)

    def flush(self, db: Database) -> int:
        """Write the closed windows; on failure they stay pending for the next call. Rows written."""
        if not self.pending:
            return 0
        rows, self.pending = self.pending, []
        try:
            write_rollups(db, rows)
        except Exception as exc:
            log.warning("could not store %d metric rollups, will retry: %s", len(rows), exc)
            self.pending = (rows + self.pending)[-MAX_PENDING:]
            return 0
        return len(rows)

    def _close(self, key: tuple[str, int]) -> None:
        window = self._open.pop(key)
        self.pending.append(window.row())


def write_rollups(db: Database, rows: list[dict[str, Any]]) -> None:
    """Insert rollups (a window already stored, e.g. written before a crash, is replaced)."""
    with db.write() as session:
        conn = session.connection()
        for row in rows:
            conn.execute(
                delete(_TABLE).where(
                    _TABLE.c.deployment == row["deployment"],
                    _TABLE.c.resolution == row["resolution"],
                    _TABLE.c.at == row["at"],
                )
            )
        conn.execute(insert(_TABLE), rows)


def prune_rollups(db: Database, retention: dict[int, timedelta] = DEFAULT_RETENTION) -> None:
    """Delete rollups older than their resolution's retention."""
    now = datetime.now(UTC)
    with db.write() as session:
        for resolution, keep in retention.items():
            session.connection().execute(
                delete(_TABLE).where(_TABLE.c.resolution == resolution, _TABLE.c.at < now - keep)
            )


def read_rollups(
    db: Database, deployment: str, resolution: int = 60, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Stored rollups of a deployment, oldest first."""
    query = select(_TABLE).where(_TABLE.c.deployment == deployment, _TABLE.c.resolution == resolution)
    if since is not None:
        query = query.where(_TABLE.c.at >= since)
    with db.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(_TABLE.c.at)).mappings()]
