"""What the overview screens share: a poll that never overlaps, and running actions off the UI thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header

from console.messages import LoadFailed, OverviewLoaded
from registry.errors import RegistryError

if TYPE_CHECKING:
    from console.app import ModeldeckApp
    from console.backend import Overview


class OverviewScreen(Screen[None]):
    """Polls the back end every `app.refresh_seconds`; the next poll is scheduled when one finishes."""

    DEFAULT_CSS = """
    OverviewScreen #bottom { dock: bottom; height: auto; }
    OverviewScreen #bottom > FitFooter { dock: none; }
    """

    _timer: Timer | None = None

    @property
    def deck(self) -> ModeldeckApp:
        return cast("ModeldeckApp", self.app)  # screens only run inside the modeldeck app

    def compose(self) -> ComposeResult:
        from console.widgets.banner import Banner
        from console.widgets.command_line import CommandLine
        from console.widgets.footer import FitFooter

        yield Header()
        yield Banner(id="banner", markup=False)
        yield from self.body()
        with Vertical(id="bottom"):  # the command line sits above the footer, never over it
            yield CommandLine()
            yield FitFooter()

    def body(self) -> ComposeResult:
        """The screen's own widgets, between the banner and the footer."""
        yield from ()

    def on_mount(self) -> None:
        self._poll_unless_polling()

    def on_screen_resume(self) -> None:
        self.deck.update_banner()
        self._poll_unless_polling()

    def _poll_unless_polling(self) -> None:
        """Poll, unless a poll of this screen is already under way: showing a new mode's screen sends
        it a mount and two resumes at once, and three overlapping polls slowed the first screen."""
        if not any(w.node is self and w.group == "poll" and not w.is_finished for w in self.app.workers):
            self.poll()

    @work(thread=True, group="poll", exclusive=True, exit_on_error=False)
    def poll(self) -> None:
        try:
            overview = self.load()
        except RegistryError as exc:  # e.g. the database is locked: say so and try again later
            self.post_message(LoadFailed(str(exc)))
        else:
            self.post_message(OverviewLoaded(overview))

    @on(OverviewLoaded)
    def _loaded(self, message: OverviewLoaded) -> None:
        self.deck.overview_arrived(message.overview)
        self.show(message.overview)
        self._schedule()

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        self.deck.set_problem(f"cannot read the registry: {message.error}")
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if not self.deck.paused:
            self._timer = self.set_timer(self.deck.refresh_seconds, self.poll)

    def load(self) -> Overview:
        """Fetch what this screen shows (in the poll's worker thread)."""
        return self.deck.backend.overview()

    def show(self, overview: Overview) -> None:
        """Put the overview on screen (each screen its own way)."""
