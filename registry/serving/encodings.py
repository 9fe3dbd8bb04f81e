"""Compressed request bodies: `Content-Encoding: gzip` or `deflate` (zlib format, as RFC 9110 and
Triton's client mean it), decoded as the body streams in and never past the body limit.

Triton decodes both, and its client sends them with `request_compression_algorithm`. Another
encoding is a 415 naming `Content-Encoding`; a stream that is not what it says is a 400 naming it.
"""

from __future__ import annotations

import zlib

from registry.signature import InputError

FIELD = "Content-Encoding"
#: zlib's window bits of each encoding (gzip: a gzip header and trailer; deflate: zlib's).
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _corrupt(encoding: str, reason: str) -> InputError:
    return InputError(
        400, "bad_request", f"the body is not valid {encoding} ({FIELD}): {reason}", field=FIELD
    )


class Decoder:
    """Decompresses one body chunk by chunk, giving out at most `limit + 1` bytes in all (enough for
    the caller to see the limit is passed: a small bomb never inflates in memory)."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding, self.wbits, self.room = encoding, WBITS[encoding], limit + 1
        self.stream = zlib.decompressobj(self.wbits)

    def feed(self, chunk: bytes) -> bytes:
        """The decompressed bytes of `chunk` (a gzip body may hold several members, one after another)."""
        out = []
        try:
            while chunk and self.room > 0:
                part = self.stream.decompress(chunk, self.room)
                self.room -= len(part)
                out.append(part)
                if self.stream.eof:  # the member ended: what follows is the next one
                    chunk = self.stream.unused_data
                    self.stream = zlib.decompressobj(self.wbits) if chunk else self.stream
                else:
                    chunk = self.stream.unconsumed_tail
        except zlib.error as exc:
            raise _corrupt(self.encoding, str(exc)) from None
        return b"".join(out)

    def finish(self) -> None:
        """A 400 if the stream was cut short."""
        if self.room > 0 and not self.stream.eof:
            raise _corrupt(self.encoding, "the compressed stream ends early")


def decoder(header: str | None, limit: int) -> Decoder | None:
    """The decoder for a `Content-Encoding` header (None for no encoding or `identity`)."""
    encoding = (header or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in WBITS:
        raise InputError(
            415,
            "unsupported_media_type",
            f"{FIELD} {(header or '')[:40]!r} is not supported; send gzip, deflate or an uncompressed body",
            field=FIELD,
        )
    return Decoder(encoding, limit)
