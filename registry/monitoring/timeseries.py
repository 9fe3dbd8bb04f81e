"""What the supervisor makes of its once-a-second pulls: per-deployment series of points.

Workers report cumulative counts; a deployment's point is the sum of its workers' increments since
the previous pull, so a restarted worker (a new pid, counting from zero) adds a gap, never a negative
step or a fake drop. A worker whose pull fails is counted as stale and adds nothing (its resources
are None, not zero). Latency quantiles come from the histogram increments of the last minute.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from registry.monitoring.metrics import LATENCY_BUCKETS

LATENCY = "modeldeck_request_duration_seconds"
ROWS = "modeldeck_request_rows"
CALL_ROWS = "modeldeck_model_call_rows"
#: One point a second for an hour.
POINTS_KEPT = 3600
QUANTILE_WINDOW = 60.0


def quantile(q: float, counts: list[float], bounds: tuple[float, ...] = LATENCY_BUCKETS) -> float | None:
    """The q-quantile of a histogram (per-bucket counts, last bucket +Inf), interpolated within the
    bucket as Prometheus' histogram_quantile does; None without observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def _grew(now: dict[str, Any], before: dict[str, Any], metric: str, part: str) -> float:
    return max(0.0, now.get(metric, {}).get(part, 0.0) - before.get(metric, {}).get(part, 0.0))


def _per_bucket(cumulative: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]


@dataclass
class Totals:
    """Counts since the supervisor started, summed over workers and restarts (never decreasing)."""

    requests: dict[str, float] = field(default_factory=dict)
    latency_buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    rows: float = 0.0


@dataclass
class DeploymentSeries:
    """The points of one deployment, with a cursor (`seq`) so readers fetch only what is new."""

    name: str
    points: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=POINTS_KEPT))
    totals: dict[int, Totals] = field(default_factory=dict)  # by version
    _last: dict[int, dict[str, Any]] = field(default_factory=dict)  # pid -> last metrics snapshot
    _recent: deque[tuple[float, list[float]]] = field(default_factory=deque)

    def ingest(
        self,
        seq: int,
        version: int,
        pulls: dict[int, dict[str, Any] | None],
        resources: dict[int, dict[str, float] | None],
        now: float | None = None,
        interval: float = 1.0,
        fresh: frozenset[int] | set[int] = frozenset(),
        alive: set[int] | None = None,
    ) -> dict[str, Any]:
        """Add the point for one pull of every worker (`None`: the worker did not answer). Workers in
        `fresh` started under this supervisor, so all their counts are new; others (adopted after a
        supervisor restart) are a baseline at first sight. `alive` (default: the pulled workers) are
        the workers whose last counts are kept: a standby that serves again continues from them."""
        now = time.time() if now is None else now
        codes: dict[str, float] = {}
        buckets = [0.0] * (len(LATENCY_BUCKETS) + 1)
        latency_sum = rows = call_rows = calls = in_flight = 0.0
        answered = 0
        for pid, snapshot in pulls.items():
            if snapshot is None:
                continue
            answered += 1
            metrics = snapshot["metrics"]
            previous = self._last.get(pid) or ({"requests": {}} if pid in fresh else None)
            self._last[pid] = metrics
            in_flight += metrics.get("in_flight", 0.0)
            if previous is None:  # first sight of this worker: its counts so far are the baseline
                continue
            for code, count in metrics["requests"].items():
                codes[code] = codes.get(code, 0.0) + max(0.0, count - previous["requests"].get(code, 0.0))
            now_latency, before_latency = metrics.get(LATENCY, {}), previous.get(LATENCY, {})
            if now_latency.get("buckets"):
                now_buckets = _per_bucket(now_latency["buckets"])
                before_buckets = _per_bucket(before_latency.get("buckets") or [0.0] * len(now_buckets))
                buckets = [
                    b + max(0.0, x - y) for b, x, y in zip(buckets, now_buckets, before_buckets, strict=True)
                ]
                latency_sum += _grew(metrics, previous, LATENCY, "sum")
            rows += _grew(metrics, previous, ROWS, "sum")
            call_rows += _grew(metrics, previous, CALL_ROWS, "sum")
            calls += _grew(metrics, previous, CALL_ROWS, "count")
        keep = set(pulls) if alive is None else alive
        for pid in [p for p in self._last if p not in keep]:
            del self._last[pid]
        totals = self.totals.setdefault(version, Totals())
        for code, count in codes.items():
            totals.requests[code] = totals.requests.get(code, 0.0) + count
        totals.latency_buckets = [a + b for a, b in zip(totals.latency_buckets, buckets, strict=True)]
        totals.latency_sum += latency_sum
        totals.rows += rows
        self._recent.append((now, buckets))
        while self._recent and self._recent[0][0] < now - QUANTILE_WINDOW:
            self._recent.popleft()
        window = [sum(column) for column in zip(*(b for _, b in self._recent), strict=True)]
        requests = sum(codes.values())
        known = [r for r in resources.values() if r is not None]
        point: dict[str, Any] = {
            "seq": seq,
            "t": now,
            "version": version,
            "requests": requests,
            "rps": requests / interval,
            "ok": sum(c for code, c in codes.items() if code.startswith(("1", "2", "3"))),
            "client_errors": sum(c for code, c in codes.items() if code.startswith("4")),
            "server_errors": sum(c for code, c in codes.items() if code.startswith("5")),
            "rows": rows,
            "rows_per_call": call_rows / calls if calls else None,
            "in_flight": in_flight,
            "p50": quantile(0.5, window),
            "p95": quantile(0.95, window),
            "p99": quantile(0.99, window),
            "mean_latency": latency_sum / sum(buckets) if sum(buckets) else None,
            "workers": len(pulls),
            "stale": len(pulls) - answered,
            "cpu": sum(r["cpu"] for r in known) if known else None,
            "rss": sum(r["rss"] for r in known) if known else None,
            "threads": sum(r["threads"] for r in known) if known else None,
            "fds": sum(r["fds"] for r in known) if known else None,
            "latency_buckets": buckets,
            # per worker (pid): cpu, rss, threads, fds, or None when psutil could not read it
            "processes": {str(pid): resources.get(pid) for pid in pulls},
        }
        self.points.append(point)
        return point

    def since(self, cursor: int) -> list[dict[str, Any]]:
        """Points after `cursor`, oldest first."""
        return [p for p in self.points if p["seq"] > cursor]
