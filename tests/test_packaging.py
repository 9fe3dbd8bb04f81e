"""The built wheel carries everything an installed modeldeck needs: themes, migrations, the command."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("modeldeck-*.whl")
    return built


def test_wheel_ships_themes_migrations_and_the_command(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "themes/__init__.py",
        "themes/console.tcss",
        "registry/migrations/env.py",
        "registry/migrations/script.py.mako",
        "registry/migrations/versions/0001_initial.py",
        "registry/monitoring/grafana/modeldeck.json",
        "registry/monitoring/prometheus/rules.yml",
        "console/cli.py",
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    # the read verbs run without importing Typer or the ORM (console/quick.py), the rest via console.cli
    assert "modeldeck = console.quick:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_finds_its_stylesheet(wheel: Path, tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir)  # without pip of its own (ensurepip is most of the test's time): this one installs
    python = env_dir / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(install, check=True)
    found = subprocess.run(
        [python, "-c", "import themes; print(themes.stylesheet())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert found.startswith(str(env_dir)) and Path(found).read_text().strip()
