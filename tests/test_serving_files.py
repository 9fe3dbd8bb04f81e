"""The supervisor's files: log rotation and tails, and where the runtime sockets go."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pytest

from registry.serving import logs
from registry.serving.options import OptionError
from registry.serving.rundir import RunDir


def test_logs_rotate_by_size_and_keep_the_newest_copies(tmp_path: Path) -> None:
    log = tmp_path / "iris.log"
    for generation in range(5):
        log.write_text(f"generation {generation}\n" * 100)
        assert logs.rotate_if_large(log, max_bytes=100, backups=3)
    assert not log.exists()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["iris.log.1", "iris.log.2", "iris.log.3"]
    assert (tmp_path / "iris.log.1").read_text().startswith("generation 4")
    assert (tmp_path / "iris.log.3").read_text().startswith("generation 2")
    log.write_text("small\n")
    assert not logs.rotate_if_large(log, max_bytes=100)


def test_tail_reaches_into_the_rotated_copy(tmp_path: Path) -> None:
    log = tmp_path / "iris.log"
    (tmp_path / "iris.log.1").write_text("".join(f"old {i}\n" for i in range(10)))
    log.write_text("new 0\nnew 1\n")
    assert logs.tail(log, 4) == ["old 8", "old 9", "new 0", "new 1"]
    assert logs.tail(tmp_path / "missing.log") == []


def test_the_reader_follows_across_a_rotation_and_holds_back_half_written_lines(tmp_path: Path) -> None:
    log = tmp_path / "iris.log"
    log.write_text("".join(f"old {i}\n" for i in range(5)))
    reader = logs.LogReader(log, lines=2)
    assert reader.read() == ["old 3", "old 4"]
    assert reader.read() == []
    with log.open("a") as handle:
        handle.write("first\nhalf")
    assert reader.read() == ["first"]
    with log.open("a") as handle:
        handle.write(" done\nlast of the old file\n")
    logs.rotate_if_large(log, max_bytes=0)
    log.write_text("second\n")
    assert reader.read() == ["half done", "last of the old file", "second"]
    reader.close()


def test_a_reader_of_a_missing_log_waits_for_it(tmp_path: Path) -> None:
    log = tmp_path / "iris.log"
    reader = logs.LogReader(log)
    assert reader.read() == []
    log.write_text("hello\n")
    assert reader.read() == ["hello"]
    reader.close()


def test_runtime_sockets_move_to_a_short_path_when_the_home_is_deep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Path(tempfile.mkdtemp(prefix="md-cache-"))  # short: tmp_path is too deep for the sockets
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    short = RunDir.of(tmp_path)
    assert short.path == (tmp_path / "run").resolve()
    deep_home = tmp_path / ("d" * 90)
    deep = RunDir.of(deep_home).create()
    assert len(str(deep.control_socket)) < 108 and deep.path != deep_home / "run"
    assert deep.path.stat().st_mode & 0o777 == 0o700
    assert deep.logs == deep_home.resolve() / "logs" and deep.logs.is_dir()
    assert RunDir.of(deep_home).path == deep.path  # the same home always maps to the same place
    shutil.rmtree(cache)


def test_repeated_log_lines_collapse_to_a_count(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "flood.log"
    handler = logging.FileHandler(path)
    handler.addFilter(logs.RepeatFilter(burst=3, window=60, clock=lambda: now[0]))
    logger = logging.getLogger("test.flood")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(10_000):
            logger.warning("bad request from %s", f"10.0.0.{i % 250}")
        logger.error("another message")
        now[0] = 61.0
        logger.warning("bad request from %s", "10.0.0.9")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    assert lines == [
        "bad request from 10.0.0.0",
        "bad request from 10.0.0.1",
        "bad request from 10.0.0.2",
        "another message",
        "bad request from 10.0.0.9 [repeated 9997 times in the last 60 s]",
    ]


def test_a_deployment_log_never_leaves_the_logs_dir(tmp_path: Path) -> None:
    rundir = RunDir.of(tmp_path)
    assert rundir.deployment_log("iris-2.v1") == rundir.logs / "iris-2.v1.log"
    for name in ("../x", "../../etc/cron.d/x", ".hidden", "a/b", "", "a\0b"):
        with pytest.raises(OptionError, match="cannot name a log file"):
            rundir.deployment_log(name)
