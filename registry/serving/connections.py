"""Connection limits of a model server: header size and count, deadlines, and a cap on open connections.

uvicorn (0.54, httptools) bounds none of these: a client may send headers without end (httptools
buffers a header line whole), trickle a request a byte at a time (slowloris), or open sockets and
never send anything, until the worker runs out of memory or file descriptors. `LimitedHttpTools` is
uvicorn's httptools protocol with:

- header bytes and count limits: beyond them, 431 (Request Header Fields Too Large) and close;
- a deadline per phase of a connection: idle (connected or kept alive, no request begun: closed
  silently), headers (408 and close), body (408 and close); a sweep checks them a few times a
  second, so the request path only stores a number (uvicorn's own keep-alive timer, armed after
  every response and cancelled by the next request, is not armed: the idle deadline does its job);
  a 431 or 408 is a JSON error in the shape of the path's protocol (`error_bodies`; MLflow's when
  the request line was not read whole);
- a cap on open connections per worker: at the cap, a new connection evicts the longest idle one (a
  connection between requests), or is closed at once when every connection is busy, so file
  descriptors are never exhausted and a health probe gets through an idle flood.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from registry.serving.error_bodies import error_body

log = logging.getLogger("modeldeck.connections")

#: File descriptors a worker keeps for itself beyond its connections (logs, model, sockets).
RESERVED_FDS = 256
IDLE, HEADERS, BODY, BUSY = "idle", "headers", "body", "busy"
#: The deployment options that are connection limits (passed to a worker as `--key=value`).
CONNECTION_OPTIONS = ("max_connections", "idle_timeout", "header_timeout", "body_timeout")


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of one server process (defaults: what `deploy` and `serve` use)."""

    max_connections: int = 4096
    idle_timeout: float = 15.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100

    def capped(self) -> ConnectionLimits:
        """These limits with `max_connections` below this process's file descriptor limit (raised first
        to its hard limit)."""
        soft = raise_fd_limit()
        room = max(16, soft - RESERVED_FDS) if soft != resource.RLIM_INFINITY else self.max_connections
        if self.max_connections <= room:
            return self
        log.warning(
            "max connections lowered from %d to %d (file descriptor limit %d)",
            self.max_connections,
            room,
            soft,
        )
        return ConnectionLimits(**{**self.__dict__, "max_connections": room})

    @property
    def sweep_every(self) -> float:
        """How often deadlines are checked: a quarter of the shortest, between 20 ms and 1 s."""
        shortest = min(self.idle_timeout, self.header_timeout, self.body_timeout)
        return min(1.0, max(0.02, shortest / 4))


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request already answered (431)."""


def protocol_class(limits: ConnectionLimits) -> type:
    """uvicorn's httptools protocol with `limits` (one class per server process; `limits` capped)."""
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    limits = limits.capped()
    max_bytes, max_headers, header_timeout = (
        limits.max_header_bytes,
        limits.max_headers,
        limits.header_timeout,
    )
    #: Connections between requests, the longest idle first (the ones the cap may close); a dict keeps
    #: insertion order, and costs less per request than an OrderedDict.
    idle: dict[Any, None] = {}

    class LimitedHttpTools(HttpToolsProtocol):
        live: ClassVar[set[LimitedHttpTools]] = set()
        sweeper: ClassVar[asyncio.Task[None] | None] = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.phase = IDLE
            self.deadline = math.inf
            self.header_bytes = 0  # exact: the URL and complete header lines
            # Reads that ended inside the headers, counted whole (bounds a line still incomplete): all
            # of a read is header bytes unless an earlier request also ended in it (pipelining), then
            # that read is left out (an undercount of one read at most).
            self.chunk_bytes = 0
            self.header_count = 0
            self.began_now = self.ended_now = False
            self.answered = False

        # -------------------------------------------------------- connections and the cap
        # asyncio hands a stream protocol a Transport; its base class declares the wider BaseTransport.
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            cls = type(self)
            over = len(cls.live) >= limits.max_connections and not cls.evict_idle()
            super().connection_made(transport)
            cls.live.add(self)
            if over:
                log.warning(
                    "connection closed: %d connections are open and busy (the limit)", len(cls.live) - 1
                )
                self.answered = True
                transport.abort()
                return
            self.wait_idle()
            cls.ensure_sweeper(self.loop)

        def connection_lost(self, exc: Exception | None) -> None:
            type(self).live.discard(self)
            idle.pop(self, None)
            super().connection_lost(exc)

        @classmethod
        def evict_idle(cls) -> bool:
            """Close the longest idle connection to make room; False if none is idle."""
            if not idle:
                return False
            oldest = next(iter(idle))
            del idle[oldest]
            cls.live.discard(oldest)
            oldest.transport.abort()  # frees the descriptor now (no request is in progress on it)
            return True

        def wait_idle(self) -> None:
            self.phase, self.deadline = IDLE, self.loop.time() + limits.idle_timeout
            idle[self] = None

        # -------------------------------------------------------- parsing with limits
        def data_received(self, data: bytes) -> None:
            if self.answered:
                return
            self.began_now = self.ended_now = False
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError:
                if not self.answered:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                return
            if self.phase == HEADERS and not (self.began_now and self.ended_now):
                self.chunk_bytes += len(data)
                if self.chunk_bytes > max_bytes:
                    self.refuse(431, f"request headers over {max_bytes} bytes", "headers")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            idle.pop(self, None)
            self.phase, self.deadline = HEADERS, self.loop.time() + header_timeout
            self.header_bytes = self.chunk_bytes = self.header_count = 0
            self.began_now = True

        # uvicorn's on_url and on_header, inlined (they run for every request) with the limits added
        def on_url(self, url: bytes) -> None:
            self.url += url
            self.header_bytes += len(url)
            if self.header_bytes > max_bytes:
                self.refuse(431, f"request headers over {max_bytes} bytes", "headers")
                raise _Refused

        def on_header(self, name: bytes, value: bytes) -> None:
            self.header_bytes += len(name) + len(value) + 4
            self.header_count += 1
            if self.header_bytes > max_bytes or self.header_count > max_headers:
                too_many = self.header_count > max_headers
                self.refuse(
                    431,
                    f"more than {max_headers} request headers"
                    if too_many
                    else f"request headers over {max_bytes} bytes",
                    "headers",
                )
                raise _Refused
            name = name.lower()
            value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace: not the value's (RFC 9110 5.5)
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            self.phase, self.deadline = BODY, self.loop.time() + limits.body_timeout
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.ended_now = True
            if self.cycle is None or not self.cycle.response_complete:  # else answered early: stays idle
                self.phase, self.deadline = BUSY, math.inf
            super().on_message_complete()

        def on_response_complete(self) -> None:
            """uvicorn's, without its keep-alive timer (armed after every response, cancelled by the next
            request): the idle deadline, checked by the sweep, closes a kept-alive connection instead."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if self.pipeline:  # the next pipelined request starts (as in every uvicorn since 0.30)
                cycle, app = self.pipeline.pop()
                task = self.loop.create_task(cycle.run_asgi(app))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
            elif self.phase != HEADERS:  # kept alive, nothing pipelined: idle
                self.wait_idle()  # (in HEADERS, the next request began: its header deadline runs)

        def send_400_response(self, msg: str) -> None:
            if not self.answered:
                self.answered = True
                super().send_400_response(msg)

        # -------------------------------------------------------- answering and deadlines
        def refuse(self, status: int, message: str, field: str) -> None:
            """Answer `status` with `message` about `field` (unless a response already started) as a
            JSON error in the shape of the requested path's protocol, and close."""
            if self.answered:
                return
            self.answered = True
            self.logger.warning("%d from %s: %s", status, self.client[0] if self.client else "?", message)
            cycle = self.cycle
            if cycle is None or cycle.response_complete or not cycle.response_started:
                body = refusal_body(self.requested_path(), status, message, field)
                head = [STATUS_LINE[status]]
                for name, value in self.server_state.default_headers:
                    head += [name, b": ", value, b"\r\n"]
                head.append(b"content-type: application/json\r\nconnection: close\r\n")
                head.append(b"content-length: %d\r\n\r\n" % len(body))
                self.transport.write(b"".join(head) + body)
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's own response (if any) is dropped
                cycle.message_event.set()
            self.transport.close()

        def requested_path(self) -> str:
            """The request's path if its request line was read whole (a header or the body came after
            it), else "" (an error then takes MLflow's shape)."""
            if self.phase == HEADERS and not self.header_count:
                return ""
            try:
                return httptools.parse_url(bytes(self.url)).path.decode("latin-1")
            except (httptools.HttpParserInvalidURLError, AttributeError):
                return ""

        def expire(self) -> None:
            """The current phase's deadline passed."""
            if self.phase == IDLE:
                idle.pop(self, None)
                self.answered = True
                self.transport.close()
            elif self.phase == HEADERS:
                self.refuse(
                    408, f"request headers not complete within {limits.header_timeout:g} s", "headers"
                )
            elif self.phase == BODY:
                self.refuse(408, f"request body not complete within {limits.body_timeout:g} s", "body")
            self.deadline = math.inf

        @classmethod
        def ensure_sweeper(cls, loop: asyncio.AbstractEventLoop) -> None:
            task = cls.sweeper
            if task is None or task.done() or task.get_loop() is not loop:
                cls.sweeper = loop.create_task(cls.sweep())

        @classmethod
        async def sweep(cls) -> None:
            """Expire connections past their deadline, until none is left open."""
            loop = asyncio.get_running_loop()
            while cls.live:
                await asyncio.sleep(limits.sweep_every)
                now = loop.time()
                for protocol in [p for p in cls.live if p.deadline <= now]:
                    protocol.expire()

    # A class attribute the protocol class reads and never declares (made per set of limits, here).
    LimitedHttpTools.limits = limits  # type: ignore[attr-defined]
    return LimitedHttpTools


def refusal_body(path: str, status: int, message: str, field: str) -> bytes:
    """The JSON error of a refusal by the HTTP layer (431, 408): OIP's shape on `/v2` paths, else
    MLflow's, as the app's own errors (`error_bodies`)."""
    code = "request_headers_too_large" if status == 431 else "request_timeout"
    return orjson.dumps(error_body(path, status, message, code, field))


def uvicorn_settings(limits: ConnectionLimits) -> dict[str, Any]:
    """The uvicorn.Config arguments that apply `limits` (httptools; h11 only if httptools is missing).

    Model servers speak no WebSocket: an upgrade request is answered as plain HTTP, so a connection
    always stays with the protocol that enforces the limits."""
    try:
        return {"http": protocol_class(limits), "timeout_keep_alive": limits.idle_timeout, "ws": "none"}
    except ImportError:  # uvicorn[standard] brings httptools; without it, h11's own bound (400, not 431)
        return {
            "http": "h11",
            "ws": "none",
            "timeout_keep_alive": limits.idle_timeout,
            "h11_max_incomplete_event_size": limits.max_header_bytes,
            "limit_concurrency": limits.max_connections,
        }
