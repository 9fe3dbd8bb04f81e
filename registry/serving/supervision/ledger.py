"""Event-ledger writes: made now or, while the database refuses them, later, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from registry.errors import DatabaseError, RegistryError
from registry.info import DeploymentInfo
from registry.serving.supervision.state import State

log = logging.getLogger("modeldeck.supervisor")


class Ledger:
    """The supervisor's writes to the event ledger (and compensating writes), retried in order."""

    def __init__(self, state: State) -> None:
        self.state = state
        #: Ledger writes (and compensating writes) the database refused for now, retried in order.
        self._pending: deque[Callable[[], Any]] = deque()
        self._flushing = asyncio.Lock()
        self._retrying = False

    async def event(
        self,
        spec: DeploymentInfo,
        kind: str,
        actor: str = "",
        version: int | None = None,
        reason: str = "",
        detail: dict[str, Any] | None = None,
        from_version: int | None = None,
    ) -> None:
        """Record a step of `spec`'s deployment (towards `version`, from `from_version`) now, or later if
        the DB is busy; `actor` defaults to the supervisor."""
        await self.record(
            partial(
                self.state.registry.record_event,
                spec.model,
                kind,
                actor=actor or self.state.actor,
                deployment=spec.name,
                from_version=from_version,
                to_version=version,
                reason=reason,
                detail=detail or {},
            )
        )

    async def record(self, write: Callable[[], Any]) -> None:
        """Make a ledger (or compensating) write now or, while the database refuses, later: in order,
        retried until it lands, and always before the next change is written (`flush`)."""
        self._pending.append(write)
        if self._retrying:  # the database is busy: the retry task writes it, in order, without waiting here
            return
        try:
            await self.flush()
        except DatabaseError as exc:
            log.warning("ledger write postponed (%d pending): %s", len(self._pending), exc)
            if not self._retrying:
                self._retrying = True
                self.state.spawn_task(self._retry_pending())

    async def flush(self) -> None:
        """Write the pending writes in order; a DatabaseError leaves the rest pending and is raised."""
        async with self._flushing:
            while self._pending:
                try:
                    await self.state.db(self._pending[0])
                except DatabaseError:
                    raise
                except RegistryError as exc:  # e.g. the model was deleted since: nothing to retry
                    log.warning("ledger write dropped: %s", exc)
                self._pending.popleft()

    async def _retry_pending(self) -> None:
        delay = 0.25
        try:
            while self._pending:
                await asyncio.sleep(delay)
                with contextlib.suppress(DatabaseError):
                    await self.flush()
                delay = min(5.0, delay * 2)
        finally:
            self._retrying = False
