"""The supervisor's monitoring loop: pull every worker once a second, keep series, compute drift.

Each active worker is asked over its private socket for its cumulative metrics and the input rows it
sampled since the last pull; psutil adds its CPU, memory, threads and open files. Drift of each
deployment's window against its serving version's reference profile is recomputed every
`drift_every` seconds (off the event loop). Nothing here touches a worker's request path.

A reply is read with an explicit limit well above what a worker sends (it bounds its page of sample
rows, see `InputSampler.pull`). A reply that cannot be read (too large, not JSON) is counted as a pull
error, and the next pull asks the worker to skip to its newest row, so a worker is never stuck stale.
The time since each worker last answered is kept: the supervisor uses it to notice hung workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson

from registry.errors import RegistryError
from registry.monitoring.drift import Profile, UnusableProfile
from registry.monitoring.performance import measure, prune_performance_rollups, write_performance_rollups
from registry.monitoring.resources import ResourceSampler
from registry.monitoring.rollups import DEFAULT_RETENTION, Rollups, prune_rollups
from registry.monitoring.sampling import SKIP
from registry.monitoring.timeseries import DeploymentSeries, Totals
from registry.monitoring.window import DriftWindow
from registry.outcomes import DEFAULT_MAX_AGE, DEFAULT_MAX_ROWS, OutcomeStore, store_path
from registry.serving.count_state import load_counts, save_counts
from registry.serving.count_state import snapshot as count_snapshot
from registry.serving.drift_state import load_windows, save_windows, snapshot
from registry.serving.estimates import Estimates
from registry.serving.exporter import exposed_keys
from registry.serving.protocol import (
    DeploymentFigures,
    LivePoint,
    MonitoringHealth,
    MonitorSnapshot,
    Performance,
    WorkerState,
)

if TYPE_CHECKING:
    from registry.serving.processes import Worker
    from registry.serving.supervisor import Runtime, Supervisor

log = logging.getLogger("modeldeck.supervisor")
PULL_TIMEOUT = 0.5
#: The longest reply line read from a worker (workers send at most about 1 MiB of sample rows).
READ_LIMIT = 16 * 1024 * 1024
OK, SILENT, BAD = "ok", "silent", "bad"
#: Pulls between two saves of the drift windows (a killed supervisor loses at most these seconds).
SAVE_WINDOWS_EVERY = 60
#: A candidate's newest sample rows kept for the agreement probe.
CANDIDATE_ROWS = 2000
#: What the serving workers count of a split (`registry.serving.split.Split.describe`).
SPLIT_COUNTS = ("forwarded", "fallbacks", "mirrored", "dropped", "mirror_failed")
#: Realised performance is over the predictions of the last day (labels often come hours later).
PERFORMANCE_WINDOW = 24 * 3600.0


class Scraper:
    """Series, drift and host figures of a supervisor's deployments."""

    def __init__(
        self,
        supervisor: Supervisor,
        interval: float = 1.0,
        drift_every: float = 10.0,
        window_rows: int = 10_000,
        window_seconds: float = 3600.0,
        retention: dict[int, timedelta] | None = None,
        performance_window: float = PERFORMANCE_WINDOW,
    ) -> None:
        self.supervisor = supervisor
        self.interval = interval
        self.drift_every = drift_every
        self.window_rows, self.window_seconds = window_rows, window_seconds
        self.seq = 0
        self.series: dict[str, DeploymentSeries] = {}
        self.windows: dict[str, tuple[int, DriftWindow]] = {}  # name -> (version, window)
        self.drift: dict[str, dict[str, Any]] = {}
        #: Estimated performance (class probabilities of the sample), recomputed with drift.
        self.estimates = Estimates(supervisor.registry, window_rows, window_seconds)
        self.host: dict[str, Any] = {}
        self.resources = ResourceSampler()
        self._cursors: dict[int, int] = {}
        self._skip: set[int] = set()  # workers whose next pull skips to their newest row
        #: When each worker last answered a pull, and when it was first asked (time.monotonic()).
        self.answered: dict[int, float] = {}
        self._asked: dict[int, float] = {}
        #: Pulls in a row each worker did not answer (0 once it answers).
        self.missed: dict[int, int] = {}
        #: Workers whose final snapshot was counted as they exited (pid -> start time): a pull of theirs
        #: still under way then, or answered before the process is gone, would count them again.
        self._exited: dict[int, float] = {}
        #: Finals handed over before the previous supervisor's counts were restored (None after).
        self._early_finals: list[tuple[str, Worker, dict[str, Any]]] | None = []
        #: Per deployment: replies that could not be read, and sample rows workers dropped unpulled.
        self.pull_errors: dict[str, int] = {}
        self.sample_dropped: dict[str, int] = {}
        self._schemas: dict[tuple[str, int], tuple[list[str], list[bool]]] = {}
        self._profiles: dict[tuple[str, int], Profile | UnusableProfile | None] = {}
        self._last_drift = 0.0
        #: Totals and snapshots a previous supervisor saved, for adopted workers (pid -> (start, metrics)).
        self._adoptable: dict[int, tuple[float, dict[str, Any]]] = {}
        #: Request series the exporter has shown (at 0 first; see `registry.serving.exporter`).
        self.exposed: set[tuple[str, int, str]] = set()
        self.rollups = Rollups()
        self.retention = retention or DEFAULT_RETENTION
        #: Realised performance per deployment (`registry.monitoring.performance`), and the store's
        #: counters (labels by outcome, predictions dropped) and size, as of the last pass.
        self.realised: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, Any] = {}
        #: Why the prediction store could not be read in the last pass (shown by `status`), or None.
        self.store_error: str | None = None
        self.performance_window = performance_window
        self.store_rows, self.store_age = DEFAULT_MAX_ROWS, DEFAULT_MAX_AGE
        self._outputs: dict[tuple[str, int], dict[str, Any]] = {}
        self._labelled_since = 0.0
        self._last_prune = 0.0
        #: A canary's or shadow's candidate, per deployment: its drift window (against its own
        #: reference), its drift report, and its latest sample rows (for the agreement probe).
        self.candidate_windows: dict[str, tuple[int, DriftWindow]] = {}
        self.candidate_drift: dict[str, dict[str, Any]] = {}
        self.candidate_rows: dict[str, deque[list[Any]]] = {}
        #: The serving workers' split counters per deployment (`_count_split`), while they split.
        self.split_counts: dict[str, dict[str, int]] = {}

    async def run(self) -> None:
        await self.restore_windows()
        await self.restore_counts()
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:
                log.exception("monitoring pull failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def tick(self, now: float | None = None) -> None:
        """One pull of every active worker of every deployment."""
        now = time.time() if now is None else now
        self.seq += 1
        runtimes = list(self.supervisor.runtimes.values())
        # Every worker the supervisor tracks keeps its cursor and counts, whatever its role right now:
        # a standby may serve again, and a worker being promoted is briefly in neither list.
        alive = set(self.supervisor.workers)
        for runtime in runtimes:
            # Every worker counts what it answers: active ones, draining ones (until they exit, which
            # hands over a final snapshot, see `final`) and the standby; only active ones are a point's
            # workers, resources and drift sample.
            workers = list(
                {
                    w.pid: w
                    for w in runtime.active
                    + runtime.standby
                    + runtime.incoming
                    + runtime.outgoing
                    + runtime.candidates
                }.values()
            )
            active = {w.pid for w in runtime.active}
            candidates = {w.pid for w in runtime.candidates}
            pulls = await asyncio.gather(*(self._pull(w.pid, w.started_here) for w in workers))
            exited = self._exited  # (their final may have come in while the pulls were awaited)
            by_pid = {
                w.pid: pull
                for w, (pull, _) in zip(workers, pulls, strict=True)
                if exited.get(w.pid) != w.create_time
            }
            resources = {w.pid: self.resources.process(w.pid) for w in runtime.active + runtime.candidates}
            name, version = runtime.spec.name, runtime.spec.version
            self._count(name, [pull for pull, _ in pulls], [outcome for _, outcome in pulls])
            for worker, (_, outcome) in zip(workers, pulls, strict=True):
                if worker.pid in active:
                    self.missed[worker.pid] = self.missed.get(worker.pid, 0) + 1 if outcome == SILENT else 0
            series = self.series.setdefault(name, DeploymentSeries(name))
            self._resume(series, workers)
            fresh = {w.pid for w in workers if w.started_here}  # started by this supervisor
            versions = {w.pid: w.version for w in workers}
            point = series.ingest(
                self.seq,
                version,
                by_pid,
                resources,
                now,
                self.interval,
                fresh,
                alive,
                versions,
                active | candidates,
            )
            self._sample(runtime, {pid: pull for pid, pull in by_pid.items() if pid in active}, now)
            self._count_split(name, [pull for pid, pull in by_pid.items() if pid in active and pull])
            if runtime.candidates:
                self._sample_candidate(runtime, [by_pid.get(pid) for pid in candidates], now)
            self.rollups.add(name, runtime.spec.model, point, self.drift.get(name))
        if self.supervisor.reconciled.is_set():  # restored series of deployments gone meanwhile too
            for name in [n for n in self.series if n not in self.supervisor.runtimes]:
                del self.series[name]
                self.windows.pop(name, None)
                self.drift.pop(name, None)
            for name in [n for n in self.windows if n not in self.supervisor.runtimes]:
                del self.windows[name]
            self.estimates.forget(set(self.supervisor.runtimes))
            tracked = self.supervisor.workers  # saved snapshots of workers gone meanwhile: dropped
            self._adoptable = {pid: saved for pid, saved in self._adoptable.items() if pid in tracked}
        await self.save_counts()
        self.resources.forget(alive)
        self._cursors = {pid: c for pid, c in self._cursors.items() if pid in alive}
        self._skip &= alive
        self.answered = {pid: t for pid, t in self.answered.items() if pid in alive}
        self._asked = {pid: t for pid, t in self._asked.items() if pid in alive}
        self.missed = {pid: n for pid, n in self.missed.items() if pid in alive}
        # the workers tracked now, not at the start: one may have started, and ended, during this pass
        self._exited = {pid: t for pid, t in self._exited.items() if pid in self.supervisor.workers}
        self.host = {"t": now, **self.resources.host()}
        if time.monotonic() - self._last_drift >= self.drift_every:
            self._last_drift = time.monotonic()
            await self.compute_drift(runtimes, now)
            try:
                await self.compute_performance(runtimes, now)
                self.store_error = None
            except Exception as exc:  # the store is damaged or locked: serving and drift go on
                if str(exc) != self.store_error:
                    log.warning("could not compute realised performance: %s", exc)
                self.store_error = str(exc) or type(exc).__name__
        if self.seq % 10 == 0:
            await self.store_rollups(prune=self.seq % 600 == 0)
        if self.seq % SAVE_WINDOWS_EVERY == 0:
            await self.save_windows()

    def final(self, name: str, worker: Worker, metrics: dict[str, Any]) -> None:
        """Count the snapshot a worker of deployment `name` handed over as it exited (what it
        answered after its last pull): once the previous supervisor's counts are back (it may be an
        adopted worker they name), and also before this deployment's first pass (a worker that left
        at once, as in a scale-down right after a deploy)."""
        if self._early_finals is not None:  # before `restore_counts`: counted right after it
            self._early_finals.append((name, worker, metrics))
            self._exited[worker.pid] = worker.create_time
            return
        series = self.series.get(name)
        if series is None and name in self.supervisor.runtimes:
            series = self.series[name] = DeploymentSeries(name)
        if series is None:  # a deployment gone meanwhile: nothing of it is exported any more
            return
        self._exited[worker.pid] = worker.create_time
        self._resume(series, [worker])
        series.final(worker.pid, worker.version, metrics, fresh=worker.started_here)

    async def restore_counts(self) -> None:
        """Take back the totals and the workers' last counted snapshots the previous supervisor of
        this home saved (see count_state), then count the finals that came in meanwhile."""
        restored, self._adoptable = await asyncio.to_thread(load_counts, self.supervisor.rundir)
        self.series = {**restored, **self.series}
        self.exposed |= {key for name, s in restored.items() for key in exposed_keys(name, s)}
        early, self._early_finals = self._early_finals or [], None
        for name, worker, metrics in early:
            self.final(name, worker, metrics)

    async def save_counts(self) -> None:
        identities = {pid: w.create_time for pid, w in self.supervisor.workers.items()}
        data = orjson.dumps(count_snapshot(self.series, identities, self._unpulled()))
        await asyncio.to_thread(save_counts, self.supervisor.rundir, data)

    def _unpulled(self) -> dict[str, dict[int, dict[str, Any]]]:
        """The baseline of each tracked worker not counted yet (a supervisor stopped right after a
        deploy or an adoption): a worker started here has answered nothing counted, an adopted one
        counts on from the snapshot the previous supervisor saved."""
        baselines: dict[str, dict[int, dict[str, Any]]] = {}
        for runtime in self.supervisor.runtimes.values():
            for worker in runtime.active + runtime.standby + runtime.incoming + runtime.outgoing:
                if worker.state == WorkerState.STOPPED:  # its final snapshot was counted: it is leaving
                    continue
                if worker.started_here:
                    baseline: dict[str, Any] | None = {"requests": {}}
                else:
                    saved = self._adoptable.get(worker.pid)
                    baseline = saved[1] if saved and saved[0] == worker.create_time else None
                if baseline is not None:
                    baselines.setdefault(runtime.spec.name, {})[worker.pid] = baseline
        return baselines

    def _resume(self, series: DeploymentSeries, workers: list[Worker]) -> None:
        """Adopted workers count on from the snapshot the previous supervisor last counted."""
        for worker in workers:
            saved = self._adoptable.pop(worker.pid, None)
            if saved is not None and not worker.started_here and saved[0] == worker.create_time:
                series.resume(worker.pid, saved[1])

    async def restore_windows(self) -> None:
        """Take back the drift windows the previous supervisor of this home saved (see drift_state)."""
        restored = await asyncio.to_thread(
            load_windows, self.supervisor.rundir, self.window_rows, self.window_seconds
        )
        self.windows = {**restored, **self.windows}
        await asyncio.to_thread(self.estimates.restore, self.supervisor.rundir)

    async def save_windows(self) -> None:
        await asyncio.to_thread(save_windows, self.supervisor.rundir, snapshot(self.windows))
        await asyncio.to_thread(self.estimates.save, self.supervisor.rundir, self.estimates.snapshot())

    async def store_rollups(self, prune: bool = False, close: bool = False) -> None:
        """Write closed rollup windows to the registry DB (kept for a retry if that fails)."""
        if close:
            self.rollups.close_all()
            await self.save_windows()  # the supervisor is stopping: the next one takes them back
            await self.save_counts()
        db = self.supervisor.registry.db
        await asyncio.to_thread(self.rollups.flush, db)
        if prune:
            try:
                await asyncio.to_thread(prune_rollups, db, self.retention)
            except Exception as exc:
                log.warning("could not prune old rollups: %s", exc)

    async def compute_drift(self, runtimes: list[Runtime], now: float | None = None) -> None:
        for runtime in runtimes:
            name = runtime.spec.name
            entry = self.windows.get(name)
            if entry is not None:
                self.drift[name] = await self._drift_report(runtime.spec.model, entry[0], entry[1], now)
            candidate = self.candidate_windows.get(name)
            if candidate is not None:  # the candidate's inputs against its reference and the serving one's
                self.candidate_drift[name] = {
                    "candidate": await self._drift_report(
                        runtime.spec.model, candidate[0], candidate[1], now
                    ),
                    "serving": await self._drift_report(
                        runtime.spec.model, entry[0] if entry else runtime.spec.version, candidate[1], now
                    ),
                }
        for runtime in runtimes:
            try:
                await self.estimates.compute(runtime.spec.name, runtime.spec.model, runtime.spec.version, now)
            except Exception as exc:  # the registry unreachable for now: the next round tries again
                log.warning("no estimated performance for %s: %s", runtime.spec.name, exc)

    async def _drift_report(
        self, model: str, version: int, window: DriftWindow, now: float | None
    ) -> dict[str, Any]:
        """The drift of `window` against version `version`'s reference profile."""
        names, numeric = await self._schema((model, version))
        profile = await self._profile((model, version))
        report = await asyncio.to_thread(window.report, profile, names, numeric, now)
        return {"t": now or time.time(), "version": version, **report.as_dict()}

    async def compute_performance(self, runtimes: list[Runtime], now: float) -> None:
        """Realised performance from the prediction store, the changed minute rollups written to the
        DB; the store is pruned once a minute."""
        path = store_path(self.supervisor.rundir.home)
        if not path.exists():
            return
        deployments = {r.spec.name: (r.spec.model, r.spec.version) for r in runtimes}
        started = time.time()
        measured = await asyncio.to_thread(
            measure, path, deployments, self._output, self.performance_window, self._labelled_since, now
        )
        self._labelled_since = started - 1.0  # labels stored during the pass are seen by the next
        self.realised = measured.realised
        self.outcomes = {**measured.counters, **measured.size}
        db = self.supervisor.registry.db
        await asyncio.to_thread(write_performance_rollups, db, measured.rollups)
        if now - self._last_prune >= 60:
            self._last_prune = now
            await asyncio.to_thread(self._prune, path, db)

    def _prune(self, path: Path, db: Any) -> None:
        with OutcomeStore(path) as store:
            store.prune(self.store_rows, self.store_age)
        prune_performance_rollups(db, self.retention[60])

    def _output(self, model: str, version: int) -> dict[str, Any] | None:
        """What version `version` of `model` answers (classes or a value), from the registry once;
        None for a version it no longer has (deleted: its predictions are not scored)."""
        if (model, version) not in self._outputs:
            try:
                self._outputs[model, version] = self.supervisor.registry.get(f"{model}:{version}").output
            except RegistryError:
                return None
        return self._outputs[model, version]

    def snapshot(self, cursor: int = 0, name: str | None = None) -> MonitorSnapshot:
        """What a console needs per refresh: the newest point, the points after `cursor`, drift."""
        deployments = {}
        for deployment, series in self.series.items():
            if name is not None and deployment != name:
                continue
            deployments[deployment] = DeploymentFigures(
                # the series' points are plain dicts of the `LivePoint` shape (monitoring knows no protocol)
                live=cast("LivePoint", series.points[-1]) if series.points else None,
                points=cast("list[LivePoint]", series.since(cursor)),
                drift=self.drift.get(deployment),
                performance=Performance(
                    realised=self.realised.get(deployment),
                    estimated=self.estimates.figures.get(deployment),
                ),
            )
        monitoring = MonitoringHealth(
            rollups=self.rollups.stats(),
            pull_errors=dict(self.pull_errors),
            sample_dropped=dict(self.sample_dropped),
            outcomes=dict(self.outcomes),
            store_error=self.store_error,
        )
        return MonitorSnapshot(self.seq, self.host, deployments, monitoring)

    def silent_for(self, pid: int, now: float | None = None) -> float:
        """Seconds since worker `pid` last answered a pull (or was first asked); 0 if never asked."""
        now = time.monotonic() if now is None else now
        since = self.answered.get(pid, self._asked.get(pid))
        return 0.0 if since is None else max(0.0, now - since)

    # ------------------------------------------------------------------ helpers
    async def _pull(self, pid: int, fresh: bool) -> tuple[dict[str, Any] | None, str]:
        """The worker's snapshot and OK; or None and SILENT when it does not answer in time (shown as
        stale), or None and BAD when its reply cannot be read (its next pull skips ahead)."""
        path = self.supervisor.rundir.worker_socket(pid)
        self._asked.setdefault(pid, time.monotonic())
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=READ_LIMIT), PULL_TIMEOUT
            )
        except (OSError, TimeoutError):
            return None, SILENT
        # An adopted worker's earlier rows were seen by the previous supervisor: start from its newest.
        skip = pid in self._skip or (pid not in self._cursors and not fresh)
        try:
            writer.write(f"{SKIP if skip else self._cursors.get(pid, 0)}\n".encode())
            line = await asyncio.wait_for(reader.readline(), PULL_TIMEOUT)
        except (OSError, TimeoutError):
            writer.close()
            return None, SILENT
        except ValueError as exc:  # longer than READ_LIMIT (the rest of the reply is dropped)
            writer.close()
            return self._bad(pid, f"reply over {READ_LIMIT:,} bytes: {exc}")
        writer.close()
        if not line:
            return None, SILENT
        self.answered[pid] = time.monotonic()
        try:
            snapshot = orjson.loads(line)
            if not isinstance(snapshot, dict) or not isinstance(snapshot.get("metrics"), dict):
                raise ValueError("not a metrics snapshot")
        except ValueError as exc:
            return self._bad(pid, str(exc))
        self._skip.discard(pid)
        if "cursor" in snapshot:
            self._cursors[pid] = int(snapshot["cursor"])
            if skip:  # an older worker may not know SKIP: its rows were seen before, or unreadable
                snapshot["rows"], snapshot["predictions"] = [], []
                snapshot.pop("probabilities", None)
        return snapshot, OK

    def _bad(self, pid: int, why: str) -> tuple[None, str]:
        """Count a reply that could not be read; the worker answered, and its next pull skips ahead."""
        self.answered[pid] = time.monotonic()
        self._skip.add(pid)
        log.warning("worker %s: unreadable metrics reply (%s); its next pull skips ahead", pid, why)
        return None, BAD

    def _count(self, name: str, pulls: list[dict[str, Any] | None], outcomes: list[str]) -> None:
        errors = sum(1 for outcome in outcomes if outcome == BAD)
        if errors:
            self.pull_errors[name] = self.pull_errors.get(name, 0) + errors
        dropped = sum(int(pull.get("dropped") or 0) for pull in pulls if pull)
        if dropped:
            self.sample_dropped[name] = self.sample_dropped.get(name, 0) + dropped

    def _sample(self, runtime: Runtime, pulls: dict[int, dict[str, Any] | None], now: float) -> None:
        name, version = runtime.spec.name, runtime.spec.version
        entry = self.windows.get(name)
        if entry is None or entry[0] != version:  # drift is judged per serving version
            entry = self.windows[name] = (version, DriftWindow(self.window_rows, self.window_seconds))
        for pull in pulls.values():
            if pull and pull.get("rows"):
                entry[1].add(pull["rows"], pull.get("predictions", []), now)
            if pull and pull.get("probabilities"):
                self.estimates.add(name, version, pull["probabilities"], now)

    def _sample_candidate(self, runtime: Runtime, pulls: list[dict[str, Any] | None], now: float) -> None:
        """A candidate's sample rows: into its own drift window, and kept for the agreement probe."""
        name, version = runtime.spec.name, runtime.candidates[0].version
        entry = self.candidate_windows.get(name)
        if entry is None or entry[0] != version:
            entry = self.candidate_windows[name] = (
                version,
                DriftWindow(self.window_rows, self.window_seconds),
            )
            self.candidate_rows[name] = deque(maxlen=CANDIDATE_ROWS)
            self.candidate_drift.pop(name, None)
        for pull in pulls:
            if pull and pull.get("rows"):
                entry[1].add(pull["rows"], pull.get("predictions", []), now)
                self.candidate_rows[name].extend(pull["rows"])

    def _count_split(self, name: str, pulls: list[dict[str, Any]]) -> None:
        """The serving workers' split counters summed (requests forwarded, answered here instead,
        copies sent to a shadow, dropped with its queue full, lost), while they split."""
        splits = [pull["split"] for pull in pulls if isinstance(pull.get("split"), dict)]
        if splits:
            self.split_counts[name] = {key: sum(int(s.get(key) or 0) for s in splits) for key in SPLIT_COUNTS}
        else:
            self.split_counts.pop(name, None)

    # ------------------------------------------------------------------ what a rollout reads
    def version_totals(self, name: str) -> dict[int, Totals]:
        """What each version of deployment `name` answered so far (never decreasing)."""
        series = self.series.get(name)
        return dict(series.totals) if series is not None else {}

    def take_candidate_rows(self, name: str, limit: int) -> list[Any]:
        """Up to `limit` of the candidate's newest sample rows not taken before."""
        rows = self.candidate_rows.get(name)
        if not rows:
            return []
        taken = [rows.pop() for _ in range(min(limit, len(rows)))]
        return taken[::-1]

    def drift_statuses(self, name: str) -> tuple[str | None, str | None]:
        """The drift status of the candidate's recent inputs against the serving version's reference and
        against its own (None until computed): the same rows, so only the references differ."""
        reports = self.candidate_drift.get(name) or {}
        return (reports.get("serving") or {}).get("status"), (reports.get("candidate") or {}).get("status")

    def forget_candidate(self, name: str) -> None:
        self.candidate_windows.pop(name, None)
        self.candidate_drift.pop(name, None)
        self.candidate_rows.pop(name, None)

    async def _schema(self, key: tuple[str, int]) -> tuple[list[str], list[bool]]:
        if key not in self._schemas:
            info = await asyncio.to_thread(self.supervisor.registry.get, f"{key[0]}:{key[1]}")
            columns = info.signature.get("columns", [])
            self._schemas[key] = ([c["name"] for c in columns], [c["kind"] == "numeric" for c in columns])
        return self._schemas[key]

    async def _profile(self, key: tuple[str, int]) -> Profile | UnusableProfile | None:
        if key not in self._profiles:
            try:
                self._profiles[key] = await asyncio.to_thread(
                    self.supervisor.registry.profile, f"{key[0]}:{key[1]}"
                )
            except Exception as exc:  # a damaged reference: drift says so, serving goes on
                log.warning("no drift profile for %s:%s: %s", key[0], key[1], exc)
                self._profiles[key] = UnusableProfile(str(exc))
        return self._profiles[key]
