"""The Textual app: views, global keys, the banner, `:` commands, themes. A thin shell over screens."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rich.segment import Segment
from textual import on
from textual.app import App, SystemCommand
from textual.color import Color
from textual.filter import LineFilter
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.theme import Theme

from console import actions
from console.backend import Backend, Overview, alert_rank
from console.operations import Operations
from console.safe_text import printable, safe_segments
from console.screens.base import OverviewScreen
from console.screens.models import ModelsScreen
from console.widgets.banner import Banner
from console.widgets.command_line import CommandLine
from themes import THEMES, stylesheet


class NoControlCharacters(LineFilter):
    """Every line the console draws, without control characters (registry text is anyone's text)."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return list(safe_segments(segments))


_NO_CONTROL = NoControlCharacters()
NOT_RUNNING = "supervisor not running: no live figures (reconnecting; actions start it)"  # one line at 80
STARTING = "starting the supervisor and the deployments…"


def _deployments() -> Screen[None]:
    from console.screens.deployments import DeploymentsScreen

    return DeploymentsScreen()


def _alerts() -> Screen[None]:
    from console.screens.alerts import AlertsScreen

    return AlertsScreen()


def _events() -> Screen[None]:
    from console.screens.events import EventsScreen

    return EventsScreen()


def _hosts() -> Screen[None]:
    from console.screens.hosts import HostsScreen

    return HostsScreen()


class ModeldeckApp(App[None]):
    """`modeldeck console`: browse models and versions, deploy and roll back, watch deployments."""

    TITLE = "modeldeck"
    CSS_PATH = str(stylesheet())
    BINDINGS = actions.bindings(actions.GLOBAL)
    #: the first view's screen class, the others' made (and their modules imported) when first shown
    MODES = {
        "models": ModelsScreen,
        "deployments": _deployments,
        "events": _events,
        "alerts": _alerts,
        "hosts": _hosts,
    }

    def __init__(
        self,
        home: Path | None = None,
        *,
        read_only: bool = False,
        refresh_seconds: float = 1.0,
        theme: str = "modeldeck-dark",
    ) -> None:
        super().__init__()
        self.backend = Backend(home)
        # A registry this process may not write (a read-only home) is browsed with actions off.
        self.read_only = read_only or bool(self.backend.read_only)
        self.refresh_seconds = refresh_seconds
        self.paused = False
        self.overview: Overview | None = None
        for name, colours in THEMES.items():
            # THEMES holds Theme keyword arguments as dict[str, object] (colours are str, `dark` a bool).
            self.register_theme(Theme(name=name, **colours))  # type: ignore[arg-type]
        self.theme = theme
        self._problem = ""
        self._progress = ""
        #: set while the console itself starts the supervisor (the demo): its absence is then no alarm
        self.starting_supervisor = False
        self.operations = Operations(self)

    async def on_mount(self) -> None:
        self.sub_title = f"{self.backend.home}" + ("  [read-only]" if self.read_only else "")
        await self.switch_mode("models")  # before any key: a `2` typed at once must not be overtaken
        if not self.is_headless:  # the terminal went away (SSH dropped, window closed): quit cleanly,
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)  # so the demo cleans up

    def on_unmount(self) -> None:
        if not self.is_headless:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        self.backend.close()

    def get_line_filters(self) -> Sequence[LineFilter]:
        return [*super().get_line_filters(), _NO_CONTROL]

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry registry text (names, errors): literal, never markup, by default."""
        text = printable(message, keep_newlines=True)
        super().notify(text, title=title, severity=severity, timeout=timeout, markup=markup)

    # ------------------------------------------------------------------ state from screens
    def overview_arrived(self, overview: Overview) -> None:
        self.overview = overview
        # deployments placed on other hosts are their supervisors' (their figures come from the database)
        local = [d for d in overview.deployments if not overview.placed_elsewhere(d)]
        if overview.supervisor_up or not local:
            self._problem = ""
        elif self.starting_supervisor:
            self._problem = STARTING
        elif overview.supervisor_problem.startswith("no supervisor"):
            self._problem = NOT_RUNNING
        else:  # it runs but is slow or stuck: say what happened, keep asking
            self._problem = f"supervisor not answering ({overview.supervisor_problem}): live figures stale"
        self.update_banner()

    def set_progress(self, progress: str) -> None:
        """The steps of a running action (`deploying iris:2: deploy_requested → loading → ready`)."""
        self._progress = progress
        self.update_banner()

    def show_progress_for(self, progress: str, seconds: float) -> None:
        """Show the finished action's steps for `seconds` (unless another action's replace them)."""
        self.set_progress(progress)

        def clear() -> None:
            if self._progress == progress:
                self.set_progress("")

        self.set_timer(seconds, clear)

    def set_problem(self, problem: str) -> None:
        self._problem = problem
        self.update_banner()

    def update_banner(self) -> None:
        parts = [actions.READ_ONLY] if self.read_only else []
        parts += [self._alarm()] if self.overview and self.overview.alerts else []
        parts += [self._problem] if self._problem else []
        parts += ["paused (p resumes)"] if self.paused else []
        parts += [self._progress] if self._progress else []
        if not self.screen_stack:  # quitting: a poll's answer may still arrive after the last screen
            return
        for banner in self.screen.query(Banner):
            banner.say(" · ".join(parts))

    def _alarm(self) -> str:
        """The most pressing alert, named with why, and how many more (4 lists them); when every one is
        silenced, only how many."""
        assert self.overview is not None
        ranked = sorted(self.overview.alerts, key=alert_rank)
        first = ranked[0]
        if first.silenced:
            return f"{len(ranked)} alert(s), all silenced (4: alerts)"
        why = str(first.figures.get("summary") or first.reason)
        more = f" · {len(ranked) - 1} more" if len(ranked) > 1 else ""
        return f"ALERT {first.deployment}: {first.kind} {first.state}: {why}{more} (4: alerts)"

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and actions.changing(action):
            return None  # shown dimmed in the footer, refused
        if action == "back":
            return len(self.screen_stack) > 1  # not in the footer of the top-level lists
        # a question or the help is answered or closed before a view key acts
        return not (action.startswith("view") and isinstance(self.screen, ModalScreen))

    async def action_view(self, mode: str) -> None:
        """Go to the root of view `mode`: a view key never lands on a screen pushed earlier on its tab
        (a log, a monitor, a model's versions)."""
        await self.switch_mode(mode)
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    # Textual's own action_back is async; a plain method is dispatched the same way, and pops at once.
    def action_back(self) -> None:  # type: ignore[override]
        """Leave a view opened from a list (versions, monitor, logs, diff); the lists stay."""
        if len(self.screen_stack) > 1:
            self.pop_screen()

    def action_help(self) -> None:
        from console.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.read_only, shared=self.backend.shared))

    def action_refresh(self) -> None:
        if isinstance(self.screen, OverviewScreen):
            self.screen.poll()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.update_banner()
        if not self.paused:
            self.action_refresh()

    def action_command_line(self) -> None:
        lines = self.screen.query(CommandLine)  # (a modal has none: `:` waits until it is closed)
        if lines:
            lines.first().open()

    # ------------------------------------------------------------------ screens of one deployment
    def open_deployment(self, view: str, name: str) -> None:
        """Push the monitor or the logs of deployment `name` (known to the registry)."""
        from console.screens.logs import LogsScreen
        from console.screens.monitor import MonitorScreen

        known = [d.name for d in (self.overview.deployments if self.overview else [])]
        if name not in known:
            self.notify(f"no deployment {name!r}; known: {', '.join(known) or 'none'}", severity="warning")
            return
        self.push_screen(MonitorScreen(name) if view == "monitor" else LogsScreen(name))

    async def serving_at(self, when: str) -> None:
        """Show the events view with what was serving at the time `when` (`14:30`, `2h ago`, ISO 8601)."""
        from console.screens.events import EventsScreen
        from registry.history import parse_time

        try:
            moment = parse_time(when)
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return
        await self.action_view("events")
        screen = self.screen
        if isinstance(screen, EventsScreen):
            screen.show_serving_at(moment)

    # ------------------------------------------------------------------ `:` commands
    @on(CommandLine.Command)
    async def _command(self, event: CommandLine.Command) -> None:
        action = actions.by_command(event.command)
        if action is None:
            self.notify(f"unknown command :{event.command} (? lists them)", severity="warning")
            return
        if action.changes and self.read_only:
            self.notify(f"read-only: :{event.command} is off", severity="warning")
            return
        if not action.usage:
            await self.run_action(action.name)
            return
        wanted = len(action.usage.split())
        if len(event.arguments) != wanted and not (action.command == "at" and event.arguments):
            self.notify(f"usage: {actions.usage(action)}", severity="warning")
            return
        first, *rest = event.arguments
        if action.command == "deploy":
            self.operations.deploy(first)
        elif action.command in ("canary", "shadow"):
            self.operations.rollout(first, action.command)
        elif action.command == "promote":
            self.operations.promote(first)
        elif action.command == "abort":
            self.operations.abort(first)
        elif action.command == "rollback":
            self.operations.rollback(first)
        elif action.command == "stop":
            self.operations.stop(first)
        elif action.command == "alias":
            self.operations.set_alias(first, rest[0])
        elif action.command == "objectives":
            self.operations.objectives(first)
        elif action.command == "silence":
            self.operations.silence(first)
        elif action.command == "unsilence":
            self.operations.unsilence(first)
        elif action.command in ("monitor", "logs"):
            self.open_deployment(action.command, first)
        elif action.command == "at":
            await self.serving_at(" ".join(event.arguments))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) offers the keys of this screen and the global ones, plus themes."""
        yield from super().get_system_commands(screen)
        for action in actions.ACTIONS:
            if action.name == "command_line" or (self.read_only and action.changes):
                continue
            if action.shared and not self.backend.shared:
                continue
            if actions.GLOBAL in action.scopes:
                run = partial(self.run_action, action.name)
                yield SystemCommand(action.description, actions.key_label(action.key), run)
            elif screen.name in action.scopes:
                yield SystemCommand(
                    action.description,
                    f"{actions.key_label(action.key)} on the selected row",
                    partial(self.run_action, action.name, screen),
                )
        for name in THEMES:
            yield SystemCommand(f"Theme: {name}", "switch colours", lambda n=name: setattr(self, "theme", n))
