"""The footer: Textual's, made to fit narrow terminals without losing the keys that matter.

When the keys need more room than the terminal has, it switches to the compact style, then hides
keys in the order of `HIDE_FIRST` (the command palette, pause, ...); `?` help and `q` quit stay, and
`?` lists everything hidden here.

Only Textual's public API: the keys are read from the screen's active bindings (what `Footer` shows:
the first shown binding of each action, then the command palette's), and their widgets are the
footer's `FooterKey` children in the same order.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.cells import cell_len
from textual.dom import NoScreen
from textual.widgets import Footer

#: Actions whose keys leave the footer first when it is too narrow (all are in `?` help).
HIDE_FIRST = ("command_palette", "pause", "view('events')", "view('models')", "view('deployments')")


class Key(NamedTuple):
    """One key the footer shows: its action, the key as shown, and what it does."""

    action: str
    display: str
    description: str


class FitFooter(Footer):
    def on_mount(self) -> None:
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.fit()

    _shown: tuple[object, ...] | None = None  # what the keys were last built from

    async def recompose(self) -> None:
        """The keys change with the focus and the screen: rebuild them only when what they show
        changed (Textual rebuilds on every bindings update, several times while the console starts,
        each time restyling every key), and fit them each time they are rebuilt."""
        if not self.is_attached:  # asked for after a refresh, once its screen was gone
            return
        try:
            shown = self._signature()
        except NoScreen:
            return
        if shown == self._shown and self.children:
            return
        self._shown = shown
        await super().recompose()
        self.call_after_refresh(self.fit)

    def _signature(self) -> tuple[object, ...]:
        """Everything of the active bindings that `Footer.compose` shows."""
        keys = (
            (b.key, self.app.get_key_display(b), b.description, b.action, b.group, enabled, tooltip)
            for key, (_node, b, enabled, tooltip) in self.screen.active_bindings.items()
            if b.show or key == self.app.COMMAND_PALETTE_BINDING
        )
        return (*keys, self.show_command_palette, self.app.ENABLE_COMMAND_PALETTE)

    def keys(self) -> list[Key]:
        """The keys the footer shows, in its order."""
        active = self.screen.active_bindings
        by_action: dict[str, Key] = {}
        for _node, binding, _enabled, _tooltip in active.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = Key(
                    binding.action, self.app.get_key_display(binding), binding.description
                )
        keys = list(by_action.values())
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and palette is not None:
            binding = palette.binding
            keys.append(Key(binding.action, self.app.get_key_display(binding), binding.description))
        return keys

    def fit(self) -> None:
        if not self.is_attached:  # (a fit asked for after a refresh may come once its screen is gone)
            return
        widgets = list(self.query("FooterKey"))
        keys = self.keys()
        if len(widgets) != len(keys):  # not rebuilt yet for these bindings: the rebuild fits again
            return
        room = self.size.width or self.app.size.width
        for widget in widgets:
            widget.display = True
        self.compact = self._width(keys, compact=False) > room
        shown = dict(zip(keys, widgets, strict=True))
        for action in HIDE_FIRST:
            if self._width(list(shown), self.compact) <= room:
                break
            for key in [k for k in shown if k.action == action]:
                shown.pop(key).display = False

    @staticmethod
    def _width(keys: list[Key], compact: bool) -> int:
        """Cells the keys take: key, description and the padding or margins around them."""
        extra = 2 if compact else 3
        return sum(cell_len(k.display) + cell_len(k.description) + extra for k in keys)
