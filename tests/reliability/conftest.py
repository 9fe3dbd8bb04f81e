"""The reliability suite: the attacks and faults of the adversarial run, kept as tests.

Every test under `tests/reliability/` is marked `reliability` and asserts a figure: requests lost,
bytes grown, seconds to recover. The fixtures here give what the attacks need: another local user
(`nobody`), a small full disk (a tmpfs), and a child process under a memory limit. Each skips,
saying why, only where this machine cannot give it (not root); CI runs as root, where none skip.

The default suite leaves this tier out (pyproject's `addopts`: `-m 'not reliability'`); run it with
`python -m pytest -m reliability`. A path into it on the command line runs what it names
(`python -m pytest tests/reliability/test_switch.py`). CI runs the tier after the default suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
NOBODY_UID = 65534
NOBODY_GID = 65534


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.reliability)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"reliability test skipped: {what} needs root (CI runs as root)")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every local user can reach (pytest's own tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="md-shared-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def as_nobody() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run(argv, **kwargs)`: run a command as the unprivileged user `nobody` (uid 65534).

    For an attacker's Python use `[faults.SYSTEM_PYTHON, "-c", code]` (stdlib only)."""
    _need_root("acting as the user nobody")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("reliability test skipped: setpriv (util-linux) is missing")

    def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        command = [
            setpriv,
            f"--reuid={NOBODY_UID}",
            f"--regid={NOBODY_GID}",
            "--clear-groups",
            "--",
            *argv,
        ]
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("env", {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"})
        return subprocess.run(command, check=False, **kwargs)

    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """`mount(size_bytes)`: a fresh tmpfs of that size (a disk that fills up), unmounted afterwards."""
    _need_root("mounting a small tmpfs")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"reliability test skipped: cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
