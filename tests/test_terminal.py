"""The real `modeldeck console` and `modeldeck demo` in a pseudo-terminal, read through a terminal
emulator (tests/terminal.py): what is typed is on screen with a cursor, esc closes, the answer of
"serving at" is on screen however long the ledger, and quitting leaves no process behind.

Pilot tests (test_console*.py) see widgets; these see the screen, which is where a tall border over a
one-row input, or a line pushed below the footer, shows.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest
from helpers import wait_until
from terminal import Terminal, modeldeck

from registry import Registry

pytestmark = pytest.mark.slow

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
START = datetime(2026, 3, 2, 9, 0, 0)  # UTC; the child runs with TZ=UTC
LEDGER = 60  # events: taller than the screen at every size tested


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with two versions of `iris`, switched 60 times in turn: a ledger of 62 events a minute
    apart from 09:00 (two registrations, then version 1 at even minutes from 09:02, version 2 at odd
    ones, up to 10:01)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo

    path = tmp_path_factory.mktemp("terminal")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(path))
        with Registry(home=path) as reg:
            for c in (1.0, 0.5):
                reg.register(LogisticRegression(C=c).fit(X, y), "iris")
            for i in range(LEDGER):
                spec = DeploymentInfo("iris", "iris", 1 + i % 2, None, "127.0.0.1", 1, 1)
                save_deployment(reg, spec, "switched", from_version=2 - i % 2, reason=f"step {i}")
    with sqlite3.connect(path / "registry.db") as conn:
        ids = [row[0] for row in conn.execute("SELECT rowid FROM event ORDER BY rowid")]
        for index, row_id in enumerate(ids):
            moment = (START + timedelta(minutes=index)).isoformat(sep=" ")
            conn.execute("UPDATE event SET at = ? WHERE rowid = ?", (moment, row_id))
    return path


def _env(home: Path) -> dict[str, str | None]:
    environment: dict[str, str | None] = {
        "MODELDECK_HOME": str(home),
        "MODELDECK_DB_URL": None,
        "MODELDECK_CONFIG": str(home / "no-settings.toml"),
        "TZ": "UTC",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    return environment


def _console(home: Path, size: str) -> Terminal:
    # no supervisor is started: the console browses, and `q` must leave nothing running
    term = Terminal(modeldeck("console", "--refresh", "0.5"), size=SIZES[size], env=_env(home))
    term.wait_for("iris")  # the models view has its first rows
    return term


def _typed(term: Terminal, text: str) -> int:
    """The row where `text` (just typed) shows with the cursor drawn right after it; fails if it never
    does (the cursor blinks: it is waited for)."""

    found: list[int] = []

    def shown() -> bool:
        for y, line in enumerate(term.lines()):
            cursor = term.cursor(y) if text in line else None
            if cursor is not None and cursor[0] == line.index(text) + len(text):
                found[:] = [y]
                return True
        return False

    term.wait_until(shown, f"{text!r} typed, with the cursor after it, never showed")
    return found[0]


def _quits(term: Terminal) -> None:
    """`q` ends the console with status 0, leaving no process of its own behind."""
    pid = term.child.pid
    term.send("q")
    assert term.wait_exit() == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("size", SIZES)
def test_every_input_shows_the_text_and_a_cursor_and_esc_closes_it(home: Path, size: str) -> None:
    with _console(home, size) as term:
        # `/`: the filter over the models list
        term.send("/")
        term.wait_for("/ filter models")  # its hint, on a row of its own
        term.send("nomatch")
        row = _typed(term, "nomatch")
        assert term.row_of("MODEL") == row + 1  # right above the list, not over the title or the list
        term.wait_gone(" iris ")  # it filters as it is typed
        term.send("escape")
        term.wait_for(" iris ")  # esc clears it: the whole list is back ...
        term.wait_gone("nomatch")  # ... and the filter is gone
        term.send("2")  # the focus went back to the list: a view key is a key again, not text
        term.wait_for("DEPLOYMENT")

        # a question keeps its view visible behind it (dimmed), and esc leaves the view as it was
        term.send("s")
        term.wait_for("Stop iris (iris:2 on 127.0.0.1:1)?")
        assert "DEPLOYMENT" in term.text() and "iris:2" in term.text()
        term.send("escape")
        term.wait_gone("Stop iris")

        # `:`: the command line, above the footer
        term.send(":")
        _typed(term, ":")
        term.send("deploy iris:1")
        row = _typed(term, ":deploy iris:1")
        assert row == SIZES[size][1] - 2  # the footer keeps the last row
        term.send("escape")
        term.wait_gone(":deploy iris:1")
        term.send("3")
        term.wait_for("WHEN")

        # `t`: the time prompt of the events view
        term.send("t")
        _typed(term, ":at ")  # opened with the start of the command (keys are typed once it shows)
        term.send("09:30")
        _typed(term, ":at 09:30")
        term.send("escape")
        term.wait_gone(":at 09:30")
        term.send("1")
        term.wait_for("MODEL")
        _quits(term)


@pytest.mark.parametrize("size", SIZES)
def test_serving_at_is_on_screen_however_long_the_ledger(home: Path, size: str) -> None:
    with _console(home, size) as term:
        term.send("3")
        term.wait_for("WHEN")
        term.wait_for("serving at 2026-03-02 10:01:00: iris → iris:2")  # at the newest event
        term.send("t")
        _typed(term, ":at ")  # the command line is open before it is typed into (keys sent earlier are lost)
        term.send("2026-03-02T09:30:30", "enter")  # the switch of 09:30 was to version 1
        term.wait_for("serving at 2026-03-02 09:30:30: iris → iris:1")
        term.send(":")
        _typed(term, ":")  # the command line is open before it is typed into, as a person sees it
        term.send("at 2026-03-02T09:31:10", "enter")
        term.wait_for("serving at 2026-03-02 09:31:10: iris → iris:2")
        _quits(term)


def test_a_firing_alert_is_named_in_the_banner_and_its_questions_show_what_is_typed(
    home: Path, tmp_path: Path
) -> None:
    """The banner names the alert and why, the alerts view lists it, and the silence and objectives
    questions show what is typed with a cursor (a copy of `home` with one alert, as the supervisor
    writes it)."""
    import shutil

    from registry import alert_outbox as outbox
    from registry import alerts
    from registry.serving.alerting import payload

    copy = tmp_path / "alerted"
    shutil.copytree(home, copy)
    with Registry(home=copy) as reg:
        outbox.save_transition(
            reg,
            None,
            alerts.FIRING,
            deployment="iris",
            model="iris",
            version=2,
            kind=alerts.LATENCY,
            severity="critical",
            reason="slow",
            figures={"summary": "12.00% bad over 5m; burn 12.0x"},
            url=None,
            payload=payload,
        )
    with _console(copy, "80x24") as term:  # the narrowest: the banner wraps, the question fits
        term.wait_for("ALERT iris: latency firing: 12.00% bad over 5m")
        term.wait_for("! iris")  # the models list marks the model (it may be drawn after the banner)
        term.send("4")
        term.wait_for("FIRING")
        term.send("z")
        term.wait_for("Silence iris's alerts for (then why):")
        term.send("2h fixing it")
        _typed(term, "2h fixing it")
        term.send("escape")
        term.wait_gone("2h fixing it")
        term.send("o")
        term.wait_for("Objectives of iris")
        term.send("latency=250ms")
        _typed(term, "latency=250ms")
        term.send("escape")
        term.wait_gone("latency=250ms")
        _quits(term)


def test_the_demo_starts_without_a_false_alarm_and_quitting_leaves_nothing_running(tmp_path: Path) -> None:
    """`modeldeck demo --home D`, twice (the second start finds its deployments in the registry,
    stopped): while the console itself starts the supervisor there is no "not running" banner, `q`
    stops the traffic, the servers and the supervisor (no process of the demo's home is left), and what
    is left on the terminal says where the demo's registry is and how to open it again."""
    demo = tmp_path / "demo"
    for _run in ("first", "again"):
        with Terminal(modeldeck("demo", "--home", str(demo)), size=(80, 24), env=_env(tmp_path)) as term:
            seen: list[str] = []

            def serving(term: Terminal = term, seen: list[str] = seen) -> bool:
                seen.append(term.text())
                return "running" in term.text()

            term.wait_until(lambda: seen.append(term.text()) or "iris" in term.text(), "no models", 120)  # noqa: B023
            term.send("2")
            term.wait_until(serving, "the demo deployments never showed running", 120)
            alarms = [screen for screen in seen if "not running" in screen]
            assert not alarms, alarms[0]
            term.send("q")
            assert term.wait_exit(60) == 0
            left_on_screen = "".join(term.lines())  # rows joined as the terminal wrapped them
            assert f"demo registry: {demo} (its servers are stopped)" in left_on_screen, term.text()
            assert f"--home {demo} console" in left_on_screen, term.text()

        def left_running() -> list[int]:
            return [
                p.info["pid"]
                for p in psutil.process_iter(["pid", "cmdline", "status"])
                if str(tmp_path) in " ".join(p.info["cmdline"] or [])
                and p.info["status"] != psutil.STATUS_ZOMBIE
            ]

        # a worker the supervisor stopped may take a moment to be reaped after the console's exit
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not left_running(), 10, "the demo's processes to exit")
        left = left_running()
        for pid in left:  # (cleaned up, so a failure does not leak into the next tests)
            os.kill(pid, 9)
        assert left == []
