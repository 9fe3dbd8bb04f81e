"""The preloader ("zygote"): imports what a worker needs once, then forks workers on request.

Started by the supervisor (`registry.serving.preloader`) as `python -m registry.serving.preload
--home H --control-fd N <room>`. It imports scikit-learn, skops, numpy, uvicorn and the server app,
freezes the garbage collector's view of them (so the children's pages stay shared, copy-on-write),
says `{"ready": pid}` on its control socket, and then answers each spawn request (JSON with the
worker's `registry.serving.lifecycle` arguments, its log and environment; the deployment's listening
socket attached with SCM_RIGHTS) with `{"id": ..., "pid": ...}` of a forked worker. It reaps its
children and tells `{"exited": pid, "status": code}` (a Popen-style returncode). At the end of its
control socket (the supervisor is gone) it exits; its workers, in sessions of their own, go on.

The care fork needs, done in the child before it runs `registry.serving.lifecycle.main`: the only
thread is the one that forked (the preloader starts none, and keeps BLAS/OpenMP at one thread until
the child sets the pools as a spawned worker would have them); new session; the preloader's control
socket, selector and signal pipe closed; signal handlers and mask reset; the inherited logging
handlers removed; the environment replaced by the supervisor's; `random` and numpy's global
generator reseeded from the OS; and the process's command line rewritten to the one a spawned worker
has (`python -m registry.serving.lifecycle --home H --deployment D ...`), so `ps` shows what it is and
a restarted supervisor finds and adopts it exactly like a spawned one (`registry.serving.processes`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
from pathlib import Path
from typing import Any

LIFECYCLE = "registry.serving.lifecycle"
#: Spaces on the preloader's own command line: the room a child's rewritten command line may take.
TITLE_ROOM = 2048
#: Modules a worker imports on its way to serving, imported once here (a missing one is skipped).
PRELOAD = (
    "numpy",
    "scipy.sparse",
    "sklearn",
    "sklearn.base",
    "sklearn.utils.validation",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.dummy",
    "sklearn.svm",
    "sklearn.neighbors",
    "sklearn.naive_bayes",
    "skops.io",
    "threadpoolctl",
    "orjson",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.off",
    "starlette",
    "narwhals",  # scikit-learn's dataframe layer, used on the reference sample at warm-up
    "narwhals._pandas_like.dataframe",
    "narwhals._pandas_like.namespace",
    "narwhals._interchange.dataframe",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "encodings.cp437",  # zip member names in .skops files
    "registry.core",
    "registry.serving.lifecycle",
    "registry.serving.server",
    "registry.serving.worker",
    "registry.serving.telemetry",
    "registry.outcomes",
)
#: Thread-count variables the preloader pins to 1; a child sets its pools from the supervisor's values.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: The preloader's environment beside those: pandas imports pyarrow when it is installed (MLflow brings
#: it), and pyarrow's jemalloc would start a background thread in the process that forks.
PRELOAD_ENVIRONMENT = {
    **dict.fromkeys(THREAD_VARIABLES, "1"),
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}

log = logging.getLogger("modeldeck.preload")


class Child(Exception):
    """Raised in a forked child to leave the preloader's loop and become a worker (see `main`)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__("forked")
        self.argv = argv


def warm() -> list[str]:
    """Import what a worker needs; the modules that could not be imported."""
    import importlib

    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional extra (uvloop, ...) that is not installed
            missing.append(name)
    return missing


def thread_count() -> int:
    """Threads of this process, native ones included (BLAS, OpenMP)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def title_area() -> tuple[int, int]:
    """Start and end address of this process's command line (`/proc/self/stat` fields 48 and 49)."""
    with open("/proc/self/stat", "rb") as handle:
        data = handle.read()
    fields = data[data.rindex(b")") + 2 :].split()  # from field 3 on: the name may hold spaces
    return int(fields[45]), int(fields[46])


def set_title(argv: list[str]) -> bool:
    """Rewrite this process's command line (what `ps` and /proc/PID/cmdline show) to `argv`, keeping
    whole arguments while they fit in the room the original command line had; False if none fit.

    setproctitle writes one string (no NUL between arguments), which psutil would split at spaces:
    a home with a space in its path would then no longer be found; hence the NUL-separated rewrite."""
    start, end = title_area()
    room = end - start
    data = b""
    for arg in argv:
        item = os.fsencode(arg) + b"\0"
        if len(data) + len(item) > room:
            break
        data += item
    if not data:
        return False
    ctypes.memmove(start, data.ljust(room, b"\0"), room)
    return True


def thread_limits(env: dict[str, str]) -> dict[str, int]:
    """The BLAS and OpenMP pool sizes a worker spawned with `env` would start with."""
    cpus = len(os.sched_getaffinity(0))

    def first(*names: str) -> int:
        for name in names:
            with contextlib.suppress(KeyError, ValueError):
                return max(1, int(env[name]))
        return cpus

    return {
        "blas": first("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"),
        "openmp": first("OMP_NUM_THREADS"),
    }


def become_worker(env: dict[str, str], argv: list[str], log_path: str | None) -> None:
    """In the forked child: take a worker's session, stdio, signals, environment, seeds, thread pools
    and command line (the preloader's own sockets are already closed)."""
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if log_path:
        from registry.files import append_private

        with append_private(Path(log_path)) as handle:  # 0600, never through a symlink
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    os.environ.clear()
    os.environ.update(env)
    reseed()
    with contextlib.suppress(Exception):  # no BLAS/OpenMP loaded: nothing to size
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=thread_limits(env))
    set_title([sys.executable, "-m", LIFECYCLE, *argv])


def reseed() -> None:
    """Fresh seeds from the OS: every child would otherwise draw the preloader's random sequence."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _fd_argv(argv: list[str], fd: int) -> list[str]:
    """`argv` with the value of `--fd` replaced by the descriptor number the socket has here."""
    argv = list(argv)
    index = argv.index("--fd")
    argv[index + 1] = str(fd)
    return argv


class Preloader:
    """The preloader's loop: spawn requests in, forked workers' pids and exit statuses out."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def send(self, message: dict[str, Any]) -> None:
        self.control.sendmsg([json.dumps(message).encode()])

    def run(self) -> None:
        """Serve until the supervisor closes the control socket; in a child, raise `Child`."""
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "child")
        self.send({"ready": os.getpid(), "threads": thread_count()})
        while True:
            for key, _ in self.selector.select():
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                    self.reap()
                elif not self.request():
                    return

    def request(self) -> bool:
        """Handle one spawn request; False at the end of the control socket."""
        try:
            data, fds, _, _ = socket.recv_fds(self.control, 1 << 20, 4)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        try:
            message = json.loads(data)
            if len(fds) != 1:
                raise ValueError(f"expected one socket, got {len(fds)}")
            argv = _fd_argv([str(a) for a in message["argv"]], fds[0])
            env = {str(k): str(v) for k, v in dict(message["env"]).items()}
            log_path = message.get("log")
        except (ValueError, KeyError, TypeError) as exc:
            for fd in fds:
                os.close(fd)
            self.send({"id": _id(data), "error": f"bad request: {exc}"})
            return True
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.close_in_child()
            become_worker(env, argv, str(log_path) if log_path else None)
            raise Child(argv)
        os.close(fds[0])
        self.send({"id": message.get("id"), "pid": pid})
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                self.send({"exited": pid, "status": code})

    def close_in_child(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self.control.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def _id(data: bytes) -> Any:
    try:
        return json.loads(data).get("id")
    except (ValueError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("--home", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("room", nargs="*", help="spaces: room for the children's command lines")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.umask(0o077)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s preloader [%(process)d] %(levelname)s %(name)s: %(message)s"
    )
    control = socket.socket(fileno=options.control_fd)
    gc.disable()  # no collection while importing: what is imported here lives as long as the process
    missing = warm()
    gc.collect()
    gc.freeze()  # the imported objects are never scanned again: the children's pages stay shared
    gc.enable()
    if missing:
        log.info("not preloaded (not installed): %s", ", ".join(missing))
    threads = thread_count()
    if threads != 1:
        log.warning("%d threads after the imports; forked workers do not inherit them", threads)
    preloader = Preloader(control)
    try:
        preloader.run()
    except ConnectionError:  # the supervisor went away (and with it, the need for a preloader)
        return 0
    except Child as child:
        worker = child.argv
    else:
        return 0
    # The forked child, outside the handler (its errors must not chain to `Child`): a worker from here
    # on, ending as a spawned one does (atexit handlers, non-daemon threads joined, streams flushed).
    from registry.serving import lifecycle

    return lifecycle.main(worker)


if __name__ == "__main__":
    sys.exit(main())
