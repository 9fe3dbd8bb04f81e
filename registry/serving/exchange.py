"""One prediction request as the model server's hot path sees it, on plain ASGI: no Starlette Request or
Response objects between the socket and the model.

`Asked` reads the headers once (the first of each name, as Starlette's `Headers.get` gives it) and names
the request; `read_body` reads the body within the limit; `send_json` answers with pre-encoded headers.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from registry.outcomes import request_id
from registry.serving import encodings
from registry.signature import InputError

RawHeaders = list[tuple[bytes, bytes]]


class Asked:
    """A prediction request: its ASGI scope, its headers by lower-case name, and its id (the client's
    `X-Request-ID` if sane, else a new one; an OIP body's `id` may replace it)."""

    __slots__ = ("headers", "request_id", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.headers: dict[bytes, bytes] = dict(reversed(scope["headers"]))  # as `first_headers`
        self.request_id = request_id(self.header(b"x-request-id"))

    def header(self, name: bytes) -> str | None:
        """A header's value by its lower-case name, or None."""
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    @property
    def path_params(self) -> dict[str, str]:
        params: dict[str, str] = self.scope.get("path_params", {})
        return params


def first_headers(scope: Scope) -> dict[bytes, bytes]:
    """A request's headers by lower-case name; of a repeated one, the first (as Starlette's `Headers.get`)."""
    return dict(reversed(scope["headers"]))


async def read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes (decompressed,
    for a `Content-Encoding: gzip` or `deflate` body; another encoding is a 415)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    encoding = headers.get(b"content-encoding")
    decoder = encodings.decoder(None if encoding is None else encoding.decode("latin-1"), limit)
    chunks, size = [], 0
    while True:  # the ASGI messages themselves: Request.stream's generator costs more than a read
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":  # gone, or cut off by the body deadline (408): not a 500
            raise InputError(408, "request_timeout", "the request body did not arrive", field="body")
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if decoder is not None:
            chunk = decoder.feed(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if decoder is not None:
        decoder.finish()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> InputError:
    return InputError(
        413, "payload_too_large", f"request body over the limit of {limit:,} bytes", field="body"
    )


async def send_json(send: Send, status: int, content: bytes, headers: RawHeaders, rid: str) -> None:
    """Answer `content` (JSON bytes) with `headers` (pre-encoded), its length, type and request id."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(content)).encode("latin-1")),
                (b"content-type", b"application/json"),
                (b"x-request-id", rid.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
