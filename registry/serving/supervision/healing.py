"""Healing: dead and hung workers noticed, restarted with exponential backoff, a crash loop rolled back."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import TYPE_CHECKING

from registry import history as ledger
from registry.errors import SupervisorError
from registry.serving import logs
from registry.serving.processes import SERVING, Worker
from registry.serving.protocol import DeploymentState
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.state import Runtime, State
from registry.serving.supervision.swaps import Swaps
from registry.serving.worker import ServeError

if TYPE_CHECKING:
    from registry.serving.scraper import Scraper

log = logging.getLogger("modeldeck.supervisor")
#: Missed metrics pulls in a row after which an active worker counts as not answering.
SILENT_PULLS = 3


class Healing:
    """Watches the workers; restarts crashed ones and kills hung ones (which then count as crashed)."""

    def __init__(self, state: State, ledger: Ledger, pool: Pool, swaps: Swaps, scraper: Scraper) -> None:
        self.state = state
        self.ledger = ledger
        self.pool = pool
        self.swaps = swaps
        self.scraper = scraper
        self._hung: dict[int, str] = {}  # pid -> why it was killed (for the crash's ledger entry)
        #: Deployments shown degraded because a worker does not answer, with the message shown.
        self._silent: dict[str, str] = {}

    def refill(self, runtime: Runtime) -> None:
        """Add the workers `runtime` lacks behind the ones serving (no backoff, not a crash)."""
        self.state.spawn_task(self._restart(runtime, 0, crashed=False))

    async def watch(self) -> None:
        """Notice dead and hung workers; rotate logs."""
        state = self.state
        ticks = 0
        while True:
            await asyncio.sleep(0.2)
            ticks += 1
            for runtime in list(state.runtimes.values()):
                if runtime.lock.locked():
                    continue
                for worker in [
                    w for w in runtime.active + runtime.standby if not w.leaving and not w.alive()
                ]:
                    self._crashed(runtime, worker)
                self._check_answers(runtime)
            for worker in [w for w in state.workers.values() if w.leaving and not w.alive()]:
                state.forget(worker)
                self._hung.pop(worker.pid, None)  # retired before its crash was seen
            if ticks % 25 == 0:
                for path in state.rundir.logs.glob("*.log"):
                    logs.rotate_if_large(path)

    def _check_answers(self, runtime: Runtime) -> None:
        """Kill an active worker that answered no pull for `hang_timeout` seconds (stopped, or its
        event loop stuck): the crash path then restarts it. Meanwhile, from `SILENT_PULLS` missed
        pulls on, the deployment is "degraded" rather than "running"."""
        timeout = self.state.policy.hang_timeout
        if timeout <= 0:
            return
        quiet = []
        for worker in runtime.active:
            missed = self.scraper.missed.get(worker.pid, 0)
            if worker.leaving or worker.pid in self._hung or worker.state != SERVING:
                continue
            if missed < SILENT_PULLS or not worker.alive():
                continue
            seconds = self.scraper.silent_for(worker.pid)
            if seconds >= timeout:
                self._kill_hung(runtime, worker, seconds)
            else:
                quiet.append((worker, seconds))
        name = runtime.spec.name
        if quiet and runtime.status in (DeploymentState.RUNNING, DeploymentState.DEGRADED):
            worker, seconds = quiet[0]
            runtime.status = DeploymentState.DEGRADED
            runtime.message = self._silent[name] = f"worker {worker.pid} has not answered for {seconds:.0f} s"
        elif not quiet and name in self._silent:  # it answers again (or was killed: the crash path)
            shown = self._silent.pop(name)
            if runtime.status == DeploymentState.DEGRADED and runtime.message == shown:
                runtime.status, runtime.message = DeploymentState.RUNNING, ""

    def _kill_hung(self, runtime: Runtime, worker: Worker, seconds: float) -> None:
        """SIGKILL a worker that stopped answering; `_crashed` records why and restarts it."""
        why = f"worker {worker.pid} did not answer for {seconds:.0f} s; killed and restarted"
        log.warning("%s: %s", runtime.spec.name, why)
        self._hung[worker.pid] = why
        runtime.message = why
        worker.send(signal.SIGKILL)

    def _crashed(self, runtime: Runtime, worker: Worker) -> None:
        state, policy = self.state, self.state.policy
        spec = runtime.spec
        was_active = worker in runtime.active
        runtime.active = [w for w in runtime.active if w is not worker]
        runtime.standby = [w for w in runtime.standby if w is not worker]
        state.forget(worker)
        now = time.monotonic()
        if was_active:
            runtime.crashes.append(now)
        recent = sum(1 for t in runtime.crashes if now - t <= policy.crash_window)
        tail = logs.tail(state.rundir.deployment_log(spec.name), 10)
        state.spawn_task(
            self.ledger.event(
                spec,
                ledger.CRASHED,
                from_version=worker.version,
                reason=self._hung.pop(worker.pid, "")
                or f"worker {worker.pid} ({'active' if was_active else 'standby'}) exited"
                + (f" with status {worker.exit_code}" if worker.exit_code is not None else ""),
                detail={"pid": worker.pid, "exit_code": worker.exit_code, "log": tail},
            )
        )
        state.save_state()
        if not was_active or runtime.healing:
            return
        runtime.status = DeploymentState.DEGRADED
        if recent >= policy.crash_limit:
            runtime.status = DeploymentState.CRASH_LOOPING
            runtime.message = f"version {spec.version} crashed {recent} times in {policy.crash_window:g} s"
            standby = runtime.standby_version
            if policy.auto_rollback and standby is not None and standby != spec.version:
                state.spawn_task(self._auto_rollback(runtime, standby))
                return
        # The first crash in the window restarts at once (a preloaded worker is back in well under a
        # second); repeated ones back off 0.5 s, 1 s, 2 s ... up to max_backoff.
        backoff = 0.0 if recent <= 1 else min(policy.max_backoff, 0.5 * 2 ** (recent - 2))
        state.spawn_task(self._restart(runtime, backoff))

    async def _restart(self, runtime: Runtime, backoff: float, crashed: bool = True) -> None:
        """Bring `runtime` back to its worker count after `backoff` seconds (after a crash, or to add
        workers behind a smaller standby that took over)."""
        state = self.state
        runtime.healing = True
        try:
            await asyncio.sleep(backoff)
            async with state.lock(runtime.spec.name):
                if state.runtimes.get(runtime.spec.name) is not runtime:
                    return
                missing = runtime.spec.workers - len(runtime.active)
                if missing <= 0:
                    return
                try:
                    await self.pool.start_active(runtime, missing)
                except (SupervisorError, ServeError) as exc:  # ServeError: e.g. the token became unusable
                    runtime.status, runtime.message = DeploymentState.FAILED, str(exc)
                    return
                if runtime.status == DeploymentState.DEGRADED:
                    runtime.status = DeploymentState.RUNNING
                state.save_state()
                if not crashed:
                    return
                runtime.restarts += missing
                await self.ledger.event(
                    runtime.spec,
                    ledger.RESTARTED,
                    version=runtime.spec.version,
                    reason=f"after {backoff:g} s backoff",
                    detail={"workers": [w.pid for w in runtime.active]},
                )
        finally:
            runtime.healing = False
        if len(runtime.active) < runtime.spec.workers and runtime.status != DeploymentState.FAILED:
            state.spawn_task(self._restart(runtime, min(state.policy.max_backoff, backoff * 2)))

    async def _auto_rollback(self, runtime: Runtime, standby: int) -> None:
        why = f"crash loop: {runtime.message}; rolled back to the standby, version {standby}"
        try:
            async with self.state.lock(runtime.spec.name):
                await self.swaps.switch(runtime, standby, ledger.ROLLED_BACK, self.state.actor, why)
            runtime.message = why
        except SupervisorError as exc:
            runtime.status, runtime.message = DeploymentState.FAILED, f"automatic rollback failed: {exc}"
