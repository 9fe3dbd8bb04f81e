"""Private runtime files: where the run directory goes, what is refused, and the modes of what we write.

The attacks themselves (another local user preparing paths) are in `tests/reliability/test_local_users.py`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Registry
from registry.errors import SupervisorError
from registry.files import UnsafePath, append_private, open_private, private_dirs, write_atomic
from registry.serving.rundir import RunDir
from registry.serving.worker import ServeError, serving_token


def mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (pytest's tmp_path is too long for the deep-home cases)."""
    path = Path(tempfile.mkdtemp(prefix="md-"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def deep_home(tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home too deep for `home/run`, with a private cache dir and no runtime dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(short_dir / "cache"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return tmp_path / ("h" * 90)


def test_an_ordinary_home_keeps_its_run_directory_and_everything_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rundir = RunDir.of(home).create()
    assert rundir.path == home.resolve() / "run"
    assert [mode(p) for p in (home, rundir.path, rundir.workers, rundir.logs)] == [0o700] * 4


def test_a_deep_home_uses_the_runtime_dir_when_it_is_private(
    deep_home: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = short_dir / "xdg"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    rundir = RunDir.of(deep_home).create()
    assert rundir.path.parent == runtime / "modeldeck" and mode(rundir.path) == 0o700
    assert mode(runtime / "modeldeck") == 0o700
    runtime.chmod(0o755)  # a runtime dir others can read is not used
    assert RunDir.of(deep_home).path.parent == short_dir / "cache" / "modeldeck" / "run"


def test_a_deep_home_falls_back_to_the_users_cache_never_the_shared_temp_dir(deep_home: Path) -> None:
    rundir = RunDir.of(deep_home).create()
    assert not str(rundir.path).startswith(tempfile.gettempdir() + "/modeldeck-")
    assert rundir.path.parent == Path(os.environ["XDG_CACHE_HOME"]) / "modeldeck" / "run"
    assert len(str(rundir.control_socket)) < 108 and mode(rundir.path) == 0o700
    assert RunDir.of(deep_home).path == rundir.path  # the same home always maps to the same place
    assert rundir.logs == deep_home.resolve() / "logs" and mode(rundir.logs) == 0o700


def test_a_run_directory_that_is_a_symlink_is_refused_and_nothing_is_made_through_it(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    private_dirs(home)
    (home / "run").symlink_to(elsewhere)
    with pytest.raises(SupervisorError, match=r"run directory .*/run: it is a symbolic link"):
        RunDir.of(home).create()
    assert list(elsewhere.iterdir()) == []


def test_a_run_directory_others_can_reach_is_refused_with_the_fix(tmp_path: Path) -> None:
    rundir = RunDir.of(tmp_path / "home").create()
    rundir.path.chmod(0o755)
    with pytest.raises(SupervisorError, match=r"its mode is 0755, not 0700 .*chmod 700"):
        rundir.check()
    with pytest.raises(SupervisorError, match="0755"):
        RunDir.of(tmp_path / "home").create()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_run_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    rundir = RunDir.of(tmp_path / "home").create()
    os.chown(rundir.path, 65534, 65534)
    with pytest.raises(SupervisorError, match="belongs to uid 65534, not to you"):
        rundir.check()


def test_private_files_are_0600_never_opened_through_a_symlink_and_tightened(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafePath, match="symbolic link"):
        open_private(tmp_path / "link", os.O_RDWR | os.O_CREAT)
    write_atomic(tmp_path / "link", b"new")  # replaces the link itself, never writes through it
    assert target.read_text() == "keep" and (tmp_path / "link").read_bytes() == b"new"
    assert mode(tmp_path / "link") == 0o600
    old = tmp_path / "old.log"
    old.write_text("x")
    old.chmod(0o644)
    with append_private(old) as handle:
        handle.write(b"y")
    assert mode(old) == 0o600
    with append_private(tmp_path / "new.log"):
        pass
    assert mode(tmp_path / "new.log") == 0o600


def test_the_home_and_database_are_private_and_an_old_open_home_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        reg.list_models()
        files = [home / n for n in ("registry.db", "registry.db-wal", "registry.db-shm")]
        assert mode(home) == 0o700 and [mode(f) for f in files] == [0o600] * 3
    home.chmod(0o755)
    (home / "registry.db").chmod(0o644)
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        reg.list_models()
        assert mode(home) == 0o700 and mode(home / "registry.db") == 0o600


def test_the_serving_token_is_made_private_and_long(tmp_path: Path) -> None:
    token = serving_token(tmp_path / "home")
    assert len(token) >= 32 and mode(tmp_path / "home" / "serving-token") == 0o600
    assert serving_token(tmp_path / "home") == token
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["serving-token"]  # no temp file left


@pytest.mark.parametrize(
    ("content", "file_mode", "message"),
    [
        ("", 0o600, "it is empty"),
        ("short\n", 0o600, "only 5 characters"),
        ("x" * 43 + "\n", 0o644, "mode 0644 lets others read it"),
    ],
)
def test_an_unusable_serving_token_is_refused(
    tmp_path: Path, content: str, file_mode: int, message: str
) -> None:
    path = tmp_path / "serving-token"
    path.write_text(content)
    path.chmod(file_mode)
    with pytest.raises(ServeError, match=f"refusing the serving token {path}: .*{message}.*rm {path}"):
        serving_token(tmp_path)
