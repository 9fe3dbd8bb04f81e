"""The one action table: keys, footer, `?` help, the command palette and `:` commands come from it.

A screen's bindings are the rows whose scopes name it (plus the global ones on the app), so the
footer, the help and the commands can never disagree. Bindings carry ids (`modeldeck.<action>`) so
users can remap them with Textual's keymap.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

GLOBAL = "global"


@dataclass(frozen=True)
class Action:
    """One thing a user can do: its action name, key, text, where it applies and its `:` command."""

    name: str
    key: str
    description: str
    scopes: tuple[str, ...]
    changes: bool = False  # changes deployments: refused in read-only mode
    command: str | None = None
    usage: str = ""
    show: bool = True
    #: offered (help, palette) only on a shared registry; its key works everywhere all the same
    shared: bool = False

    @property
    def binding(self) -> Binding:
        return Binding(self.key, self.name, self.description, show=self.show, id=f"modeldeck.{self.name}")


ACTIONS: tuple[Action, ...] = (
    Action("view('models')", "1", "Models", (GLOBAL,), command="models"),
    Action("view('deployments')", "2", "Deployments", (GLOBAL,), command="deployments"),
    Action("view('events')", "3", "Events", (GLOBAL,), command="events"),
    Action("view('alerts')", "4", "Alerts", (GLOBAL,), command="alerts"),
    # not in the footer (full at 80 columns): in `?` help and the palette, where hosts exist
    Action("view('hosts')", "5", "Hosts", (GLOBAL,), command="hosts", show=False, shared=True),
    Action("help", "question_mark", "Help", (GLOBAL,), command="help"),
    Action("command_line", "colon", "Command", (GLOBAL,), show=False),
    Action("refresh", "ctrl+r", "Refresh", (GLOBAL,), command="refresh", show=False),
    Action("pause", "p", "Pause", (GLOBAL,), command="pause"),
    Action("quit", "q", "Quit", (GLOBAL,), command="q"),
    Action("back", "escape", "Back", (GLOBAL,)),  # from a model's versions, a monitor, logs or a diff
    Action("filter", "slash", "Filter", ("models", "events")),
    Action("open", "enter", "Open", ("models", "deployments", "alerts")),  # versions; a deployment's monitor
    Action("deploy", "d", "Deploy", ("models", "versions"), changes=True, command="deploy", usage="REF"),
    Action("alias", "a", "Set alias", ("versions",), changes=True, command="alias", usage="REF ALIAS"),
    Action("canary", "C", "Canary", ("versions",), changes=True, command="canary", usage="REF"),
    Action("shadow", "H", "Shadow", ("versions",), changes=True, command="shadow", usage="REF", show=False),
    Action("mark", "space", "Mark", ("versions",)),
    Action("compare", "c", "Compare", ("versions",)),
    Action("rollback", "r", "Roll back", ("deployments",), changes=True, command="rollback", usage="NAME"),
    Action("stop", "s", "Stop", ("deployments",), changes=True, command="stop", usage="NAME"),
    Action("monitor", "m", "Monitor", ("deployments",), command="monitor", usage="NAME"),
    Action(
        "promote", "P", "Promote", ("deployments", "monitor"), changes=True, command="promote", usage="NAME"
    ),
    Action("abort", "A", "Abort", ("deployments", "monitor"), changes=True, command="abort", usage="NAME"),
    Action(
        "objectives",
        "o",
        "Objectives",
        ("deployments", "alerts"),
        changes=True,
        command="objectives",
        usage="NAME",
    ),
    Action("silence", "z", "Silence", ("alerts",), changes=True, command="silence", usage="NAME"),
    Action("unsilence", "u", "Unsilence", ("alerts",), changes=True, command="unsilence", usage="NAME"),
    Action("logs", "l", "Logs", ("deployments", "monitor"), command="logs", usage="NAME"),
    Action("serving_at", "t", "Serving at", ("events",), command="at", usage="TIME"),
    Action("changes_only", "x", "Only changes", ("diff",)),
    Action("wrap", "w", "Wrap", ("logs",)),
    Action("follow", "end", "Follow", ("logs",)),
    Action("charts", "c", "Charts", ("monitor",)),  # the next charts when not all fit
)


#: What read-only mode turns off, as the banner, the help and `--read-only` say it.
READ_ONLY = "read-only: deploy, canary, roll back, stop, aliases, objectives and silences are off"


def bindings(scope: str) -> list[BindingType]:
    """The bindings of a screen (or of the app, for GLOBAL)."""
    return [a.binding for a in ACTIONS if scope in a.scopes]


def changing(name: str) -> bool:
    """Whether the action `name` changes deployments (and is refused when read-only)."""
    return any(a.changes for a in ACTIONS if a.name == name)


def by_command(command: str) -> Action | None:
    return next((a for a in ACTIONS if a.command == command), None)


def key_label(key: str) -> str:
    return {"question_mark": "?", "colon": ":", "slash": "/", "escape": "esc"}.get(key, key)


def usage(action: Action) -> str:
    """`:command ARGS` as the help and the warnings show it."""
    return f":{action.command} {action.usage}".rstrip()
