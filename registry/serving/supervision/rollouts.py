"""Progressive delivery: a canary or shadow of a candidate version, analysed, promoted or aborted.

The candidate's workers are ordinary workers of its version, serving on a private Unix socket
(`RunDir.candidate_socket`) instead of the deployment's port. The active workers are told the split
over their monitoring sockets (`registry.serving.split`): a canary's share goes to the candidate and
its answer back to the client; a shadow gets a copy of every request. Every half second the rollout
task tells workers that do not have the split yet (a restarted one), checks that the candidate still
runs, and judges the candidate against the serving version (`registry.monitoring.canary`) on what each
answered since the step began. A failed check aborts at once: every active worker is told to stop
splitting (all traffic on the serving version), then the candidate's workers stop. A canary step that
passed for its full time moves to the next share; after the last, the candidate is promoted with a
normal switch (new workers of its version on the port, the old ones drained and kept warm), with
the split still on until the old workers are drained, so no request is lost on the way.

A rollout lives in the supervisor only: a supervisor that restarts during one aborts it (the serving
version never stopped serving), and the ledger says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psutil

from registry import history as ledger
from registry.errors import SupervisorError
from registry.monitoring.canary import (
    AnalysisSettings,
    Check,
    Counts,
    Evidence,
    agreement,
    failed,
    judge,
    ready,
    summary,
)
from registry.monitoring.performance import realised
from registry.outcomes import OutcomeStore, store_path
from registry.serving.processes import Worker
from registry.serving.protocol import DeploymentState, RolloutStatus
from registry.serving.split import CANARY, SHADOW
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.state import Runtime, State
from registry.serving.supervision.swaps import Swaps

if TYPE_CHECKING:
    from registry.serving.scraper import Scraper

log = logging.getLogger("modeldeck.supervisor")
#: How often a rollout is judged, its workers told, its candidate checked.
TICK = 0.5
#: How often the versions' predictions are compared on recent inputs, and labels counted.
AGREEMENT_EVERY, PERFORMANCE_EVERY = 2.0, 10.0
#: Rows compared per agreement probe.
PROBE_ROWS = 200
#: The longest a worker may take to answer a split or predict command.
COMMAND_TIMEOUT = 2.0
RUNNING, PROMOTING, ABORTING, DONE = "running", "promoting", "aborting", "done"
#: The niceness of a shadow's workers (see `yield_cpu`).
SHADOW_NICE = 10


@dataclass(eq=False)
class Rollout:
    """A canary or shadow under way: its candidate, its settings and where its analysis stands."""

    mode: str
    version: int
    settings: AnalysisSettings
    sock: socket.socket
    path: Path
    actor: str
    started: float = field(default_factory=time.time)
    step: int = 0
    step_started: float = field(default_factory=time.monotonic)
    #: Each version's totals when the step began (what the step's checks count from).
    marks: tuple[Counts, Counts] = field(default_factory=lambda: (Counts(), Counts()))
    #: What the serving version answered in the previous step (before the rollout, at the first):
    #: the baseline of a step of 100%, where it answers nothing.
    previous: Counts = field(default_factory=Counts)
    checks: list[Check] = field(default_factory=list)
    agreement: tuple[int, int] = (0, 0)
    performance: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
    #: The active workers (pids) that confirmed the current split.
    told: set[int] = field(default_factory=set)
    stage: str = RUNNING
    classes: bool = True
    last_agreement: float = 0.0
    last_performance: float = 0.0

    @property
    def weight(self) -> float:
        """The candidate's share now, in percent (a shadow: 0, it gets copies)."""
        if self.mode == SHADOW or not self.settings.steps:
            return 0.0
        return self.settings.steps[min(self.step, len(self.settings.steps) - 1)]

    def baseline(self, this_step: Counts) -> Counts:
        """What the candidate is judged against: the serving version's answers in this step, or, at a
        step of 100% (where it answers nothing), in the previous one."""
        return self.previous if self.weight >= 100.0 else this_step

    def wanted(self) -> dict[str, Any]:
        return {"mode": self.mode, "weight": self.weight, "path": str(self.path)}

    def status(self, traffic: dict[str, int] | None = None) -> RolloutStatus:
        """Where the rollout stands; `traffic`: the serving workers' split counters."""
        elapsed = time.monotonic() - self.step_started
        return RolloutStatus(
            mode=self.mode,
            version=self.version,
            stage=self.stage,
            step=self.step + 1 if self.mode == CANARY else 0,
            steps=list(self.settings.steps) if self.mode == CANARY else [],
            weight=self.weight,
            started=self.started,
            step_elapsed=round(elapsed, 1),
            next_check=round(max(0.0, self.settings.step_seconds - elapsed), 1)
            if self.mode == CANARY
            else None,
            settings=self.settings.as_dict(),
            checks=[c.as_dict() for c in self.checks],
            traffic=dict(traffic or {}),
        )


class Rollouts:
    """Starts, watches, promotes and aborts the canaries and shadows of the supervisor's deployments."""

    def __init__(self, state: State, ledger: Ledger, pool: Pool, swaps: Swaps, scraper: Scraper) -> None:
        self.state = state
        self.ledger = ledger
        self.pool = pool
        self.swaps = swaps
        self.scraper = scraper

    async def start(
        self, runtime: Runtime, version: int, mode: str, settings: AnalysisSettings, actor: str, reason: str
    ) -> None:
        """Start a canary or shadow of `version`; answers once the candidate takes its share. The
        caller holds the deployment's lock."""
        state, spec = self.state, runtime.spec
        self.check(runtime, version, mode)
        info = await state.db(state.registry.get, f"{spec.model}:{version}")
        path = state.rundir.candidate_socket(spec.name)
        sock = state.rundir.bind(path)
        sock.set_inheritable(True)
        rollout = Rollout(mode, version, settings, sock, path, actor or state.actor)
        rollout.classes = info.output.get("kind") == "classification"
        kind = ledger.CANARY_STARTED if mode == CANARY else ledger.SHADOW_STARTED
        try:  # a load that fails records its own outcome (`failed`, with the worker's log)
            workers = await self.pool.load(runtime, version, spec.workers, actor, sock=sock)
        except BaseException:
            await self._end(runtime, rollout)
            raise
        try:
            runtime.incoming = [w for w in runtime.incoming if w not in workers]
            runtime.candidates = workers
            state.save_state()
            await self.pool.promote(runtime, workers)
            if mode == SHADOW:
                for worker in workers:
                    yield_cpu(worker.pid)
            runtime.rollout = rollout
            rollout.marks = self._totals(runtime, rollout)
            rollout.previous = rollout.marks[0]
            rollout.checks = judge(settings, Evidence(Counts(), Counts()))  # all waiting, as shown at once
            await self._tell(runtime, rollout, runtime.active)
            await self._record(runtime, kind, actor, reason, {"settings": settings.as_dict()})
        except BaseException as exc:
            runtime.rollout = None
            await self._tell_off(runtime.active)
            await self._end(runtime, rollout)
            if not isinstance(exc, Exception):
                raise
            why = f"the {mode} of version {version} did not start: {exc}"
            await self.ledger.event(spec, ledger.FAILED, actor, version, why, None, spec.version)
            if isinstance(exc, SupervisorError):
                raise
            raise SupervisorError(f"{spec.name}: {why}") from None
        state.spawn_task(self._watch(runtime, rollout))

    def status(self, runtime: Runtime) -> RolloutStatus | None:
        """The rollout under way for `runtime`, with its split counters; None when there is none."""
        rollout = runtime.rollout
        return rollout.status(self.scraper.split_counts.get(runtime.spec.name)) if rollout else None

    def check(self, runtime: Runtime, version: int, mode: str) -> None:
        """Refuse (SupervisorError) a rollout of `version` that cannot start now, saying why."""
        spec = runtime.spec
        if runtime.rollout is not None:
            raise SupervisorError(under_way(runtime), 409)
        if not runtime.served or not runtime.active or runtime.status != DeploymentState.RUNNING:
            raise SupervisorError(
                f"{spec.name}: a {mode} needs a version serving and running; deploy one first", 409
            )
        if version == spec.version:
            raise SupervisorError(f"{spec.name} already serves version {version}", 409)

    async def promote(self, runtime: Runtime, actor: str, reason: str, automatic: bool = False) -> None:
        """Make the candidate the serving version (a switch), and end the rollout."""
        rollout = self._current(runtime, PROMOTING)
        why = reason or ("every check passed at every step" if automatic else "promoted by hand")
        try:
            async with self.state.lock(runtime.spec.name):
                rollout.stage = PROMOTING
                detail_why = f"{why}; {summary(rollout.checks)}" if rollout.checks else why
                await self.swaps.switch(runtime, rollout.version, ledger.PROMOTED, actor, detail_why)
        except BaseException:
            if rollout.stage == PROMOTING:
                rollout.stage = RUNNING  # the switch changed nothing: the rollout goes on
            raise
        await self._tell_off(runtime.active + runtime.standby + runtime.outgoing)
        await self._end(runtime, rollout)

    async def abort(
        self, runtime: Runtime, actor: str, reason: str, checks: list[Check] | None = None
    ) -> float:
        """Send every request to the serving version again, then stop the candidate; the seconds from
        the decision until every active worker confirmed."""
        rollout = self._current(runtime, ABORTING)
        rollout.stage = ABORTING
        decided = time.monotonic()
        rollout.told.clear()
        await self._tell_off(runtime.active)
        seconds = time.monotonic() - decided
        detail = {
            "mode": rollout.mode,
            "step": rollout.step + 1,
            "weight": rollout.weight,
            "seconds": round(seconds, 4),
            "checks": [c.as_dict() for c in (checks if checks is not None else rollout.checks)],
        }
        await self._record(runtime, ledger.ABORTED, actor, reason, detail)
        await self._end(runtime, rollout)
        return seconds

    async def interrupted(self, runtime: Runtime, version: int) -> None:
        """A previous supervisor stopped during a rollout of `version`: its candidate was stopped;
        the active workers split no more, and the ledger says so."""
        await self._tell_off(runtime.active)
        spec = runtime.spec
        await self.ledger.event(
            spec,
            ledger.ABORTED,
            self.state.actor,
            version,
            f"the supervisor restarted during the rollout of version {version}; "
            f"{spec.name} serves version {spec.version}",
            None,
            spec.version,
        )

    # ------------------------------------------------------------------ the analysis
    async def _watch(self, runtime: Runtime, rollout: Rollout) -> None:
        while runtime.rollout is rollout and rollout.stage == RUNNING:
            await asyncio.sleep(TICK)
            if runtime.rollout is not rollout or rollout.stage != RUNNING:
                return
            try:
                await self._tick(runtime, rollout)
            except SupervisorError as exc:
                log.warning("%s: %s", runtime.spec.name, exc)
            except Exception:
                log.exception("%s: rollout analysis failed", runtime.spec.name)

    async def _tick(self, runtime: Runtime, rollout: Rollout) -> None:
        dead = next((w for w in runtime.candidates if not w.alive()), None)
        if dead is not None:
            status = f" with status {dead.exit_code}" if dead.exit_code is not None else ""
            why = f"candidate worker {dead.pid} (version {rollout.version}) exited{status}"
            await self.abort(runtime, self.state.actor, why)
            return
        await self._tell(runtime, rollout, [w for w in runtime.active if w.pid not in rollout.told])
        now = time.monotonic()
        if now - rollout.last_agreement >= AGREEMENT_EVERY:
            rollout.last_agreement = now
            await self._compare(runtime, rollout)
        if now - rollout.last_performance >= PERFORMANCE_EVERY:
            rollout.last_performance = now
            rollout.performance = await asyncio.to_thread(self._performance, runtime, rollout)
        base, cand = self._totals(runtime, rollout)
        served = base.minus(rollout.marks[0])  # the serving version's answers in this step
        evidence = Evidence(
            baseline=rollout.baseline(served),
            candidate=cand.minus(rollout.marks[1]),
            agreement=rollout.agreement if rollout.agreement[1] else None,
            drift=self.scraper.drift_statuses(runtime.spec.name),
            performance=rollout.performance,
        )
        rollout.checks = judge(rollout.settings, evidence, shadow=rollout.mode == SHADOW)
        bad = failed(rollout.checks)
        if rollout.mode == SHADOW:
            return  # a shadow is promoted or discarded by hand; its checks are shown
        if bad:
            await self.abort(runtime, self.state.actor, summary(bad), rollout.checks)
            return
        if now - rollout.step_started < rollout.settings.step_seconds or not ready(rollout.checks):
            return
        if rollout.step + 1 >= len(rollout.settings.steps):
            self.state.spawn_task(self._promote_quietly(runtime))
            return
        passed = [c.as_dict() for c in rollout.checks]
        rollout.step += 1
        rollout.step_started = time.monotonic()
        rollout.marks, rollout.previous = (base, cand), served
        await self._tell(runtime, rollout, runtime.active)
        await self._record(
            runtime,
            ledger.CANARY_STEP,
            self.state.actor,
            summary(rollout.checks),
            {"weight": rollout.weight, "checks": passed},
        )

    async def _promote_quietly(self, runtime: Runtime) -> None:
        try:
            await self.promote(runtime, self.state.actor, "", automatic=True)
        except SupervisorError as exc:
            log.warning("%s: automatic promotion failed: %s", runtime.spec.name, exc)

    def _totals(self, runtime: Runtime, rollout: Rollout) -> tuple[Counts, Counts]:
        """Each version's totals so far (serving version, candidate), as the scraper counted them."""
        totals = self.scraper.version_totals(runtime.spec.name)
        base, cand = totals.get(runtime.spec.version), totals.get(rollout.version)
        return (
            Counts.of(base.requests, base.latency_buckets) if base else Counts(),
            Counts.of(cand.requests, cand.latency_buckets) if cand else Counts(),
        )

    async def _compare(self, runtime: Runtime, rollout: Rollout) -> None:
        """Both versions' predictions of the candidate's recent inputs, added to the agreement."""
        rows = self.scraper.take_candidate_rows(runtime.spec.name, PROBE_ROWS)
        if not rows or not runtime.active or not runtime.candidates:
            return
        base, cand = await asyncio.gather(
            self._ask(runtime.active[0], {"predict": rows}),
            self._ask(runtime.candidates[0], {"predict": rows}),
        )
        ours, theirs = (base or {}).get("predictions"), (cand or {}).get("predictions")
        if not isinstance(ours, list) or not isinstance(theirs, list) or len(ours) != len(theirs):
            return
        same, total = agreement(ours, theirs, rollout.classes)
        rollout.agreement = (rollout.agreement[0] + same, rollout.agreement[1] + total)

    def _performance(
        self, runtime: Runtime, rollout: Rollout
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Each version's realised figures on predictions made since the rollout began (labels by id)."""
        path = store_path(self.state.home)
        if rollout.mode == SHADOW or not path.exists():
            return None, None  # a shadow's answers go to nobody, so nobody labels them
        registry, spec = self.state.registry, runtime.spec
        try:
            outputs = [registry.get(f"{spec.model}:{v}").output for v in (spec.version, rollout.version)]
            with OutcomeStore(path) as store:
                return (
                    realised(store, spec.name, spec.version, outputs[0], rollout.started),
                    realised(store, spec.name, rollout.version, outputs[1], rollout.started),
                )
        except Exception as exc:  # the store is busy or damaged: the check waits
            log.debug("no realised performance for the rollout: %s", exc)
            return None, None

    # ------------------------------------------------------------------ telling workers
    async def _tell(self, runtime: Runtime, rollout: Rollout, workers: Iterable[Worker]) -> None:
        """Set the rollout's split on `workers`; a worker that cannot be told is told next tick."""
        wanted = rollout.wanted()
        targets = [w for w in workers if w.alive()]
        replies = await asyncio.gather(*(self._ask(w, {"split": wanted}) for w in targets))
        for worker, reply in zip(targets, replies, strict=True):
            if reply is not None and isinstance(reply.get("split"), dict):
                rollout.told.add(worker.pid)
            else:
                rollout.told.discard(worker.pid)
                log.warning("%s: worker %s did not take the split: %s", runtime.spec.name, worker.pid, reply)

    async def _tell_off(self, workers: Iterable[Worker]) -> None:
        """No split on `workers` (each is asked once more if it does not confirm)."""
        targets = [w for w in workers if w.alive()]
        replies = await asyncio.gather(*(self._ask(w, {"split": None}) for w in targets))
        again = [w for w, reply in zip(targets, replies, strict=True) if reply is None or "error" in reply]
        if again:
            await asyncio.gather(*(self._ask(w, {"split": None}) for w in again))

    async def _ask(self, worker: Worker, command: dict[str, Any]) -> dict[str, Any] | None:
        """Send one command to `worker`'s monitoring socket; its answer, or None."""
        path = self.state.rundir.worker_socket(worker.pid)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=16 * 1024 * 1024), COMMAND_TIMEOUT
            )
        except (OSError, TimeoutError):
            return None
        try:
            writer.write(orjson.dumps(command, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            line = await asyncio.wait_for(reader.readline(), COMMAND_TIMEOUT)
            reply = orjson.loads(line) if line else None
            return reply if isinstance(reply, dict) else None
        except (OSError, TimeoutError, ValueError):
            return None
        finally:
            writer.close()

    # ------------------------------------------------------------------ the end
    async def _end(self, runtime: Runtime, rollout: Rollout) -> None:
        """Stop the candidate's workers and close its socket."""
        rollout.stage = DONE
        if runtime.rollout is rollout:
            runtime.rollout = None
        leaving, runtime.candidates = runtime.candidates, []
        runtime.outgoing += leaving
        self.state.save_state()
        with contextlib.suppress(OSError):
            rollout.sock.close()
        rollout.path.unlink(missing_ok=True)
        await self.pool.retire(leaving)
        runtime.outgoing = [w for w in runtime.outgoing if w not in leaving]
        self.state.save_state()
        self.scraper.forget_candidate(runtime.spec.name)

    async def _record(
        self, runtime: Runtime, kind: str, actor: str, reason: str, detail: dict[str, Any]
    ) -> None:
        rollout, spec = runtime.rollout, runtime.spec
        version = rollout.version if rollout is not None else None
        await self.ledger.event(spec, kind, actor or self.state.actor, version, reason, detail, spec.version)

    def _current(self, runtime: Runtime, doing: str) -> Rollout:
        rollout = runtime.rollout
        if rollout is None:
            raise SupervisorError(f"{runtime.spec.name} has no canary or shadow under way", 409)
        if rollout.stage != RUNNING:
            raise SupervisorError(f"{runtime.spec.name}: the {rollout.mode} is already {rollout.stage}", 409)
        return rollout


def yield_cpu(pid: int) -> None:
    """Run every thread of process `pid` at SHADOW_NICE: on a busy core the serving workers come
    first and the shadow falls behind (its copies then wait, or are dropped and counted), rather than
    slowing them. A shadow's latency is measured at that priority."""
    try:
        threads = [thread.id for thread in psutil.Process(pid).threads()]
    except psutil.Error:
        return
    for tid in threads:  # Linux's nice is per thread: each one, the model's and the recorder's too
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, SHADOW_NICE)
    # A worker runs in a session of its own, so with the kernel's autogroups (the default on desktops
    # and many servers) it is a scheduling group of its own: a thread's nice only weighs inside it, and
    # it is the group's that weighs against the serving worker's.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(SHADOW_NICE))


def under_way(runtime: Runtime) -> str:
    """Why nothing else may change `runtime` now: its rollout, and how to end it."""
    rollout = runtime.rollout
    assert rollout is not None
    return (
        f"{runtime.spec.name}: a {rollout.mode} of version {rollout.version} is under way; "
        f"promote or abort it first (modeldeck promote|abort {runtime.spec.name})"
    )
