"""The supervisor's actions as the control API asks for them: deploy, rollback, stop, scale, status."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from registry import history as ledger
from registry.deployments import remove_deployment
from registry.errors import SupervisorError
from registry.info import DeploymentInfo
from registry.monitoring.canary import AnalysisSettings
from registry.serving.addresses import local_url, outside_url
from registry.serving.options import (
    OptionError,
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
from registry.serving.split import CANARY, SHADOW
from registry.serving.supervision.ledger import Ledger
from registry.serving.supervision.pool import Pool
from registry.serving.supervision.rollouts import Rollouts, under_way
from registry.serving.supervision.state import Runtime, State, roles
from registry.serving.supervision.swaps import Swaps, unchanged
from registry.serving.worker import ServeError, bind_socket, is_loopback, serving_token

FIRST_PORT = 8080


class Actions:
    """Deploy, roll back, stop, scale and describe deployments; each waits for the start-up pass."""

    def __init__(self, state: State, ledger: Ledger, pool: Pool, swaps: Swaps, rollouts: Rollouts) -> None:
        self.state = state
        self.ledger = ledger
        self.pool = pool
        self.swaps = swaps
        self.rollouts = rollouts

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
        rollout: str | None = None,
        analysis: dict[str, Any] | None = None,
    ) -> DeploymentStatus:
        """Serve `ref` as deployment `name` (default: the model's name); answers when traffic moved,
        or, with `rollout` ("canary" or "shadow"), once the candidate takes its first share."""
        state = self.state
        name, host, port, workers, options = check_deploy(name, host, port, workers, options)
        settings = check_rollout(rollout, analysis)
        await state.reconciled.wait()
        info = await state.db(state.registry.get, ref)
        name = check_name(name or info.name)
        async with state.lock(name):
            runtime = state.runtimes.get(name)
            if runtime is not None and runtime.spec.model != info.name:
                raise SupervisorError(
                    f"deployment {name!r} serves model {runtime.spec.model!r}, not {info.name!r}"
                )
            if rollout is not None:
                return await self._start_rollout(
                    runtime, name, info.name, info.version, rollout, settings, actor, reason
                )
            if runtime is not None and runtime.rollout is not None:
                raise SupervisorError(under_way(runtime), 409)
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
            if runtime.rollout is not None:
                raise SupervisorError(under_way(runtime), 409)
            await state.db(state.registry.get, f"{runtime.spec.model}:{target}")
            await self.swaps.switch(runtime, target, ledger.ROLLED_BACK, actor, reason)
            return self.describe(runtime)

    async def stop(self, name: str, *, actor: str = "", reason: str = "", forget: bool = True) -> Stopped:
        """Forget the deployment `name` in the registry, then drain and stop every worker of it.
        Without `forget` the registry's row is left as it is (a shared registry's host leaving it:
        `registry.placement.released` says what becomes of the row)."""
        state = self.state
        await state.reconciled.wait()
        async with state.lock(name):
            runtime = state.runtime(name)
            if runtime.rollout is not None:
                await self.rollouts.abort(runtime, actor, f"{name} stopped")
            try:
                await self.ledger.flush()
                if forget:
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
            if runtime.rollout is not None:
                raise SupervisorError(under_way(runtime), 409)
            await self.swaps.scale(runtime, workers, actor, reason)
            return self.describe(runtime)

    async def promote(self, name: str, *, actor: str = "", reason: str = "") -> DeploymentStatus:
        """Make the candidate of `name`'s canary or shadow its serving version now."""
        await self.state.reconciled.wait()
        runtime = self.state.runtime(name)
        await self.rollouts.promote(runtime, actor, reason)
        return self.describe(runtime)

    async def abort(self, name: str, *, actor: str = "", reason: str = "") -> DeploymentStatus:
        """End `name`'s canary or shadow: all traffic on the serving version, the candidate stopped."""
        await self.state.reconciled.wait()
        runtime = self.state.runtime(name)
        await self.rollouts.abort(runtime, actor, reason or "aborted by hand")
        return self.describe(runtime)

    async def _start_rollout(
        self,
        runtime: Runtime | None,
        name: str,
        model: str,
        version: int,
        mode: str,
        settings: AnalysisSettings,
        actor: str,
        reason: str,
    ) -> DeploymentStatus:
        """Start a canary or shadow of `version` beside what `name` serves (the caller holds the lock)."""
        if runtime is None:
            raise SupervisorError(
                f"{name} is not deployed: a {mode} needs a version serving; deploy one first", 404
            )
        self.rollouts.check(runtime, version, mode)
        await self.ledger.flush()
        await self.state.db(
            self.state.registry.record_event,
            model,
            ledger.DEPLOY_REQUESTED,
            actor=actor or None,
            deployment=name,
            from_version=runtime.spec.version,
            to_version=version,
            reason=reason,
            detail={"rollout": mode},
        )
        await self.rollouts.start(runtime, version, mode, settings, actor, reason)
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
        rollout = self.rollouts.status(runtime)
        if rollout is not None:
            result.rollout = rollout
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
            placement=[state.host_name] if state.host_name else [],
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
            if e.deployment == runtime.spec.name
            and e.kind in (ledger.SWITCHED, ledger.ROLLED_BACK, ledger.PROMOTED)
        ]
        earlier = [v for v in served if v is not None and v != runtime.spec.version]
        return earlier[-1] if earlier else None


def check_rollout(mode: str | None, analysis: dict[str, Any] | None) -> AnalysisSettings:
    """The rollout's settings, or an OptionError naming the field that does not fit."""
    if mode not in (None, CANARY, SHADOW):
        raise OptionError("rollout", f"'rollout' must be {CANARY!r} or {SHADOW!r}, not {mode!r}")
    given = dict(analysis or {})
    known = {f.name for f in dataclasses.fields(AnalysisSettings)}
    for key, value in given.items():
        if key not in known:
            raise OptionError(
                f"analysis.{key}", f"'analysis.{key}' is not a setting (known: {', '.join(sorted(known))})"
            )
        if key == "steps":
            if not isinstance(value, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                raise OptionError("analysis.steps", "'analysis.steps' must be a list of percentages")
        elif not isinstance(value, int | float) or isinstance(value, bool):
            raise OptionError(f"analysis.{key}", f"'analysis.{key}' must be a number")
    if mode == SHADOW:
        given["steps"] = []
    try:
        return AnalysisSettings(**given)
    except ValueError as exc:
        field_name = next((k for k in given if k in str(exc)), "steps")
        raise OptionError(f"analysis.{field_name}", str(exc)) from None


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
