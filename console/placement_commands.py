"""The serving verbs on a shared (PostgreSQL) registry when another host serves the deployment (or
`--on` names hosts): the change is written to the database (`registry.placement`) and each placed
host's supervisor makes it; this waits for every host that is up and prints what each did. The
local control socket is never asked for another host's deployment.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text

from console import output
from registry.errors import RegistryError


def hosts_given(on: str | None) -> list[str] | None:
    """`--on a,b` as a list (None when not given)."""
    if on is None:
        return None
    return [part.strip() for part in on.split(",") if part.strip()]


def placed_elsewhere(name: str | None) -> bool:
    """Whether deployment `name` is on a shared registry and placed on a host other than this one
    (its changes then go through the database, not this host's supervisor)."""
    if name is None:
        return False
    from registry.actor import host_label
    from registry.reader import open_reader
    from registry.settings import Settings

    settings = Settings.from_env()
    if settings.is_sqlite:
        return False
    reader = open_reader(settings)
    if reader is None:  # an older schema or an unreachable server: the supervisor's path says why
        return False
    try:
        spec = next((d for d in reader.deployments() if d.name == name), None)
    finally:
        reader.close()
    return spec is not None and any(host != host_label() for host in spec.placement)


def request(
    action: str,
    name: str,
    *,
    json_out: bool = False,
    timeout: float = 300.0,
    follow: bool = False,
    **fields: Any,
) -> None:
    """Write `action` for deployment `name` through the database and wait for its placed hosts; exit 1
    when a host failed, did not answer in `timeout`, or the registry is not shared. With `follow` (a
    canary's `--wait`), then print each host's steps until its rollout ends; exit 1 if one aborted."""
    from registry import Registry, hosts, placement

    try:
        with Registry() as reg:
            if reg.settings.is_sqlite:
                raise RegistryError(
                    "--on needs a shared registry: several hosts meet in a PostgreSQL database "
                    "(MODELDECK_DB_URL); a SQLite home has one host"
                )
            known = {h.name: h for h in hosts.hosts(reg)}
            unknown = [h for h in fields.get("placement") or [] if h not in known]
            if unknown:
                raise RegistryError(
                    f"no host {', '.join(map(repr, unknown))} has joined this registry (known: "
                    f"{', '.join(sorted(known)) or 'none'}); run `modeldeck supervisor start` there first"
                )
            asked = placement.request(reg, action, name, **fields)
            if not json_out:
                where = ", ".join(asked.placement)
                output.out.print(f"{name}: {action} requested (generation {asked.generation}) on {where}")
            shown: dict[str, tuple[Any, ...]] = {}

            def progress(found: list[placement.Outcome]) -> None:
                for o in found:
                    key = (o.generation, o.outcome, o.state)
                    if json_out or shown.get(o.host) == key or o.generation < asked.generation:
                        continue
                    shown[o.host] = key
                    output.out.print(f"  {o.host}: {_said(o, asked.generation)}")

            found = placement.wait(lambda: hosts.hosts(reg), asked, timeout=timeout, on_change=progress)
            if follow and not json_out:
                _follow(reg, asked)
    except RegistryError as exc:
        output.err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    late = [o for o in found if o.state == "up" and o.generation < asked.generation]
    failed = [o for o in found if o.generation == asked.generation and o.outcome == "failed"]
    away = [o for o in found if o.state != "up" and o.generation < asked.generation]
    if json_out:
        output.print_json(
            {
                "name": name,
                "action": action,
                "generation": asked.generation,
                "placement": asked.placement,
                "desired": asked.desired,
                "hosts": {o.host: {"state": o.state, **o.detail} for o in found},
            }
        )
    else:
        for o in away:
            output.err.print(f"note: {o.host} is {o.state}: its supervisor makes this change when it is back")
        for o in late:
            output.err.print(f"error: {o.host} did not act on it within {timeout:g} s")
    if failed or late:
        raise typer.Exit(1)


def _follow(reg: Any, asked: Any, every: float = 0.5) -> None:
    """Print each placed host's canary step as its heartbeat tells it, until no host that is up runs
    one; then how each ended, from the ledger (exit 1 if any aborted)."""
    import time

    from registry import hosts

    shown: dict[str, Any] = {}
    while True:
        running = False
        for host in hosts.hosts(reg):
            rollout = (host.deployments.get(asked.name) or {}).get("rollout")
            if host.name not in asked.placement or host.state != "up":
                continue
            running = running or rollout is not None
            step = (rollout or {}).get("weight")
            if rollout is not None and shown.get(host.name) != step:
                shown[host.name] = step
                output.out.print(
                    f"  {host.name}: {rollout['mode']} of version {rollout['version']} at {step:g}%"
                )
        if not running:
            break
        time.sleep(every)
    ends = [
        e
        for e in reg.history(asked.model).events
        if e.deployment == asked.name
        and e.kind in ("promoted", "aborted")
        and e.at >= _requested_at(reg, asked)
    ]
    for event in ends:
        output.out.print(f"  {event.detail.get('host', '?')}: {event.kind} ({event.reason})")
    if any(e.kind == "aborted" for e in ends):
        raise typer.Exit(1)


def _requested_at(reg: Any, asked: Any) -> Any:
    """When request `asked` was written (its `requested` event)."""
    return next(
        e.at
        for e in reversed(reg.history(asked.model).events)
        if e.kind == "requested"
        and e.deployment == asked.name
        and e.detail.get("generation") == asked.generation
    )


def _said(outcome: Any, generation: int) -> str:
    """One host's line: what it did with the request, or that a newer one superseded it."""
    if outcome.generation > generation:
        return f"superseded by request {outcome.generation}: {outcome.outcome} ({outcome.message})"
    if outcome.outcome == "failed":
        return f"failed: {outcome.message}"
    return str(outcome.message)
