"""A serving worker's side of progressive delivery: a share of its prediction requests answered by the
candidate version (canary), or a copy of every one sent to it (shadow).

The candidate's workers listen on a private Unix socket the supervisor binds (0600, in the run
directory); the serving workers keep accepting every connection on the deployment's port, and the
supervisor tells each of them the split over its monitoring socket (`registry.serving.lifecycle`).

- **Canary**: each worker sends exactly `weight` percent of the prediction requests it accepts to the
  candidate (a running credit, so the share is exact over every 100/weight requests, not approximate
  by worker count) and relays the answer. A request the candidate cannot take (its socket closed, the
  connection lost before an answer) is answered here instead: predictions are idempotent, and no
  request fails because of the split. The candidate counts what it answers; this worker counts only
  what it answered itself, so each version's figures are its own.
- **Shadow**: after this worker answered, a copy of the request goes into a bounded queue that two
  tasks send to the candidate; its answers are read and dropped. A full queue drops the copy and
  counts it: the serving path never waits for the shadow.

Requests naming a version (`/v2/models/{m}/versions/{v}/infer`) are never split: they asked for the
version this worker serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import httptools

CANARY, SHADOW = "canary", "shadow"
#: Copies waiting for the shadow, per worker; more are dropped (and counted).
SHADOW_QUEUE = 1000
#: Tasks sending copies to the shadow, per worker, and the most copies one sends at once (pipelined on
#: one connection: one write and a few reads for the lot, so a copy costs the serving worker little).
SHADOW_SENDERS, SHADOW_BATCH = 2, 64
#: Headers a hop must not pass on (RFC 9110 7.6.1), and the ones the server sets itself.
_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection"}
)
_OWN = _HOP | {b"server", b"date", b"content-length"}
#: Headers of a forwarded request this worker writes itself.
_SET = frozenset({b"host", b"content-length"})
log = logging.getLogger("modeldeck.worker")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Split:
    """Where a worker's prediction requests go besides itself; configured by the supervisor."""

    def __init__(self, mode: str, weight: float, path: str, max_body: int) -> None:
        if mode not in (CANARY, SHADOW):
            raise ValueError(f"split mode must be {CANARY} or {SHADOW}, not {mode!r}")
        self.mode, self.path, self.max_body = mode, path, max_body
        self.weight = 0.0
        self.set_weight(weight)
        self._credit = 0.0
        self._candidate = Connections(path)
        #: Requests answered by the candidate; answered here because it could not take them; copies
        #: sent to the shadow, dropped with the queue full, and lost on the way.
        self.forwarded = self.fallbacks = 0
        self.mirrored = self.dropped = self.mirror_failed = 0
        self._queue: asyncio.Queue[tuple[Scope, bytes]] | None = None
        self._senders: list[asyncio.Task[None]] = []

    def set_weight(self, weight: float) -> None:
        if not 0.0 <= weight <= 100.0:
            raise ValueError(f"split weight must be between 0 and 100, not {weight}")
        self.weight = float(weight)

    def describe(self) -> dict[str, Any]:
        """What the supervisor reads back with each pull: the split as set, and its counters."""
        return {
            "mode": self.mode,
            "weight": self.weight,
            "path": self.path,
            "forwarded": self.forwarded,
            "fallbacks": self.fallbacks,
            "mirrored": self.mirrored,
            "dropped": self.dropped,
            "mirror_failed": self.mirror_failed,
            "queued": self._queue.qsize() if self._queue is not None else 0,
        }

    # ------------------------------------------------------------------ canary
    def take(self) -> bool:
        """Whether the next request goes to the candidate: `weight` in every 100, evenly spread."""
        if self.mode != CANARY or self.weight <= 0.0:
            return False
        self._credit += self.weight
        if self._credit >= 100.0:
            self._credit -= 100.0
            return True
        return False

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request with the candidate's answer; None when it was. When the candidate could
        not take it, a `receive` that replays the body read so far, for this worker to answer it."""
        chunks, complete = await _read(receive, self.max_body)
        if not complete:  # too large to hold, or the client left: this worker answers (or refuses) it
            return _replay(chunks, receive, True)
        body = b"".join(chunks)
        try:
            status, headers, content = await self._candidate.request(_head(scope, len(body)), body)
        except (OSError, httptools.HttpParserError) as exc:
            self.fallbacks += 1
            log.debug("candidate could not take a request (%s): answered here", exc)
            return _replay(chunks, receive, False)
        self.forwarded += 1
        headers = [(k, v) for k, v in headers if k not in _OWN]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        return None

    # ------------------------------------------------------------------ shadow
    def capture(self, receive: Receive) -> tuple[Receive, list[bytes]]:
        """A `receive` that keeps a copy of the body it hands on (for `mirror`)."""
        chunks: list[bytes] = []

        async def capturing() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        return capturing, chunks

    def mirror(self, scope: Scope, chunks: list[bytes]) -> None:
        """Queue a copy of an answered request for the shadow; dropped (and counted) when full."""
        if self.mode != SHADOW:
            return
        body = b"".join(chunks)
        if len(body) > self.max_body:
            return
        if self._queue is None:
            self._queue = asyncio.Queue(SHADOW_QUEUE)
            self._senders = [asyncio.ensure_future(self._send_copies()) for _ in range(SHADOW_SENDERS)]
        try:
            self._queue.put_nowait((scope, body))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _send_copies(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            while len(batch) < SHADOW_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._candidate.pipeline([_head(scope, len(body)) + body for scope, body in batch])
                self.mirrored += len(batch)
            except Exception as exc:  # the shadow is down or broke: the serving path never knows
                self.mirror_failed += len(batch)
                log.debug("%d copies for the shadow lost: %s", len(batch), exc)

    async def close(self) -> None:
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(BaseException):
                await task
        self._candidate.close()


class Connections:
    """Kept-alive HTTP/1.1 connections to the candidate's Unix socket, one request at a time each.

    asyncio streams with httptools' parser (what uvicorn parses with): a forwarded request costs about a
    quarter of what httpcore's pool costs (measured: 104 us against 437 us a round trip to a no-op
    uvicorn app), and every forwarded request pays it."""

    def __init__(self, path: str, keep: int = 64) -> None:
        self.path, self.keep = path, keep
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, head: bytes, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request; its status, headers (names lower-case) and body. An OSError (or a parser
        error) means the candidate cannot take it."""
        parser, reply = await self._exchange(head + body, 1, _Reply)
        return parser.get_status_code(), reply.headers, b"".join(reply.body)

    async def pipeline(self, requests: list[bytes]) -> None:
        """Send `requests` back to back on one connection and read their answers (counted, dropped); an
        OSError or a parser error when the candidate did not answer them all."""
        await self._exchange(b"".join(requests), len(requests), _Answers)

    async def _exchange(self, data: bytes, count: int, make: type[A]) -> tuple[Any, A]:
        """Write `data` (`count` requests), read `count` answers into a new `make()`; the parser and
        the answers. A kept-alive connection the candidate closed before any answer is replaced once."""
        while True:
            fresh = not self._idle
            reader, writer = await asyncio.open_unix_connection(self.path) if fresh else self._idle.pop()
            answers = make()
            parser = httptools.HttpResponseParser(answers)
            try:
                writer.write(data)
                while answers.complete < count:
                    chunk = await reader.read(65_536)
                    if not chunk:
                        raise ConnectionResetError(f"the candidate closed after {answers.complete} answers")
                    parser.feed_data(chunk)
            except (OSError, httptools.HttpParserError):
                writer.close()
                if fresh or answers.complete:
                    raise
                continue  # a kept-alive connection that was closed: once more on a new one
            if parser.should_keep_alive() and len(self._idle) < self.keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return parser, answers

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class _Answers:
    """httptools' callbacks for answers read only to be counted (a shadow's)."""

    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


class _Reply(_Answers):
    """httptools' callbacks for one answer that is relayed: its headers and body too."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


A = TypeVar("A", bound=_Answers)


def _head(scope: Scope, length: int) -> bytes:
    """The request line and headers of a copy of `scope`'s request, its body `length` bytes long."""
    target = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    lines = [b"%s %s%s HTTP/1.1" % (scope["method"].encode(), target, b"?" + query if query else b"")]
    lines.append(b"host: candidate")
    lines += [k + b": " + v for k, v in scope["headers"] if k not in _HOP and k not in _SET]
    lines.append(b"content-length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read(receive: Receive, limit: int) -> tuple[list[bytes], bool]:
    """The body's chunks, and whether that is all of it (False: over `limit` bytes, or the client
    went away; the rest, or the disconnect, is still to be received)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return chunks, True
        if size > limit:
            return chunks, False


def _replay(chunks: list[bytes], receive: Receive, more: bool) -> Receive:
    """A `receive` that hands out `chunks` again, then (if `more`) the rest from `receive`."""
    pending = list(chunks) or [b""]

    async def replaying() -> Message:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or more}
        return await receive()

    return replaying
