"""The Textual app: views, global keys, the banner, `:` commands, themes. A thin shell over screens."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.theme import Theme

from console import actions
from console.backend import Backend, Overview
from console.screens.base import OverviewScreen
from console.screens.deployments import DeploymentsScreen
from console.screens.events import EventsScreen
from console.screens.help import HelpScreen
from console.screens.models import ModelsScreen
from console.widgets.banner import Banner
from console.widgets.command_line import CommandLine
from console.widgets.confirm import Confirm
from themes import THEMES, stylesheet


class ModeldeckApp(App[None]):
    """`modeldeck console`: browse models and versions, deploy and roll back, watch deployments."""

    TITLE = "modeldeck"
    CSS_PATH = str(stylesheet())
    BINDINGS = actions.bindings(actions.GLOBAL)
    MODES = {"models": ModelsScreen, "deployments": DeploymentsScreen, "events": EventsScreen}

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
        self.read_only = read_only
        self.refresh_seconds = refresh_seconds
        self.paused = False
        self.overview: Overview | None = None
        for name, colours in THEMES.items():
            self.register_theme(Theme(name=name, **colours))  # type: ignore[arg-type]
        self.theme = theme
        self._problem = ""

    def on_mount(self) -> None:
        self.sub_title = f"{self.backend.registry.settings.home}" + (
            "  [read-only]" if self.read_only else ""
        )
        self.switch_mode("models")

    def on_unmount(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ state from screens
    def overview_arrived(self, overview: Overview) -> None:
        self.overview = overview
        self._problem = (
            ""
            if overview.supervisor_up or not overview.deployments
            else ("supervisor not running: live figures unavailable (reconnecting; actions start it)")
        )
        self.update_banner()

    def set_problem(self, problem: str) -> None:
        self._problem = problem
        self.update_banner()

    def update_banner(self) -> None:
        parts = ["read-only: deploy, roll back and stop are off"] if self.read_only else []
        parts += [self._problem] if self._problem else []
        parts += ["paused (p resumes)"] if self.paused else []
        for banner in self.screen.query(Banner):
            banner.say(" · ".join(parts))

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and actions.changing(action):
            return None  # shown dimmed in the footer, refused
        return True

    def action_view(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def action_refresh(self) -> None:
        if isinstance(self.screen, OverviewScreen):
            self.screen.poll()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.update_banner()
        if not self.paused:
            self.action_refresh()

    def action_command_line(self) -> None:
        self.screen.query_one(CommandLine).open()

    def confirm_deploy(self, screen: OverviewScreen, model: str, version: int, alias: str | None) -> None:
        """Ask, then deploy `model:version` as deployment `model`."""
        if self.read_only:
            self.notify("read-only: deploying is off", severity="warning")
            return
        ref = f"{model}:{version}"
        current = next(
            (d for d in (self.overview.deployments if self.overview else []) if d.name == model), None
        )
        where = (
            f"now serving {model}:{current.version} on port {current.port}" if current else "a new deployment"
        )
        label = f" (@{alias})" if alias else ""

        def answered(yes: bool | None) -> None:
            if yes:
                screen.run_action(
                    f"deploying {ref}",
                    lambda: self.backend.deploy(ref, name=model),
                    lambda r: f"{model}: {r['model']}:{r['version']} serves on {r['url']}",
                )

        self.push_screen(Confirm(f"Deploy {ref}{label} to deployment {model}?", where), answered)

    @on(CommandLine.Command)
    async def _command(self, event: CommandLine.Command) -> None:
        action = actions.by_command(event.command)
        if action is None:
            self.notify(f"unknown command :{event.command} (? lists them)", severity="warning")
            return
        if action.changes and self.read_only:
            self.notify(f"read-only: :{event.command} is off", severity="warning")
            return
        if action.changes:
            self._changing_command(action.command or "", event.arguments)
        else:
            await self.run_action(action.name)

    def _changing_command(self, command: str, arguments: list[str]) -> None:
        if len(arguments) != 1:
            self.notify(f"usage: :{command} {actions.by_command(command).usage}", severity="warning")  # type: ignore[union-attr]
            return
        target = arguments[0]
        screen = self.screen if isinstance(self.screen, OverviewScreen) else None
        if screen is None:
            return
        if command == "deploy":
            model, _, version = target.partition(":")
            if version.isdigit():
                self.confirm_deploy(screen, model, int(version), None)
            else:
                self.notify("usage: :deploy NAME:VERSION", severity="warning")
        elif command == "rollback":
            self.push_screen(
                Confirm(f"Roll back {target} to its standby?"),
                lambda yes: (
                    yes
                    and screen.run_action(
                        f"rolling back {target}",
                        lambda: self.backend.rollback(target),
                        lambda r: f"{target}: {r['model']}:{r['version']} serves again",
                    )
                ),
            )
        elif command == "stop":
            self.push_screen(
                Confirm(f"Stop {target}?"),
                lambda yes: (
                    yes
                    and screen.run_action(
                        f"stopping {target}",
                        lambda: self.backend.stop(target),
                        lambda r: f"{target}: stopped",
                    )
                ),
            )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) offers the same actions as the keys, plus the themes."""
        yield from super().get_system_commands(screen)
        for action in actions.ACTIONS:
            if action.changes or action.name in ("command_line",):
                continue
            yield SystemCommand(
                action.description,
                f"{actions.key_label(action.key)}",
                partial(self.run_action, action.name),
            )
        for name in THEMES:
            yield SystemCommand(f"Theme: {name}", "switch colours", lambda n=name: setattr(self, "theme", n))
