"""Decompression bombs: a 2 MB .skops and a 1.5 MB export archive that unpack to gigabytes.

Each runs `register` / `import` in a child process under a 1 GiB address-space limit, as the
adversarial run did (where they reached 6.4 GB and 3.1 GB, or died with a raw MemoryError). Figures
asserted: exit status 1 with a one-line error naming the file and the member, no traceback, and the
child's peak resident memory under 400 MB.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import faults
import pytest

GIB = 1 << 30
LIMIT = GIB
PEAK_BUDGET_KB = 400 * 1024
_CHUNK = 1 << 20
_PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print('peak-rss-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def deflated(prefix: bytes, size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `prefix` then zeros, `size` bytes in all (a multiple of 1 MiB), made
    by repeating one compressed block (so building a 2 GiB bomb takes milliseconds), and its CRC."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = [compressor.compress(prefix + bytes(_CHUNK - len(prefix))) + compressor.flush(zlib.Z_SYNC_FLUSH)]
    block, previous = b"", None
    while block != previous:  # after a block or two of zeros, every block compresses the same
        previous, block = block, compressor.compress(bytes(_CHUNK)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    stream += [block] * (size // _CHUNK - 1) + [compressor.flush()]
    crc = zlib.crc32(prefix + bytes(_CHUNK - len(prefix)))
    zeros = bytes(64 * _CHUNK)
    for _ in range((size - _CHUNK) // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes((size - _CHUNK) % len(zeros)), crc)
    return b"".join(stream), crc


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written by hand: (name, stored bytes, method, crc, unpacked size) per member."""
    body, directory = io.BytesIO(), io.BytesIO()
    for name, data, method, crc, size in members:
        offset, raw = body.tell(), name.encode()
        body.write(
            struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0)
        )
        body.write(raw + data)
        central = (
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory.write(struct.pack("<IHHHHHHIIIHHHHHII", *central) + raw)
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), directory.tell(), body.tell(), 0
    )
    path.write_bytes(body.getvalue() + directory.getvalue() + end)
    return path


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data)


def npy_header(items: int) -> bytes:
    from numpy.lib import format as npy

    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (items,)})
    return buffer.getvalue()


def skops_members(iris_model) -> tuple[list[tuple[str, bytes, int, int, int]], str]:
    """The members of a real model's .skops file, and the name of its biggest array."""
    import skops.io as sio

    with zipfile.ZipFile(io.BytesIO(sio.dumps(iris_model))) as real:
        members = [stored(i.filename, real.read(i)) for i in real.infolist()]
        array = max((i for i in real.infolist() if i.filename.endswith(".npy")), key=lambda i: i.file_size)
    return members, array.filename


@pytest.fixture
def skops_bomb(tmp_path: Path, iris_model) -> Path:
    """2 MB on disk; its biggest array is 2 GiB of zeros, honestly declared and deflated."""
    members, array = skops_members(iris_model)
    header = npy_header((2 * GIB - 128) // 8)
    assert len(header) == 128
    data, crc = deflated(header, 2 * GIB)
    swapped = [(array, data, zipfile.ZIP_DEFLATED, crc, 2 * GIB) if m[0] == array else m for m in members]
    return write_zip(tmp_path / "bomb.skops", swapped)


@pytest.fixture
def skops_lying_header(tmp_path: Path, iris_model) -> Path:
    """A few KB; one array's .npy header claims 2 GiB that the member does not hold."""
    members, array = skops_members(iris_model)
    lying = npy_header((2 * GIB) // 8) + bytes(96)
    return write_zip(
        tmp_path / "lying.skops", [stored(array, lying) if m[0] == array else m for m in members]
    )


@pytest.fixture
def archive_bomb(tmp_path: Path) -> Path:
    """1.5 MB on disk: a well-formed export whose model.skops member is 1.5 GiB of zeros."""
    manifest = json.dumps(
        {
            "format": "modeldeck-export",
            "format_version": 2,
            "exported_at": "2026-01-01T00:00:00+00:00",
            "exported_from": {"host": "h", "registry": "r"},
            "files": {"model.skops": "0" * 64},
            "version": {
                "name": "bomb",
                "version": 1,
                "artifact_sha256": "0" * 64,
                "signature": {"columns": []},
                "python_version": "3",
                "numpy_version": "2",
            },
        }
    ).encode()
    data, crc = deflated(b"PK\x03\x04", 3 * GIB // 2)
    return write_zip(
        tmp_path / "bomb.mdx",
        [
            stored("manifest.json", manifest),
            stored("manifest.sha256", hashlib.sha256(manifest).hexdigest().encode()),
            ("model.skops", data, zipfile.ZIP_DEFLATED, crc, 3 * GIB // 2),
        ],
    )


def run_measured(*args: str, home: Path) -> tuple[int, list[str], int]:
    """`modeldeck ARGS` under the memory limit: exit status, stderr lines, peak RSS of the child (KB)."""
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    done = faults.run_limited([sys.executable, "-c", _PEAK, *faults.modeldeck(*args)], LIMIT, env=env)
    lines = done.stderr.strip().splitlines()
    peak = int(lines[-1].split()[-1])
    return done.returncode, lines[:-1], peak


@pytest.mark.parametrize("bomb", ["skops_bomb", "skops_lying_header"])
def test_a_skops_bomb_is_refused_before_it_is_unpacked(request, bomb: str, tmp_path: Path) -> None:
    path: Path = request.getfixturevalue(bomb)
    assert path.stat().st_size < 3 * 1024 * 1024
    status, errors, peak_kb = run_measured("register", str(path), "--name", "bomb", home=tmp_path / "home")
    print(f"{bomb}: {path.stat().st_size:,} bytes on disk, peak RSS of register {peak_kb / 1024:.0f} MB")
    assert status == 1, errors
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert str(path) in errors[0] and ".npy" in errors[0] and "refused" in errors[0]
    assert peak_kb < PEAK_BUDGET_KB


def test_an_export_archive_bomb_is_refused_before_it_is_unpacked(archive_bomb: Path, tmp_path: Path) -> None:
    assert archive_bomb.stat().st_size < 2 * 1024 * 1024
    status, errors, peak_kb = run_measured("import", str(archive_bomb), home=tmp_path / "home")
    print(
        f"archive: {archive_bomb.stat().st_size:,} bytes on disk, peak RSS of import {peak_kb / 1024:.0f} MB"
    )
    assert status == 1, errors
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert str(archive_bomb) in errors[0] and "'model.skops'" in errors[0] and "refused" in errors[0]
    assert peak_kb < PEAK_BUDGET_KB


def test_an_empty_skops_file_says_it_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "model.skops"
    empty.touch()
    status, errors, _ = run_measured("register", str(empty), "--name", "m", home=tmp_path / "home")
    assert status == 1
    assert errors == [f"error: {empty} is empty (0 bytes), not a .skops model"]


def test_a_reference_npy_whose_header_lies_is_refused(tmp_path: Path, iris_model) -> None:
    import skops.io as sio

    model = tmp_path / "iris.skops"
    sio.dump(iris_model, model)
    reference = tmp_path / "reference.npy"
    reference.write_bytes(npy_header((4 * GIB) // 8) + bytes(64))
    status, errors, peak_kb = run_measured(
        "register", str(model), "--name", "iris", "--reference", str(reference), home=tmp_path / "home"
    )
    assert status == 1 and len(errors) == 1, errors
    assert errors[0].startswith(f"error: {reference}: refused: its header declares an array of 4,294,967,296")
    assert peak_kb < PEAK_BUDGET_KB
