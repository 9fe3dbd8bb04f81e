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


def _went_back(now: dict[str, Any], before: dict[str, Any]) -> bool:
    """Whether any count of `now` is below `before`'s: not a later snapshot of the same counters."""
    pairs = [(now["requests"].get(code, 0.0), count) for code, count in before.get("requests", {}).items()]
    for metric, part in ((LATENCY, "sum"), (ROWS, "sum"), (CALL_ROWS, "sum"), (CALL_ROWS, "count")):
        pairs.append((now.get(metric, {}).get(part, 0.0), before.get(metric, {}).get(part, 0.0)))
    pairs += zip(
        now.get(LATENCY, {}).get("buckets") or [], before.get(LATENCY, {}).get("buckets") or [], strict=False
    )
    return any(current < earlier for current, earlier in pairs)


def _per_bucket(cumulative: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]


@dataclass
class Totals:
    """Counts of one version, summed over workers, worker restarts and supervisor restarts (never
    decreasing): what the exporter's counters show."""

    requests: dict[str, float] = field(default_factory=dict)
    latency_buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    rows: float = 0.0

    def add(self, step: Step) -> None:
        for code, count in step.codes.items():
            self.requests[code] = self.requests.get(code, 0.0) + count
        self.latency_buckets = [a + b for a, b in zip(self.latency_buckets, step.buckets, strict=True)]
        self.latency_sum += step.latency_sum
        self.rows += step.rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "latency_buckets": self.latency_buckets,
            "latency_sum": self.latency_sum,
            "rows": self.rows,
        }

    @classmethod
    def of(cls, saved: dict[str, Any]) -> Totals:
        buckets = [float(b) for b in saved["latency_buckets"]]
        if len(buckets) != len(LATENCY_BUCKETS) + 1:
            raise ValueError("latency buckets changed")
        requests = {str(code): float(count) for code, count in saved["requests"].items()}
        return cls(requests, buckets, float(saved["latency_sum"]), float(saved["rows"]))


@dataclass
class Step:
    """What one or more workers answered between two snapshots of theirs."""

    codes: dict[str, float] = field(default_factory=dict)
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    rows: float = 0.0
    call_rows: float = 0.0
    calls: float = 0.0

    @classmethod
    def between(cls, metrics: dict[str, Any], previous: dict[str, Any]) -> Step:
        step = cls()
        for code, count in metrics["requests"].items():
            step.codes[code] = max(0.0, count - previous.get("requests", {}).get(code, 0.0))
        now_latency, before_latency = metrics.get(LATENCY, {}), previous.get(LATENCY, {})
        if now_latency.get("buckets"):
            now_buckets = _per_bucket(now_latency["buckets"])
            before_buckets = _per_bucket(before_latency.get("buckets") or [0.0] * len(now_buckets))
            step.buckets = [max(0.0, x - y) for x, y in zip(now_buckets, before_buckets, strict=True)]
            step.latency_sum = _grew(metrics, previous, LATENCY, "sum")
        step.rows = _grew(metrics, previous, ROWS, "sum")
        step.call_rows = _grew(metrics, previous, CALL_ROWS, "sum")
        step.calls = _grew(metrics, previous, CALL_ROWS, "count")
        return step

    def add(self, other: Step) -> None:
        for code, count in other.codes.items():
            self.codes[code] = self.codes.get(code, 0.0) + count
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.latency_sum += other.latency_sum
        self.rows += other.rows
        self.call_rows += other.call_rows
        self.calls += other.calls


@dataclass
class DeploymentSeries:
    """The points of one deployment, with a cursor (`seq`) so readers fetch only what is new."""

    name: str
    points: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=POINTS_KEPT))
    totals: dict[int, Totals] = field(default_factory=dict)  # by version
    _last: dict[int, dict[str, Any]] = field(default_factory=dict)  # pid -> last metrics snapshot
    _recent: deque[tuple[float, list[float]]] = field(default_factory=deque)
    #: The same per version, while workers of more than one version serve (a canary or shadow).
    _recent_by_version: dict[int, deque[tuple[float, list[float]]]] = field(default_factory=dict)
    _pending: Step = field(default_factory=Step)  # final snapshots not in a point yet

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
        versions: dict[int, int] | None = None,
        serving: set[int] | None = None,
    ) -> dict[str, Any]:
        """Add the point for one pull of every worker (`None`: the worker did not answer). Workers in
        `fresh` started under this supervisor, so all their counts are new; others (adopted after a
        supervisor restart) count from their last snapshot `resume`d, else are a baseline at first
        sight. `alive` (default: the pulled workers) are the workers whose last counts are kept: a
        standby that serves again continues from them. Each worker's counts go to its own version
        (`versions`, default `version`); `serving` (default: all pulled) are the workers the point's
        worker, staleness and resource figures describe (draining and standby ones count requests)."""
        now = time.time() if now is None else now
        versions = versions or {}
        serving = set(pulls) if serving is None else serving
        step, self._pending = self._pending, Step()
        by_version: dict[int, Step] = {}
        in_flight = 0.0
        answered = 0
        for pid, snapshot in pulls.items():
            if snapshot is None:
                continue
            answered += pid in serving
            metrics = snapshot["metrics"]
            in_flight += metrics.get("in_flight", 0.0)
            grown = self._step(pid, metrics, pid in fresh)
            if grown is not None:
                self.totals.setdefault(versions.get(pid, version), Totals()).add(grown)
                step.add(grown)
                by_version.setdefault(versions.get(pid, version), Step()).add(grown)
        keep = set(pulls) if alive is None else alive
        for pid in [p for p in self._last if p not in keep]:
            del self._last[pid]
        for known in {version, *(versions.get(pid, version) for pid in pulls)}:  # loading ones too
            self.totals.setdefault(known, Totals())
        codes, buckets = step.codes, step.buckets
        self._recent.append((now, buckets))
        while self._recent and self._recent[0][0] < now - QUANTILE_WINDOW:
            self._recent.popleft()
        window = [sum(column) for column in zip(*(b for _, b in self._recent), strict=True)]
        requests = sum(codes.values())
        measured = [r for pid, r in resources.items() if r is not None and pid in serving]
        point: dict[str, Any] = {
            "seq": seq,
            "t": now,
            "version": version,
            "requests": requests,
            "rps": requests / interval,
            "ok": sum(c for code, c in codes.items() if code.startswith(("1", "2", "3"))),
            "client_errors": sum(c for code, c in codes.items() if code.startswith("4")),
            "server_errors": sum(c for code, c in codes.items() if code.startswith("5")),
            "rows": step.rows,
            "rows_per_call": step.call_rows / step.calls if step.calls else None,
            "in_flight": in_flight,
            "p50": quantile(0.5, window),
            "p95": quantile(0.95, window),
            "p99": quantile(0.99, window),
            "mean_latency": step.latency_sum / sum(buckets) if sum(buckets) else None,
            "workers": len(serving),
            "stale": len(serving) - answered,
            "cpu": sum(r["cpu"] for r in measured) if measured else None,
            "rss": sum(r["rss"] for r in measured) if measured else None,
            "threads": sum(r["threads"] for r in measured) if measured else None,
            "fds": sum(r["fds"] for r in measured) if measured else None,
            "latency_buckets": buckets,
            # per worker (pid): cpu, rss, threads, fds, or None when psutil could not read it
            "processes": {str(pid): resources.get(pid) for pid in pulls if pid in serving},
        }
        serving_versions = {versions.get(pid, version) for pid in serving}
        if len(serving_versions) > 1:
            point["by_version"] = self._by_version(serving_versions, by_version, now, interval)
        else:
            self._recent_by_version.clear()
        self.points.append(point)
        return point

    def _by_version(
        self, serving: set[int], steps: dict[int, Step], now: float, interval: float
    ) -> dict[str, dict[str, Any]]:
        """Each serving version's own figures in this point: requests, rate, 5xx and p99 (over the
        same recent window as the point's)."""
        figures = {}
        for version in sorted(serving):
            step = steps.get(version, Step())
            recent = self._recent_by_version.setdefault(version, deque())
            recent.append((now, step.buckets))
            while recent and recent[0][0] < now - QUANTILE_WINDOW:
                recent.popleft()
            window = [sum(column) for column in zip(*(b for _, b in recent), strict=True)]
            requests = sum(step.codes.values())
            figures[str(version)] = {
                "requests": requests,
                "rps": requests / interval,
                "server_errors": sum(c for code, c in step.codes.items() if code.startswith("5")),
                "p99": quantile(0.99, window),
            }
        return figures

    def final(self, pid: int, version: int, metrics: dict[str, Any], fresh: bool = False) -> None:
        """Count the last snapshot a worker handed over on its way out (in the next point); `fresh`
        as in `ingest`."""
        grown = self._step(pid, metrics, fresh)
        self._last.pop(pid, None)
        if grown is not None:
            self.totals.setdefault(version, Totals()).add(grown)
            self._pending.add(grown)

    def resume(self, pid: int, metrics: dict[str, Any]) -> None:
        """Count an adopted worker from `metrics`, its snapshot a previous supervisor last counted."""
        self._last.setdefault(pid, metrics)

    def last(self) -> dict[int, dict[str, Any]]:
        """The last counted snapshot of each worker (what `resume` takes back after a restart)."""
        return dict(self._last)

    def _step(self, pid: int, metrics: dict[str, Any], fresh: bool) -> Step | None:
        """What the worker answered since its last snapshot; None at first sight of an adopted worker
        (its counts so far are a baseline)."""
        previous = self._last.get(pid) or ({"requests": {}} if fresh else None)
        if previous is not None and _went_back(metrics, previous):
            previous = {"requests": {}}  # the same pid counting anew (or a false snapshot): all new
        self._last[pid] = metrics
        return None if previous is None else Step.between(metrics, previous)

    def since(self, cursor: int) -> list[dict[str, Any]]:
        """Points after `cursor`, oldest first."""
        return [p for p in self.points if p["seq"] > cursor]
