"""All-or-nothing changes of a deployment: a switch of version, or of its worker count.

The incoming workers (the warm standby, or new ones loaded now) wait in standby while the deployment
row and its ledger event are written in one transaction; only then are they promoted and the old
ones drained (kept warm as the standby). A failed write changes nothing; a failed promotion is
reverted, row included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, NoReturn

from registry import history as ledger
from registry.deployments import remove_deployment, save_deployment
from registry.errors import DatabaseError, SupervisorError
from registry.info import DeploymentInfo
from registry.serving.processes import STANDBY, Worker
from registry.serving.protocol import DeploymentState
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.state import Runtime, State


class Swaps:
    """Switches and scalings of deployments; the caller holds the deployment's lock."""

    def __init__(self, state: State, ledger: Ledger, pool: Pool) -> None:
        self.state = state
        self.ledger = ledger
        self.pool = pool
        #: Called when fewer workers serve than wanted after a switch (healing adds the rest).
        self.on_short: Callable[[Runtime], None] = lambda runtime: None

    async def switch(
        self, runtime: Runtime, version: int, kind: str, actor: str, reason: str, workers: int | None = None
    ) -> None:
        """Move traffic of `runtime` to `version`, all or nothing.

        The incoming workers (the warm standby, or new ones loaded now) wait in standby while the
        deployment row and its ledger event are written in one transaction; only then are they
        promoted and the old ones drained. If the write fails they go (back to standby) and nothing
        changed; if promotion fails, the old workers (never drained) keep serving and the row is
        written back (`_revert`). Either way the error says what happened and what serves."""
        state, pool = self.state, self.pool
        spec = runtime.spec
        previous = spec.version if runtime.served else None
        count = workers or spec.workers
        warm = [w for w in runtime.standby if w.version == version and w.alive() and w.state == STANDBY]
        warm = warm[:count]
        started = time.monotonic()
        if warm:
            runtime.standby = [w for w in runtime.standby if w not in warm]
            runtime.incoming += warm
            incoming = warm
        else:
            incoming = await pool.load(runtime, version, count, actor, record_ready=False)
        keep = state.policy.keep_standby and previous is not None and previous != version
        target = replace(spec, version=version, workers=count, standby_version=previous if keep else None)
        pids = [w.pid for w in incoming]
        ready = (
            []
            if warm
            else [
                (
                    ledger.READY,
                    {
                        "actor": state.actor,
                        "deployment": spec.name,
                        "to_version": version,
                        "detail": {"seconds": round(time.monotonic() - started, 3), "workers": pids},
                    },
                )
            ]
        )
        doing = f"switch to {spec.model}:{version}"
        try:
            await self.commit(
                target, kind, actor, previous, reason, {"warm": bool(warm), "workers": pids}, ready
            )
        except BaseException as exc:
            pool.give_back(runtime, incoming, warm)
            if not isinstance(exc, Exception):
                raise
            error = unchanged(runtime, doing, exc)
            await self.ledger.event(
                spec, ledger.FAILED, actor, version, f"{doing} not recorded: {exc}", None, previous
            )
            raise error from None
        try:
            await pool.promote(runtime, incoming)
        except BaseException as exc:
            await self._revert(runtime, spec, incoming, warm, exc, doing)
        outgoing = runtime.active
        stale = [w for w in runtime.standby if not keep or w.version != previous]
        runtime.spec, runtime.active, runtime.served = target, incoming, True
        runtime.incoming = [w for w in runtime.incoming if w not in incoming]
        runtime.standby = [w for w in runtime.standby if w not in stale]
        runtime.outgoing += outgoing + stale
        runtime.status, runtime.message = DeploymentState.RUNNING, ""
        runtime.crashes.clear()
        state.save_state()
        drained = await pool.drain(runtime, outgoing, keep=keep)
        await pool.retire(stale)
        runtime.outgoing = [w for w in runtime.outgoing if w not in outgoing + stale]
        state.save_state()
        if outgoing:
            await self.ledger.event(
                target,
                ledger.DRAINED,
                from_version=previous,
                detail={"workers": [w.pid for w in outgoing], "standby": [w.pid for w in drained]},
            )
        if len(runtime.active) < target.workers:  # a smaller standby took over: add the rest behind it
            self.on_short(runtime)

    async def scale(self, runtime: Runtime, workers: int, actor: str, reason: str) -> None:
        """Like a switch: new workers wait in standby until the row is written; extra ones go after."""
        if not 1 <= workers <= 64:
            raise SupervisorError("workers must be between 1 and 64")
        state, pool = self.state, self.pool
        spec = runtime.spec
        before = len(runtime.active)
        added = await pool.load(runtime, spec.version, workers - before, actor) if before < workers else []
        target = replace(spec, workers=workers)
        detail = {"workers": workers, "before": before}
        try:
            await self.commit(target, ledger.SCALED, actor, spec.version, reason, detail)
        except BaseException as exc:
            pool.give_back(runtime, added, [])
            if not isinstance(exc, Exception):
                raise
            error = unchanged(runtime, f"scaling to {workers} workers", exc)
            if added:  # the load it recorded gets its outcome
                why = f"scaling to {workers} workers not recorded: {exc}"
                await self.ledger.event(spec, ledger.FAILED, actor, spec.version, why, None, spec.version)
            raise error from None
        try:
            await pool.promote(runtime, added)
        except BaseException as exc:
            await self._revert(runtime, spec, added, [], exc, f"scaling to {workers} workers")
        runtime.spec = target
        runtime.incoming = [w for w in runtime.incoming if w not in added]
        runtime.active += added
        extra, runtime.active = runtime.active[workers:], runtime.active[:workers]
        stale, runtime.standby = runtime.standby[workers:], runtime.standby[:workers]
        runtime.outgoing += extra + stale
        state.save_state()
        await pool.retire(extra + stale)
        runtime.outgoing = [w for w in runtime.outgoing if w not in extra + stale]
        state.save_state()

    async def commit(
        self,
        spec: DeploymentInfo,
        kind: str,
        actor: str,
        from_version: int | None,
        reason: str,
        detail: dict[str, Any],
        preceding: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        """Write the deployment row and its ledger event in one transaction, after any pending writes."""
        await self.ledger.flush()
        await self.state.db(
            save_deployment,
            self.state.registry,
            spec,
            kind,
            actor=actor or None,
            from_version=from_version,
            reason=reason,
            detail=detail,
            preceding=preceding or [],
        )

    async def _revert(
        self,
        runtime: Runtime,
        before: DeploymentInfo,
        incoming: list[Worker],
        warm: list[Worker],
        exc: BaseException,
        doing: str,
    ) -> NoReturn:
        """Promotion failed after the row was written: take the incoming workers out of service (the
        old ones never stopped serving), write the previous row back (retried until the database takes
        it), and raise an error that says so."""
        state, pool = self.state, self.pool
        if not isinstance(exc, Exception):  # cancelled: the next supervisor start reconciles
            pool.give_back(runtime, incoming, [])
            raise exc
        runtime.incoming = [w for w in runtime.incoming if w not in incoming]
        runtime.outgoing += incoming
        state.save_state()
        parked = await pool.drain(runtime, [w for w in incoming if w in warm], keep=True)
        await pool.retire([w for w in incoming if w not in parked])
        runtime.outgoing = [w for w in runtime.outgoing if w not in incoming]
        why = f"{doing} failed after it was recorded: {exc}"
        undo: Callable[[], object]
        if runtime.served:
            undo = partial(
                save_deployment,
                state.registry,
                before,
                ledger.REVERTED,
                actor=state.actor,
                from_version=incoming[0].version if incoming else before.version,
                reason=why,
            )
            now = f"{before.name} serves {before.model}:{before.version} again"
        else:
            undo = partial(
                remove_deployment, state.registry, before.name, ledger.FAILED, actor=state.actor, reason=why
            )
            now = f"{before.name} was not deployed"
        state.save_state()
        await self.ledger.record(undo)
        status = exc.status if isinstance(exc, SupervisorError) else 500
        raise SupervisorError(f"{before.name}: {why}; put back: {now}", status)


def unchanged(runtime: Runtime, doing: str, exc: Exception) -> SupervisorError:
    """The error of a change that was not made: why, and what still serves."""
    spec = runtime.spec
    if runtime.served and runtime.active:
        now = f"{spec.name} still serves {spec.model}:{spec.version}"
    else:
        now = f"nothing runs for {spec.name}"
    status = 503 if isinstance(exc, DatabaseError) else getattr(exc, "status", 500)
    tail = exc.log_tail if isinstance(exc, SupervisorError) else []
    return SupervisorError(f"{spec.name}: {doing} not done: {exc}; {now}", status, tail)
