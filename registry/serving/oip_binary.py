"""The Open Inference Protocol's binary tensor data extension (as Triton and KServe define it).

A request with the header `Inference-Header-Content-Length: N` carries its JSON header in the first N
bytes of the body; the rest holds, in input order, the raw data of every input whose
`parameters.binary_data_size` is set: little-endian, row-major, BOOL one byte an element, BYTES each
element after its 4-byte little-endian length. Outputs asked for as binary come back the same way.
Anything that does not add up is a 400 naming the field, before any tensor is built.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from registry.serving.oip_types import NUMPY_DTYPES
from registry.signature import InputError

HEADER = "Inference-Header-Content-Length"
MEDIA_TYPE = "application/octet-stream"
_LENGTH = struct.Struct("<I")


def bad_binary(message: str, field: str) -> InputError:
    return InputError(400, "bad_request", message, field=field)


def split_body(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """The JSON header and the binary part of a body whose header is `header_length` bytes long."""
    if not header_length.strip().isdigit():
        raise bad_binary(f"{HEADER} must be a byte count, not {header_length[:40]!r}", HEADER)
    size = int(header_length)
    if size > len(body):
        raise bad_binary(f"{HEADER} is {size} but the body has only {len(body)} bytes", HEADER)
    return body[:size], body[size:]


def binary_size(tensor: dict[str, Any], index: int) -> int | None:
    """The input's `parameters.binary_data_size`, None when its data is JSON."""
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise bad_binary(
            f"inputs[{index}].parameters.binary_data_size must be a byte count, not {size!r}",
            f"inputs[{index}].parameters.binary_data_size",
        )
    return size


def decode_inputs(inputs: list[dict[str, Any]], counts: list[int], binary: bytes) -> None:
    """Give each binary input of `inputs` its `data` (a flat list of `counts[i]` elements) from
    `binary`, which must hold exactly the declared sizes, in order."""
    offset = 0
    for index, tensor in enumerate(inputs):
        size = binary_size(tensor, index)
        if size is None:
            continue
        field = f"inputs[{index}].parameters.binary_data_size"
        if "data" in tensor:
            raise bad_binary(f"{field} is given and so is inputs[{index}].data; send one of them", field)
        if offset + size > len(binary):
            raise bad_binary(
                f"{field} is {size} bytes but only {len(binary) - offset} remain after the JSON header"
                " and the inputs before it",
                field,
            )
        chunk = binary[offset : offset + size]
        offset += size
        tensor["data"] = decode(chunk, tensor["datatype"], counts[index], field)
    if offset != len(binary):
        raise bad_binary(
            f"{len(binary)} bytes follow the {HEADER} bytes of JSON but the inputs' binary_data_size"
            f" add up to {offset}",
            HEADER,
        )


def decode(chunk: bytes, datatype: str, count: int, field: str) -> list[Any]:
    """The `count` elements of one tensor's binary data, as Python values (BYTES as text)."""
    layout = NUMPY_DTYPES[datatype]
    if layout is None:
        return _decode_bytes(chunk, count, field)
    expected = count * np.dtype(layout).itemsize
    if len(chunk) != expected:
        raise bad_binary(
            f"{field} is {len(chunk)} bytes; {count} {datatype} element(s) take {expected}", field
        )
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if raw.size and int(raw.max()) > 1:
            raise bad_binary(f"{field}: a BOOL element is a byte 0 or 1", field)
        return raw.astype(bool).tolist()
    return np.frombuffer(chunk, dtype=layout).tolist()


def _decode_bytes(chunk: bytes, count: int, field: str) -> list[str]:
    """BYTES elements: a 4-byte little-endian length before each (a loop: the sizes vary)."""
    values: list[str] = []
    position = 0
    while position < len(chunk):
        if len(values) == count or position + _LENGTH.size > len(chunk):
            break
        (length,) = _LENGTH.unpack_from(chunk, position)
        position += _LENGTH.size
        if position + length > len(chunk):
            break
        try:
            values.append(chunk[position : position + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise bad_binary(f"{field}: BYTES element {len(values)} is not UTF-8 text", field) from None
        position += length
    if len(values) != count or position != len(chunk):
        raise bad_binary(
            f"{field}: {len(chunk)} bytes are not {count} length-prefixed BYTES element(s)", field
        )
    return values


def encode(tensor: dict[str, Any]) -> bytes:
    """Take `data` out of an output tensor, returning it as binary; the tensor gets its size."""
    data, datatype = tensor.pop("data"), tensor["datatype"]
    layout = NUMPY_DTYPES[datatype]
    if layout is None:
        texts = [str(v).encode() for v in data]
        raw = b"".join(part for text in texts for part in (_LENGTH.pack(len(text)), text))
    else:
        raw = np.asarray(data, dtype=layout).tobytes()
    tensor.setdefault("parameters", {})["binary_data_size"] = len(raw)
    return raw


def response_body(result: dict[str, Any], binary: set[str]) -> tuple[bytes, int]:
    """The body of a response whose outputs named in `binary` go as binary data, and its JSON
    header's length (for `Inference-Header-Content-Length`)."""
    parts = [encode(tensor) for tensor in result["outputs"] if tensor["name"] in binary]
    header = orjson.dumps(result)
    return b"".join([header, *parts]), len(header)
