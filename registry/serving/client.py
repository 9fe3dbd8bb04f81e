"""The supervisor's client: what the CLI and the console use to act on deployments.

Talks HTTP over the home's control socket (httpx). Commands that need a supervisor start one
(`ensure_running`) when none answers.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.actor import current_actor
from registry.errors import RegistryError, SupervisorError
from registry.files import append_private
from registry.serving import logs
from registry.serving.protocol import (
    DeploymentStatus,
    DeployRequest,
    Message,
    MonitorSnapshot,
    RollbackRequest,
    RolloutRequest,
    ScaleRequest,
    ShutdownRequest,
    Status,
    Stopped,
    StopRequest,
)
from registry.serving.rundir import RunDir
from registry.settings import Settings

if TYPE_CHECKING:
    import httpx

#: Long enough for a deploy that loads several workers on a busy machine.
ACTION_TIMEOUT = 600.0


class SupervisorStopped(SupervisorError):
    """The supervisor took the request, then stopped (killed, crashed) before answering it."""


class SupervisorClient:
    """Deploy, roll back, stop, scale and inspect the deployments of one home."""

    def __init__(self, home: Path | None = None, timeout: float = ACTION_TIMEOUT) -> None:
        self.home = Settings.from_env(home=home).home.expanduser().resolve()
        self.rundir = RunDir.of(self.home)
        self.timeout = timeout
        self._http: httpx.Client | None = None
        #: Whether this client started the daemon (`ensure_running`), so a caller can report how it runs.
        self.started_daemon = False

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> SupervisorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ daemon
    def running(self) -> bool:
        """Whether a supervisor answers on this home's control socket."""
        try:
            self._request("GET", "/status", timeout=2)
            return True
        except SupervisorError:
            return False

    def ensure_running(self, *flags: str, wait: float = 60.0) -> bool:
        """Start the supervisor daemon unless one answers; True if this call started it."""
        if self.running():
            return False
        self.rundir.create()
        log_path = self.rundir.supervisor_log
        command = [sys.executable, "-m", "registry.serving.control", "--home", str(self.home), *flags]
        with append_private(log_path) as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "MODELDECK_HOME": str(self.home)},
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.running():
                self.started_daemon = True
                return True
            if process.poll() is not None and not self.running():
                raise _start_failure(logs.tail(log_path, 5))
            time.sleep(0.05)
        raise SupervisorError(f"the supervisor did not answer within {wait:g} s; see {log_path}", 500)

    def wait_settled(self, wait: float = 300.0) -> Status:
        """The status once the supervisor has brought up every deployment it found at start."""
        deadline = time.monotonic() + wait
        while True:
            status = self.status()
            if status.supervisor.settled or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    def shutdown(self, stop_servers: bool = False, wait: float = 60.0) -> bool:
        """Stop the daemon (and, with `stop_servers`, its model servers); False if none was running."""
        if not self.running():
            return False
        self._request("POST", "/shutdown", ShutdownRequest(stop_servers).as_dict())
        deadline = time.monotonic() + wait
        while self.running() or self.rundir.control_socket.exists():
            if time.monotonic() > deadline:
                raise SupervisorError(f"the supervisor did not stop within {wait:g} s", 500)
            time.sleep(0.05)
        return True

    # ------------------------------------------------------------------ actions
    def status(self, timeout: float | None = None) -> Status:
        return Status.decode(self._request("GET", "/status", timeout=timeout))

    def monitor(
        self, cursor: int = 0, name: str | None = None, timeout: float | None = None
    ) -> MonitorSnapshot:
        """Live figures: the newest point per deployment, the points after `cursor`, drift, host."""
        query = f"/monitor?cursor={cursor}" + (f"&name={name}" if name else "")
        return MonitorSnapshot.decode(self._request("GET", query, timeout=timeout))

    def live(self, timeout: float | None = None) -> MonitorSnapshot:
        """Like `monitor` without the series: the newest point, drift and host only (for tables)."""
        return self.monitor(cursor=2**62, timeout=timeout)

    def deploy(
        self,
        ref: str,
        *,
        name: str | None = None,
        host: str | None = None,
        port: int | None = None,
        workers: int | None = None,
        options: dict[str, Any] | None = None,
        reason: str = "",
        rollout: str | None = None,
        analysis: dict[str, Any] | None = None,
    ) -> DeploymentStatus:
        """Serve `ref`; with `rollout="canary"` or `"shadow"`, beside the serving version, judged by
        `analysis` (`registry.monitoring.canary.AnalysisSettings`' fields: steps, step_seconds, ...)."""
        request = DeployRequest(
            ref, name, host, port, workers, options or {}, current_actor(), reason, rollout, analysis or {}
        )
        return DeploymentStatus.decode(self._action("/deploy", request))

    def promote(self, name: str, reason: str = "") -> DeploymentStatus:
        """Make the candidate of `name`'s canary or shadow its serving version now."""
        request = RolloutRequest(name, current_actor(), reason)
        return DeploymentStatus.decode(self._action("/promote", request))

    def abort(self, name: str, reason: str = "") -> DeploymentStatus:
        """End `name`'s canary or shadow: every request to the serving version, the candidate stopped."""
        request = RolloutRequest(name, current_actor(), reason)
        return DeploymentStatus.decode(self._action("/abort", request))

    def rollback(self, name: str, to: int | None = None, reason: str = "") -> DeploymentStatus:
        request = RollbackRequest(name, to, current_actor(), reason)
        return DeploymentStatus.decode(self._action("/rollback", request))

    def stop(self, name: str, reason: str = "") -> Stopped:
        return Stopped.decode(self._action("/stop", StopRequest(name, current_actor(), reason)))

    def scale(self, name: str, workers: int, reason: str = "") -> DeploymentStatus:
        request = ScaleRequest(name, workers, current_actor(), reason)
        return DeploymentStatus.decode(self._action("/scale", request))

    # ------------------------------------------------------------------ plumbing
    def _action(self, path: str, request: Message) -> dict[str, Any]:
        self.ensure_running()
        body = request.as_dict()
        try:
            return self._request("POST", path, body)
        except SupervisorStopped as exc:
            raise SupervisorStopped(f"{exc}; {self._aftermath(path, body)}", exc.status) from None

    def _aftermath(self, path: str, body: dict[str, Any]) -> str:
        """What the registry says about an action whose supervisor stopped before answering."""
        from registry.core import Registry
        from registry.deployments import get_deployment

        restart = "`modeldeck supervisor start` brings the deployments back"
        try:
            with Registry(home=self.home) as reg:
                if path == "/deploy":
                    info = reg.get(str(body["ref"]))
                    name = body.get("name") or info.name
                    now = get_deployment(reg, name)
                    if now is not None and now.version == info.version:
                        return (
                            f"the registry records {name} at {info.name}:{info.version}, so the deploy "
                            f"happened; {restart}"
                        )
                    was = f"still has {name} at {now.model}:{now.version}" if now else f"has no {name}"
                    return f"the registry {was}, so the deploy did not happen; {restart}, then try again"
                now = get_deployment(reg, str(body["name"]))
        except (RegistryError, KeyError) as exc:
            return f"whether it happened is unknown ({exc}); see `modeldeck history`"
        state = f"{now.model}:{now.version} with {now.workers} worker(s)" if now else "not deployed"
        return f"the registry now has {body['name']} {state}; {restart}"

    def _check_socket(self, path: Path) -> None:
        """Talk only to a supervisor of this user: its socket ours, in a private run directory."""
        self.rundir.check()
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise SupervisorError(f"no supervisor is running for {self.home}", 503) from None
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.geteuid():
            raise SupervisorError(
                f"refusing {path}: not a socket of yours (uid {info.st_uid}); remove it, then start again",
                500,
            )

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        socket_path = self.rundir.control_socket
        if not socket_path.exists():
            # No socket, no supervisor: say so without importing httpx or trying to connect (the
            # console asks every second while the supervisor is down, and must start fast).
            raise SupervisorError(f"no supervisor is running for {self.home}", 503)
        self._check_socket(socket_path)
        import httpx

        if self._http is None:
            # Plain HTTP over a Unix socket: no TLS, so no certificate store to load.
            transport = httpx.HTTPTransport(uds=str(socket_path), verify=False)
            self._http = httpx.Client(transport=transport, base_url="http://supervisor", timeout=self.timeout)
        try:
            response = self._http.request(method, path, json=body, timeout=timeout or self.timeout)
        except httpx.TimeoutException:
            raise SupervisorError(
                f"the supervisor{self._pid()} did not answer within {timeout or self.timeout:g} s", 504
            ) from None
        except httpx.ConnectError:
            raise SupervisorError(f"no supervisor is running for {self.home}", 503) from None
        except httpx.TransportError:  # it took the request, then went away
            raise SupervisorStopped(
                f"the supervisor{self._pid()} stopped during the request ({method} {path}) before answering",
                502,
            ) from None
        payload = response.json()
        if response.status_code >= 400:
            error = payload.get("error", {})
            raise SupervisorError(error.get("message", response.text), response.status_code, error.get("log"))
        return payload

    def _pid(self) -> str:
        """` (pid N)` of the supervisor that holds (or last held) this home's lock, if known."""
        try:
            pid = self.rundir.lock_file.read_text().strip()
        except OSError:
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""


def _start_failure(tail: list[str]) -> SupervisorError:
    """Why the daemon exited at start: its own one-line `error: ...` when it printed one, else the log."""
    if tail and tail[-1].startswith("error: "):
        return SupervisorError(tail[-1].removeprefix("error: "), 500)
    return SupervisorError("the supervisor did not start:\n" + "\n".join(tail), 500)
