"""The footer: Textual's, made to fit narrow terminals without losing the keys that matter.

When the keys need more room than the terminal has, it switches to the compact style, then hides
keys in the order of `HIDE_FIRST` (the command palette, pause, ...); `?` help and `q` quit stay, and
`?` lists everything hidden here.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

#: Actions whose keys leave the footer first when it is too narrow (all are in `?` help).
HIDE_FIRST = ("command_palette", "pause", "view('events')", "view('models')", "view('deployments')")


class FitFooter(Footer):
    def on_mount(self) -> None:
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.fit()

    async def recompose(self) -> None:
        """The keys change with the focus and the screen: fit them each time they are rebuilt."""
        await super().recompose()
        self.call_after_refresh(self.fit)

    def fit(self) -> None:
        keys = list(self.query(FooterKey))
        room = self.size.width or self.app.size.width
        for key in keys:
            key.display = True
        self.compact = self._width(keys, compact=False) > room
        shown = list(keys)
        for action in HIDE_FIRST:
            if self._width(shown, self.compact) <= room:
                break
            for key in [k for k in shown if k.action == action]:
                key.display = False
                shown.remove(key)

    @staticmethod
    def _width(keys: list[FooterKey], compact: bool) -> int:
        """Cells the keys take: key, description and the padding or margins around them."""
        extra = 2 if compact else 3
        return sum(cell_len(k.key_display) + cell_len(k.description) + extra for k in keys)
