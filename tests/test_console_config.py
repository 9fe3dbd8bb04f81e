"""The console's settings file: defaults, values, flags winning, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from console.config import ConfigError, ConsoleConfig, load_config, with_flags


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "console.toml"
    path.write_text(text)
    return path


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "missing.toml") == ConsoleConfig()


def test_the_file_sets_defaults_and_flags_win(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'read_only = true\nrefresh = 2\ntheme = "modeldeck-light"\nascii = true\nmouse = false\n'
    )
    config = load_config(path)
    assert config == ConsoleConfig(
        read_only=True, refresh=2, theme="modeldeck-light", ascii=True, mouse=False
    )
    flagged = with_flags(config, refresh=0.5, theme="modeldeck-contrast")
    assert (flagged.refresh, flagged.theme, flagged.read_only, flagged.mouse) == (
        0.5,
        "modeldeck-contrast",
        True,
        False,
    )
    assert with_flags(ConsoleConfig(), read_only=True, no_mouse=True).read_only is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'red'\n", "unknown setting 'colour'; known: read_only, refresh"),
        ("refresh = 'fast'\n", "refresh = 'fast' is not float"),
        ("read_only = 1\n", "read_only = 1 is not bool"),
        ("refresh = true\n", "refresh = True is not float"),
        ("refresh = 0\n", "refresh must be a positive number"),
        ("theme = 'neon'\n", "unknown theme 'neon'; known: modeldeck-dark"),
        ("read_only = \n", "cannot read"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert message in str(caught.value) and str(tmp_path) in str(caught.value)


def test_the_console_command_refuses_a_bad_file_in_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELDECK_CONFIG", str(write(tmp_path, "theme = 'neon'\n")))
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["console"])
    assert result.exit_code == 1
    path = tmp_path / "console.toml"
    known = "modeldeck-dark, modeldeck-light, modeldeck-contrast"
    assert result.output.strip().splitlines() == [f"error: {path}: unknown theme 'neon'; known: {known}"]
