"""Multi-window burn rates of a deployment's objectives, and the alert states they lead to.

The burn rate of a window is the share of bad events in it divided by the objective's error budget
(1 - target): 1 spends the budget exactly over the objective's period, 14.4 spends 2% of a 30-day
budget in an hour. As in the SRE workbook, an alert needs the budget burning at least `burn` times too
fast over both a long window (enough budget is gone to matter) and a short one (it is still burning);
the short window also ends it quickly once the deployment recovers.

`EventCounts` keeps, per deployment, the running totals of what the supervisor pulls once a second:
requests, 5xx answers, the latency histogram, seconds at each drift level and seconds with accuracy
under the performance objective's floor. A window's counts are
the difference of two totals, found by bisection, so an evaluation costs the same whatever the
window's length. Totals older than ten minutes are thinned to one per 10 s, older than an hour to one
per minute: a window's start then falls on the kept total just before it (a window at most that much
longer).
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any

from registry.alerts import (
    AVAILABILITY,
    CLEARED,
    DRIFT,
    DRIFT_LEVELS,
    FIRING,
    LATENCY,
    LONGEST_WINDOW,
    PENDING,
    PERFORMANCE,
    RESOLVED,
    ObjectiveSpec,
    format_duration,
    format_percent,
)
from registry.monitoring.metrics import LATENCY_BUCKETS

_REQUESTS, _ERRORS, _DRIFT_SECONDS, _WARN_SECONDS, _DRIFTED_SECONDS, _SCORED_SECONDS, _UNDER_SECONDS = range(
    7
)
_BUCKETS = 7  # the latency histogram's per-bucket counts follow, the last one +Inf
#: (age in seconds, spacing in seconds): totals older than the age are kept this far apart.
THINNING = ((600.0, 10.0), (3600.0, 60.0))


@dataclass(frozen=True)
class WindowBurn:
    """One burn-rate window of one objective, judged at one moment."""

    severity: str
    long: float
    short: float
    burn: float  # the factor that alerts
    long_rate: float
    short_rate: float
    long_events: float
    long_bad: float
    short_events: float
    short_bad: float

    @property
    def long_breached(self) -> bool:
        return self.long_events > 0 and self.long_rate >= self.burn

    @property
    def short_breached(self) -> bool:
        return self.short_events > 0 and self.short_rate >= self.burn

    def summary(self) -> str:
        """A few words for a table: the bad share and both rates against the factor."""
        short, long = format_duration(self.short), format_duration(self.long)
        if not self.short_events:
            return f"nothing to judge over {short} (no traffic or no figure); {self.long_rate:.1f}x ({long})"
        ratio = self.short_bad / self.short_events
        return (
            f"{ratio:.2%} bad over {short}; burn {self.short_rate:.1f}x ({short}), "
            f"{self.long_rate:.1f}x ({long}) vs {self.burn:g}x"
        )

    def figures(self) -> dict[str, Any]:
        return {
            "window": f"{format_duration(self.long)}/{format_duration(self.short)}",
            "summary": self.summary(),
            "burn": self.burn,
            "long_rate": round(self.long_rate, 4),
            "short_rate": round(self.short_rate, 4),
            "long_bad_ratio": round(self.long_bad / self.long_events, 6) if self.long_events else None,
            "short_bad_ratio": round(self.short_bad / self.short_events, 6) if self.short_events else None,
            "long_events": self.long_events,
            "short_events": self.short_events,
        }


class EventCounts:
    """Running totals of one deployment's events (see the module's docstring)."""

    def __init__(self, keep: float = LONGEST_WINDOW) -> None:
        self.keep = keep
        self._times: deque[float] = deque()
        self._totals: deque[tuple[float, ...]] = deque()
        self._now = [0.0] * (_BUCKETS + len(LATENCY_BUCKETS) + 1)

    @property
    def covered(self) -> float:
        """Seconds from the first point counted to the last (0 before two points)."""
        return self._times[-1] - self._times[0] if self._times else 0.0

    def add(
        self,
        t: float,
        point: dict[str, Any],
        drift_status: str | None,
        seconds: float,
        under_floor: bool | None = None,
    ) -> None:
        """Count one pull's point (`requests`, `server_errors`, `latency_buckets`), with the drift
        status that held over its `seconds` and whether accuracy was under the performance objective's
        floor (None: no accuracy known)."""
        if self._times and t < self._times[-1]:  # the wall clock stepped back: keep the totals in order
            t = self._times[-1]
        now = self._now
        now[_REQUESTS] += point.get("requests") or 0.0
        now[_ERRORS] += point.get("server_errors") or 0.0
        for index, count in enumerate(point.get("latency_buckets") or ()):
            now[_BUCKETS + index] += count
        if drift_status in DRIFT_LEVELS:
            now[_WARN_SECONDS] += seconds
            if DRIFT_LEVELS[drift_status] >= DRIFT_LEVELS["drift"]:
                now[_DRIFTED_SECONDS] += seconds
        if drift_status is not None:
            now[_DRIFT_SECONDS] += seconds
        if under_floor is not None:
            now[_SCORED_SECONDS] += seconds
            now[_UNDER_SECONDS] += seconds if under_floor else 0.0
        self._times.append(t)
        self._totals.append(tuple(now))
        self._thin(t)

    def window(self, objective: ObjectiveSpec, span: float, t: float) -> tuple[float, float]:
        """(events, bad events) of `objective`'s kind over the `span` seconds before `t`."""
        if not self._times:
            return 0.0, 0.0
        t = max(t, self._times[-1])  # a clock stepped back judges the newest counts, not none
        start = bisect.bisect_right(self._times, t - span) - 1  # the total just before the window
        end = bisect.bisect_right(self._times, t) - 1
        if end < 0:
            return 0.0, 0.0
        after = self._totals[end]
        before = self._totals[start] if start >= 0 else (0.0,) * len(after)
        grown = [a - b for a, b in zip(after, before, strict=True)]
        return bad_events(objective, grown)

    def _thin(self, t: float) -> None:
        times, totals = self._times, self._totals
        while times and times[0] < t - self.keep:
            times.popleft()
            totals.popleft()
        for age, spacing in THINNING:  # drop a kept total when its older neighbour is close enough
            edge = bisect.bisect_left(times, t - age)
            if edge >= 2 and times[edge - 1] - times[edge - 2] < spacing:
                del times[edge - 1], totals[edge - 1]


def bad_events(objective: ObjectiveSpec, grown: list[float]) -> tuple[float, float]:
    """(events, bad events) of `objective`'s kind in `grown` (a difference of two totals)."""
    if objective.kind == AVAILABILITY:
        return grown[_REQUESTS], grown[_ERRORS]
    if objective.kind == LATENCY:
        buckets = grown[_BUCKETS:]
        return sum(buckets), slower_than(objective.threshold or 0.0, buckets)
    if objective.kind == DRIFT:
        bad = (
            grown[_WARN_SECONDS]
            if (objective.threshold or 2) < DRIFT_LEVELS["drift"]
            else grown[_DRIFTED_SECONDS]
        )
        return grown[_DRIFT_SECONDS], bad
    if objective.kind == PERFORMANCE:
        return grown[_SCORED_SECONDS], grown[_UNDER_SECONDS]
    raise ValueError(f"unknown objective kind {objective.kind}")


def slower_than(threshold: float, counts: list[float], bounds: tuple[float, ...] = LATENCY_BUCKETS) -> float:
    """Requests of a histogram (per-bucket counts, the last +Inf) over `threshold` seconds, the bucket
    that holds it split linearly, as Prometheus' histogram_quantile assumes."""
    slow = 0.0
    lower = 0.0
    for index, count in enumerate(counts):
        upper = bounds[index] if index < len(bounds) else float("inf")
        if lower >= threshold:
            slow += count
        elif upper > threshold:
            slow += count if upper == float("inf") else count * (upper - threshold) / (upper - lower)
        lower = upper
    return slow


def judge(objective: ObjectiveSpec, counts: EventCounts, t: float) -> list[WindowBurn]:
    """Each of `objective`'s windows, judged at `t`. A window longer than the counts so far covers
    what there is."""
    out = []
    for window in objective.windows:
        long, short, burn = float(window["long"]), float(window["short"]), float(window["burn"])
        long_events, long_bad = counts.window(objective, long, t)
        short_events, short_bad = counts.window(objective, short, t)
        budget = objective.budget
        out.append(
            WindowBurn(
                str(window["severity"]),
                long,
                short,
                burn,
                (long_bad / long_events) / budget if long_events else 0.0,
                (short_bad / short_events) / budget if short_events else 0.0,
                long_events,
                long_bad,
                short_events,
                short_bad,
            )
        )
    return out


def next_state(state: str | None, window: WindowBurn) -> str | None:
    """An alert's next state: None (no alert), pending (the short window burns, the long one not yet),
    firing (both burn), and from pending or firing, when the short window stops burning, cleared (it
    never fired) or resolved."""
    if window.long_breached and window.short_breached:
        return FIRING
    if state == FIRING:
        return FIRING if window.short_breached else RESOLVED
    if window.short_breached:
        return PENDING
    return CLEARED if state == PENDING else None


def reason(objective: ObjectiveSpec, window: WindowBurn) -> str:
    """Why, in a sentence: what is bad, how much, against which objective."""
    ratio = window.short_bad / window.short_events if window.short_events else 0.0
    what = {
        AVAILABILITY: "of requests failed with 5xx",
        LATENCY: f"of requests took over {(objective.threshold or 0) * 1000:g} ms",
        DRIFT: "of the time the drift status was at its level",
        PERFORMANCE: f"of the time accuracy was under {format_percent(objective.threshold or 0.0)}",
    }[objective.kind]
    short = format_duration(window.short)
    return (
        f"{ratio:.2%} {what} over the last {short} (objective {format_percent(objective.target)} good): "
        f"the error budget burns {window.short_rate:.1f}x over {short} and "
        f"{window.long_rate:.1f}x over {format_duration(window.long)} (alerts at {window.burn:g}x)"
    )
