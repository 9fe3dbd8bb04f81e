"""Terminal escape injection: registry text with ESC/OSC/C1 bytes never reaches the terminal.

A version's description, tags and metric names (and whatever an imported archive carried) are
anyone's text. Figure asserted: control bytes (ESC, BEL, C1) in what the CLI prints and what the
console draws: 0.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import faults
import pytest
from typer.testing import CliRunner

from registry import Registry

EVIL = "evil\x1b]0;pwned\x07 and\x1b[2J\x9b31m done"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
def hostile_home(tmp_path: Path, iris_model, iris, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELDECK_HOME", str(home))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    with Registry(home=home) as reg:
        reg.register(
            iris_model,
            "iris",
            reference=iris[0],
            description=EVIL,
            tags={"team": EVIL, "[bold]x": "[link=http://x]y"},
            metrics={EVIL: 0.5},
        )
        reg.register(iris_model, "iris", description=EVIL, tags={"team": "x" + EVIL}, metrics={EVIL: 0.6})
        reg.tag("iris", {"owner": EVIL})
        reg.describe("iris", EVIL)
        reg.record_event("iris", "tagged", reason=EVIL)
    return home


VERBS = [("show", "iris:2"), ("versions", "iris"), ("models",), ("history", "iris"), ("show", EVIL)]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: v[0] + ("-error" if EVIL in v else ""))
def test_cli_prints_no_control_characters(hostile_home: Path, verb: tuple[str, ...]) -> None:
    from console.cli import app

    result = CliRunner().invoke(app, list(verb))
    printed = result.stdout + result.stderr
    assert "evil" in printed  # the text is shown, less its control characters
    assert CONTROL.findall(printed) == []


def test_cli_in_a_terminal_process_prints_no_injected_escape(hostile_home: Path) -> None:
    """A real process: the only ESC bytes are Rich's own styling (SGR `ESC[...m`), never the OSC
    title sequence, the screen clear or the C1 CSI of the registry's text."""
    env = {**os.environ, "MODELDECK_HOME": str(hostile_home), "FORCE_COLOR": "1", "TERM": "xterm"}
    for verb in VERBS:
        done = subprocess.run(faults.modeldeck(*verb), capture_output=True, env=env, timeout=60, check=False)
        printed = (done.stdout + done.stderr).decode()
        assert "evil" in printed, printed
        without_styling = re.sub("\x1b\\[[0-9;]*m", "", printed)
        assert CONTROL.findall(without_styling) == [], (verb, printed)
        assert "pwned\x07" not in printed and "\x1b]" not in printed and "\x1b[2J" not in printed


@pytest.mark.anyio
async def test_console_draws_no_control_characters(hostile_home: Path) -> None:
    from console.app import ModeldeckApp

    app = ModeldeckApp(hostile_home, refresh_seconds=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        screens = []
        for keys in ((), ("enter",), ("c",)):  # models, versions (details pane), diff
            await pilot.press(*keys)
            await pilot.pause(0.5)
            await app.workers.wait_for_complete()
            await pilot.pause(0.2)
            screens.append(app.export_screenshot())
        from console.screens.diff import DiffScreen

        assert isinstance(app.screen, DiffScreen)
        app.notify(f"failed: {EVIL}")
        await pilot.pause(0.1)
        screens.append(app.export_screenshot())
    drawn = "".join(screens)
    assert "evil" in drawn
    assert CONTROL.findall(drawn) == [], sorted(set(CONTROL.findall(drawn)))
    assert "[bold]x" in drawn  # markup in registry text is shown, not applied


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
