"""The supervisor's alerting pass: CPU per once-a-second tick, against summing the points of each window.

    python benchmarks/alerting.py            # 50 deployments, 6 h of history, 30 ticks
    python benchmarks/alerting.py --quick    # 10 ticks

Each tick counts one new point per deployment and judges every objective (availability, latency,
drift and performance, all enabled, with their default windows: 1h/5m and 6h/30m, 30m/5m) the way
`registry.serving.alerting` does, over `registry.monitoring.burn.EventCounts` (running totals thinned
with age: a window is a bisection and a subtraction). The baseline judges the same windows from every
one-second point kept in a numpy array (6 h x 22 counts per deployment), each window summed with
numpy: the straightforward fast way. Printed: CPU milliseconds per tick for each (the
median of the ticks), the ratio baseline / EventCounts, the share of one core, and the totals kept
per deployment. Goal: a tick of 50 deployments under 1% of one core.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from common import quick_options

DEPLOYMENTS = 50
HISTORY = 6 * 3600  # seconds: the longest default window
GOAL = 0.01  # share of one core per 1 s tick


def main(argv: list[str] | None = None) -> None:
    options = quick_options(__doc__, argv)
    from registry.alerts import KINDS, default_objective
    from registry.monitoring.burn import EventCounts, bad_events, judge, next_state

    objectives = [replace(default_objective("d", kind), enabled=True) for kind in KINDS]
    point = {"requests": 100.0, "server_errors": 1.0, "latency_buckets": [6.0] * 15}
    ticks = 10 if options.quick else 30

    print(f"filling {HISTORY // 3600} h of one-second points for {DEPLOYMENTS} deployments ...", flush=True)
    template = EventCounts()
    for second in range(HISTORY):
        template.add(float(second), point, "ok", 1.0, False)
    counts = []
    for _ in range(DEPLOYMENTS):
        copy = EventCounts()
        copy._times, copy._totals, copy._now = (
            template._times.copy(),
            template._totals.copy(),
            list(template._now),
        )
        counts.append(copy)
    import numpy as np

    grown = _as_totals(point)
    raw = [np.tile(np.array(grown), (HISTORY, 1)) for _ in range(DEPLOYMENTS)]  # the baseline's points

    def ours(t: float) -> None:
        for c in counts:
            c.add(t, point, "ok", 1.0, False)
            for objective in objectives:
                for window in judge(objective, c, t):
                    next_state(None, window)

    def baseline(t: float) -> None:
        end = int(t) % HISTORY  # a ring of one-second points: the newest goes where the oldest was
        for points in raw:
            points[end] = grown
            for objective in objectives:
                for window in objective.windows:
                    for span in (window["long"], window["short"]):
                        start = end + 1 - int(span)
                        parts = [points[max(start, 0) : end + 1]]
                        if start < 0:
                            parts.append(points[start:])
                        bad_events(objective, sum(p.sum(axis=0) for p in parts).tolist())

    ours_ms = _per_tick(ours, ticks, HISTORY)
    base_ms = _per_tick(baseline, ticks, HISTORY)
    share = ours_ms / 1000
    print()
    print(f"{'pass':<36}| CPU per tick (median) | share of a core")
    print(f"{'-' * 36}+{'-' * 23}+{'-' * 16}")
    print(f"{'EventCounts (bisection of totals)':<36}| {ours_ms:>17.2f} ms  | {share:.2%}")
    print(f"{'baseline (numpy sums of the points)':<36}| {base_ms:>17.2f} ms  | {base_ms / 1000:.1%}")
    print()
    print(f"ratio baseline / EventCounts: {base_ms / ours_ms:.0f}x")
    kept = len(counts[0]._times)
    print(f"totals kept per deployment: {kept} (one-second points kept by the baseline: {HISTORY})")
    verdict = "pass" if share <= GOAL else "FAIL"
    print(f"goal: {DEPLOYMENTS} deployments under {GOAL:.0%} of one core per tick: {share:.2%} {verdict}")


def _as_totals(point: dict[str, Any]) -> list[float]:
    """One point as the per-second increments EventCounts keeps (the same fields, in its order)."""
    return [point["requests"], point["server_errors"], 1.0, 0.0, 0.0, 1.0, 0.0, *point["latency_buckets"]]


def _per_tick(tick: Any, ticks: int, start: float) -> float:
    """Median CPU milliseconds of `ticks` calls of `tick(t)`, t one second apart after `start`."""
    times = []
    for index in range(ticks):
        began = time.process_time()
        tick(start + index + 1.0)
        times.append((time.process_time() - began) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
