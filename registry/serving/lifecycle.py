"""A supervised worker process: load one version, then serve, stand by or drain as the supervisor says.

Started by the supervisor as `python -m registry.serving.lifecycle ...` with the deployment's bound
socket inherited as `--fd`. It loads and warms up the model, reports on the supervisor's private
report socket, and obeys signals:

- SIGUSR1: serve (accept on the socket), SIGUSR2: drain and go back to standby (model kept warm),
- SIGTERM/SIGINT: drain and exit; the "stopped" report carries the final metrics snapshot, so what
  it answered after the supervisor's last pull is counted too,
The supervisor pulls the worker's metrics and input sample once a second from a private Unix socket
(`--monitor-dir/<pid>.sock`): it writes a cursor line, and gets one JSON line back, bounded in rows
and bytes (`registry.monitoring.sampling.InputSampler.pull`; the next cursor says where it stopped).

- SIGHUP: report the current state again, with the listening socket attached (SCM_RIGHTS), so a
  restarted supervisor that adopts this worker gets the deployment's socket back.

Draining stops accepting first (other workers on the same socket take new connections), then answers
every request still arriving on a kept-alive connection with `Connection: close`, and exits once no
connection is left or the grace period is over. Closing a kept-alive connection under a client that is
about to reuse it is how requests get lost in a swap; this order avoids it.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from logging.handlers import WatchedFileHandler
from pathlib import Path
from typing import Any

from registry.serving.logs import limit_repeats

SERVE, STANDBY, STOP = "serve", "standby", "stop"
#: Exit status when the model cannot be loaded or warmed up (the supervisor then does not restart it).
EXIT_LOAD_FAILED = 3

log = logging.getLogger("modeldeck.worker")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Reporter:
    """Sends this worker's state to the supervisor's report socket (datagrams; ignored if nobody listens)."""

    def __init__(self, path: str | None, **identity: Any) -> None:
        self.path = path
        self.identity = {"pid": os.getpid(), **identity}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if path else None
        self.state = "starting"  # the first report ("loading") is then logged too

    def __call__(
        self, state: str, fd: int | None = None, unlogged: dict[str, Any] | None = None, **detail: Any
    ) -> None:
        if state != self.state or detail:  # the deployment's log tells its story: loading, serving, ...
            log.info("%s%s", state, "".join(f" {k}={v}" for k, v in detail.items()))
        self.state = state
        if self.sock is None or self.path is None:
            return
        message = json.dumps({**self.identity, "state": state, **detail, **(unlogged or {})}).encode()[
            :60_000
        ]
        with contextlib.suppress(OSError):  # the supervisor is down: it asks again when back
            if fd is None:
                self.sock.sendto(message, self.path)
            else:
                # socket.send_fds() drops its address argument (CPython 3.11), so sendmsg directly.
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                self.sock.sendmsg([message], rights, 0, self.path)


class ClosingWhenDraining:
    """ASGI wrapper: while `draining`, every response carries `Connection: close`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn without its own signal handling (the lifecycle owns signals), telling when it is up,
        and stopping at once when told (`stop`) rather than at its next 0.1 s tick and after a fixed
        0.1 s pause: a drained worker is what a switch waits for."""

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.up = asyncio.Event()
            self.exit = asyncio.Event()

        def stop(self) -> None:
            self.should_exit = True
            self.exit.set()

        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864_000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.exit.wait(), 0.1)
                should_exit = await self.on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for listener in self.servers:
                listener.close()
            # A connection accepted just before the listener closed is made (and counted) a few loop
            # turns later: give it those turns, then uvicorn's graceful shutdown serves it.
            for _ in range(3):
                await asyncio.sleep(0.002)
            if self.server_state.connections or self.server_state.tasks:
                await super().shutdown(sockets)
                return
            for listener in self.servers:  # drained: nothing to wait for
                await listener.wait_closed()
            if not self.force_exit:
                await self.lifespan.shutdown()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # uvicorn installs no signal handlers here
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.up.set()

    return Server


async def drain(server: Any, task: asyncio.Task[None], app: ClosingWhenDraining, grace: float) -> None:
    """Stop accepting, close kept-alive connections on their next response, then shut down."""
    for listener in server.servers:
        listener.close()
    app.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    await asyncio.sleep(0.005)  # a connection accepted as the listener closed is counted a few turns later
    while server.server_state.connections and loop.time() < deadline:
        await asyncio.sleep(0.005)
    server.stop()
    await task
    app.draining = False


async def run(options: argparse.Namespace) -> int:
    """Load, then follow the supervisor's signals until told to stop; the process exit status."""
    loop = asyncio.get_running_loop()
    wanted = [STANDBY if options.standby else SERVE]
    changed = asyncio.Event()

    def want(mode: str) -> None:
        wanted[0] = mode
        changed.set()

    for sig, mode in (
        (signal.SIGTERM, STOP),
        (signal.SIGINT, STOP),
        (signal.SIGUSR1, SERVE),
        (signal.SIGUSR2, STANDBY),
    ):
        loop.add_signal_handler(sig, want, mode)
    report = Reporter(options.report, deployment=options.deployment, version=options.version)
    loop.add_signal_handler(signal.SIGHUP, lambda: report(report.state, fd=options.fd))
    report("loading")
    try:
        app, config = _load(options)
    except Exception as exc:
        log.exception("cannot load %s:%s", options.model, options.version)
        report("failed", error=f"{type(exc).__name__}: {exc}" if not _is_user_error(exc) else str(exc))
        return EXIT_LOAD_FAILED
    if options.monitor_dir:
        await _serve_monitoring(app.app, Path(options.monitor_dir) / f"{os.getpid()}.sock")
    report("loaded")
    server_class = _server_class()
    while True:
        mode = wanted[0]
        changed.clear()
        if mode == STOP:  # with what it answered since the supervisor's last pull, counted once
            if app.app.state.outcomes is not None:
                await asyncio.to_thread(app.app.state.outcomes.close)  # the queued predictions too
            report("stopped", unlogged={"metrics": app.app.state.metrics.snapshot()})
            return 0
        if mode == STANDBY:
            report("standby")
            await changed.wait()
            continue
        server = server_class(config)
        task = loop.create_task(server.serve())
        up = loop.create_task(server.up.wait())
        await asyncio.wait({task, up}, return_when=asyncio.FIRST_COMPLETED)
        if not server.up.is_set():
            up.cancel()
            error = task.exception() if task.done() else None
            report("failed", error=f"cannot serve: {error}")
            return EXIT_LOAD_FAILED
        report("serving")
        while wanted[0] == SERVE and not task.done():
            waiter = loop.create_task(changed.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            changed.clear()
        if task.done():  # uvicorn stopped by itself: let the supervisor restart this worker
            report("failed", error=f"server stopped: {task.exception()}")
            return 1
        report("draining")
        await drain(server, task, app, options.drain_grace)


#: The longest a pull waits for its sample rows' class probabilities (the supervisor waits 0.5 s).
PROBABILITIES_SECONDS = 0.2
#: At most this many probabilities in a reply (~2 MB of JSON): with many classes, fewer rows get them.
PROBABILITY_VALUES = 100_000


async def _probabilities(state: Any, rows: list[list[Any]]) -> list[list[float]] | None:
    """The class probabilities of pulled sample rows (estimated performance), computed in a model
    thread off every request's path; None when the model fails on them or takes too long."""
    try:
        result = await asyncio.wait_for(
            state.caller.threaded(state.predict_proba, rows), PROBABILITIES_SECONDS
        )
    except Exception as exc:  # monitoring must never break the pull
        logging.getLogger("modeldeck.worker").debug("no probabilities for the sample: %s", exc)
        return None
    return result[: max(1, PROBABILITY_VALUES // max(1, len(result[0])))] if result else result


async def _serve_monitoring(server: Any, path: Path) -> None:
    """Answer the supervisor's pulls: `<cursor>\n` in (-1: skip to the newest row), one JSON line of
    metrics and at most a bounded page of new sample rows out; or a command, one JSON object on the
    line (`_command`: set the split, predict rows), and its answer."""
    import orjson

    state = server.state

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            if line.startswith(b"{"):
                reply = await _command(server, orjson.loads(line))
                writer.write(orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
                await writer.drain()
                return
            cursor = int(line.strip() or 0)
            snapshot: dict[str, Any] = {"pid": os.getpid(), "metrics": state.metrics.snapshot()}
            if server.split is not None:
                snapshot["split"] = server.split.describe()
            if state.sampler is not None:
                snapshot.update(state.sampler.pull(cursor))
                if snapshot["rows"] and state.predict_proba is not None:
                    snapshot["probabilities"] = await _probabilities(state, snapshot["rows"])
            writer.write(orjson.dumps(snapshot, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            await writer.drain()
        except (TimeoutError, ValueError, OSError):
            pass
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    await asyncio.start_unix_server(answer, path=str(path), limit=_COMMAND_LIMIT)
    os.chmod(path, 0o600)


#: The longest command line the supervisor sends (rows to predict for a canary's agreement).
_COMMAND_LIMIT = 8 * 1024 * 1024


async def _command(server: Any, command: Any) -> dict[str, Any]:
    """Run one supervisor command: `{"split": {"mode", "weight", "path"} | null}` sets this worker's
    split (`registry.serving.split`; the same mode and path keep their connections and counters, a new
    weight applies from the next request); `{"predict": rows}` answers the rows' predictions (a
    canary's agreement, computed in a model thread, never on a request's path)."""
    from registry.serving.split import Split

    if not isinstance(command, dict):
        return {"error": "a command is a JSON object"}
    try:
        if "split" in command:
            wanted, current = command["split"], server.split
            if wanted is None:
                server.split = None
                if current is not None:
                    await current.close()
                return {"split": None}
            if current is not None and (current.mode, current.path) == (wanted["mode"], wanted["path"]):
                current.set_weight(float(wanted["weight"]))
            else:
                limit = server.state.max_body_bytes
                server.split = Split(wanted["mode"], float(wanted["weight"]), wanted["path"], limit)
                if current is not None:
                    await current.close()
            return {"split": server.split.describe()}
        if "predict" in command:
            state = server.state
            return {"predictions": await state.caller.threaded(state.predict, command["predict"])}
    except Exception as exc:  # a bad command, or the model refused the rows: say so
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"error": f"unknown command: {sorted(command)}"}


def _load(options: argparse.Namespace) -> tuple[ClosingWhenDraining, Any]:
    from registry.core import Registry
    from registry.outcomes import open_recorder
    from registry.serving.server import create_app
    from registry.serving.telemetry import start as start_telemetry
    from registry.serving.worker import load_predictor, read_token, server_config

    with Registry(home=options.home) as reg:
        predictor = load_predictor(reg, f"{options.model}:{options.version}", redact=options.redact)
    token = read_token(Path(options.token_file)) if options.token_file else None  # never "" (no auth)
    batching = {"auto": None, "on": True, "off": False}[options.batching]
    outcomes, store_error = (
        (None, None)
        if options.no_prediction_store
        else open_recorder(Path(options.home), options.deployment, options.model, options.version)
    )
    app = ClosingWhenDraining(
        create_app(
            predictor,
            max_body_bytes=options.max_body_bytes,
            token=token,
            batching=batching,
            monitoring=not options.no_monitoring,
            predict_timeout=options.predict_timeout,
            telemetry=start_telemetry(
                options.otlp, deployment=options.deployment, model=options.model, version=options.version
            ),
            outcomes=outcomes,
            store_error=store_error,
        )
    )
    config = server_config(predictor, app, options.fd, log_config=None, limits=_limits(options))
    return app, config


def _limits(options: argparse.Namespace) -> Any:
    from registry.serving.connections import CONNECTION_OPTIONS, ConnectionLimits

    given = {key: getattr(options, key) for key in CONNECTION_OPTIONS}
    return ConnectionLimits(**{key: value for key, value in given.items() if value is not None})


def _is_user_error(exc: Exception) -> bool:
    from registry.errors import RegistryError

    return isinstance(exc, RegistryError)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m registry.serving.lifecycle")
    parser.add_argument("--home", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--report")
    parser.add_argument("--monitor-dir")
    parser.add_argument("--log")
    parser.add_argument("--standby", action="store_true")
    parser.add_argument("--token-file")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--batching", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--redact", action="store_true")
    parser.add_argument("--no-monitoring", action="store_true")
    parser.add_argument("--no-prediction-store", action="store_true")
    parser.add_argument("--drain-grace", type=float, default=5.0)
    parser.add_argument("--predict-timeout", type=float, default=None)
    parser.add_argument("--otlp", help="OTLP/HTTP URL to export OpenTelemetry to, or off")
    parser.add_argument("--max-connections", type=int)  # these four default to ConnectionLimits'
    parser.add_argument("--idle-timeout", type=float)
    parser.add_argument("--header-timeout", type=float)
    parser.add_argument("--body-timeout", type=float)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = _parse(sys.argv[1:] if argv is None else argv)
    os.umask(0o077)  # its log (reopened after a rotation) and socket are the user's alone
    handler: logging.Handler = WatchedFileHandler(options.log) if options.log else logging.StreamHandler()
    prefix = f"%(asctime)s {options.deployment} v{options.version} [%(process)d] %(levelname)s "
    handler.setFormatter(logging.Formatter(prefix + "%(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    # A fatal signal (SIGSEGV, SIGBUS: e.g. the store's mmapped -shm file made unwritable) leaves its
    # traceback in the worker's log: stderr is that log (see `processes.spawn`).
    faulthandler.enable(all_threads=True)
    limit_repeats()  # a flood of bad requests must not flood the deployment's log
    try:
        return asyncio.run(run(options))
    finally:
        if options.monitor_dir:
            with contextlib.suppress(FileNotFoundError):
                (Path(options.monitor_dir) / f"{os.getpid()}.sock").unlink()


if __name__ == "__main__":
    sys.exit(main())
