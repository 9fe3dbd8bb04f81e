"""The `modeldeck` command. Registry verbs never import Textual; only `console` and `demo` may."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.text import Text

from console import alert_commands, host_commands, output, serving_commands
from console.export_commands import register as register_export
from console.serving_commands import PredictTimeout
from registry import PickleRefused, RegistryError

if TYPE_CHECKING:  # the Registry (SQLAlchemy, SQLModel) loads only for the verbs that open it
    from registry.core import Registry

app = typer.Typer(
    name="modeldeck",
    help="Operations console for scikit-learn models: registry, serving and monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Registry database maintenance.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
AsciiFlag = Annotated[
    bool,
    typer.Option(
        "--ascii", help="Plain ASCII chart markers (also MODELDECK_ASCII=1, or a non-UTF-8 locale)."
    ),
]
NoMouseFlag = Annotated[
    bool,
    typer.Option("--no-mouse", help="Leave the mouse to the terminal (select and copy text); keys only."),
]
Reason = Annotated[str, typer.Option("--reason", "-m", help="Why: kept in the model's history.")]
T = TypeVar("T")


def _print_version(asked: bool) -> None:
    """`--version`: the installed distribution's version (its metadata, from pyproject.toml)."""
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"modeldeck {version('modeldeck')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("modeldeck (not installed: no version metadata)")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", metavar="DIR", help="Registry home (default: $MODELDECK_HOME or the user data dir)."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print machine-readable JSON (any command that has --json).")
    ] = False,
) -> None:
    """Operations console for scikit-learn models: registry, serving and monitoring."""
    if home is not None:
        os.environ["MODELDECK_HOME"] = str(home)
    if json_out:  # `modeldeck --json status` means `modeldeck status --json`
        ctx.default_map = _json_defaults(ctx, ctx.command)


def _json_defaults(ctx: typer.Context, command: Any) -> dict[str, Any]:
    """Click default values that turn on `--json` (parameter `json_out`) of every (sub)command."""
    if hasattr(command, "list_commands"):
        return {
            name: _json_defaults(ctx, command.get_command(ctx, name)) for name in command.list_commands(ctx)
        }
    return {"json_out": True} if any(p.name == "json_out" for p in command.params) else {}


def _fail(message: str) -> None:
    output.err.print(Text.assemble(("error:", "bold red"), f" {message}"))
    raise typer.Exit(1)


@contextmanager
def _registry(upgrade: bool = True) -> Iterator[Registry]:
    """Open the registry of `$MODELDECK_HOME` / `$MODELDECK_DB_URL`; user errors become one line."""
    from registry.core import Registry

    reg = None
    try:
        reg = Registry(upgrade=upgrade)
        if "immutable" in reg.db.opened_as:
            output.err.print(f"note: {reg.settings.display_url} is {reg.db.opened_as}: {reg.db.read_only}")
        yield reg
    except PickleRefused as exc:  # name the flag, not the Python argument
        _fail(exc.cli_message)
    except RegistryError as exc:
        _fail(str(exc))
    except ValueError as exc:  # e.g. an unreadable --at time
        _fail(str(exc))
    except OSError as exc:  # e.g. MODELDECK_HOME is a file, or a directory we may not write
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    finally:
        if reg is not None:
            reg.close()


def _run(action: Callable[[Registry], T]) -> T:
    with _registry() as reg:
        return action(reg)
    raise AssertionError("unreachable")  # pragma: no cover


def _pairs(items: list[str], what: str, convert: Callable[[str], Any] = str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"bad {what} {item!r}: write KEY=VALUE")
        try:
            result[key] = convert(value)
        except ValueError:
            _fail(f"bad {what} {item!r}: {value!r} is not a number")
    return result


@app.command()
def register(
    path: Annotated[
        Path,
        typer.Argument(metavar="PATH", help=".skops file; .pkl/.joblib or MLflow dir with --trust-pickle"),
    ],
    name: Annotated[str, typer.Option("--name", "-n", metavar="NAME", help="Model name.")],
    alias: Annotated[
        list[str], typer.Option("--alias", "-a", metavar="ALIAS", help="Alias to point at it; repeatable.")
    ] = [],  # noqa: B006
    reference: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Training-data sample: CSV or .npy.")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN",
            help="The --reference CSV column of true labels (taken out of the features); calibrates "
            "the estimated accuracy and F1 of a classifier.",
        ),
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow pickle/joblib/MLflow (unpickling runs code).")
    ] = False,
    trust_type: Annotated[
        list[str], typer.Option(metavar="TYPE", help="Trust a non-sklearn type in a .skops file.")
    ] = [],  # noqa: B006
    description: Annotated[str, typer.Option(metavar="TEXT", help="What this version is.")] = "",
    tag: Annotated[list[str], typer.Option(metavar="KEY=VALUE", help="Tag; repeatable.")] = [],  # noqa: B006
    metric: Annotated[list[str], typer.Option(metavar="KEY=NUMBER", help="Metric; repeatable.")] = [],  # noqa: B006
    json_out: JsonFlag = False,
) -> None:
    """Register a model file as the next version of NAME."""
    tags, metrics = _pairs(tag, "tag"), _pairs(metric, "metric", float)
    if target is not None and reference is None:
        raise typer.BadParameter("--target names a column of the --reference file", param_hint="--target")
    info = _run(
        lambda reg: reg.register_file(
            path,
            name,
            trust_pickle=trust_pickle,
            trust_types=trust_type,
            # a CSV or .npy file, read by the registry; with --target, its label column split off
            **_reference_options(reference, target),
            alias=alias,
            description=description,
            tags=tags,
            metrics=metrics,
        )
    )
    if json_out:
        output.print_json(info.as_dict())
    else:
        output.out.print(
            f"registered {info.ref}" + (f" (@{', @'.join(info.aliases)})" if info.aliases else "")
        )


def _reference_options(reference: Path | None, target: str | None) -> dict[str, Any]:
    """`register_file`'s reference options: the file, or its features and labels (`target`)."""
    if target is None:
        return {"reference": reference}
    from registry.reference import split_labels

    features, labels = split_labels(reference, target)
    return {"reference": features, "reference_labels": labels}


@app.command()
def models(
    all_: Annotated[bool, typer.Option("--all", help="Count archived versions too.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """List registered models."""
    found = _run(lambda reg: reg.list_models(include_archived=all_))
    if json_out:
        output.print_json([m.as_dict() for m in found])
    elif not found:
        output.out.print("no models yet: register one with `modeldeck register PATH --name NAME`")
    else:
        output.print_table(output.models_table(found))


@app.command()
def versions(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    all_: Annotated[bool, typer.Option("--all", help="Include archived versions.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """List the versions of a model."""
    found = _run(lambda reg: reg.versions(name, include_archived=all_))
    if json_out:
        output.print_json([v.as_dict() for v in found])
    else:
        output.print_table(output.versions_table(found))


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="REF", help="NAME, NAME:VERSION or NAME@ALIAS")],
    json_out: JsonFlag = False,
) -> None:
    """Show one version: signature, artifact, lineage, aliases and tags."""
    info = _run(lambda reg: reg.get(ref))
    if json_out:
        output.print_json(info.as_dict())
    else:
        output.show_version(info)


@app.command()
def alias(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Point ALIAS of model NAME at VERSION (a number or another alias)."""
    info = _run(lambda reg: reg.set_alias(name, alias_name, version, reason=reason))
    if json_out:
        output.print_json(info.as_dict())
    else:
        output.out.print(f"{name}@{alias_name} → {info.version}")


@app.command()
def unalias(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Remove an alias (the version stays)."""
    _run(lambda reg: reg.remove_alias(name, alias_name, reason=reason))
    if json_out:
        output.print_json({"model": name, "alias": alias_name, "removed": True})
    else:
        output.out.print(f"removed {name}@{alias_name}")


@app.command()
def tag(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="NAME (model tag) or NAME:VERSION / NAME@ALIAS (version tag)")
    ],
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="Tags to set.")] = [],  # noqa: B006
    remove: Annotated[
        list[str], typer.Option("--remove", "-r", metavar="KEY", help="Tag key to remove; repeatable.")
    ] = [],  # noqa: B006
    json_out: JsonFlag = False,
) -> None:
    """Set or remove tags on a model or a version."""
    values = _pairs(pairs, "tag")
    if not values and not remove:
        _fail("nothing to do: give KEY=VALUE pairs or --remove KEY")
    _run(lambda reg: reg.tag(ref, values, remove=remove))
    if json_out:
        output.print_json({"ref": ref, "set": values, "removed": remove})
    else:
        output.out.print(f"tagged {ref}")


@app.command()
def history(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    at: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="State at TIME: '14:32', 'yesterday 14:32', '2h ago', ISO 8601."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """The ledger of a model; with --at, which versions, aliases and deployments were live then."""
    found = _run(lambda reg: reg.history(name, at=at))
    if json_out:
        output.print_json(found.as_dict())
    else:
        output.show_history(found, at_given=at is not None)


@app.command()
def archive(
    ref: Annotated[str, typer.Argument(metavar="NAME:VERSION")],
    restore: Annotated[bool, typer.Option("--restore", help="Un-archive instead.")] = False,
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Hide a version from listings without deleting it (or --restore it)."""
    info = _run(lambda reg: reg.archive(ref, restore=restore, reason=reason))
    if json_out:
        output.print_json(info.as_dict())
    else:
        output.out.print(f"{'restored' if restore else 'archived'} {info.ref}")


@app.command()
def delete(
    ref: Annotated[str, typer.Argument(metavar="NAME:VERSION")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Delete a version for good (refused while an alias or deployment holds it)."""
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"not deleting {ref} without --yes (no terminal to confirm on)")
        if not typer.confirm(f"delete {ref} and its artifact for good?"):
            output.err.print(f"not deleted: {ref}")
            raise typer.Exit(1)
    _run(lambda reg: reg.delete(ref, reason=reason))
    if json_out:
        output.print_json({"ref": ref, "deleted": True})
    else:
        output.out.print(f"deleted {ref}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Register under this name instead.")
    ] = None,
    trust_type: Annotated[
        list[str], typer.Option(metavar="TYPE", help="Trust a non-sklearn type; repeatable.")
    ] = [],  # noqa: B006
    keep_version: Annotated[
        bool,
        typer.Option(
            "--keep-version", help="Keep the version's number (refused if the model here is already past it)."
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Verify an exported archive and register it as the next version here."""
    info = _run(lambda reg: reg.import_(file, name=name, trust_types=trust_type, keep_number=keep_version))
    if json_out:
        output.print_json(info.as_dict())
    else:
        src = info.origin["imported_from"]
        output.out.print(f"imported {src['model']}:{src['version']} as {info.ref}")
        if not src.get("manifest_checked", True):
            output.err.print(
                "note: an archive from before manifest checksums: the estimator, params, output and "
                "reference were read from the model; description, tags and metrics are as it claims"
            )


@app.command()
def serve(
    ref: Annotated[str, typer.Argument(metavar="REF", help="NAME, NAME:VERSION or NAME@ALIAS")],
    host: Annotated[
        str, typer.Option(metavar="ADDR", help="Address to bind (beyond loopback needs a token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8080,
    max_body_mb: Annotated[float, typer.Option(metavar="MB", help="Largest request body accepted.")] = 8.0,
    redact: Annotated[
        bool, typer.Option("--redact", help="Leave input values out of error messages.")
    ] = False,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Beyond loopback, serve without the bearer token (not advised).")
    ] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (slower).")] = False,
    batching: Annotated[
        str, typer.Option(metavar="auto|on|off", help="Micro-batch concurrent requests (auto: slow models).")
    ] = "auto",
    predict_timeout: PredictTimeout = None,
    max_connections: serving_commands.MaxConnections = None,
    idle_timeout: serving_commands.IdleTimeout = None,
    header_timeout: serving_commands.HeaderTimeout = None,
    body_timeout: serving_commands.BodyTimeout = None,
    otlp: serving_commands.ServeOtlp = None,
) -> None:
    """Serve one version in the foreground (for containers and debugging); Ctrl-C stops it."""
    from registry.serving.connections import ConnectionLimits
    from registry.serving.options import check_host, check_options, check_port
    from registry.serving.worker import bind_socket, is_loopback, load_predictor, run_server, serving_token

    modes = {"auto": None, "on": True, "off": False}
    host, port = serving_commands.checked(lambda: (check_host(host), check_port(port)))
    limits = {
        "max_connections": max_connections,
        "idle_timeout": idle_timeout,
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
    }
    given = serving_commands.checked(
        lambda: check_options(
            {"batching": batching, "max_body_mb": max_body_mb, "predict_timeout": predict_timeout, **limits}
        )
    )
    otlp = serving_commands.checked_otlp(otlp)
    with _registry() as reg:
        sock = bind_socket(host, port)
        token = None if is_loopback(host) or no_auth else serving_token(reg.settings.home)
        predictor = load_predictor(reg, ref, redact=redact)
    info = predictor.info
    batched = predictor.worth_batching if modes[batching] is None else modes[batching]
    output.err.print(
        f"serving {info.ref} on http://{host}:{port} "
        f"(input as {predictor.input_kind}; micro-batching {'on' if batched else 'off'})"
    )
    if token:
        output.err.print(f"bearer token required: {token}  (kept in {reg.settings.home})")
    run_server(
        predictor,
        sock,
        token=token,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        access_log=access_log,
        batching=batched,
        predict_timeout=predict_timeout,
        limits=ConnectionLimits(**{key: given[key] for key in limits if key in given}),
        otlp=otlp,
        home=reg.settings.home,
    )


@app.command()
def feedback(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="CSV (request_id[,row],label) or JSON lines; - reads stdin.")
    ],
    deployment: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="The deployment whose predictions these label (default: the only one)."
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Send ground truth for earlier predictions, by request id (the X-Request-ID of each response)."""
    from console.feedback_file import FeedbackFileError, read_labels
    from registry.outcomes import LabelError, parse_labels

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8-sig")
        entries = read_labels(text)
    except (OSError, UnicodeDecodeError, FeedbackFileError) as exc:
        _fail(f"cannot read labels from {file}: {exc}")
    if not entries:
        _fail(f"no labels in {file}")
    try:
        parse_labels(entries)  # checked first, so the message names the entry and field
    except LabelError as exc:
        _fail(f"bad label in {file}: {exc.field}: {exc}")
    counts = _run(lambda reg: reg.feedback(entries, deployment=deployment))
    if json_out:
        output.print_json(counts)
    else:
        output.out.print(
            f"{counts['accepted']} accepted, {counts['duplicates']} duplicates (last wins), "
            f"{counts['unknown']} for unknown predictions (kept a day in case they arrive)"
            + (f", {counts['invalid']} invalid ({counts['invalid_reason']})" if counts.get("invalid") else "")
        )


@db_app.command("upgrade")
def db_upgrade(json_out: JsonFlag = False) -> None:
    """Upgrade the registry database schema to this release (also done on every open)."""
    from registry.store import current_revision

    revision = _run(lambda reg: current_revision(reg.db))
    if json_out:
        output.print_json({"revision": revision})
    else:
        output.out.print(f"registry database is at schema revision {revision}")


@db_app.command("init")
def db_init(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Start a new, empty database even though the artifact store holds artifacts "
            "(after the database was lost and cannot be restored).",
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Create the registry database (also done on first use, while the artifact store is empty)."""
    from registry.store import current_revision, upgrade_schema

    def init(reg: Registry) -> tuple[str | None, str]:
        before = current_revision(reg.db)
        return before, upgrade_schema(reg.db, new_over_artifacts=force)

    before, revision = _run_with(init, upgrade=False)
    if json_out:
        output.print_json({"revision": revision, "created": before is None})
    elif before is None:
        output.out.print(f"created a new registry database at schema revision {revision}")
    else:
        output.out.print(
            f"registry database already exists (schema revision {revision}); nothing was changed"
        )


@db_app.command("roles")
def db_roles(
    reader: Annotated[
        str, typer.Option("--reader", metavar="NAME", help="The group that browses and watches.")
    ] = "modeldeck_reader",
    operator: Annotated[
        str, typer.Option("--operator", metavar="NAME", help="The group that registers and requests.")
    ] = "modeldeck_operator",
    supervisor: Annotated[
        str, typer.Option("--supervisor", metavar="NAME", help="The group of the hosts' supervisors.")
    ] = "modeldeck_supervisor",
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Run it on MODELDECK_DB_URL (as the tables' owner with CREATEROLE)."),
    ] = False,
) -> None:
    """Print the SQL of least-privilege PostgreSQL roles (a reader, an operator, a supervisor), to
    review or pipe into psql; --apply runs it."""
    from registry import roles
    from registry.settings import Settings

    try:
        names = roles.RoleNames(reader, operator, supervisor)
        settings = Settings.from_env()
        if apply:
            found = roles.apply(settings, names)
            output.say(
                f"roles {', '.join(names.all)} set on database {found.database} (schema {found.schema})"
            )
        else:
            sys.stdout.write(roles.script(names, roles.target(settings)))
    except RegistryError as exc:
        _fail(str(exc))


def _run_with(action: Callable[[Registry], T], upgrade: bool) -> T:
    with _registry(upgrade=upgrade) as reg:
        return action(reg)
    raise AssertionError("unreachable")  # pragma: no cover


@app.command()
def demo(
    home: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Demo home (default: $MODELDECK_HOME/demo).")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the demo deployments running when the console quits.")
    ] = False,
    no_console: Annotated[
        bool,
        typer.Option("--no-console", help="Only build the demo registry (the default without a terminal)."),
    ] = False,
    json_out: JsonFlag = False,
    ascii_: AsciiFlag = False,
    no_mouse: NoMouseFlag = False,
) -> None:
    """A live demo: models trained on scikit-learn's bundled data, deployed, with traffic, in the console."""
    from console.demo import build_demo, default_demo_home

    target = (home or default_demo_home()).expanduser().resolve()
    try:
        created = build_demo(target)
    except RegistryError as exc:
        _fail(str(exc))
    if json_out:
        output.print_json({"home": str(target), "models": created})
        return
    if no_console or not sys.stdout.isatty():
        _print_demo(target, created)
        return
    from console.config import load_config, with_flags
    from console.demo import run_live_demo

    try:
        config = with_flags(load_config(), ascii=ascii_, no_mouse=no_mouse)
    except RegistryError as exc:
        _fail(str(exc))
    _ascii(config.ascii)
    run_live_demo(target, keep=keep, config=config)


def _print_demo(target: Path, created: dict[str, str]) -> None:
    output.out.print(f"demo registry in {target}:")
    for name, versions_made in created.items():
        output.out.print(f"  {name}: {versions_made}")
    command = shutil.which("modeldeck") or str(Path(sys.argv[0]).resolve())
    output.out.print("\nlook at it with:")
    output.out.print(f"  export MODELDECK_HOME={target}")
    for example in ("console", "models", "versions iris", "show iris@champion", "history iris"):
        output.out.print(f"  {command} {example}")


@app.command("console")
def console_command(
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Browse and watch only: deploy, roll back, stop, aliases off.")
    ] = False,
    refresh: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Refresh interval (default 1).")
    ] = None,
    theme: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="modeldeck-dark, modeldeck-light or modeldeck-contrast."),
    ] = None,
    ascii_: AsciiFlag = False,
    no_mouse: NoMouseFlag = False,
) -> None:
    """The terminal console: models, versions and deployments, live; deploy and roll back by key.

    Defaults come from the settings file ($MODELDECK_CONFIG, else console.toml in the user config
    directory); flags override it."""
    from console.app import ModeldeckApp
    from console.config import load_config, with_flags

    try:
        config = with_flags(
            load_config(), read_only=read_only, refresh=refresh, theme=theme, ascii=ascii_, no_mouse=no_mouse
        )
    except RegistryError as exc:
        _fail(str(exc))
    _ascii(config.ascii)
    if not _stdout_is_terminal():  # escape codes would go into a pipe or file
        _fail(
            "the console needs a terminal, and stdout is not one; scripts can use the other "
            "commands (modeldeck status, models, ...) with --json"
        )
    app = ModeldeckApp(read_only=config.read_only, refresh_seconds=config.refresh, theme=config.theme)
    app.run(mouse=config.mouse)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _ascii(on: bool) -> None:
    """`--ascii`: the charts read MODELDECK_ASCII (console/widgets/chart.py)."""
    if on:
        os.environ["MODELDECK_ASCII"] = "1"


serving_commands.register(app)
alert_commands.register(app)
register_export(app)
host_commands.register(app)


def main() -> None:
    """The `modeldeck` command (`console.quick.main`, the installed entry point, does the read verbs
    without importing this module)."""
    from console import quick

    status = quick.run(sys.argv[1:])
    if status is not None:
        sys.exit(status)
    app(args=serving_commands.bare_canary(sys.argv[1:]))


if __name__ == "__main__":
    main()
