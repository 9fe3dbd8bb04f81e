"""Limits on what a zip file (a .skops model, an export archive, a reference sample) may unpack to.

Every zip that arrives from outside is checked from its central directory before a byte is
decompressed: the sizes its members declare (Python's zipfile never returns more than a member
declares) must sum to no more than `max_unpacked()` and no more than `RATIO` times the file's own
size plus `FLOOR`; every `.npy` member's header (shape x item size) must fit in the bytes it
declares, so no array is allocated for data that is not there; `.npz` members (scipy sparse
matrices in skops files) are checked the same way, one level down. A 2 MB file that claims gigabytes
is refused with one line naming the file and the member, instead of filling the memory.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path
from typing import IO

from registry.errors import ArtifactError

#: Largest total a zip may unpack to (MiB), unless MODELDECK_MAX_UNPACKED_MB says otherwise.
DEFAULT_MAX_UNPACKED_MB = 2048
#: A zip may unpack to at most RATIO times its own size plus FLOOR bytes (real models stay far below:
#: skops stores arrays uncompressed, and even deflated float arrays shrink a few times at most).
RATIO = 50
FLOOR = 64 * 1024 * 1024


def max_unpacked() -> int:
    """The absolute limit in bytes (`MODELDECK_MAX_UNPACKED_MB`, default 2048)."""
    raw = os.environ.get("MODELDECK_MAX_UNPACKED_MB", "")
    try:
        megabytes = float(raw) if raw else DEFAULT_MAX_UNPACKED_MB
    except ValueError:
        raise ArtifactError(f"MODELDECK_MAX_UNPACKED_MB={raw!r} is not a number of MiB") from None
    return int(megabytes * 1024 * 1024)


def check_zip(source: bytes | Path, what: str, _depth: int = 0) -> None:
    """Refuse the zip `source` (bytes or a file) if it may unpack to more than the limits allow.

    `what` names it in the error ("/tmp/m.skops", "archive x.mdx: model.skops"). A file that is not a
    zip at all is left to the reader, which says so in its own words."""
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            members = archive.infolist()
            allowed = min(max_unpacked(), RATIO * size + FLOOR)
            total = sum(m.file_size for m in members)
            if total > allowed:
                biggest = max(members, key=lambda m: m.file_size)
                raise ArtifactError(
                    f"{what}: refused: its members declare {total:,} bytes unpacked from {size:,} "
                    f"(member {biggest.filename!r} alone {biggest.file_size:,}); the limit is {allowed:,} "
                    "(MODELDECK_MAX_UNPACKED_MB raises it)"
                )
            for member in members:
                name = member.filename
                if name.endswith(".npy"):
                    with archive.open(member) as handle:
                        check_npy(handle, member.file_size, f"{what}: member {name!r}")
                elif name.endswith(".npz") and _depth == 0:
                    check_zip(archive.read(member), f"{what}: member {name!r}", _depth + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError):
        return  # not a zip (or an unreadable one): the reader refuses it with its own message


def check_npy_file(path: Path) -> None:
    """Refuse a `.npy` file whose header promises more array bytes than the file holds."""
    with path.open("rb") as handle:
        check_npy(handle, path.stat().st_size, str(path))


def check_npy(handle: IO[bytes], declared: int, what: str) -> None:
    """Refuse a `.npy` stream whose header promises more array bytes than the member holds."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _fortran, dtype = read_header(handle)
    except Exception as exc:  # numpy raises ValueError and friends for a bad header
        raise ArtifactError(f"{what} is not a valid .npy array: {exc}") from None
    needed = math.prod(shape) * dtype.itemsize
    if needed > declared:
        raise ArtifactError(
            f"{what}: refused: its header declares an array of {needed:,} bytes "
            f"(shape {tuple(shape)}, {dtype}) in a member of {declared:,} bytes"
        )
