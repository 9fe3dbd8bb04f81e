"""The console's terminal options: ASCII charts (`--ascii`, MODELDECK_ASCII, a non-UTF-8 locale) and
`--no-mouse`; no supervisor and no terminal needed."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from console.cli import app as cli

SERIES = {
    "req/s": [40 + 10 * math.sin(i / 9) for i in range(120)],
    "errors/s": [float(i % 17 == 0) for i in range(120)],
    "p99": [None if i < 5 else 7.0 + math.cos(i / 7) for i in range(120)],
}


def _chart(**options: object) -> str:
    from console.widgets.chart import render_chart

    return render_chart("requests/s", SERIES, 60, 14, thresholds={"limit": 45.0}, **options).plain  # type: ignore[arg-type]


def test_ascii_charts_are_ascii_only_and_keep_their_series_apart() -> None:
    text = _chart(ascii=True)
    assert text.isascii(), sorted({c for c in text if not c.isascii()})
    assert "*" in text and "o" in text and "x" in text  # one marker per series
    assert "requests/s" in text


def test_default_charts_use_high_resolution_markers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDECK_ASCII", "0")
    assert not _chart().isascii()  # the check above would notice unicode


@pytest.mark.parametrize(
    ("env", "encoding", "wanted"),
    [
        ("1", "UTF-8", True),
        ("yes", "UTF-8", True),
        ("0", "ANSI_X3.4-1968", False),  # asked for explicitly: the locale does not override it
        ("", "ANSI_X3.4-1968", True),  # LANG=C and friends
        ("", "UTF-8", False),
    ],
)
def test_ascii_is_chosen_by_the_variable_or_the_locale(
    monkeypatch: pytest.MonkeyPatch, env: str, encoding: str, wanted: bool
) -> None:
    import locale

    from console.widgets.chart import ascii_wanted

    monkeypatch.setenv("MODELDECK_ASCII", env)
    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: encoding)
    assert ascii_wanted() is wanted


@pytest.mark.parametrize(
    ("args", "ascii_env", "mouse"),
    [
        ([], "0", True),
        (["--ascii"], "1", True),
        (["--no-mouse"], "0", False),
    ],
)
def test_console_passes_ascii_and_mouse_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path, args: list[str], ascii_env: str, mouse: bool
) -> None:
    import os

    from console.app import ModeldeckApp

    ran: dict[str, object] = {}
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path))
    monkeypatch.setenv("MODELDECK_CONFIG", str(tmp_path / "no-settings.toml"))
    monkeypatch.setenv("MODELDECK_ASCII", "0")  # (restored after the test: the CLI sets it for the process)
    monkeypatch.setattr(ModeldeckApp, "run", lambda self, **kw: ran.update(kw))
    monkeypatch.setattr("console.cli._stdout_is_terminal", lambda: True)
    result = CliRunner().invoke(cli, ["console", *args])
    assert result.exit_code == 0, result.output
    assert ran == {"mouse": mouse}
    assert os.environ.get("MODELDECK_ASCII") == ascii_env


def test_the_settings_file_turns_on_read_only_and_turns_off_the_mouse(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from console.app import ModeldeckApp

    settings = tmp_path / "console.toml"
    settings.write_text('read_only = true\nmouse = false\ntheme = "modeldeck-contrast"\n')
    ran: dict[str, object] = {}
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path))
    monkeypatch.setenv("MODELDECK_CONFIG", str(settings))
    monkeypatch.setattr(
        ModeldeckApp, "run", lambda self, **kw: ran.update(kw, read_only=self.read_only, theme=self.theme)
    )
    monkeypatch.setattr("console.cli._stdout_is_terminal", lambda: True)
    result = CliRunner().invoke(cli, ["console"])
    assert result.exit_code == 0, result.output
    assert ran == {"mouse": False, "read_only": True, "theme": "modeldeck-contrast"}


def test_the_console_in_a_real_terminal_quits_cleanly_when_the_terminal_hangs_up(tmp_path) -> None:
    """An SSH session that drops sends SIGHUP: the console must exit normally (so `modeldeck demo` stops
    its traffic and servers in its `finally`), not die by the signal."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    leader, follower = pty.openpty()
    env = {**os.environ, "MODELDECK_HOME": str(tmp_path), "MODELDECK_CONFIG": str(tmp_path / "none.toml")}
    env.pop("MODELDECK_DB_URL", None)
    console = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "console"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    while b"Models" not in seen and time.monotonic() < deadline:  # the footer is drawn: it runs
        if select.select([leader], [], [], 0.2)[0]:
            try:
                seen += os.read(leader, 65536)
            except OSError:
                break
    try:
        assert b"Models" in seen, seen[-500:]
        console.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while console.poll() is None and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    os.read(leader, 65536)  # keep the terminal drained while it shuts down
                except OSError:
                    break
        assert console.wait(timeout=5) == 0  # an exit of its own, not -SIGHUP
    finally:
        if console.poll() is None:
            console.kill()
        os.close(leader)


def _latency(**options: object):  # type: ignore[no-untyped-def]
    """p50/p95/p99 of two versions (v1, then v2 after 80 s): six series, as the monitor draws them."""
    from console.widgets.chart import render_chart

    series = {
        f"{q} v{v}": [None if (i < 80) != (v == 1) else v + level + math.sin(i / 9) for i in range(120)]
        for level, q in enumerate(("p50", "p95", "p99"))
        for v in (1, 2)
    }
    return render_chart("latency (ms)", series, 70, 18, xs=[i - 119.0 for i in range(120)], **options)


def test_every_series_has_its_own_basic_colour_and_a_legend_that_covers_no_data() -> None:
    from rich.color import ColorType

    chart = _latency(ascii=False)
    lines = chart.plain.splitlines()
    frame = next(i for i, line in enumerate(lines) if "┌" in line)
    legend = "\n".join(lines[1:frame])
    assert all(f"{q} v{v}" in legend for q in ("p50", "p95", "p99") for v in (1, 2))
    assert not any("v1" in line or "v2" in line for line in lines[frame:])  # nothing written over the plot
    colours = {
        span.style.color.number
        for span in chart.spans
        if not isinstance(span.style, str) and span.style.color and span.start > len("\n".join(lines[:frame]))
    }
    # six lines, six colours, each one of the 16 basic ANSI colours (the same in 16 and 256 colours)
    assert len(colours) == 6 and all(n is not None and n < 16 for n in colours), colours
    assert all(
        span.style.color.type in (ColorType.STANDARD, ColorType.EIGHT_BIT)
        for span in chart.spans
        if not isinstance(span.style, str) and span.style.color
    )
    ascii_chart = _latency(ascii=True).plain
    assert all(f"{marker} p" in ascii_chart for marker in "*ox#%@")  # a marker of its own per series


def test_axes_start_at_zero_and_time_ticks_are_round_and_say_ago() -> None:
    import re

    from console.widgets.chart import ago, render_chart, time_ticks

    quiet = render_chart(
        "errors (%)", {"4xx+5xx %": [0.0] * 60}, 60, 12, xs=[i - 59.0 for i in range(60)]
    ).plain
    numbers = [float(n) for n in re.findall(r"^\s*(-?[\d.]+)\s*[┤+]", quiet, re.M)]
    assert min(numbers) == 0 and max(numbers) > 0  # 0 to 1 %, not -1 to 1
    ticks = time_ticks(-300.0, 6)
    assert [label for _, label in ticks] == ["5m ago", "4m ago", "3m ago", "2m ago", "1m ago", "now"]
    assert all(position == int(position) for position, _ in ticks)
    assert "ago" in quiet and "now" in quiet and not re.search(r"-\d+\.\d", quiet)
    assert (ago(0), ago(45), ago(120), ago(90), ago(3600)) == (
        "now",
        "45s ago",
        "2m ago",
        "1m30s ago",
        "1h ago",
    )
