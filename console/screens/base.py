"""What the overview screens share: a poll that never overlaps, whose worker only reads and returns.

The poll's worker thread reads the registry (and the screen's own data, `fetch`) and posts what it read
in a message; the screen takes it in (`take`) and draws it (`show`) on the UI thread, in the handler.
A thread never writes the screen's attributes nor touches its widgets (tests/test_console_threads.py
checks that), so there is nothing to lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header
from textual.worker import Worker, WorkerState

from console.messages import LoadFailed, OverviewLoaded
from registry.errors import RegistryError

if TYPE_CHECKING:
    from console.app import ModeldeckApp
    from console.backend import Overview

#: what a screen reads besides the overview (the versions of a model, the ledger, new log lines...)
Extra = TypeVar("Extra")


class OverviewScreen(Screen[None], Generic[Extra]):
    """Polls the back end every `app.refresh_seconds`; the next poll is scheduled when one has been
    shown, and a poll asked for while one runs (a refresh key, a resume) runs right after it."""

    DEFAULT_CSS = """
    OverviewScreen #bottom { dock: bottom; height: auto; }
    OverviewScreen #bottom > FitFooter { dock: none; }
    """

    #: False: read once when shown and again only on the refresh key (what it shows does not change)
    LIVE: ClassVar[bool] = True
    #: whether a newer poll's message may replace one still waiting (False when each carries news
    #: the next does not repeat, such as new log lines)
    REPLACEABLE: ClassVar[bool] = True

    _timer: Timer | None = None
    _polling = False  # a poll's worker is under way (set and cleared on the UI thread only)
    _again = False  # a poll was asked for while one ran

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
        self.poll()

    def on_screen_resume(self) -> None:
        self.deck.update_banner()
        if self.LIVE:
            self.poll()

    def poll(self) -> None:
        """Read the data again, unless a read is under way: then once more right after it (showing a
        new mode's screen sends it a mount and two resumes at once: three overlapping polls slowed
        the first screen)."""
        if self._polling:
            self._again = True
            return
        self._polling, self._again = True, False
        self._read(self.request())

    @work(thread=True, group="poll", exit_on_error=False)
    def _read(self, request: Any) -> None:
        try:
            extra = self.fetch(request)
            overview = self.deck.backend.overview()
        except RegistryError as exc:  # e.g. the database is locked: say so and try again later
            self.post_message(LoadFailed(str(exc)))
        else:
            self.post_message(OverviewLoaded(overview, extra, request, replaceable=self.REPLACEABLE))

    def request(self) -> Any:
        """What the next `fetch` needs to know (a cursor, say), taken on the UI thread."""
        return None

    def fetch(self, request: Any) -> Extra:
        """Read what this screen shows besides the overview (in the poll's worker thread: read and
        return, never write `self`)."""
        return cast(Extra, None)

    def take(self, extra: Extra, request: Any) -> None:
        """Keep what `fetch` returned (on the UI thread, before `show`)."""

    @on(OverviewLoaded)
    def _loaded(self, message: OverviewLoaded) -> None:
        self._polling = False
        self.deck.overview_arrived(message.overview)
        self.take(cast(Extra, message.extra), message.request)
        self.show(message.overview)
        self._schedule()

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        self._polling = False
        self.deck.set_problem(f"cannot read the registry: {message.error}")
        self._schedule()

    @on(Worker.StateChanged)
    def _ended(self, event: Worker.StateChanged) -> None:
        """A poll that raised something unforeseen posts no message: poll again later all the same."""
        if event.worker.group == "poll" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self._polling = False
            self._schedule()

    def _schedule(self) -> None:
        if not self.is_attached:  # closed meanwhile (its poll was cancelled): nothing more to read
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._again:
            self.poll()
        elif self.LIVE and not self.deck.paused:
            self._timer = self.set_timer(self.deck.refresh_seconds, self.poll)

    def show(self, overview: Overview) -> None:
        """Put the overview on screen (each screen its own way)."""
