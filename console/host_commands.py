"""`modeldeck hosts`: the hosts of a shared (PostgreSQL) registry, and each one's deployments."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from console import output
from console.host_text import HEADINGS, host_cells
from registry.errors import RegistryError

hosts_app = typer.Typer(
    help="The hosts of a shared (PostgreSQL) registry: one per supervisor, kept by its heartbeat.",
    invoke_without_command=True,
    rich_markup_mode=None,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@hosts_app.callback()
def hosts(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Every host: up, lost (no heartbeat for 10 s: its deployments are unknown) or stopped."""
    if ctx.invoked_subcommand is not None:
        return
    found = _read(lambda reg: _hosts(reg))
    if json_out:
        output.print_json([host_dict(h) for h in found])
        return
    if not found:
        output.out.print(
            "no hosts: a supervisor joins when it runs on a PostgreSQL registry (modeldeck supervisor start)"
        )
        return
    table = output.grid(*HEADINGS)
    for h in found:
        table.add_row(*host_cells(h))
    output.print_table(table)


@hosts_app.command("forget")
def forget(
    name: Annotated[str, typer.Argument(metavar="HOST", help="A stopped or lost host.")],
    json_out: JsonFlag = False,
) -> None:
    """Remove a host that is stopped or lost (a machine taken out of service) from the list."""
    from registry import hosts as registry_hosts

    gone = _read(lambda reg: registry_hosts.forget(reg, name))
    if json_out:
        output.print_json(host_dict(gone))
    else:
        output.out.print(f"forgot host {name} ({gone.state})")


def host_dict(host: Any) -> dict[str, Any]:
    from dataclasses import asdict

    row = asdict(host)
    row["started_at"] = host.started_at.isoformat()
    return row


def _hosts(reg: Any) -> list[Any]:
    from registry import hosts as registry_hosts

    if reg.settings.is_sqlite:
        return []
    return registry_hosts.hosts(reg)


def _read(action: Any) -> Any:
    from registry import Registry

    try:
        with Registry() as reg:
            return action(reg)
    except RegistryError as exc:
        output.error(str(exc))
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add `modeldeck hosts` to the `modeldeck` command."""
    app.add_typer(hosts_app, name="hosts")
