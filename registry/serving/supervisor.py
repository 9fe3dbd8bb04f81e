"""The serving supervisor: one daemon per home that makes running model servers match the registry.

It owns each deployment's socket and runs its workers (`registry.serving.lifecycle`) behind it. A
swap is all or nothing: it loads the new version in standby while the old one serves, writes the
deployment row and its ledger event in one transaction, promotes the new workers, and only then drains
the old ones (a failed write changes nothing; a failed promotion is reverted, row included); the old
version stays warm as a standby so a rollback is a switch. Workers are in the state file from the
moment they are spawned, so a new supervisor adopts, promotes or stops every one of them. Workers
that crash are restarted with exponential backoff; a version that keeps crashing is rolled back to the
standby. Every step goes to the event ledger. Actions arrive through the control API
(`registry.serving.control`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from registry.core import Registry
from registry.errors import DatabaseError
from registry.serving.alerting import Alerting
from registry.serving.processes import Worker
from registry.serving.rundir import RunDir
from registry.serving.scraper import Scraper
from registry.serving.supervision.actions import Actions
from registry.serving.supervision.adoption import Adoption, Reports
from registry.serving.supervision.healing import Healing
from registry.serving.supervision.hosts import HostAgent
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.reconcile import Reconcile
from registry.serving.supervision.rollouts import Rollouts
from registry.serving.supervision.state import Policy, Runtime, State
from registry.serving.supervision.swaps import Swaps

__all__ = ["Policy", "Runtime", "Supervisor"]


class Supervisor:
    """Runs the deployments of one home. All methods run on the supervisor's event loop.

    A façade over `registry.serving.supervision`: the shared state, and one part per job."""

    def __init__(self, home: Path, policy: Policy | None = None) -> None:
        self.state = State(home, policy or Policy())
        self.scraper = Scraper(
            self,
            drift_every=self.policy.drift_every,
            window_rows=self.policy.window_rows,
            window_seconds=self.policy.window_seconds,
            retention=self.policy.retention,
        )
        self.ledger = Ledger(self.state)
        self.pool = Pool(self.state, self.ledger)
        self.swaps = Swaps(self.state, self.ledger, self.pool)
        self.healing = Healing(self.state, self.ledger, self.pool, self.swaps, self.scraper)
        self.swaps.on_short = self.healing.refill
        self.adoption = Adoption(self.state, self.pool)
        self.reconcile = Reconcile(self.state, self.ledger, self.pool, self.adoption)
        self.reports = Reports(self.state, self.scraper)
        self.alerting = Alerting(self)
        self.rollouts = Rollouts(self.state, self.ledger, self.pool, self.swaps, self.scraper)
        self.reconcile.on_interrupted = self.rollouts.interrupted
        self.actions = Actions(self.state, self.ledger, self.pool, self.swaps, self.rollouts)
        self.hosts = HostAgent(self.state, self.actions, self.scraper)
        self.reconcile.owns = self.hosts.owns
        # The control API's actions, answered with `registry.serving.protocol` messages.
        self.deploy = self.actions.deploy
        self.rollback = self.actions.rollback
        self.stop = self.actions.stop
        self.scale = self.actions.scale
        self.promote = self.actions.promote
        self.abort = self.actions.abort
        self.status = self.actions.status

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Listen for worker reports, adopt what still runs, then bring the rest up from the DB."""
        await self.hosts.start()  # first: a host name another supervisor uses stops the start here
        self.reports.open()
        self.state.preloader.start()
        self.state.spawn_task(self.reconcile.run())
        self.state.spawn_task(self.healing.watch())
        self.state.spawn_task(self.scraper.run())
        self.state.spawn_task(self.alerting.run())

    async def close(self, stop_servers: bool = False) -> None:
        """Stop watching; with `stop_servers`, drain and stop every worker (the DB keeps them wanted)."""
        state = self.state
        if stop_servers:
            for runtime in list(state.runtimes.values()):
                async with state.lock(runtime.spec.name):
                    await self.pool.retire(
                        runtime.active
                        + runtime.standby
                        + runtime.incoming
                        + runtime.outgoing
                        + runtime.candidates
                    )
                    runtime.active, runtime.standby, runtime.incoming, runtime.outgoing = [], [], [], []
                    runtime.candidates, runtime.rollout = [], None
            state.save_state()
        await self.hosts.close()
        for task in list(state.tasks):
            task.cancel()
        with contextlib.suppress(DatabaseError):  # what is left is closed at the next start
            await self.ledger.flush()
        await self.scraper.store_rollups(close=True)
        self.reports.close()
        state.preloader.close()
        state.registry.close()

    # ------------------------------------------------------------------ what others read
    @property
    def registry(self) -> Registry:
        return self.state.registry

    @property
    def home(self) -> Path:
        return self.state.home

    @property
    def rundir(self) -> RunDir:
        return self.state.rundir

    @property
    def policy(self) -> Policy:
        return self.state.policy

    @property
    def runtimes(self) -> dict[str, Runtime]:
        return self.state.runtimes

    @property
    def workers(self) -> dict[int, Worker]:
        return self.state.workers

    @property
    def reconciled(self) -> asyncio.Event:
        return self.state.reconciled

    @property
    def starting(self) -> set[str]:
        return self.state.starting

    @property
    def started(self) -> float:
        return self.state.started

    @property
    def actor(self) -> str:
        return self.state.actor

    @property
    def targets_file(self) -> Path:
        return self.state.targets_file

    @property
    def exporter(self) -> str | None:
        """The exporter's "host:port" once it listens (set by `registry.serving.control`)."""
        return self.state.exporter

    @exporter.setter
    def exporter(self, value: str | None) -> None:
        self.state.exporter = value

    @property
    def exporter_note(self) -> str:
        """Why the exporter is not where it was asked (fell back to a free port, or none); "" if it is."""
        return self.state.exporter_note

    @exporter_note.setter
    def exporter_note(self, value: str) -> None:
        self.state.exporter_note = value
