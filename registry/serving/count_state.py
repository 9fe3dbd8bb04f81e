"""The exporter's request counts kept across supervisor restarts.

Workers outlive the supervisor and keep counting while it is down. So, after every pull, the run
directory gets (0600, atomically) each deployment's totals per version and, per worker, the snapshot
last counted with the worker's identity (pid and process start time). A restarted supervisor resumes
the totals, so Prometheus sees its counters go on rather than reset, and counts an adopted worker from
its saved snapshot, so what it answered meanwhile is counted too. A worker that exited while no
supervisor ran takes its requests since the last pull with it (nobody can ask it any more).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from registry.files import read_private, write_atomic
from registry.monitoring.timeseries import DeploymentSeries, Totals
from registry.serving.rundir import RunDir

log = logging.getLogger("modeldeck.supervisor")
FILE_NAME = "request-counts.json"


def snapshot(series: dict[str, DeploymentSeries], identities: dict[int, float]) -> dict[str, Any]:
    """What `save_counts` writes: totals by deployment and version, and the last counted snapshot of
    each worker in `identities` (pid -> process start time)."""
    return {
        name: {
            "totals": {str(version): totals.as_dict() for version, totals in s.totals.items()},
            "workers": {
                str(pid): {"create_time": identities[pid], "metrics": metrics}
                for pid, metrics in s.last().items()
                if pid in identities
            },
        }
        for name, s in series.items()
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
    counted of each worker (pid -> (process start time, metrics)); nothing if no usable file."""
    try:
        rundir.check()
        saved: dict[str, Any] = orjson.loads(read_private(rundir.path / FILE_NAME))
    except FileNotFoundError:
        return {}, {}
    except Exception as exc:
        log.warning("request counts not restored: %s", exc)
        return {}, {}
    restored: dict[str, DeploymentSeries] = {}
    workers: dict[int, tuple[float, dict[str, Any]]] = {}
    for name, entry in saved.items():
        try:
            series = DeploymentSeries(str(name))
            series.totals = {int(v): Totals.of(t) for v, t in entry["totals"].items()}
            for pid, worker in entry["workers"].items():
                workers[int(pid)] = (float(worker["create_time"]), dict(worker["metrics"]))
            restored[str(name)] = series
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("request counts of %s not restored: %s", name, exc)
    return restored, workers
