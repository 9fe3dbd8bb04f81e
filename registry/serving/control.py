"""The supervisor daemon: its control API over a Unix socket in the home, and `python -m` entry point.

Every action answers only when it finished or failed: with its answer (a `DeploymentStatus`, `Stopped`,
`Status`... of `registry.serving.protocol`, where every request and answer is defined) or an
`ErrorAnswer` (`{"error": {"message": ..., "log": [...], "field": ...}}`) with a 4xx/5xx status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from logging.handlers import WatchedFileHandler
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from registry.errors import ModelNotFound, RegistryError, SupervisorError, VersionNotFound
from registry.files import open_private
from registry.serving.logs import limit_repeats
from registry.serving.options import OptionError, check_option_types
from registry.serving.protocol import (
    OMIT,
    DeployRequest,
    ErrorAnswer,
    ErrorBody,
    Message,
    RollbackRequest,
    RolloutRequest,
    ScaleRequest,
    ShutdownRequest,
    Stopping,
    StopRequest,
)
from registry.serving.rundir import RunDir
from registry.serving.supervisor import Policy, Supervisor

log = logging.getLogger("modeldeck.supervisor")
Action = Callable[[dict[str, Any]], Awaitable[Message]]


def create_control_app(supervisor: Supervisor, on_shutdown: Callable[[bool], None]) -> Starlette:
    """The control API of `supervisor`; `on_shutdown(stop_servers)` is called after /shutdown answers."""

    def endpoint(action: Action) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def handle(request: Request) -> JSONResponse:
            try:
                body = await _json_body(request) if request.method == "POST" else {}
                return JSONResponse((await action(body)).as_dict())
            except SupervisorError as exc:
                return _error(exc.status, str(exc), exc.log_tail)
            except OptionError as exc:  # a bad option or name: nothing was done
                return _error(400, str(exc), field=exc.field)
            except (ModelNotFound, VersionNotFound) as exc:
                return _error(404, str(exc))
            except RegistryError as exc:
                return _error(400, str(exc))
            except (KeyError, TypeError, ValueError) as exc:
                return _error(400, f"bad request: {exc}")
            except Exception as exc:  # a bug: say so instead of dropping the connection
                log.exception("control action failed")
                return _error(500, f"{type(exc).__name__}: {exc}")

        return handle

    async def status(_: dict[str, Any]) -> Message:
        return supervisor.status()

    async def deploy(body: dict[str, Any]) -> Message:
        request = DeployRequest.decode(body)
        check_option_types(request.options)
        return await supervisor.deploy(
            request.ref,
            name=request.name,
            host=request.host,
            port=request.port,
            workers=request.workers,
            options=dict(request.options),
            actor=request.actor,
            reason=request.reason,
            rollout=request.rollout,
            analysis=dict(request.analysis),
        )

    async def promote(body: dict[str, Any]) -> Message:
        request = RolloutRequest.decode(body)
        return await supervisor.promote(request.name, actor=request.actor, reason=request.reason)

    async def abort(body: dict[str, Any]) -> Message:
        request = RolloutRequest.decode(body)
        return await supervisor.abort(request.name, actor=request.actor, reason=request.reason)

    async def rollback(body: dict[str, Any]) -> Message:
        request = RollbackRequest.decode(body)
        return await supervisor.rollback(request.name, request.to, actor=request.actor, reason=request.reason)

    async def stop(body: dict[str, Any]) -> Message:
        request = StopRequest.decode(body)
        return await supervisor.stop(request.name, actor=request.actor, reason=request.reason)

    async def scale(body: dict[str, Any]) -> Message:
        request = ScaleRequest.decode(body)
        return await supervisor.scale(
            request.name, request.workers, actor=request.actor, reason=request.reason
        )

    async def monitor(request: Request) -> Response:
        text = request.query_params.get("cursor", "0") or "0"
        try:
            cursor = int(text)
        except ValueError:
            return _error(400, f"'cursor' must be a whole number, not {text[:40]!r}")
        snapshot = supervisor.scraper.snapshot(cursor, request.query_params.get("name"))
        return Response(
            orjson.dumps(snapshot, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
        )

    async def shutdown(request: Request) -> JSONResponse:
        try:
            stop_servers = ShutdownRequest.decode(await _json_body(request)).stop_servers
        except SupervisorError as exc:
            return _error(exc.status, str(exc))
        except OptionError as exc:
            return _error(400, str(exc), field=exc.field)
        return JSONResponse(Stopping().as_dict(), background=BackgroundTask(on_shutdown, stop_servers))

    return Starlette(
        routes=[
            Route("/status", endpoint(status), methods=["GET"]),
            Route("/monitor", monitor, methods=["GET"]),
            Route("/deploy", endpoint(deploy), methods=["POST"]),
            Route("/rollback", endpoint(rollback), methods=["POST"]),
            Route("/stop", endpoint(stop), methods=["POST"]),
            Route("/scale", endpoint(scale), methods=["POST"]),
            Route("/promote", endpoint(promote), methods=["POST"]),
            Route("/abort", endpoint(abort), methods=["POST"]),
            Route("/shutdown", shutdown, methods=["POST"]),
        ]
    )


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is an empty object); a 400 for anything else."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise SupervisorError(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SupervisorError(f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list"}
    return "null" if value is None else names.get(type(value), "an object")


def _error(
    status: int, message: str, log_tail: list[str] | None = None, *, field: str | None = None
) -> JSONResponse:
    error = ErrorBody(message, log_tail or [], OMIT if field is None else field)
    return JSONResponse(ErrorAnswer(error).as_dict(), status_code=status)


class AlreadyRunning(RegistryError):
    """Another supervisor holds this home's lock."""


@contextlib.contextmanager
def exclusive(rundir: RunDir) -> Any:
    """Hold the home's supervisor lock for as long as this daemon runs (the lock file is opened in the
    checked run directory, never through a symlink)."""
    rundir.check()
    handle = os.fdopen(open_private(rundir.lock_file, os.O_RDWR | os.O_CREAT), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise AlreadyRunning(f"a supervisor is already running for this home (pid {owner})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()


async def run_daemon(home: Path, policy: Policy, metrics_required: bool = False) -> None:
    """Run the supervisor of `home` until SIGTERM/SIGINT or /shutdown. With `metrics_required`, an
    exporter address that cannot be bound stops the start (`ExporterAddressTaken`) before anything else."""
    import uvicorn

    exporter_sock, exporter_note = None, ""
    if policy.metrics_address:
        exporter_sock, exporter_note = bind_exporter(policy.metrics_address, metrics_required)
        if exporter_note:
            log.warning("%s", exporter_note)
    supervisor = Supervisor(home, policy)
    supervisor.exporter_note = exporter_note
    rundir = supervisor.rundir
    stop_servers = [False]

    class ControlServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # uvicorn installs no signal handlers here
            yield

    server: ControlServer

    def request_shutdown(stop: bool) -> None:
        stop_servers[0] = stop
        server.should_exit = True

    app = create_control_app(supervisor, request_shutdown)
    # Bound here (0600 before it listens) and handed over as a descriptor: uvicorn's own `uds=` makes
    # the socket 0666, or copies the mode of whatever file sat at the path.
    control = rundir.bind(rundir.control_socket)
    config = uvicorn.Config(app, fd=control.fileno(), log_config=None, lifespan="off", access_log=False)
    server = ControlServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_shutdown, False)
    exporter = await _start_exporter(supervisor, exporter_sock)
    await supervisor.start()
    try:
        serve = loop.create_task(server.serve())
        while not server.started and not serve.done():
            await asyncio.sleep(0.01)
        log.info("supervisor %d serving %s on %s", os.getpid(), home, rundir.control_socket)
        await serve
    finally:
        if exporter is not None:
            exporter.should_exit = True
        await supervisor.close(stop_servers=stop_servers[0])
        with contextlib.suppress(FileNotFoundError):
            rundir.control_socket.unlink()
        control.close()
        log.info("supervisor %d stopped%s", os.getpid(), " with its servers" if stop_servers[0] else "")


#: Where the exporter listens unless `--metrics` says otherwise; taken, it falls back to a free port.
DEFAULT_METRICS = "127.0.0.1:9464"


class ExporterAddressTaken(RegistryError):
    """The `--metrics` address asked for cannot be bound."""


def bind_exporter(address: str, required: bool) -> tuple[Any, str]:
    """The exporter's listening socket and a note for the user ("" when it is where it was asked).

    An address asked for explicitly (`required`) that cannot be bound raises `ExporterAddressTaken`;
    the default one falls back to a free port of the same host (two homes on one machine both want
    9464), and when even that fails the supervisor runs without an exporter (socket None, note why)."""
    from registry.serving.worker import ServeError, bind_socket

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        return bind_socket(host, int(port)), ""
    except ValueError:
        problem = f"{address!r} is not HOST:PORT"
    except ServeError as exc:
        problem = str(exc).split(";")[0]
    if required:
        raise ExporterAddressTaken(
            f"no Prometheus exporter on {address}: {problem}; "
            "choose another with `modeldeck supervisor start --metrics HOST:PORT` (or --metrics off)"
        )
    try:
        sock = bind_socket(host, 0)
    except ServeError as exc:
        return None, f"no Prometheus exporter: {problem}, and no free port on {host}: {exc}"
    bound = sock.getsockname()
    return sock, (
        f"{address} was taken ({problem}); the exporter listens on {bound[0]}:{bound[1]} instead "
        "(choose one with `modeldeck supervisor start --metrics HOST:PORT`)"
    )


async def _start_exporter(supervisor: Supervisor, sock: Any) -> Any:
    """Serve the Prometheus exporter on the already bound `sock`; None without one."""
    import uvicorn
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    from registry.serving.connections import ConnectionLimits, uvicorn_settings
    from registry.serving.exporter import exposition

    if sock is None:
        return None

    async def metrics(_: Request) -> Response:
        body = await asyncio.to_thread(exposition, supervisor)
        return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})

    async def discovery(_: Request) -> Response:
        """Prometheus' HTTP service discovery (`http_sd_configs`): every host's exporter."""
        return JSONResponse(supervisor.state.targets())

    app = Starlette(
        routes=[Route("/metrics", metrics, methods=["GET"]), Route("/sd", discovery, methods=["GET"])]
    )
    limits = uvicorn_settings(ConnectionLimits(max_connections=256))  # scrapers only: small, bounded
    config = uvicorn.Config(
        app, fd=sock.fileno(), log_config=None, lifespan="off", access_log=False, **limits
    )

    class Exporter(uvicorn.Server):
        socket: Any = None  # the listening socket, kept open as long as the server

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # uvicorn installs no signal handlers here
            yield

    server = Exporter(config)
    asyncio.get_running_loop().create_task(server.serve())
    bound = sock.getsockname()
    supervisor.exporter = f"{bound[0]}:{bound[1]}"
    server.socket = sock
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry.serving.control")
    parser.add_argument("--home", required=True)
    parser.add_argument("--no-standby", action="store_true")
    parser.add_argument("--no-auto-rollback", action="store_true")
    parser.add_argument("--drain-grace", type=float, default=5.0)
    parser.add_argument("--load-timeout", type=float, default=180.0, help="seconds a worker may take to load")
    parser.add_argument("--drift-every", type=float, default=10.0, help="seconds between drift updates")
    parser.add_argument("--drift-rows", type=int, default=10_000, help="live window: at most this many rows")
    parser.add_argument("--drift-minutes", type=float, default=60.0, help="live window: rows this recent")
    parser.add_argument(
        "--metrics",
        default=None,
        help=f"Prometheus exporter HOST:PORT (must bind), or off; default {DEFAULT_METRICS} or a free port",
    )
    parser.add_argument("--otlp", default=None, help="OTLP/HTTP URL workers export OpenTelemetry to")
    parser.add_argument("--keep-10s-hours", type=float, default=24.0, help="retention of 10 s rollups")
    parser.add_argument("--keep-1m-days", type=float, default=30.0, help="retention of 1 min rollups")
    parser.add_argument(
        "--hang-timeout", type=float, default=10.0, help="kill a worker silent this many seconds (0: never)"
    )
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    home = Path(options.home)
    os.umask(0o077)  # everything the daemon makes (logs, state, targets, sockets) is the user's alone
    try:
        rundir = RunDir.of(home).create()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    handler = WatchedFileHandler(rundir.supervisor_log)
    handler.setFormatter(logging.Formatter("%(asctime)s supervisor [%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    limit_repeats()
    policy = Policy(
        keep_standby=not options.no_standby,
        auto_rollback=not options.no_auto_rollback,
        drain_grace=options.drain_grace,
        load_timeout=options.load_timeout,
        drift_every=options.drift_every,
        window_rows=options.drift_rows,
        window_seconds=options.drift_minutes * 60,
        retention={10: timedelta(hours=options.keep_10s_hours), 60: timedelta(days=options.keep_1m_days)},
        metrics_address=None if options.metrics == "off" else (options.metrics or DEFAULT_METRICS),
        hang_timeout=options.hang_timeout,
        otlp=options.otlp,
    )
    try:
        with exclusive(rundir):
            asyncio.run(run_daemon(home, policy, metrics_required=options.metrics is not None))
    except RegistryError as exc:  # another supervisor, an unsafe run directory, a taken --metrics
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
