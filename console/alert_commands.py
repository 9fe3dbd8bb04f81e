"""`modeldeck objectives` and `modeldeck alerts`: objectives per deployment, alerts, silences, the webhook.

They read and write the registry itself (no supervisor needed); the supervisor reads what they set
within a few seconds (`registry.serving.alerting`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from console import output

if TYPE_CHECKING:
    from registry.alerts import AlertInfo, ObjectiveSpec, SilenceInfo
    from registry.core import Registry

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Kind = Annotated[
    str | None,
    typer.Option(
        "--objective",
        "-o",
        metavar="KIND",
        help="availability, latency, drift or performance (default: every kind).",
    ),
]

objectives_app = typer.Typer(
    help="Service-level objectives per deployment, judged with multi-window burn rates.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
alerts_app = typer.Typer(
    help="Alerts of the objectives (pending, firing, resolved), silences and the webhook.",
    invoke_without_command=True,
    rich_markup_mode=None,
)


def _run(action: Any) -> Any:
    from console.cli import _run as run_with_registry

    return run_with_registry(action)


def _fail(message: str) -> None:
    from console.cli import _fail as fail

    fail(message)


def _parsed(parse: Any, text: str) -> Any:
    from registry.alerts import ObjectiveError

    try:
        return parse(text)
    except ObjectiveError as exc:
        _fail(str(exc))


# ---------------------------------------------------------------------- objectives
@objectives_app.command("show")
def objectives_show(
    deployment: Annotated[str, typer.Argument(help="The deployment.")], json_out: JsonFlag = False
) -> None:
    """A deployment's objectives (the defaults marked)."""
    from registry import alerts

    found: list[ObjectiveSpec] = _run(lambda reg: alerts.objectives(reg, deployment))
    if json_out:
        output.print_json([o.as_dict() for o in found])
        return
    for objective in found:
        output.say(objective.describe())


@objectives_app.command("set")
def objectives_set(
    deployment: Annotated[str, typer.Argument(help="The deployment.")],
    availability: Annotated[
        str | None, typer.Option(metavar="PCT|off", help="Requests not answered 5xx, e.g. 99.9.")
    ] = None,
    latency: Annotated[
        str | None,
        typer.Option(metavar="TIME|off", help="The latency most requests stay within, e.g. 250ms."),
    ] = None,
    latency_target: Annotated[
        str | None, typer.Option(metavar="PCT", help="The share of requests within it (default 99).")
    ] = None,
    drift: Annotated[
        str | None, typer.Option(metavar="warn|drift|off", help="The drift level the data should stay below.")
    ] = None,
    performance: Annotated[
        str | None,
        typer.Option(
            metavar="PCT|off", help="The accuracy a classifier should keep (realised, else estimated)."
        ),
    ] = None,
    windows: Annotated[
        str | None,
        typer.Option(
            metavar="LONG/SHORT@BURN[:SEVERITY],...",
            help="Burn-rate windows for the objectives set here, e.g. 1h/5m@14.4:critical,6h/30m@6:warning.",
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why: kept in the ledger.")] = "",
    json_out: JsonFlag = False,
) -> None:
    """Set objectives of a deployment (what is not given stays as it is)."""
    from registry import alerts

    def apply(reg: Registry) -> list[ObjectiveSpec]:
        changes = alerts.parse_changes(
            availability=availability,
            latency=latency,
            latency_target=latency_target,
            drift=drift,
            performance=performance,
            windows=windows,
        )
        return alerts.set_objectives(reg, deployment, changes, reason=reason)

    done = _run(apply)
    if json_out:
        output.print_json([o.as_dict() for o in done])
        return
    for objective in done:
        output.say(f"{deployment}: {objective.describe()}")


@objectives_app.command("reset")
def objectives_reset(
    deployment: Annotated[str, typer.Argument(help="The deployment.")], kind: Kind = None
) -> None:
    """Back to the default objectives."""
    from registry import alerts

    _run(lambda reg: alerts.reset_objectives(reg, deployment, kind))
    output.say(f"{deployment}: {kind or 'every'} objective back to its default")


# ---------------------------------------------------------------------- alerts
@alerts_app.callback()
def alerts_list(
    ctx: typer.Context,
    everything: Annotated[bool, typer.Option("--all", help="Resolved and cleared alerts too.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many alerts.")] = 50,
    json_out: JsonFlag = False,
) -> None:
    """Alerts, newest first (pending and firing ones unless --all), and the silences in force."""
    if ctx.invoked_subcommand is not None:
        return
    from registry import alert_outbox as outbox
    from registry import alert_text, alerts

    def read(reg: Registry) -> tuple[list[AlertInfo], list[SilenceInfo], str | None, int]:
        return (
            alerts.alerts(reg, active_only=not everything, limit=limit),
            alerts.silences(reg),
            alerts.webhook(reg),
            outbox.pending_deliveries(reg),
        )

    found, quiet, url, unsent = _run(read)
    judged = _supervisor_runs()
    if json_out:
        output.print_json(
            {
                "alerts": [a.as_dict() for a in found],
                "silences": [s.as_dict() for s in quiet],
                "webhook": None if url is None else alert_text.shown_url(url),
                "supervisor": judged,
                "unsent": unsent,
            }
        )
        return
    if not found:
        output.say("no alerts" if everything else "no pending or firing alerts")
    else:
        table = output.grid("ID", "STATE", "DEPLOYMENT", "V", "OBJECTIVE", "SEVERITY", "SINCE", "WHY")
        for a in found:
            state = a.state + ("/silenced" if a.silenced and a.state in alerts.ACTIVE_STATES else "")
            since = output.when(a.fired_at or a.started_at)
            why = str(a.figures.get("summary") or a.reason)[:100]
            table.add_row(str(a.id), state, a.deployment, str(a.version), a.kind, a.severity, since, why)
        output.print_table(table)
    for s in quiet:
        output.say(f"silence {s.id}: {s.describe(output.when(s.expires_at))}")
    if url is None:
        output.say("webhook: none (modeldeck alerts webhook URL)")
    else:
        waiting = f" ({unsent} notification(s) not yet taken)" if unsent else ""
        output.say(f"webhook: {alert_text.shown_url(url)}{waiting}")
    if not judged:
        output.warn("no supervisor is running: objectives are not judged and states do not change")


@alerts_app.command("silence")
def alerts_silence(
    deployment: Annotated[str, typer.Argument(help='The deployment, or "*" for every one.')],
    duration: Annotated[str, typer.Option("--for", metavar="TIME", help="How long, e.g. 30m, 2h, 1d.")],
    kind: Kind = None,
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why: shown with the silence.")] = "",
    json_out: JsonFlag = False,
) -> None:
    """Silence a deployment's alerts: they still change and show, the webhook is not told."""
    from registry import alerts

    seconds = _parsed(alerts.parse_duration, duration)
    made: SilenceInfo = _run(
        lambda reg: alerts.add_silence(reg, deployment, seconds, kind=kind, reason=reason)
    )
    if json_out:
        output.print_json(made.as_dict())
        return
    output.say(f"silence {made.id} until {output.when(made.expires_at)}")


@alerts_app.command("unsilence")
def alerts_unsilence(
    silence: Annotated[int, typer.Argument(min=1, max=2**62, help="The silence's id.")],
) -> None:
    """End a silence now."""
    from registry import alerts

    _run(lambda reg: alerts.end_silence(reg, silence))
    output.say(f"silence {silence} ended")


@alerts_app.command("webhook")
def alerts_webhook(
    url: Annotated[
        str | None, typer.Argument(metavar="[URL|off]", help="Where to post; off: nowhere.")
    ] = None,
) -> None:
    """Show or set where alerts are posted: Alertmanager's webhook JSON, or, to a URL ending in
    /api/v2/alerts, an Alertmanager's own API."""
    from registry import alert_text, alerts

    if url is None:
        current = _run(alerts.webhook)
        output.say(alert_text.shown_url(current) if current else "none")
        return
    discarded = _run(lambda reg: alerts.set_webhook(reg, None if url == "off" else url))
    if url == "off":
        output.say(
            "webhook: none" + (f" ({discarded} notification(s) not yet taken discarded)" if discarded else "")
        )
    else:
        output.say(f"webhook: {alert_text.shown_url(url)}")


@alerts_app.command("rules")
def alerts_rules(
    deployments: Annotated[list[str] | None, typer.Argument(help="Deployments (default: every one).")] = None,
) -> None:
    """Prometheus alerting rules for the same objectives, over the supervisor's exporter."""
    from registry import alerts
    from registry.deployments import list_deployments
    from registry.monitoring.prometheus_rules import objective_rules

    def read(reg: Registry) -> dict[str, list[ObjectiveSpec]]:
        known = [d.name for d in list_deployments(reg)]
        unknown = [n for n in deployments or [] if n not in known]
        if unknown:
            raise alerts.ObjectiveError(
                f"no deployment named {unknown[0]!r}; known: {', '.join(known) or 'none'}"
            )
        return alerts.all_objectives(reg, deployments or known)

    typer.echo(objective_rules(_run(read)), nl=False)


def _supervisor_runs() -> bool:
    """Whether this home's supervisor (which judges the objectives) is running."""
    from registry.serving.client import SupervisorClient
    from registry.serving.rundir import RunDir
    from registry.settings import Settings

    home = Settings.from_env().home.expanduser().resolve()
    if not RunDir.of(home).control_socket.exists():
        return False
    with SupervisorClient(home) as client:
        return client.running()


def register(app: typer.Typer) -> None:
    """Add `objectives` and `alerts` to the `modeldeck` command."""
    app.add_typer(objectives_app, name="objectives")
    app.add_typer(alerts_app, name="alerts")
