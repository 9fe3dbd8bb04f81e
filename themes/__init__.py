"""modeldeck's Textual themes and stylesheets, shipped inside the wheel.

Plain data only, so importing it never pulls in Textual; `console.app` turns these into themes.
"""

from __future__ import annotations

from pathlib import Path

THEMES_DIR = Path(__file__).parent


def stylesheet(name: str = "console") -> Path:
    """The path of a bundled `.tcss` stylesheet; raises FileNotFoundError if it is not shipped."""
    path = THEMES_DIR / f"{name}.tcss"
    if not path.is_file():
        raise FileNotFoundError(f"modeldeck stylesheet {name!r} is missing from {THEMES_DIR}")
    return path


#: Colour themes by name; the keys are Textual `Theme` arguments. Readable in 256 colours.
THEMES: dict[str, dict[str, object]] = {
    "modeldeck-dark": {
        "primary": "#5fafff",
        "secondary": "#87d787",
        "accent": "#ffaf5f",
        "warning": "#ffd75f",
        "error": "#ff5f5f",
        "success": "#5fd75f",
        "background": "#121212",
        "surface": "#1c1c1c",
        "panel": "#262626",
        "dark": True,
    },
    "modeldeck-light": {
        "primary": "#005faf",
        "secondary": "#008700",
        "accent": "#af5f00",
        "warning": "#af8700",
        "error": "#d70000",
        "success": "#008700",
        "background": "#eeeeee",
        "surface": "#dadada",
        "panel": "#c6c6c6",
        "dark": False,
    },
    "modeldeck-contrast": {
        "primary": "#00ffff",
        "secondary": "#00ff00",
        "accent": "#ffff00",
        "warning": "#ffff00",
        "error": "#ff0000",
        "success": "#00ff00",
        "foreground": "#ffffff",
        "background": "#000000",
        "surface": "#1c1c1c",
        "panel": "#3a3a3a",
        "dark": True,
    },
}
