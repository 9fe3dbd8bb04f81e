"""The start-up pass: make running servers match the registry after a supervisor starts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from registry import history as ledger
from registry.deployments import list_deployments, open_actions
from registry.errors import SupervisorError
from registry.info import DeploymentInfo
from registry.serving.processes import Worker, adopt, load_state, state_owner, workers_of
from registry.serving.protocol import DeploymentState, Role
from registry.serving.supervision.adoption import Adoption
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.state import Runtime, State
from registry.serving.worker import ServeError

log = logging.getLogger("modeldeck.supervisor")


class Reconcile:
    """Adopts what still runs, stops what nothing wants, and brings up what the registry wants."""

    def __init__(self, state: State, ledger: Ledger, pool: Pool, adoption: Adoption) -> None:
        self.state = state
        self.ledger = ledger
        self.pool = pool
        self.adoption = adoption
        #: Deployments whose canary or shadow the last supervisor left, with the candidate's version.
        self.interrupted: dict[str, int] = {}
        #: Called for each of those once its serving workers are up (`Rollouts.interrupted`).
        self.on_interrupted: Callable[[Runtime, int], Awaitable[None]] | None = None
        #: Whether this supervisor runs a deployment (on a shared registry: placed on this host).
        self.owns: Callable[[DeploymentInfo], bool] = lambda spec: True

    async def run(self) -> None:
        """Adopt workers a previous supervisor left running, stop the ones nothing wants (strays of
        this home included), close the actions it left unfinished, then bring up what the DB wants."""
        state = self.state
        try:
            adopted = load_state(state.rundir)
            owner = state_owner(state.rundir)
            wanted = [s for s in await state.db(list_deployments, state.registry) if self.owns(s)]
            leaving: list[Worker] = []
            for spec in wanted:
                entry = adopted.pop(spec.name, {})
                runtime = Runtime(spec=spec)
                state.runtimes[spec.name] = runtime
                for item in entry.get("workers", []):
                    worker = adopt(item)
                    if worker is None:
                        continue
                    state.track([worker])
                    if item.get("role") == Role.CANDIDATE:  # a rollout does not outlive its supervisor
                        leaving.append(worker)
                        self.interrupted[spec.name] = worker.version
                    else:
                        self.adoption.place(runtime, worker, str(item.get("role")))
                await self.adoption.reclaim(runtime)
                state.starting.add(spec.name)
            for name, entry in adopted.items():  # deployments the DB no longer wants (here)
                gone = state.track([w for w in map(adopt, entry.get("workers", [])) if w is not None])
                if gone:
                    log.warning(
                        "stopping %d worker(s) of %s: the registry no longer wants it here", len(gone), name
                    )
                leaving += gone
            strays = [w for w in workers_of(state.home) if w.pid not in state.workers]
            if strays:
                log.warning("stopping %d worker(s) of this home that nothing tracks", len(strays))
            state.spawn_task(self.pool.retire(state.track(leaving + strays)))
            state.sweep_sockets()
            await self._close_open_actions(owner)
            state.save_state()
            for runtime in state.runtimes.values():
                state.spawn_task(self._bring_up(runtime))
        finally:
            state.reconciled.set()

    async def _close_open_actions(self, owner: int | None) -> None:
        """Give each action the last supervisor left without an outcome its outcome (failed)."""
        state = self.state
        who = f" (pid {owner})" if owner else ""
        for event in await state.db(open_actions, state.registry):
            where = (event.get("detail") or {}).get("host")
            if state.host_name is not None and where not in (None, state.host_name):
                continue  # another host's action: that host closes it
            what = "the deploy" if event["kind"] == ledger.DEPLOY_REQUESTED else "loading"
            await self.ledger.record(
                partial(
                    state.registry.record_event,
                    event["model_name"],
                    ledger.FAILED,
                    actor=state.actor,
                    deployment=event["deployment"],
                    from_version=event["from_version"],
                    to_version=event["to_version"],
                    reason=f"supervisor stopped during {what}{who}",
                )
            )

    async def _bring_up(self, runtime: Runtime) -> None:
        """Start the workers (then the standby) a deployment lacks after a supervisor start; stop the
        adopted ones it no longer wants once the wanted ones serve."""
        state, pool = self.state, self.pool
        spec = runtime.spec
        try:
            async with state.lock(spec.name):
                await self.adoption.adopt_incoming(runtime)
                missing = spec.workers - len(runtime.active)
                if missing > 0:
                    runtime.status = DeploymentState.STARTING
                    await pool.start_active(runtime, missing)
                    await self.ledger.event(
                        spec,
                        ledger.RESTARTED,
                        version=spec.version,
                        reason="supervisor started",
                        detail={"workers": [w.pid for w in runtime.active]},
                    )
                runtime.status = DeploymentState.RUNNING
                state.save_state()
                interrupted = self.interrupted.pop(spec.name, None)
                if interrupted is not None and self.on_interrupted is not None:
                    await self.on_interrupted(runtime, interrupted)
                leaving = runtime.outgoing
                if state.policy.keep_standby and not runtime.standby:  # the old version: park it warm
                    await pool.drain(runtime, [w for w in leaving if w.version == spec.standby_version], True)
                await pool.retire([w for w in leaving if w not in runtime.standby])
                runtime.outgoing = [w for w in runtime.outgoing if w not in leaving]
                state.save_state()
        except (SupervisorError, ServeError) as exc:
            runtime.status, runtime.message = DeploymentState.FAILED, str(exc)
            return
        finally:
            state.starting.discard(spec.name)
        standby = spec.standby_version
        if state.policy.keep_standby and standby is not None and not runtime.standby:
            async with state.lock(spec.name):
                try:
                    loaded = await pool.load(runtime, standby, spec.workers, state.actor)
                    runtime.incoming = [w for w in runtime.incoming if w not in loaded]
                    runtime.standby = loaded
                except SupervisorError as exc:
                    log.warning("%s: standby version %s did not load: %s", spec.name, standby, exc)
                state.save_state()
