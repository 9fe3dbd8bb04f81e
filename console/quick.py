"""The read verbs without Typer, SQLAlchemy or SQLModel: `models`, `versions`, `show`, `history` and
`status` (asking the supervisor when one runs).

`modeldeck models` reads a few rows; importing the whole command line (Typer, Click) and the ORM
took most of its time. `run` recognises a read verb with the options it documents, reads through
`registry.reader` and prints with `console.output`, the same bytes as the Typer command. Anything
else (another verb, `--help`, an option it does not know, a database only the `Registry` can open
as asked: older schema, missing, read-only, a driver error) returns None and the Typer command line
runs instead, exactly as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: verb -> (number of arguments, flags it takes, options with a value it takes)
_VERBS: dict[str, tuple[int, frozenset[str], frozenset[str]]] = {
    "models": (0, frozenset({"--all", "--json"}), frozenset()),
    "versions": (1, frozenset({"--all", "--json"}), frozenset()),
    "show": (1, frozenset({"--json"}), frozenset()),
    "history": (1, frozenset({"--json"}), frozenset({"--at"})),
    "status": (0, frozenset({"--json"}), frozenset({"--host"})),
}


class _NotQuick(Exception):
    """This command line is for Typer (or this database for the `Registry`)."""


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, Any]] | None:
    """(verb, arguments, options) of a read verb's command line, or None when it is anything else.
    Global options (`--home DIR`, `--json`) may come before the verb, as Typer takes them."""
    options: dict[str, Any] = {}
    args = list(argv)
    while args and args[0].startswith("-"):
        head = args.pop(0)
        if head == "--json":
            options["--json"] = True
        elif head == "--home" and args:
            options["--home"] = args.pop(0)
        elif head.startswith("--home=") and len(head) > len("--home="):
            options["--home"] = head.partition("=")[2]
        else:
            return None
    if not args or args[0] not in _VERBS:
        return None
    verb, rest = args[0], args[1:]
    count, flags, valued = _VERBS[verb]
    arguments: list[str] = []
    while rest:
        token = rest.pop(0)
        name, eq, value = token.partition("=")
        if token in flags:
            options[token] = True
        elif name in valued and eq:
            options[name] = value
        elif token in valued and rest:
            options[token] = rest.pop(0)
        elif token.startswith("-") or token == "":
            return None  # --help, `--`, a typo, a short option: Typer says what it says
        else:
            arguments.append(token)
    if len(arguments) != count:
        return None
    return verb, arguments, options


def run(argv: list[str]) -> int | None:
    """Run a read verb and return its exit status, or None to leave the command line to Typer."""
    parsed = parse(argv)
    if parsed is None:
        return None
    verb, arguments, options = parsed
    home = options.get("--home")
    if home == "":
        return None
    from registry.errors import RegistryError, SupervisorError
    from registry.reader import reading
    from registry.settings import Settings

    try:
        settings = Settings.from_env(home=Path(home) if home is not None else None)
    except RegistryError:
        return None  # Typer's path reports it
    with reading(settings) as reader:
        if reader is None:
            return None
        try:
            show = _VERB_RUNNERS[verb](reader, arguments, options)
        except _NotQuick:
            return None
        except SupervisorError as exc:  # as the Typer command says it, with the worker's last lines
            return _fail(str(exc), exc.log_tail[-10:])
        except RegistryError as exc:
            if home is not None:
                os.environ["MODELDECK_HOME"] = str(Path(home))
            return _fail(str(exc))
        except ValueError as exc:  # an unreadable --at time
            return _fail(str(exc))
        except Exception:  # a driver error mid-read: the Registry meets it again and explains it
            return None
    if home is not None:  # as the Typer callback does, for anything that reads it later
        os.environ["MODELDECK_HOME"] = str(Path(home))
    show()
    return 0


def _fail(message: str, log_tail: list[str] | None = None) -> int:
    from console import output

    output.error(message)
    for line in log_tail or []:
        output.warn(f"  | {line}")
    return 1


def _models(reader: Any, _args: list[str], options: dict[str, Any]) -> Callable[[], None]:
    found = reader.list_models(include_archived=options.get("--all", False))

    def show() -> None:
        from console import output

        if options.get("--json"):
            output.print_json([m.as_dict() for m in found])
        elif not found:
            output.say("no models yet: register one with `modeldeck register PATH --name NAME`")
        else:
            output.print_table(output.models_table(found))

    return show


def _versions(reader: Any, args: list[str], options: dict[str, Any]) -> Callable[[], None]:
    found = reader.versions(args[0], include_archived=options.get("--all", False))

    def show() -> None:
        from console import output

        if options.get("--json"):
            output.print_json([v.as_dict() for v in found])
        else:
            output.print_table(output.versions_table(found))

    return show


def _show(reader: Any, args: list[str], options: dict[str, Any]) -> Callable[[], None]:
    info = reader.get(args[0])

    def show() -> None:
        from console import output

        if options.get("--json"):
            output.print_json(info.as_dict())
        else:
            output.show_version(info)

    return show


def _history(reader: Any, args: list[str], options: dict[str, Any]) -> Callable[[], None]:
    from datetime import UTC

    from registry import history as ledger

    at = options.get("--at")
    moment = ledger.parse_time(at) if at is not None else _now()
    found = reader.history(args[0], moment.astimezone(UTC))

    def show() -> None:
        from console import output

        if options.get("--json"):
            output.print_json(found.as_dict())
        else:
            output.show_history(found, at_given=at is not None)

    return show


def _status(reader: Any, _args: list[str], options: dict[str, Any]) -> Callable[[], None]:
    """The supervisor's status with live figures; without one (no control socket, or nothing answers
    on it), the registry's deployments and what each one's port answers."""
    from console.status_view import across_hosts, asked_status, show_status, wanted
    from registry.serving.rundir import RunDir

    home = reader.settings.home.expanduser().resolve()
    shared = None if reader.settings.is_sqlite else across_hosts(reader)

    def unsupervised() -> list[dict[str, Any]]:
        return wanted(reader.deployments())

    if RunDir.of(home).control_socket.exists():
        from registry.serving.client import SupervisorClient

        with SupervisorClient(home) as client:
            answer = asked_status(client, unsupervised)
    else:
        answer = {"supervisor": None, "deployments": unsupervised()}
    if shared is not None:
        answer.update(shared)
    return lambda: show_status(answer, bool(options.get("--json")), options.get("--host"))


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


_VERB_RUNNERS: dict[str, Callable[[Any, list[str], dict[str, Any]], Callable[[], None]]] = {
    "models": _models,
    "versions": _versions,
    "show": _show,
    "history": _history,
    "status": _status,
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `modeldeck` command: a read verb here, anything else through Typer.
    `argv` is the command line after the program's name (default: `sys.argv[1:]`)."""
    args = sys.argv[1:] if argv is None else argv
    status = run(args)
    if status is not None:
        sys.exit(status)
    from console.cli import app
    from console.serving_commands import bare_canary

    app(args=bare_canary(args), prog_name="modeldeck")
