"""Helpers shared by several test modules (imported as `helpers`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import io
import json
import multiprocessing
import socket
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import skops

_START: Any = None


def _set_start(barrier: Any) -> None:
    global _START
    _START = barrier


def wait_for_the_others() -> None:
    """In a `four_processes` child: block until all four children are ready, then go together."""
    _START.wait(timeout=60)


@pytest.fixture(scope="module")
def four_processes() -> Iterator[Callable[..., list[Any]]]:
    """`run(func, *args)`: `func(*args)` in each of four spawned processes at the same moment.

    The processes are started once for the module (spawning and importing is most of the cost) and
    share a barrier that `func` waits on first (`wait_for_the_others`); each of the four calls
    therefore runs in a different process, since a process waiting at the barrier takes no other call.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    with ctx.Pool(4, initializer=_set_start, initargs=(barrier,)) as pool:

        def run(func: Callable[..., Any], *args: Any) -> list[Any]:
            barrier.reset()  # in case an earlier round broke it
            return pool.starmap_async(func, [args] * 4, chunksize=1).get(timeout=120)

        yield run


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hostile_skops(marker: Path) -> bytes:
    """A .skops payload that calls `builtins.eval` while it loads, creating `marker` if it runs."""
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"
    text = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode"}
    args = {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": [text | {"content": json.dumps(code), "is_json": True, "__id__": 2}],
        "__id__": 3,
    }
    schema = {
        "__class__": "eval",
        "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode",
        "content": args,
        "__id__": 1,
        "protocol": 2,
        "_skops_version": skops.__version__,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()
