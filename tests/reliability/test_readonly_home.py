"""A read-only home can be browsed: the database opens read-only, writes say why they cannot.

The home is made read-only the way root cannot get around: a read-only bind mount of it. Figures
asserted: browse verbs that answer (5 of 5: models, versions, show, history, export), and writes
(register, deploy) refused with exit 1 and one line naming the read-only file system.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import faults
import pytest

from registry import Registry

BROWSE = [("models",), ("versions", "iris"), ("show", "iris@champion"), ("history", "iris")]


@pytest.fixture
def ro_home(tmp_path: Path, iris, iris_model) -> Iterator[tuple[Path, Path]]:
    """(the home, a read-only bind mount of it) holding iris:1 with a reference and an alias."""
    if os.geteuid() != 0:
        pytest.skip("reliability test skipped: a read-only bind mount needs root (CI runs as root)")
    home, view = tmp_path / "home", tmp_path / "ro-home"
    with Registry(home=home) as reg:
        reg.register(iris_model, "iris", reference=iris[0], alias="champion")
    view.mkdir()
    for command in (["mount", "--bind", str(home), str(view)], ["mount", "-o", "remount,bind,ro", str(view)]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", str(view)], capture_output=True, check=False)
            pytest.skip(
                f"reliability test skipped: cannot make a read-only bind mount: {done.stderr.strip()}"
            )
    try:
        yield home, view
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True, check=False)


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    return subprocess.run(
        faults.modeldeck(*args), capture_output=True, text=True, env=env, timeout=120, check=False
    )


def browse_and_write(view: Path, tmp_path: Path, skops_file: Path, everything: bool = True) -> None:
    answered = 0
    verbs = [*BROWSE, ("export", "iris:1", str(tmp_path / "out.mdx"))]
    for verb in verbs if everything else verbs[2:3]:
        done = cli(*verb, home=view)
        assert done.returncode == 0, (verb, done.stderr)
        assert "iris" in done.stdout or "champion" in done.stdout
        answered += 1
    assert answered == (5 if everything else 1)
    writes = (("register", str(skops_file), "--name", "iris"), ("deploy", "iris"), ("tag", "iris", "a=b"))
    for verb in writes if everything else writes[:1]:
        done = cli(*verb, home=view)
        assert done.returncode == 1, (verb, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "is read-only" in errors[0] and "read-only file system" in errors[0], (
            done.stderr
        )
        assert "Traceback" not in done.stderr


@pytest.fixture
def skops_file(tmp_path: Path, iris_model) -> Path:
    import skops.io as sio

    path = tmp_path / "iris.skops"
    sio.dump(iris_model, path)
    return path


def test_an_idle_read_only_home_is_browsed_immutably(ro_home, tmp_path: Path, skops_file: Path) -> None:
    """No writer left a -shm file, and none can be made: the file is opened immutable, with a note."""
    home, view = ro_home
    assert not Path(f"{home}/registry.db-shm").exists()
    browse_and_write(view, tmp_path, skops_file)
    assert "immutable" in cli("models", home=view).stderr


def test_a_read_only_view_beside_a_live_writer_reads_through_its_wal(
    ro_home, tmp_path: Path, skops_file
) -> None:
    """A writer holds the WAL open (its -shm exists): the read-only view uses mode=ro and sees the
    writer's committed changes."""
    home, view = ro_home
    writer = sqlite3.connect(home / "registry.db")
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("UPDATE registered_model SET description = 'seen through the wal'")
        writer.commit()
        assert Path(f"{home}/registry.db-shm").exists()
        browse_and_write(view, tmp_path, skops_file, everything=False)
        done = cli("models", home=view)
        assert "seen through the wal" in done.stdout and "immutable" not in done.stderr
    finally:
        writer.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_console_browses_a_read_only_home_with_actions_off(ro_home) -> None:
    from console.app import ModeldeckApp

    _, view = ro_home
    app = ModeldeckApp(view, refresh_seconds=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        assert app.read_only
        table = app.screen.query_one("#models")
        assert table.row_count == 1 and table.get_row_at(0)[0] == "iris"
