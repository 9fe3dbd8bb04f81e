"""The themes survive a 256-colour terminal (what SSH usually gives): no two surfaces become one."""

from __future__ import annotations

from itertools import combinations

import pytest
from rich.color import Color, ColorSystem

from themes import THEMES

SURFACES = ("background", "surface", "panel")


def xterm(colour: str) -> int:
    """The xterm-256 palette index a truecolour is shown as under `TEXTUAL_COLOR_SYSTEM=256`."""
    number = Color.parse(colour).downgrade(ColorSystem.EIGHT_BIT).number
    assert number is not None
    return number


@pytest.mark.parametrize("name", THEMES)
def test_surfaces_stay_distinct_in_256_colours(name: str) -> None:
    theme = THEMES[name]
    for a, b in combinations(SURFACES, 2):
        assert xterm(str(theme[a])) != xterm(str(theme[b])), f"{name}: {a} and {b} merge in 256 colours"


@pytest.mark.parametrize("name", THEMES)
def test_derived_surfaces_stay_distinct_in_256_colours(name: str) -> None:
    """The shades Textual derives (zebra stripes, cursor, panels) from each theme, quantized."""
    from textual.theme import Theme

    colours = Theme(name=name, **THEMES[name]).to_color_system().generate()  # type: ignore[arg-type]
    for a, b in (
        ("background", "surface"),
        ("surface", "panel"),
        ("surface", "surface-lighten-1"),
        ("surface", "surface-darken-1"),
        ("surface", "block-cursor-background"),
        ("panel", "block-cursor-background"),
    ):
        assert xterm(colours[a]) != xterm(colours[b]), f"{name}: {a} and {b} merge in 256 colours"


def test_a_merge_is_caught() -> None:
    """The check can fail: two near-blacks that differ in truecolour are one xterm colour."""
    assert "#0c0c0c" != "#070707" and xterm("#0c0c0c") == xterm("#070707")
