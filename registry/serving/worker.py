"""Starting one model server: load a version safely, warm it up, run uvicorn.

Used by `modeldeck serve` (one server in the foreground) and by the supervisor's workers
(`registry.serving.lifecycle`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from registry.core import Registry
from registry.errors import RegistryError
from registry.files import private_dirs, temporary
from registry.serving.connections import ConnectionLimits, uvicorn_settings
from registry.serving.predictor import Predictor
from registry.serving.server import DEFAULT_MAX_BODY_BYTES, create_app

TOKEN_FILE = "serving-token"
#: A shorter token is refused (a full disk or a truncation left it; `secrets.token_urlsafe(32)` is 43).
MIN_TOKEN_LENGTH = 32
BACKLOG = 2048


class ServeError(RegistryError):
    """A server that cannot start: port taken, address not allowed, ..."""


def load_predictor(registry: Registry, ref: str, redact: bool = False) -> Predictor:
    """The version `ref` loaded (sha256-checked, skops, trusted types only) and warmed up."""
    info = registry.get(ref)
    predictor = Predictor(registry.load(f"{info.name}:{info.version}"), info, redact=redact)
    predictor.warm_up(registry.reference(f"{info.name}:{info.version}"))
    return predictor


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serving_token(home: Path) -> str:
    """The bearer token for servers bound beyond loopback: made once, kept 0600 in the home.

    Made atomically (a fsynced temp file linked into place), so two first starts agree on one token
    and a full disk leaves no empty file. A token that is empty or short, or whose file others may
    read or that belongs to another user, is refused (ServeError): it would not protect anything."""
    path = home / TOKEN_FILE
    try:
        return read_token(path)
    except FileNotFoundError:
        pass
    private_dirs(home)
    try:
        tmp = temporary(home, (secrets.token_urlsafe(32) + "\n").encode(), fsync=True)
    except OSError as exc:
        raise ServeError(f"cannot create the serving token {path}: {exc.strerror or exc}") from None
    try:
        os.link(tmp, path)  # fails if another first start was quicker: then its token is the one
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_token(path)


def read_token(path: Path) -> str:
    """The token kept in `path`, checked (see `serving_token`); FileNotFoundError if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ServeError(f"refusing the serving token {path}: it is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        token = handle.read(4096).decode("ascii", "replace").strip()
    fix = f"; remove it and a new token is made on the next deploy (rm {path})"
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise ServeError(
            f"refusing the serving token {path}: it belongs to uid {info.st_uid}, not to you{fix}"
        )
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise ServeError(f"refusing the serving token {path}: mode {mode:04o} lets others read it{fix}")
    if len(token) < MIN_TOKEN_LENGTH:
        what = "empty" if not token else f"only {len(token)} characters (at least {MIN_TOKEN_LENGTH} needed)"
        raise ServeError(f"refusing the serving token {path}: it is {what}{fix}")
    return token


def bind_socket(host: str, port: int, *, listen: bool = True, reuse_port: bool = False) -> socket.socket:
    """A bound (by default listening) socket, or a ServeError that says why not (port in use, no
    permission). The supervisor binds with `reuse_port` and leaves `listen` to the first worker that
    serves: a supervisor that restarts while old workers still hold the port can bind it again, and a
    socket joins the port's accept group only once something accepts on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except PermissionError:
        sock.close()
        raise ServeError(f"no permission to listen on {host}:{port} (ports below 1024 need root)") from None
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise ServeError(f"port {port} on {host} is already in use; pick another with --port") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Accepted connections inherit this. Without it a response's second write waits ~40 ms for the
    # client's delayed ACK (uvicorn's fd= path treats the socket as AF_UNIX and never sets it).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if listen:
        sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def run_server(
    predictor: Predictor,
    sock: socket.socket,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
    batching: bool | None = None,
    predict_timeout: float | None = None,
    limits: ConnectionLimits | None = None,
    otlp: str | None = None,
    home: Path | None = None,
) -> None:
    """Serve `predictor` on an already bound socket until SIGINT/SIGTERM (graceful). OpenTelemetry
    goes to `otlp` or where the `OTEL_*` environment says (`registry.serving.telemetry`). With
    `home`, predictions are kept in its prediction store for labels (`registry.outcomes`)."""
    import uvicorn

    from registry.outcomes import open_recorder
    from registry.serving.logs import limit_repeats
    from registry.serving.telemetry import start as start_telemetry

    telemetry = start_telemetry(
        otlp, deployment=predictor.info.name, model=predictor.info.name, version=predictor.info.version
    )
    info = predictor.info
    outcomes, store_error = open_recorder(home, info.name, info.name, info.version) if home else (None, None)
    app = create_app(
        predictor,
        max_body_bytes=max_body_bytes,
        token=token,
        batching=batching,
        predict_timeout=predict_timeout,
        telemetry=telemetry,
        outcomes=outcomes,
        store_error=store_error,
        no_store="served without a modeldeck home",
    )
    config = server_config(predictor, app, sock.fileno(), access_log=access_log, limits=limits)
    limit_repeats()  # uvicorn configured its log handlers just now

    class Server(uvicorn.Server):
        """uvicorn, exporting the last telemetry before it re-raises the signal that stopped it (a
        SIGTERM then ends the process at once: no exit handler would run)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    if telemetry is not None:
                        telemetry.shutdown()
                    if outcomes is not None:
                        outcomes.close()

    Server(config).run()


def server_config(
    predictor: Predictor,
    app: Any,
    fd: int,
    *,
    access_log: bool = False,
    limits: ConnectionLimits | None = None,
    **extra: Any,
) -> Any:
    """uvicorn's configuration for serving `app` on the socket `fd`, within `limits` (header size,
    deadlines, open connections: see `registry.serving.connections`)."""
    import sklearn
    import uvicorn

    if not predictor.schema.any_nullable:
        sklearn.set_config(assume_finite=True)  # inputs are validated: skip sklearn's NaN scan
    config = uvicorn.Config(
        app,
        fd=fd,
        access_log=access_log,
        log_level="warning",
        lifespan="off",
        # X-Forwarded-For and -Proto are believed only from the addresses FORWARDED_ALLOW_IPS names
        # (uvicorn's setting: set it behind a proxy on this host). uvicorn's default believes them from
        # 127.0.0.1, where any local user could write any client address into the access log.
        proxy_headers=bool(os.environ.get("FORWARDED_ALLOW_IPS")),
        server_header=False,
        backlog=BACKLOG,
        timeout_graceful_shutdown=10,
        **uvicorn_settings(limits or ConnectionLimits()),
        **extra,
    )
    if access_log:  # uvicorn gives the access log the warning level too: it would log nothing
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config
