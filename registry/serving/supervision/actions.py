"""The supervisor's actions as the control API asks for them: deploy, rollback, stop, scale, status."""

from __future__ import annotations

import os
import time
from typing import Any

from registry import history as ledger
from registry.deployments import remove_deployment
from registry.errors import SupervisorError
from registry.info import DeploymentInfo
from registry.serving.addresses import local_url, outside_url
from registry.serving.options import (
    check_deploy,
    check_host,
    check_name,
    check_options,
    check_port,
    check_workers,
)
from registry.serving.protocol import (
    DeploymentState,
    DeploymentStatus,
    Status,
    Stopped,
    SupervisorInfo,
    WorkerState,
    WorkerStatus,
)
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.state import Runtime, State, roles
from registry.serving.supervision.swaps import Swaps, unchanged
from registry.serving.worker import ServeError, bind_socket, is_loopback, serving_token

FIRST_PORT = 8080


class Actions:
    """Deploy, roll back, stop, scale and describe deployments; each waits for the start-up pass."""

    def __init__(self, state: State, ledger: Ledger, pool: Pool, swaps: Swaps) -> None:
        self.state = state
        self.ledger = ledger
        self.pool = pool
        self.swaps = swaps

    async def deploy(
        self,
        ref: str,
        *,
        name: str | None = None,
        host: str | None = None,
        port: int | None = None,
        workers: int | None = None,
        options: dict[str, Any] | None = None,
        actor: str = "",
        reason: str = "",
    ) -> DeploymentStatus:
        """Serve `ref` as deployment `name` (default: the model's name); answers when traffic moved."""
        state = self.state
        name, host, port, workers, options = check_deploy(name, host, port, workers, options)
        await state.reconciled.wait()
        info = await state.db(state.registry.get, ref)
        name = check_name(name or info.name)
        async with state.lock(name):
            runtime = state.runtimes.get(name)
            if runtime is not None and runtime.spec.model != info.name:
                raise SupervisorError(
                    f"deployment {name!r} serves model {runtime.spec.model!r}, not {info.name!r}"
                )
            if runtime is not None:
                _check_unchanged(runtime, host, port)
                same = bool(runtime.active) and runtime.spec.version == info.version
                same = same and runtime.status == DeploymentState.RUNNING
                if same and workers in (None, len(runtime.active)):
                    return self.describe(runtime, note=f"{name} already serves {info.name}:{info.version}")
            else:
                runtime = await self._new_runtime(name, info.name, info.version, host, port, workers, options)
                same = False
            try:
                await self.ledger.flush()
                await state.db(
                    state.registry.record_event,
                    info.name,
                    ledger.DEPLOY_REQUESTED,
                    actor=actor or None,
                    deployment=name,
                    from_version=runtime.spec.version if runtime.served else None,
                    to_version=info.version,
                    reason=reason,
                )
                if same and workers is not None:
                    await self.swaps.scale(runtime, workers, actor, reason)
                else:
                    await self.swaps.switch(runtime, info.version, ledger.SWITCHED, actor, reason, workers)
            except BaseException:
                if not runtime.served:  # a new deployment that never served: leave nothing behind
                    state.runtimes.pop(name, None)
                    if runtime.sock is not None:
                        runtime.sock.close()
                    state.save_state()
                raise
            return self.describe(runtime)

    async def rollback(
        self, name: str, to: int | None = None, *, actor: str = "", reason: str = ""
    ) -> DeploymentStatus:
        """Put the standby (or version `to`) back in service; a switch when it is warm."""
        state = self.state
        await state.reconciled.wait()
        async with state.lock(name):
            runtime = state.runtime(name)
            current = runtime.spec.version
            target = (
                to if to is not None else runtime.standby_version or await self._previous_version(runtime)
            )
            if target is None:
                raise SupervisorError(f"{name} has no earlier version to roll back to; name one with --to")
            if target == current and runtime.active:
                raise SupervisorError(f"{name} already serves version {current}")
            await state.db(state.registry.get, f"{runtime.spec.model}:{target}")
            await self.swaps.switch(runtime, target, ledger.ROLLED_BACK, actor, reason)
            return self.describe(runtime)

    async def stop(self, name: str, *, actor: str = "", reason: str = "") -> Stopped:
        """Forget the deployment `name` in the registry, then drain and stop every worker of it."""
        state = self.state
        await state.reconciled.wait()
        async with state.lock(name):
            runtime = state.runtime(name)
            try:
                await self.ledger.flush()
                await state.db(
                    remove_deployment,
                    state.registry,
                    name,
                    ledger.STOPPED,
                    actor=actor or None,
                    reason=reason,
                )
            except Exception as exc:
                raise unchanged(runtime, "stop", exc) from None
            leaving = runtime.active + runtime.standby + runtime.incoming + runtime.outgoing
            runtime.outgoing, runtime.active, runtime.standby, runtime.incoming = leaving, [], [], []
            state.save_state()
            await self.pool.retire(leaving)
            if runtime.sock is not None:
                runtime.sock.close()
            del state.runtimes[name]
            state.save_state()
            return Stopped(name)

    async def scale(self, name: str, workers: int, *, actor: str = "", reason: str = "") -> DeploymentStatus:
        """Run `workers` processes for `name` (the standby keeps at most as many)."""
        workers = check_workers(workers)
        await self.state.reconciled.wait()
        async with self.state.lock(name):
            runtime = self.state.runtime(name)
            await self.swaps.scale(runtime, workers, actor, reason)
            return self.describe(runtime)

    def status(self) -> Status:
        """Every deployment with its workers, and the supervisor itself."""
        state = self.state
        return Status(
            supervisor=SupervisorInfo(
                pid=os.getpid(),
                home=str(state.home),
                since=state.started,
                settled=state.reconciled.is_set() and not state.starting,
                metrics=f"http://{state.exporter}/metrics" if state.exporter else None,
                metrics_note=state.exporter_note,
                targets=str(state.targets_file),
                otlp=state.policy.otlp,
            ),
            deployments=[
                self.describe(r) for r in sorted(state.runtimes.values(), key=lambda r: r.spec.name)
            ],
        )

    def describe(self, runtime: Runtime, note: str = "") -> DeploymentStatus:
        spec = runtime.spec
        row = spec.as_dict()
        result = DeploymentStatus(
            name=spec.name,
            model=spec.model,
            version=spec.version,
            standby_version=spec.standby_version,
            host=spec.host,
            port=spec.port,
            workers=spec.workers,
            options=row["options"],
            updated_at=row["updated_at"],
            url=local_url(spec.host, spec.port),
            outside_url=outside_url(spec.host, spec.port),
            status=runtime.status,
            message=runtime.message,
            restarts=runtime.restarts,
            workers_running=len(runtime.active),
            processes=[
                WorkerStatus(
                    pid=w.pid,
                    version=w.version,
                    role=role,
                    state=WorkerState(w.state),
                    uptime_s=round(time.time() - w.started, 1),
                )
                for role, w in roles(runtime)
            ],
        )
        if spec.options.get("auth"):
            try:
                result.token = serving_token(self.state.home)
            except ServeError as exc:  # changed on disk since: say so instead of failing the status
                result.token, result.message = None, str(exc)
        if note:
            result.note = note
        return result

    async def _new_runtime(
        self,
        name: str,
        model: str,
        version: int,
        host: str | None,
        port: int | None,
        workers: int | None,
        options: dict[str, Any] | None,
    ) -> Runtime:
        state = self.state
        name, host = check_name(name), check_host(host or "127.0.0.1")  # checked again: names become paths
        port = None if port is None else check_port(port)
        taken = {r.spec.port: r.spec.name for r in state.runtimes.values() if r.spec.host == host}
        opts = check_options(options)
        opts["auth"] = not is_loopback(host) and not opts.pop("no_auth", False)
        if opts["auth"]:
            await state.db(serving_token, state.home)  # refused now if unusable (empty, short, readable)
        if port is not None and port in taken:
            raise SupervisorError(f"port {port} is already used by deployment {taken[port]!r}", 409)
        if port is None:
            port = FIRST_PORT
            while port in taken or not _port_free(host, port):
                port += 1
        try:
            sock = bind_socket(host, port, listen=False, reuse_port=True)
        except ServeError as exc:
            raise SupervisorError(str(exc), 409) from None
        spec = DeploymentInfo(
            name=name,
            model=model,
            version=version,
            standby_version=None,
            host=host,
            port=port,
            workers=workers or 1,
            options=opts,
        )
        runtime = Runtime(spec=spec, sock=sock, status=DeploymentState.STARTING, served=False)
        state.runtimes[name] = runtime
        return runtime

    async def _previous_version(self, runtime: Runtime) -> int | None:
        """The version that served before the current one, from the ledger."""
        events = (await self.state.db(self.state.registry.history, runtime.spec.model)).events
        served = [
            e.to_version
            for e in events
            if e.deployment == runtime.spec.name and e.kind in (ledger.SWITCHED, ledger.ROLLED_BACK)
        ]
        earlier = [v for v in served if v is not None and v != runtime.spec.version]
        return earlier[-1] if earlier else None


def _check_unchanged(runtime: Runtime, host: str | None, port: int | None) -> None:
    spec = runtime.spec
    if (host and host != spec.host) or (port and port != spec.port):
        raise SupervisorError(
            f"deployment {spec.name!r} listens on {spec.host}:{spec.port}; stop it first to move it", 409
        )


def _port_free(host: str, port: int) -> bool:
    try:
        bind_socket(host, port, listen=False).close()
        return True
    except ServeError:
        return False
