"""A deployment's workers: started (the one `spawn` call), promoted, drained, stopped."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

from registry import history as ledger
from registry.errors import SupervisorError
from registry.serving import logs
from registry.serving.processes import SERVING, STANDBY, Worker, WorkerSpec
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.state import Runtime, State
from registry.serving.worker import bind_socket, serving_token


class Pool:
    """Starts, promotes, drains and stops the workers of the supervisor's deployments."""

    def __init__(self, state: State, ledger: Ledger) -> None:
        self.state = state
        self.ledger = ledger

    async def spawn_workers(
        self, runtime: Runtime, version: int, count: int, sock: socket.socket | None = None
    ) -> list[Worker]:
        """Spawn `count` workers of `version` for `runtime` (tracked, not yet recorded as incoming),
        serving on `sock` (default: the deployment's)."""
        state, spec = self.state, runtime.spec
        if runtime.sock is None:  # adopted workers hold the old socket; bind the port again beside it
            runtime.sock = bind_socket(spec.host, spec.port, listen=False, reuse_port=True)
        sock = sock or runtime.sock
        token = serving_token(state.home) if spec.options.get("auth") else None
        policy = state.policy
        worker_spec = WorkerSpec(
            state.home,
            spec.name,
            spec.model,
            version,
            sock.fileno(),
            {"otlp": policy.otlp, **spec.options} if policy.otlp else spec.options,
            policy.drain_grace,
        )
        token_file = state.home / "serving-token" if token else None
        return state.track([await state.preloader.spawn(worker_spec, token_file) for _ in range(count)])

    async def load(
        self,
        runtime: Runtime,
        version: int,
        count: int,
        actor: str,
        record_ready: bool = True,
        sock: socket.socket | None = None,
    ) -> list[Worker]:
        """Start `count` standby workers of `version` and wait until all have loaded and warmed up.

        They are recorded (as incoming) as soon as they are spawned. On failure they are killed,
        nothing else changes, and a SupervisorError carries the reason."""
        state, spec = self.state, runtime.spec
        await self.ledger.event(spec, ledger.LOADING, actor or state.actor, version)
        started = time.monotonic()
        workers = await self.spawn_workers(runtime, version, count, sock)
        runtime.incoming += workers
        state.save_state()
        try:
            timeout = state.policy.load_timeout
            ready = await asyncio.gather(*(w.wait_for({STANDBY}, timeout) for w in workers))
        except BaseException:
            self.give_back(runtime, workers, [])
            raise
        if all(ready):
            if record_ready:
                await self.ledger.event(
                    spec,
                    ledger.READY,
                    version=version,
                    detail={
                        "seconds": round(time.monotonic() - started, 3),
                        "workers": [w.pid for w in workers],
                    },
                )
            return workers
        late = [w for w, ok in zip(workers, ready, strict=True) if not ok and w.alive()]
        self.give_back(runtime, workers, [])
        await asyncio.gather(*(w.wait_exit(5) for w in workers))
        why = self._load_failure(workers, ready, late)
        tail = logs.tail(state.rundir.deployment_log(spec.name), 20)
        previous = spec.version if runtime.served else None
        await self.ledger.event(
            spec, ledger.FAILED, actor or state.actor, version, why, {"log": tail[-10:]}, previous
        )
        serving = f"; {spec.name} still serves version {spec.version}" if runtime.active else ""
        raise SupervisorError(f"{spec.model}:{version} failed to start: {why}{serving}", 500, tail)

    def _load_failure(self, workers: list[Worker], ready: list[bool], late: list[Worker]) -> str:
        """Why a load failed: the worker's own error, the load timeout, or how it exited."""
        failed = next((w for w in workers if w.error), None)
        if failed is not None:
            return failed.error
        if late:  # killed by us when the time was up: its exit status (-9) says nothing
            return f"did not load within {self.state.policy.load_timeout:g} s (load timeout)"
        dead = next(w for w, ok in zip(workers, ready, strict=True) if not ok)
        return (
            f"worker exited with status {dead.exit_code}" if dead.exit_code is not None else "worker exited"
        )

    async def promote(self, runtime: Runtime, workers: list[Worker]) -> None:
        """Tell `workers` to serve and wait until they all do; the caller undoes a failure."""
        for worker in workers:
            worker.send(signal.SIGUSR1)
        serving = await asyncio.gather(*(w.wait_for({SERVING}, 30) for w in workers))
        for worker, ok in zip(workers, serving, strict=True):
            if not ok:
                why = worker.error or ("it exited" if not worker.alive() else "not serving within 30 s")
                raise SupervisorError(
                    f"{runtime.spec.name}: worker {worker.pid} (version {worker.version}) did not start "
                    f"serving: {why}",
                    500,
                )

    async def drain(self, runtime: Runtime, workers: list[Worker], keep: bool) -> list[Worker]:
        """Drain `workers`; kept as standby when `keep`, else stopped. The ones now in standby."""
        if not workers:
            return []
        if not keep:
            await self.retire(workers)
            return []
        for worker in workers:
            worker.send(signal.SIGUSR2)
        timeout = self.state.policy.drain_grace + 15
        parked = await asyncio.gather(*(w.wait_for({STANDBY}, timeout) for w in workers))
        kept = [w for w, ok in zip(workers, parked, strict=True) if ok]
        await self.retire([w for w in workers if w not in kept])
        runtime.standby = kept + runtime.standby
        return kept

    async def retire(self, workers: list[Worker]) -> None:
        """Drain and stop `workers` (SIGTERM, then SIGKILL after the grace period)."""
        for worker in workers:
            worker.leaving = True
            worker.send(signal.SIGTERM)
        grace = self.state.policy.drain_grace + 15
        done = await asyncio.gather(*(w.wait_exit(grace) for w in workers))
        for worker, exited in zip(workers, done, strict=True):
            if not exited:
                worker.kill()

    async def start_active(self, runtime: Runtime, count: int) -> None:
        """Load `count` workers of the deployment's version and put them in service."""
        workers = await self.load(runtime, runtime.spec.version, count, self.state.actor)
        try:
            await self.promote(runtime, workers)
        except BaseException:
            self.give_back(runtime, workers, [])
            raise
        runtime.incoming = [w for w in runtime.incoming if w not in workers]
        runtime.active += workers

    def give_back(self, runtime: Runtime, incoming: list[Worker], warm: list[Worker]) -> None:
        """Undo taking `incoming` for a change: the warm standby goes back, new workers are killed
        (they never served)."""
        runtime.incoming = [w for w in runtime.incoming if w not in incoming]
        for worker in incoming:
            if worker not in warm:
                worker.kill()
        runtime.standby = warm + runtime.standby
        self.state.save_state()
