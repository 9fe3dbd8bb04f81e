"""The console's settings file: defaults for `modeldeck console` and `modeldeck demo`; flags win.

`$MODELDECK_CONFIG`, else `console.toml` in the platform's user config directory
(`~/.config/modeldeck/console.toml` on Linux):

    read_only = true           # deploy, roll back, stop and aliases are off
    refresh = 2.0              # seconds between refreshes
    theme = "modeldeck-light"  # modeldeck-dark, modeldeck-light, modeldeck-contrast
    ascii = true               # ASCII chart markers and frames
    mouse = false
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from registry.errors import RegistryError


class ConfigError(RegistryError):
    """The settings file cannot be read or has a wrong key or value (the message names it)."""


@dataclass(frozen=True)
class ConsoleConfig:
    read_only: bool = False
    refresh: float = 1.0
    theme: str = "modeldeck-dark"
    ascii: bool = False
    mouse: bool = True


_TYPES: dict[str, type] = {"read_only": bool, "refresh": float, "theme": str, "ascii": bool, "mouse": bool}


def _fits(value: object, wanted: type) -> bool:
    if wanted is float:  # TOML's 2 is as good as 2.0; true is not a number here
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, wanted)


def config_path() -> Path:
    """Where the settings file is looked for."""
    if os.environ.get("MODELDECK_CONFIG"):
        return Path(os.environ["MODELDECK_CONFIG"]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("modeldeck", appauthor=False)) / "console.toml"


def load_config(path: Path | None = None) -> ConsoleConfig:
    """The settings in `path` (default: `config_path()`); defaults when there is no such file."""
    path = path or config_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return ConsoleConfig()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    for key, value in raw.items():
        if key not in _TYPES:
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(_TYPES)}")
        if not _fits(value, _TYPES[key]):
            raise ConfigError(f"{path}: {key} = {value!r} is not {_TYPES[key].__name__}")
    return _checked(ConsoleConfig(**raw), f"{path}: ", "refresh")


def with_flags(
    config: ConsoleConfig,
    *,
    read_only: bool = False,
    refresh: float | None = None,
    theme: str | None = None,
    ascii: bool = False,
    no_mouse: bool = False,
) -> ConsoleConfig:
    """The settings after the command line's flags: a flag given wins over the file."""
    merged = ConsoleConfig(
        read_only=read_only or config.read_only,
        refresh=config.refresh if refresh is None else refresh,
        theme=theme or config.theme,
        ascii=ascii or config.ascii,
        mouse=config.mouse and not no_mouse,
    )
    return _checked(merged, "", "--refresh")


def _checked(config: ConsoleConfig, where: str, refresh: str) -> ConsoleConfig:
    """`config` if its values make sense; else a ConfigError naming `where` and the setting."""
    from themes import THEMES

    if config.refresh <= 0:
        raise ConfigError(f"{where}{refresh} must be a positive number of seconds")
    if config.theme not in THEMES:
        raise ConfigError(f"{where}unknown theme {config.theme!r}; known: {', '.join(THEMES)}")
    return config
