"""The serving verbs of `modeldeck`: deploy, rollback, stop, scale, status, logs and `supervisor ...`.

Actions go through the supervisor of the home (started on demand) and print the result when the
action finished; failures are one line on stderr (plus the worker's last log lines) and exit 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.text import Text

from console import output, placement_commands
from console.status_view import asked_status, show_status
from registry.errors import RegistryError, SupervisorError

if TYPE_CHECKING:
    from registry.serving.protocol import DeploymentStatus, SupervisorInfo

T = TypeVar("T")
supervisor_app = typer.Typer(
    help="The serving supervisor daemon of this home.", no_args_is_help=True, rich_markup_mode=None
)
#: A canary's steps when `--canary` is given without them (percent of requests per step).
DEFAULT_STEPS = "5,25,50,100"
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Reason = Annotated[str, typer.Option("--reason", "-m", help="Why: kept in the model's history.")]
On = Annotated[
    str | None,
    typer.Option(
        metavar="HOST[,HOST]",
        help="On a shared (PostgreSQL) registry: the hosts that serve it; their supervisors make the "
        "change, wherever this command runs (see `modeldeck hosts`).",
    ),
]
PredictTimeout = Annotated[
    float | None,
    typer.Option(
        metavar="SECONDS", help="Answer 503 when one model call takes longer (default: no timeout)."
    ),
]
MaxConnections = Annotated[
    int | None,
    typer.Option(metavar="N", help="Open connections per worker (default 4096); idle ones make room."),
]
IdleTimeout = Annotated[
    float | None, typer.Option(metavar="SECONDS", help="Close a connection idle this long (default 15).")
]
HeaderTimeout = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="408 unless a request's headers arrive in time (default 10)."),
]
BodyTimeout = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="408 unless a request's body arrives in time (default 30)."),
]
Otlp = Annotated[
    str | None,
    typer.Option(
        metavar="URL|off",
        help="Export OpenTelemetry spans and metrics to this OTLP/HTTP receiver (http(s)://HOST:PORT), "
        "or not (default: the supervisor's --otlp, then as the supervisor's OTEL_EXPORTER_OTLP_* "
        "variables say); needs modeldeck[otel].",
    ),
]
ServeOtlp = Annotated[
    str | None,
    typer.Option(
        metavar="URL|off",
        help="Export OpenTelemetry spans and metrics to this OTLP/HTTP receiver (http(s)://HOST:PORT), "
        "or not (default: as the OTEL_EXPORTER_OTLP_* variables say); needs modeldeck[otel].",
    ),
]


def checked_otlp(otlp: str | None) -> str | None:
    """`--otlp`'s value checked, and refused in one line when OpenTelemetry is not installed or when
    export would be on (by the flag or this command's `OTEL_*` environment) over another protocol than
    OTLP/HTTP protobuf."""
    from registry.serving.options import check_otlp
    from registry.serving.telemetry import require_installed, require_usable

    def check() -> str | None:
        url = None if otlp is None else check_otlp(otlp)
        require_installed(url)
        require_usable(url)
        return url

    return checked(check)


def checked(check: Callable[[], T]) -> T:
    """`check()`'s value; an `OptionError` becomes one line on stderr and exit status 1."""
    from registry.serving.options import OptionError

    try:
        return check()
    except OptionError as exc:
        output.err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None


@contextmanager
def _client(changes: bool = False) -> Iterator[Any]:
    """A supervisor client; for `changes` (deploy, roll back, stop, scale), refused at once when the
    registry is read-only to this process, saying why."""
    from registry.serving.client import SupervisorClient
    from registry.settings import Settings
    from registry.write_access import read_only_reason

    client = None
    try:
        settings = Settings.from_env()
        if changes and (why := read_only_reason(settings)):
            raise RegistryError(f"registry {settings.home} is read-only: {why}; nothing was changed")
        client = SupervisorClient()
        yield client
    except SupervisorError as exc:
        output.err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
        for line in exc.log_tail[-10:]:
            output.err.print(f"  | {line}")
        raise typer.Exit(1) from None
    except RegistryError as exc:
        output.err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    finally:
        if client is not None:
            client.close()


def _timed(action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def deploy(
    ref: Annotated[str, typer.Argument(metavar="REF", help="NAME, NAME:VERSION or NAME@ALIAS")],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Deployment name (default: the model's name).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Port (default: first free from 8080).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(metavar="ADDR", help="Address to bind (default 127.0.0.1).")
    ] = None,
    workers: Annotated[int | None, typer.Option(metavar="K", help="Worker processes (default 1).")] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Beyond loopback, serve without the bearer token (not advised).")
    ] = False,
    batching: Annotated[
        str, typer.Option(metavar="auto|on|off", help="Micro-batch concurrent requests (auto: slow models).")
    ] = "auto",
    max_body_mb: Annotated[float, typer.Option(metavar="MB", help="Largest request body accepted.")] = 8.0,
    redact: Annotated[
        bool, typer.Option("--redact", help="Leave input values out of error messages.")
    ] = False,
    no_monitoring: Annotated[
        bool,
        typer.Option("--no-monitoring", help="Leave out metrics and input sampling (to measure their cost)."),
    ] = False,
    no_prediction_store: Annotated[
        bool,
        typer.Option(
            "--no-prediction-store", help="Keep no predictions for labels (no realised performance)."
        ),
    ] = False,
    predict_timeout: PredictTimeout = None,
    max_connections: MaxConnections = None,
    idle_timeout: IdleTimeout = None,
    header_timeout: HeaderTimeout = None,
    body_timeout: BodyTimeout = None,
    otlp: Otlp = None,
    canary: Annotated[
        str | None,
        typer.Option(
            metavar="[STEPS]",
            help="Beside the serving version, give this one a rising share of requests (percent per "
            f"step, default {DEFAULT_STEPS}); promoted when every check passes, aborted when one fails.",
        ),
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Beside the serving version, send this one a copy of every request; "
            "promote or abort it by hand.",
        ),
    ] = False,
    step_seconds: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="How long each canary step runs (default 60).")
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            metavar="SHARE", help="Least share of inputs both versions must agree on (default 0.8)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --canary: print each step and return when it ends.")
    ] = False,
    on: On = None,
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Serve a version; a running deployment switches to it with zero failed requests, or tries it as a
    canary or shadow first."""
    from registry.serving.options import check_deploy

    options = {
        "batching": batching,
        "max_body_mb": max_body_mb,
        "redact": redact,
        "no_auth": no_auth,
        "monitoring": not no_monitoring,
        "prediction_store": not no_prediction_store,
        "max_connections": max_connections,
        "idle_timeout": idle_timeout,
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "otlp": checked_otlp(otlp),
    }
    if predict_timeout is not None:
        options["predict_timeout"] = predict_timeout
    name, host, port, workers, options = checked(lambda: check_deploy(name, host, port, workers, options))
    rollout, analysis = checked(lambda: _rollout(canary, shadow, step_seconds, min_agreement))
    placed = placement_commands.hosts_given(on)
    target = name or ref.split("@")[0].split(":")[0]
    if placed is not None or placement_commands.placed_elsewhere(target):
        placement_commands.request(
            rollout or "deploy",
            target,
            ref=ref,
            workers=workers,
            placement=placed,
            bind=host,
            port=port,
            options=options,
            analysis=analysis,
            reason=reason,
            json_out=json_out,
            follow=wait and rollout == "canary",
        )
        return
    with _client(changes=True) as client:
        result, seconds = _timed(
            lambda: client.deploy(
                ref,
                name=name,
                host=host,
                port=port,
                workers=workers,
                options=options,
                reason=reason,
                rollout=rollout,
                analysis=analysis,
            )
        )
        if client.started_daemon:  # this deploy started the supervisor: say where its exporter went
            _exporter_note(client.status().supervisor)
        if rollout is not None and not json_out:
            _rollout_started(result)
            if wait:
                _follow(client, result.name)
            return
    if json_out:
        output.print_json(result.as_dict())
        return
    if result.get("note"):
        output.out.print(result.note)
        return
    standby = f"; standby {result.model}:{result.standby_version}" if result.standby_version else ""
    output.out.print(
        f"{result.name}: {result.model}:{result.version} serves on {address(result)} "
        f"({_plural(result.workers_running, 'worker')}{standby}; {seconds:.1f} s)"
    )
    if result.outside_url:
        output.out.print(
            f"bound to every interface ({result.host}): other hosts use {result.outside_url}"
            f" (or this host's name), this host also {result.url}"
        )
    if result.get("token"):
        output.out.print(f"clients must send: Authorization: Bearer {result.token}")


def bare_canary(args: list[str]) -> list[str]:
    """The command line with `--canary` given no steps (last, or before another option) taking the
    default ones: Typer has no option with an optional value."""
    if not args or args[0] != "deploy" or "--canary" not in args:
        return args
    at = args.index("--canary")
    if at + 1 < len(args) and not args[at + 1].startswith("-"):
        return args
    return [*args[: at + 1], DEFAULT_STEPS, *args[at + 1 :]]


def _rollout(
    canary: str | None, shadow: bool, step_seconds: float | None, min_agreement: float | None
) -> tuple[str | None, dict[str, Any]]:
    """The rollout a deploy asks for and its analysis settings (an OptionError names the option)."""
    from registry.monitoring.canary import parse_steps
    from registry.serving.options import OptionError

    if canary is not None and shadow:
        raise OptionError("rollout", "--canary and --shadow cannot go together: choose one")
    if canary is None and not shadow:
        if step_seconds is not None or min_agreement is not None:
            raise OptionError("rollout", "--step-seconds and --min-agreement need --canary or --shadow")
        return None, {}
    analysis: dict[str, Any] = {}
    if canary is not None:
        try:
            analysis["steps"] = parse_steps(canary)
        except ValueError as exc:
            raise OptionError("canary", f"--canary: {exc}") from None
    if step_seconds is not None:
        analysis["step_seconds"] = step_seconds
    if min_agreement is not None:
        analysis["min_agreement"] = min_agreement
    return ("canary" if canary is not None else "shadow"), analysis


def _rollout_started(result: DeploymentStatus) -> None:
    from registry.serving.protocol import RolloutStatus

    rollout = result.rollout
    assert isinstance(rollout, RolloutStatus)  # a rollout's deploy answers with it
    if rollout.mode == "canary":
        steps = " -> ".join(f"{w:g}%" for w in rollout.steps)
        output.out.print(
            f"{result.name}: canary of {result.model}:{rollout.version} at {rollout.weight:g}% beside "
            f"version {result.version} (steps {steps}, {rollout.settings['step_seconds']:g} s each); "
            f"it is promoted when every check passes, aborted when one fails"
        )
    else:
        output.out.print(
            f"{result.name}: shadow of {result.model}:{rollout.version} gets a copy of every request "
            f"to version {result.version}"
        )
    output.out.print(
        f"watch: modeldeck status (or the console); end it: modeldeck promote|abort {result.name}"
    )


def _follow(client: Any, name: str) -> None:
    """Print each step of `name`'s rollout until it ends; exit 1 if it was aborted."""
    from registry import Registry

    shown = None
    while True:
        deployment = next((d for d in client.status().deployments if d.name == name), None)
        rollout = deployment.get("rollout") if deployment is not None else None
        if rollout is None:
            break
        line = f"step {rollout.step}/{len(rollout.steps)} at {rollout.weight:g}%: " + ", ".join(
            f"{c['name']} {c['verdict']}" for c in rollout.checks
        )
        if line != shown:
            output.out.print(line)
            shown = line
        time.sleep(0.5)
    with Registry() as reg:
        last = next(
            e
            for e in reversed(reg.history(deployment.model if deployment else name).events)
            if e.deployment == name and e.kind in ("promoted", "aborted")
        )
    if last.kind == "promoted":
        output.out.print(f"{name}: promoted; version {last.to_version} serves ({last.reason})")
        return
    output.err.print(
        Text.assemble(("aborted:", "bold red"), f" {name} serves version {last.from_version}: {last.reason}")
    )
    raise typer.Exit(1)


def promote(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Deployment name.")],
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Make the candidate of a canary or shadow the serving version now (a switch, no failed request)."""
    if placement_commands.placed_elsewhere(name):
        placement_commands.request("promote", name, reason=reason, json_out=json_out)
        return
    with _client(changes=True) as client:
        result, seconds = _timed(lambda: client.promote(name, reason=reason))
    if json_out:
        output.print_json(result.as_dict())
        return
    output.out.print(f"{name}: promoted; {result.model}:{result.version} serves ({seconds:.1f} s)")


def abort(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Deployment name.")],
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """End a canary or shadow: every request to the serving version again, the candidate stopped."""
    if placement_commands.placed_elsewhere(name):
        placement_commands.request("abort", name, reason=reason, json_out=json_out)
        return
    with _client(changes=True) as client:
        result, seconds = _timed(lambda: client.abort(name, reason=reason))
    if json_out:
        output.print_json(result.as_dict())
        return
    output.out.print(
        f"{name}: aborted; {result.model}:{result.version} serves every request ({seconds:.2f} s)"
    )


def rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Deployment name.")],
    to: Annotated[
        int | None, typer.Option("--to", metavar="VERSION", help="Version (default: the warm standby).")
    ] = None,
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Put the previous version (or --to VERSION) back in service; instant when it is on standby."""
    if placement_commands.placed_elsewhere(name):
        placement_commands.request("rollback", name, to=to, reason=reason, json_out=json_out)
        return
    with _client(changes=True) as client:
        result, seconds = _timed(lambda: client.rollback(name, to, reason=reason))
    if json_out:
        output.print_json(result.as_dict())
        return
    output.out.print(
        f"{name}: rolled back to {result.model}:{result.version} in {seconds:.2f} s"
        + (f" (standby: version {result.standby_version})" if result.standby_version else "")
    )


def stop(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Deployment name.")],
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Drain and stop a deployment's servers, and forget it."""
    if placement_commands.placed_elsewhere(name):
        placement_commands.request("stop", name, reason=reason, json_out=json_out)
        return
    with _client(changes=True) as client:
        result = client.stop(name, reason=reason)
    if json_out:
        output.print_json(result.as_dict())
    else:
        output.out.print(f"{name}: stopped")


def scale(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Deployment name.")],
    workers: Annotated[int, typer.Argument(metavar="K", help="Worker processes (per host).")],
    on: On = None,
    reason: Reason = "",
    json_out: JsonFlag = False,
) -> None:
    """Run K worker processes for a deployment (on each of its hosts; --on moves it to these hosts)."""
    from registry.serving.options import check_workers

    workers = checked(lambda: check_workers(workers))
    placed = placement_commands.hosts_given(on)
    if placed is not None or placement_commands.placed_elsewhere(name):
        placement_commands.request(
            "scale", name, workers=workers, placement=placed, reason=reason, json_out=json_out
        )
        return
    with _client(changes=True) as client:
        result = client.scale(name, workers, reason=reason)
    if json_out:
        output.print_json(result.as_dict())
    else:
        running = _plural(result.workers_running, "worker")
        output.out.print(f"{name}: {running} serving {result.model}:{result.version}")


def status(
    host: Annotated[
        str | None,
        typer.Option("--host", metavar="HOST", help="On a shared registry: only what runs on this host."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Deployments and their worker processes (without a supervisor: what each server's port answers);
    on a shared (PostgreSQL) registry, every host's deployments too."""
    with _client() as client:
        answer = asked_status(client)
    answer.update(_across_hosts())
    show_status(answer, json_out, host)


def _across_hosts() -> dict[str, Any]:
    """`status_view.across_hosts` on a shared registry, else nothing."""
    from console.status_view import across_hosts
    from registry.reader import reading
    from registry.settings import Settings

    settings = Settings.from_env()
    if settings.is_sqlite:
        return {}
    with reading(settings) as reader:
        return across_hosts(reader) if reader is not None else {}


def address(deployment: dict[str, Any] | DeploymentStatus) -> str:
    """The URL to give clients: other hosts' for a server bound to every interface, else the bound one."""
    from registry.serving.addresses import local_url, outside_url

    if "url" in deployment:
        return deployment.get("outside_url") or deployment["url"]
    host, port = deployment["host"], deployment["port"]
    return outside_url(host, port) or local_url(host, port)


def logs(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Deployment name.")],
    lines: Annotated[
        int | None,
        typer.Option("--lines", "-n", metavar="N", help="How many lines (default 50; 10 with --follow)."),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """The last lines of a deployment's worker log (rotated by size in $MODELDECK_HOME/logs)."""
    from registry.serving import logs as log_files
    from registry.serving.client import SupervisorClient
    from registry.serving.options import check_name

    checked(lambda: check_name(name))
    path = SupervisorClient().rundir.deployment_log(name)
    if not path.exists():
        output.err.print(Text.assemble(("error:", "bold red"), f" {_no_log(name, path)}"))
        raise typer.Exit(1)
    reader = log_files.LogReader(path, lines if lines is not None else 10 if follow else 50)
    try:
        for line in reader.read():
            output.out.print(line)
        while follow:
            new = reader.read()
            for line in new:
                output.out.print(line)
            if not new:
                time.sleep(0.25)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()


def _no_log(name: str, path: Any) -> str:
    """Why there is no log for `name`: not a deployment (and which are), or not started yet."""
    from registry import Registry
    from registry.deployments import list_deployments

    try:
        with Registry() as reg:
            known = sorted(d.name for d in list_deployments(reg))
    except RegistryError:
        known = []
    known += sorted(
        p.stem for p in path.parent.glob("*.log") if p.stem not in known and p.stem != "supervisor"
    )
    if name in known:
        return f"no log yet for deployment {name!r} ({path})"
    return f"no deployment {name!r}; known: {', '.join(known) or 'none'}"


@supervisor_app.command("start")
def supervisor_start(
    no_standby: Annotated[
        bool, typer.Option("--no-standby", help="Do not keep the previous version warm.")
    ] = False,
    no_auto_rollback: Annotated[
        bool, typer.Option("--no-auto-rollback", help="Never roll back a crash-looping version by itself.")
    ] = False,
    drain_grace: Annotated[
        float, typer.Option(metavar="SECONDS", help="How long old workers may finish kept-alive connections.")
    ] = 5.0,
    metrics: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Prometheus exporter address (an error if taken), or 'off' (default: 127.0.0.1:9464, "
            "else a free port).",
        ),
    ] = None,
    hang_timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Kill and restart a worker silent this long (default 10; 0: never)."
        ),
    ] = None,
    load_timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="How long a version may take to load (default 180)."),
    ] = None,
    drift_rows: Annotated[
        int | None, typer.Option(metavar="N", help="Drift window: at most this many rows (default 10000).")
    ] = None,
    drift_minutes: Annotated[
        float | None, typer.Option(metavar="M", help="Drift window: rows this recent (default 60).")
    ] = None,
    keep_10s_hours: Annotated[
        float | None, typer.Option(metavar="H", help="Keep 10 s rollups this many hours (default 24).")
    ] = None,
    keep_1m_days: Annotated[
        float | None, typer.Option(metavar="D", help="Keep 1 min rollups this many days (default 30).")
    ] = None,
    otlp: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Workers export OpenTelemetry to this OTLP/HTTP receiver unless their deployment's "
            "--otlp says otherwise; needs modeldeck[otel].",
        ),
    ] = None,
) -> None:
    """Start the daemon; it brings every deployment in the registry back up."""
    from registry.serving.options import check_metrics_address, check_seconds, flag

    drain_grace = checked(lambda: check_seconds("drain_grace", drain_grace))
    flags = [f"--drain-grace={drain_grace}"]
    daemon_flags = {  # passed to the daemon as they are, once checked
        "hang_timeout": (hang_timeout, "seconds", 0),
        "load_timeout": (load_timeout, "seconds", 1),
        "drift_rows": (drift_rows, "rows", 100),
        "drift_minutes": (drift_minutes, "minutes", 1),
        "keep_10s_hours": (keep_10s_hours, "hours", 1),
        "keep_1m_days": (keep_1m_days, "days", 1),
    }
    for field, (value, unit, least) in daemon_flags.items():
        if value is None:
            continue
        if not least <= value < float("inf"):
            output.err.print(f"error: {flag(field)} must be at least {least} {unit}, not {value}")
            raise typer.Exit(1)
        flags.append(f"{flag(field)}={value}")
    if metrics:
        checked(lambda: check_metrics_address(metrics))
        flags.append(f"--metrics={metrics}")
    otlp = checked_otlp(otlp)
    if otlp and otlp != "off":
        flags.append(f"--otlp={otlp}")
    flags += ["--no-standby"] if no_standby else []
    flags += ["--no-auto-rollback"] if no_auto_rollback else []
    with _client() as client:
        started = client.ensure_running(*flags)
        answer = client.wait_settled()
    info = answer.supervisor
    word = "started" if started else "already running"
    output.out.print(f"supervisor {word} (pid {info.pid}) for {info.home}")
    if not started and metrics and not _exporter_is(info, metrics):
        output.err.print(
            f"note: --metrics {metrics} not applied: the running supervisor keeps its exporter "
            f"({info.metrics or 'off'}); `modeldeck supervisor stop` first to change it"
        )
    if info.metrics:
        output.out.print(f"  Prometheus: {info.metrics} (targets for file_sd: {info.targets})")
    if otlp and otlp != "off" and not started and info.otlp != otlp:
        output.err.print(
            f"note: --otlp {otlp} not applied: the running supervisor's workers export to "
            f"{info.otlp or 'what their deployment or environment says'}; "
            "`modeldeck supervisor stop` first to change it"
        )
    if info.otlp:
        output.out.print(f"  OpenTelemetry: {info.otlp}")
    _exporter_note(info)
    for d in answer.deployments:
        message = f" ({d.message})" if d.message else ""
        output.out.print(f"  {d.name}: {d.model}:{d.version} {d.status} on {address(d)}{message}")


@supervisor_app.command("stop")
def supervisor_stop(
    servers: Annotated[
        bool, typer.Option("--servers", help="Stop the model servers too (they come back on start).")
    ] = False,
) -> None:
    """Stop the daemon. Model servers keep serving unless --servers; a new daemon re-adopts them."""
    with _client() as client:
        stopped = client.shutdown(stop_servers=servers)
    if not stopped:
        output.out.print("no supervisor was running")
    else:
        output.out.print(
            "supervisor stopped" + (" with its model servers" if servers else "; model servers keep serving")
        )


@supervisor_app.command("status")
def supervisor_status(json_out: JsonFlag = False) -> None:
    """Whether the daemon runs, its pid and home."""
    with _client() as client:
        info = client.status().supervisor if client.running() else None
    if json_out:
        output.print_json(info.as_dict() if info is not None else None)
    elif info is None:
        output.out.print("no supervisor is running")
        raise typer.Exit(3)
    else:
        output.out.print(f"supervisor running (pid {info.pid}) for {info.home}")


def _exporter_is(info: SupervisorInfo, address: str) -> bool:
    """Whether the running supervisor's exporter is at `address` (HOST:PORT, or 'off')."""
    if address == "off":
        return not info.metrics
    return info.metrics == f"http://{address}/metrics"


def _exporter_note(info: SupervisorInfo | None) -> None:
    """Say on stderr when the Prometheus exporter is not where it was asked (or missing)."""
    if info is not None and info.metrics_note:
        output.err.print(f"note: {info.metrics_note}")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def register(app: typer.Typer) -> None:
    """Add the serving verbs to the `modeldeck` command."""
    for command in (deploy, rollback, promote, abort, stop, scale, status, logs):
        app.command()(command)
    app.add_typer(supervisor_app, name="supervisor")
