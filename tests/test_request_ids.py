"""Request ids made by the server: unguessable, and in the order they were made (so that the
prediction store's primary key grows at its end instead of at random pages of a large table)."""

from __future__ import annotations

import os
import re

import pytest

from registry import outcomes
from registry.outcomes import request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_made_ids_are_32_hex_digits_and_sort_in_the_order_they_were_made() -> None:
    ids = [request_id(None) for _ in range(2000)]
    assert all(HEX32.fullmatch(i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_made_ids_sort_in_order_on_a_coarse_clock_or_a_stepped_back_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = iter([5_000_000, 5_000_000, 5_000_000, 4_000_000, 6_000_000])  # a microsecond clock, then NTP
    monkeypatch.setattr(outcomes.time, "time_ns", lambda: next(ticks))
    monkeypatch.setattr(outcomes, "_last_id_time", 0)  # a new process
    ids = [request_id(None) for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_made_ids_carry_64_random_bits_after_the_time() -> None:
    ids = [request_id(None) for _ in range(2000)]
    randoms = {i[16:] for i in ids}
    assert len(randoms) == len(ids)  # 64 random bits each: a repeat would be a broken generator
    assert len({i[:16] for i in ids}) > 1  # the time part moves


def test_a_forked_worker_draws_its_own_random_bits_not_its_parents() -> None:
    """Random bits are drawn in bulk; workers are forked from a preloader that may have drawn some.
    A child reusing the parent's unused bits would give the same ids' random halves as its siblings."""
    request_id(None)  # the parent has drawn, and holds unused bits
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits at once
        try:
            os.write(writer, "".join(request_id(None)[16:] for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        childs = pipe.read().decode()
    os.waitpid(child, 0)
    parents = "".join(request_id(None)[16:] for _ in range(4))
    assert len(childs) == len(parents) == 64
    assert childs != parents


def test_a_clients_sane_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id("triton-1") == "triton-1"
    assert HEX32.fullmatch(request_id("bad id with spaces"))
    assert HEX32.fullmatch(request_id(""))
