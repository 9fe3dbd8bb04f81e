"""Rollups of the supervisor's one-second points into 10 s and 1 min windows, kept in the registry DB.

Points are summed into the window they fall in; a window is closed when a point of a later window
or of another version arrives and waits in memory until written. A window is keyed by deployment,
resolution, start and version, so two versions serving in one period (a switch and a rollback within
10 s) each keep their own row. Two parts of one key (v1, then v2, then v1 again; or a window a
previous supervisor wrote before it stopped) are merged, never overwritten: counts are added, latency
quantiles recomputed from the histogram in memory or, against a stored row, the worst kept.

A write that fails for a transient reason (the database is locked or unreachable) keeps the rows for
the next flush (the live view never depends on the DB). A row that cannot be written at all (a
constraint or data error) is set aside in a bounded dead-letter list, logged once with the reason and
counted, and never blocks the rest of the batch. Old rollups are pruned by resolution (a day of 10 s
windows and a month of 1 min windows by default).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy import exc as sa_exc

from registry.errors import DatabaseError
from registry.monitoring.timeseries import quantile
from registry.schema import MetricRollup
from registry.store import Database

log = logging.getLogger("modeldeck.supervisor")
RESOLUTIONS = (10, 60)
DEFAULT_RETENTION = {10: timedelta(days=1), 60: timedelta(days=30)}
#: Rollups kept in memory while the DB refuses them (beyond this the oldest are dropped).
MAX_PENDING = 100_000
#: Rows that could not be written at all, kept for inspection (beyond this the oldest are forgotten).
MAX_SET_ASIDE = 1000
# SQLModel sets __table__ on every table class but does not declare it to type checkers.
_TABLE = MetricRollup.__table__  # type: ignore[attr-defined]
_COUNTS = ("requests", "ok", "client_errors", "server_errors")
_WORST = ("p50", "p95", "p99", "cpu", "rss")
Key = tuple[str, int, float, int]  # deployment, resolution, window start, version


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

    @property
    def key(self) -> Key:
        return (self.deployment, self.resolution, self.start, self.version)

    def merge(self, other: _Window) -> None:
        """Add a later part of the same window (same key): counts add up, the histogram too."""
        for key in self.counts:
            self.counts[key] += other.counts[key]
        if other.buckets is not None:
            self.buckets = (
                list(other.buckets)
                if self.buckets is None
                else [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
            )
        self.cpu += other.cpu
        if other.rss is not None:
            self.rss = max(self.rss or 0.0, other.rss)
        self.drift = other.drift or self.drift

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
    """Open windows per deployment and resolution, the closed ones waiting to be written, and the
    rows set aside because they could not be written."""

    def __init__(self, resolutions: Iterable[int] = RESOLUTIONS) -> None:
        self.resolutions = tuple(resolutions)
        self._open: dict[tuple[str, int], _Window] = {}
        self._closed: dict[Key, _Window] = {}
        #: (row, reason) of rows the DB refused for good, newest last.
        self.set_aside: deque[tuple[dict[str, Any], str]] = deque(maxlen=MAX_SET_ASIDE)
        self.stored = 0
        self.set_aside_total = 0
        self.dropped = 0
        self._reasons: set[str] = set()
        self._lock = threading.Lock()  # `flush` runs in a thread while the loop closes windows

    @property
    def pending(self) -> list[dict[str, Any]]:
        """The rows of the closed windows not written yet, in the order they closed."""
        with self._lock:
            return [window.row() for window in self._closed.values()]

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
        """Write the closed windows; rows written. Transient failures keep them for the next call;
        a row the DB refuses for good is set aside (see `set_aside`) and the others are written."""
        with self._lock:
            windows, self._closed = self._closed, {}
        if not windows:
            return 0
        try:
            write_rollups(db, [window.row() for window in windows.values()])
        except Exception as exc:
            if _transient(exc):
                log.warning("could not store %d metric rollups, will retry: %s", len(windows), exc)
                self._keep(windows)
                return 0
            return self._one_by_one(db, windows)
        self.stored += len(windows)
        return len(windows)

    def stats(self) -> dict[str, Any]:
        """Figures for `/monitor` and the exporter: rows stored, waiting, set aside, dropped."""
        last = self.set_aside[-1] if self.set_aside else None
        return {
            "stored": self.stored,
            "pending": len(self._closed),  # a len() needs no lock
            "set_aside": self.set_aside_total,
            "dropped": self.dropped,
            "last_error": last[1] if last else None,
        }

    def _one_by_one(self, db: Database, windows: dict[Key, _Window]) -> int:
        """Write each window in its own transaction, so one bad row cannot block the others."""
        written = 0
        for key, window in windows.items():
            try:
                write_rollups(db, [window.row()])
            except Exception as exc:
                if _transient(exc):
                    self._keep({key: window})
                else:
                    self._set_aside(window, exc)
                continue
            written += 1
        self.stored += written
        return written

    def _keep(self, windows: dict[Key, _Window]) -> None:
        """Put windows back for the next flush, merged with parts of the same key closed since."""
        with self._lock:
            later, self._closed = self._closed, dict(windows)
            for window in later.values():
                self._merge_in(window)
            overflow = len(self._closed) - MAX_PENDING
            for key in list(self._closed)[: max(0, overflow)]:
                del self._closed[key]
        if overflow > 0:
            self.dropped += overflow
            log.warning("dropped the %d oldest metric rollups: the database refused them too long", overflow)

    def _set_aside(self, window: _Window, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        try:
            row = window.row()
        except Exception:  # the window itself is broken: keep what identifies it
            row = dict(zip(("deployment", "resolution", "start", "version"), window.key, strict=True))
        self.set_aside.append((row, reason))
        self.set_aside_total += 1
        if reason not in self._reasons:  # logged once per reason, counted always
            self._reasons.add(reason)
            log.warning(
                "set aside the metric rollup of %s v%s (%s s window at %s): it cannot be stored: %s",
                window.deployment,
                window.version,
                window.resolution,
                window.start,
                reason,
            )

    def _close(self, key: tuple[str, int]) -> None:
        self._queue(self._open.pop(key))

    def _queue(self, window: _Window) -> None:
        with self._lock:
            self._merge_in(window)

    def _merge_in(self, window: _Window) -> None:
        waiting = self._closed.get(window.key)
        if waiting is None:
            self._closed[window.key] = window
        else:  # a second part of a window still waiting: one row, counts added
            waiting.merge(window)


def _transient(exc: Exception) -> bool:
    """True for failures worth retrying (locked, unreachable), False for a row the DB refuses for good."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) and exc.__cause__ is not None else exc
    if isinstance(cause, (sa_exc.IntegrityError, sa_exc.DataError)):
        return False
    if isinstance(cause, sa_exc.StatementError) and not isinstance(cause, sa_exc.DBAPIError):
        return False  # a value the driver cannot bind
    return not isinstance(cause, (ValueError, TypeError, OverflowError, KeyError))


def write_rollups(db: Database, rows: list[dict[str, Any]]) -> None:
    """Store rollups in one transaction. A window already stored under the same key (deployment,
    resolution, start, version) is merged with the new row: counts added, the worst quantiles, CPU
    and memory kept, the newer drift verdict. Never overwrites or loses a stored window."""
    with db.write() as session:
        conn = session.connection()
        for row in rows:
            stored = (
                conn.execute(
                    select(_TABLE).where(
                        _TABLE.c.deployment == row["deployment"],
                        _TABLE.c.resolution == row["resolution"],
                        _TABLE.c.at == row["at"],
                        _TABLE.c.version == row["version"],
                    )
                )
                .mappings()
                .first()
            )
            if stored is None:
                conn.execute(insert(_TABLE), [row])
            else:
                conn.execute(update(_TABLE).where(_TABLE.c.id == stored["id"]).values(**_merged(stored, row)))


def _merged(stored: Any, row: dict[str, Any]) -> dict[str, Any]:
    """The values of a stored window with a new part of it added."""
    merged: dict[str, Any] = {key: (stored[key] or 0.0) + (row[key] or 0.0) for key in _COUNTS}
    for key in _WORST:
        values = [v for v in (stored[key], row[key]) if v is not None]
        merged[key] = max(values) if values else None
    if row["drift_status"] is not None:
        merged["drift_status"], merged["drift_share"] = row["drift_status"], row["drift_share"]
    return merged


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
