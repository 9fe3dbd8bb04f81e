"""The exporter's request counts kept across supervisor restarts.

Workers outlive the supervisor and keep counting while it is down. So, after every pull, the run
directory gets (0600, atomically) each deployment's totals per version and, per worker, the snapshot
last counted with the worker's identity (pid and process start time). A restarted supervisor resumes
the totals, so Prometheus sees its counters go on rather than reset, and counts an adopted worker from
its saved snapshot, so what it answered meanwhile is counted too. A worker that exited while no
supervisor ran takes its requests since the last pull with it (nobody can ask it any more).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from typing import Any, TypeGuard

import orjson

from registry.files import read_private, write_atomic
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.monitoring.timeseries import CALL_ROWS, LATENCY, ROWS, DeploymentSeries, Totals
from registry.serving.rundir import RunDir

log = logging.getLogger("modeldeck.supervisor")
FILE_NAME = "request-counts.json"


def snapshot(
    series: dict[str, DeploymentSeries],
    identities: dict[int, float],
    unpulled: dict[str, dict[int, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """What `save_counts` writes: totals by deployment and version, and the last counted snapshot of
    each worker in `identities` (pid -> process start time). `unpulled` gives, by deployment, what
    counts as already seen of workers this supervisor has not pulled yet: nothing for one it started
    (all it answers is new), the previous supervisor's snapshot for one it adopted."""
    names = set(series) | set(unpulled or {})
    return {
        name: {
            "totals": {
                str(version): totals.as_dict()
                for version, totals in (series[name].totals if name in series else {}).items()
            },
            "workers": {
                str(pid): {"create_time": identities[pid], "metrics": metrics}
                for pid, metrics in {
                    **(unpulled or {}).get(name, {}),
                    **(series[name].last() if name in series else {}),
                }.items()
                if pid in identities
            },
        }
        for name in sorted(names)
    }


def save_counts(rundir: RunDir, data: bytes) -> None:
    """Write a `snapshot` (serialized on the event loop, where the series change); a failure is
    logged, never raised."""
    try:
        rundir.check()
        write_atomic(rundir.path / FILE_NAME, data)
    except Exception as exc:  # monitoring must never stop the supervisor
        log.warning("request counts not saved: %s", exc)


def load_counts(
    rundir: RunDir,
) -> tuple[dict[str, DeploymentSeries], dict[int, tuple[float, dict[str, Any]]]]:
    """The totals the previous supervisor of this home saved, by deployment, and the snapshot it last
    counted of each worker (pid -> (process start time, metrics)); nothing if no usable file.

    The file is checked whole (see `_checked`): one that fails anywhere is ignored with one warning,
    and counting starts from the live workers, so a damaged or edited file never shows a negative,
    non-finite or invented count."""
    path = rundir.path / FILE_NAME
    try:
        rundir.check()
        saved = orjson.loads(read_private(path))
        return _checked(saved)
    except FileNotFoundError:
        return {}, {}
    except Exception as exc:
        log.warning("request counts not restored from %s: %s", path, exc)
        return {}, {}


class BadCounts(ValueError):
    """The saved counts are not what a supervisor writes."""


def _checked(
    saved: Any,
) -> tuple[dict[str, DeploymentSeries], dict[int, tuple[float, dict[str, Any]]]]:
    restored: dict[str, DeploymentSeries] = {}
    workers: dict[int, tuple[float, dict[str, Any]]] = {}
    for name, entry in _mapping(saved, "the file").items():
        where = f"deployment {name!r}"
        entry = _mapping(entry, where)
        series = DeploymentSeries(name)
        for version, totals in _mapping(entry.get("totals"), f"{where} totals").items():
            at = f"{where} version {version!r}"
            totals = _mapping(totals, at)
            _requests(totals.get("requests"), at)
            _histogram(totals.get("latency_buckets"), totals.get("latency_sum"), at, cumulative=False)
            _count(totals.get("rows"), f"{at} rows")
            series.totals[_positive(version, f"{where} version")] = Totals.of(totals)
        for pid, worker in _mapping(entry.get("workers"), f"{where} workers").items():
            at = f"{where} worker {pid!r}"
            worker = _mapping(worker, at)
            created, metrics = worker.get("create_time"), _mapping(worker.get("metrics"), at)
            if not _finite(created):
                raise BadCounts(f"{at}: bad process start time {created!r}")
            _requests(metrics.get("requests"), at)
            latency = metrics.get(LATENCY)
            if latency is not None:
                latency = _mapping(latency, f"{at} latency")
                _histogram(latency.get("buckets"), latency.get("sum"), at)
            for metric, parts in ((ROWS, ("sum",)), (CALL_ROWS, ("sum", "count"))):
                for part in parts:
                    _count(_mapping(metrics.get(metric, {}), at).get(part, 0), f"{at} {metric} {part}")
            workers[_positive(pid, f"{where} worker")] = (float(created), dict(metrics))
        restored[name] = series
    return restored, workers


MAX_COUNT = 2**53  # beyond it a float no longer counts one by one
CODE = re.compile(r"[1-5][0-9][0-9]")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadCounts(f"{where}: not an object")
    return value


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any, where: str) -> float:
    if not (_finite(value) and 0 <= value < MAX_COUNT and float(value).is_integer()):
        raise BadCounts(f"{where}: {value!r} is not a count (a whole number from 0 to 2**53)")
    return float(value)


def _positive(key: str, where: str) -> int:
    if not (key.isascii() and key.isdigit() and int(key) > 0):
        raise BadCounts(f"{where} {key!r} is not a positive integer")
    return int(key)


def _requests(value: Any, where: str) -> None:
    for code, count in _mapping(value, f"{where} requests").items():
        if not CODE.fullmatch(code):
            raise BadCounts(f"{where}: {code!r} is not an HTTP status code")
        _count(count, f"{where} code {code}")


def _histogram(buckets: Any, total: Any, where: str, cumulative: bool = True) -> None:
    """Check a latency histogram: per bucket (totals) or `cumulative` (a worker's own counts)."""
    if not isinstance(buckets, list) or len(buckets) != len(LATENCY_BUCKETS) + 1:
        raise BadCounts(f"{where}: latency buckets are not {len(LATENCY_BUCKETS) + 1} counts")
    counts = [_count(b, f"{where} latency bucket") for b in buckets]
    if cumulative and any(b < a for a, b in itertools.pairwise(counts)):
        raise BadCounts(f"{where}: latency buckets are not cumulative")
    if not (_finite(total) and 0 <= total < MAX_COUNT):
        raise BadCounts(f"{where}: latency sum {total!r} is not a duration")
