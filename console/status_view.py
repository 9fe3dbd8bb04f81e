"""What `modeldeck status` prints, apart from the Typer command (so the light read path,
`console.quick`, prints the same without importing Typer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from console import output
from console.plain import Grid
from console.widgets.live import multivariate_text

if TYPE_CHECKING:
    from registry.info import DeploymentInfo
    from registry.serving.client import SupervisorClient


def show_status(answer: dict[str, Any], json_out: bool, host: str | None = None) -> None:
    """`modeldeck status`'s output of a status answer (the supervisor's, or `wanted()`'s); on a
    shared registry also every host's deployments (`across_hosts`), only `host`'s when given."""
    if host is not None and answer.get("placements") is None:
        output.warn("note: --host: this registry is SQLite, with one host: everything here is this host's")
    if host is not None:
        answer = only_host(answer, host)
    if json_out:
        output.print_json(answer)
        return
    if answer.get("placements") is not None:
        _print_placements(answer["placements"])
        if host is not None and host != answer.get("this_host"):
            return  # another host's: this host's supervisor has nothing to add
    supervisor = answer["supervisor"]
    store_error = answer.get("prediction_store_error")
    problem = answer.get("supervisor_problem")
    if supervisor is None and problem:
        output.warn(f"{problem}: each state is what the deployment's own port answers")
    elif problem:
        output.warn(f"note: {problem}")
    elif supervisor is None:
        output.warn(
            "no supervisor is running: each state is what the deployment's own port answers "
            "(modeldeck supervisor start)"
        )
    _exporter_note(supervisor)
    deployments = answer["deployments"]
    if not deployments:
        if not answer.get("placements"):
            output.say("no deployments; start one with: modeldeck deploy NAME[:VERSION|@ALIAS]")
        return
    table = Grid(
        ("DEPLOYMENT", "SERVING", "STANDBY", "URL", "WORKERS", "STATUS", "RESTARTS", "REQ/S", "P99", "DRIFT"),
        wrap=True,
    )
    for d in deployments:
        live = d.get("live") or {}
        table.add_row(
            d["name"],
            f"{d['model']}:{d['version']}",
            str(d["standby_version"] or "-"),
            address(d),
            f"{d.get('workers_running', '?')}/{d['workers']}",
            d.get("status", "down") + (f" ({d['message']})" if d.get("message") else ""),
            str(d.get("restarts", "-")),
            f"{live['rps']:.1f}" if live.get("rps") is not None else "-",
            f"{live['p99'] * 1e3:.2f} ms" if live.get("p99") is not None else "-",
            live.get("drift") or "-",
        )
    output.print_table(table)
    _print_rollouts(deployments)
    _print_realised(deployments)
    if store_error:
        output.warn(
            f"note: realised performance unavailable: the prediction store cannot be read: {store_error}"
        )
    for d in deployments:
        if (d.get("live") or {}).get("drift_reason"):
            output.say(f"{d['name']}: {d['live']['drift']}, {d['live']['drift_reason']}")
        if multivariate := multivariate_text(d.get("live") or {}):
            output.say(f"{d['name']}: multivariate {multivariate}")
    for d in deployments:
        if d.get("token"):
            output.say(f"{d['name']}: bearer token {d['token']}")
    _print_estimates(deployments)


def across_hosts(reader: Any) -> dict[str, Any]:
    """On a shared (PostgreSQL) registry: each deployment on each host it is placed on, as that host's
    heartbeat last told it (a lost host's as unknown, never as down), and the hosts. `reader` is a
    `registry.reader.Reader` (or anything with `deployments()` and `hosts()`)."""
    from registry.actor import host_label

    hosts = {h.name: h for h in reader.hosts()}
    rows = []
    for d in reader.deployments():
        for name in d.placement:
            host = hosts.get(name)
            entry = dict((host.deployments.get(d.name) if host else None) or {})
            live = entry.get("live") or {}
            up = host is not None and host.state == "up"
            rows.append(
                {
                    "name": d.name,
                    "host": name,
                    "host_state": host.state if host else "unknown",
                    "state": (entry.get("state") or "starting") if up else "unknown",
                    "model": d.model,
                    "version": entry.get("version") if up else None,
                    "workers": entry.get("workers") if up else None,
                    "wanted": {"version": d.desired.get("version", d.version), "generation": d.generation},
                    "acted": entry.get("generation"),
                    "outcome": entry.get("outcome"),
                    "message": entry.get("message") or "",
                    "address": f"{host.address}:{d.port}" if host else f"?:{d.port}",
                    "rps": live.get("rps") if up else None,
                    "p99": live.get("p99") if up else None,
                }
            )
    return {
        "this_host": host_label(),
        "hosts": [
            {"name": h.name, "state": h.state, "heartbeat_age": h.heartbeat_age} for h in hosts.values()
        ],
        "placements": rows,
    }


def only_host(answer: dict[str, Any], host: str) -> dict[str, Any]:
    """`answer` with only what runs on `host` (this host's supervisor's part only if it is `host`)."""
    placements = answer.get("placements")
    if placements is None:
        return answer
    mine = host == answer.get("this_host")
    return {
        **answer,
        "deployments": answer["deployments"] if mine else [],
        "placements": [p for p in placements if p["host"] == host],
    }


def _print_placements(rows: list[dict[str, Any]]) -> None:
    """Every host's deployments, one row per deployment and host."""
    if not rows:
        output.say("no deployment is placed on a host of this registry")
        return
    table = Grid(
        ("DEPLOYMENT", "HOST", "STATE", "SERVING", "WORKERS", "ADDRESS", "REQ/S", "P99", "LAST REQUEST")
    )
    for p in rows:
        state = p["state"] if p["host_state"] == "up" else f"unknown (host {p['host_state']})"
        acted = p["acted"] or 0
        request = f"#{p['wanted']['generation']}"
        if p["wanted"]["generation"] and acted < p["wanted"]["generation"]:
            request += " pending"
        elif p["outcome"] == "failed":  # the whole message is in --json; the table keeps its columns
            message = p["message"] if len(p["message"]) <= 40 else p["message"][:39] + "…"
            request += f" failed: {message}"
        table.add_row(
            p["name"],
            p["host"],
            state,
            f"{p['model']}:{p['version']}" if p["version"] is not None else "-",
            str(p["workers"]) if p["workers"] is not None else "-",
            p["address"],
            f"{p['rps']:.1f}" if p["rps"] is not None else "-",
            f"{p['p99'] * 1e3:.2f} ms" if p["p99"] is not None else "-",
            request,
        )
    output.print_table(table)


def _print_rollouts(deployments: list[dict[str, Any]]) -> None:
    """Each canary or shadow under way: where it stands, and every check's verdict and figures."""
    from console.rollout_text import check_lines, rollout_headline, traffic_text

    for d in deployments:
        if d.get("rollout"):
            traffic = traffic_text(d["rollout"])
            output.say(f"{d['name']}: {rollout_headline(d)}" + (f" · {traffic}" if traffic else ""))
            for name, verdict, why in check_lines(d["rollout"]):
                output.say(f"  {name:<12} {verdict:<5} {why}")


def _print_estimates(deployments: list[dict[str, Any]]) -> None:
    """One line per deployment with an estimated performance (see `console.performance_text`)."""
    from console.performance_text import estimated_text

    for d in deployments:
        text = estimated_text(((d.get("live") or {}).get("performance") or {}).get("estimated"))
        if text:
            output.say(f"{d['name']}: {text}")


def _print_realised(deployments: list[dict[str, Any]]) -> None:
    """A line per deployment with realised performance (from labels sent as feedback)."""
    for d in deployments:
        realised = (d.get("performance") or {}).get("realised")
        if realised and realised.get("predicted"):
            from console.performance_text import summary

            output.say(f"{d['name']} v{realised['version']} realised: {summary(realised)}")


#: Seconds `status` waits for the supervisor before it says it is not answering.
STATUS_WAIT = 2.0


def asked_status(
    client: SupervisorClient, unsupervised: Callable[[], list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """The answer `modeldeck status` shows: the supervisor's status with each deployment's live
    figures, or, with no supervisor answering, `unsupervised()`'s (default `wanted()`)."""
    from registry.errors import SupervisorError

    try:
        typed = client.status(timeout=STATUS_WAIT)
    except SupervisorError as exc:
        answer: dict[str, Any] = {"supervisor": None, "deployments": (unsupervised or wanted)()}
        if exc.status != 503:  # 503: none runs; stuck (504), a refused socket, an error: said as it is
            answer["supervisor_problem"] = str(exc)
        return answer
    answer = typed.as_dict()
    try:
        store_error = add_live_figures(client, answer["deployments"])
    except SupervisorError as exc:  # it answered the status, then not the figures in time
        answer["supervisor_problem"] = f"live figures unavailable: {exc}"
        return answer
    if store_error:
        answer["prediction_store_error"] = store_error
    return answer


def add_live_figures(client: SupervisorClient, deployments: list[dict[str, Any]]) -> str | None:
    """Requests/s over the last 10 s, last-minute p99, the drift verdict and the multivariate drift
    signal (see registry.monitoring.multivariate), from the supervisor; returns why the supervisor
    cannot read the prediction store, if it cannot."""
    cursor = client.live(timeout=STATUS_WAIT).cursor
    monitor = client.monitor(max(0, cursor - 10), timeout=STATUS_WAIT)
    recent = monitor.deployments
    for d in deployments:
        seen = recent.get(d["name"])
        points = seen.points if seen else []
        live = seen.live if seen else None
        drift: dict[str, Any] = (seen.drift if seen else None) or {}
        performance = seen.performance.as_dict() if seen else None
        d["live"] = {
            "rps": sum(p["requests"] for p in points) / len(points) if points else None,
            "p99": live["p99"] if live else None,
            "drift": drift.get("message") or drift.get("status"),
            "drift_reason": drift_reason(seen.drift if seen else None),
            "multivariate": drift.get("multivariate"),
            "performance": performance,
        }
        d["performance"] = performance or {"realised": None, "estimated": None}
    return monitor.monitoring.store_error


def drift_reason(report: dict[str, Any] | None) -> str | None:
    """Why a window warns or drifts: its worst feature's test, p-values and effect size (None if ok)."""
    from registry.monitoring.ranking import worst_first

    if not report or report.get("status") not in ("warn", "drift"):
        return None
    signals = [*(report.get("features") or []), *([report["prediction"]] if report.get("prediction") else [])]
    worst = min(signals, key=worst_first)
    others = sum(f["status"] in ("warn", "drift") for f in signals) - 1
    return f"{worst['name']}: {worst['reason']}" + (f" (+{others} more)" if others > 0 else "")


def wanted(deployments: list[DeploymentInfo] | None = None) -> list[dict[str, Any]]:
    """The registry's deployments (read here unless given), each in the state its own port tells
    (the supervisor is down)."""
    from registry.serving.probe import NO_SUPERVISOR, probe_deployments

    if deployments is None:
        from registry import Registry
        from registry.deployments import list_deployments

        with Registry() as reg:
            deployments = list_deployments(reg)
    wanted = [d.as_dict() for d in deployments]
    states = probe_deployments(wanted)
    return [{**d, "status": states[d["name"]], "message": NO_SUPERVISOR} for d in wanted]


def address(deployment: dict[str, Any]) -> str:
    """The URL to give clients: other hosts' for a server bound to every interface, else the bound one."""
    from registry.serving.addresses import local_url, outside_url

    if "url" in deployment:
        return deployment.get("outside_url") or deployment["url"]
    host, port = deployment["host"], deployment["port"]
    return outside_url(host, port) or local_url(host, port)


def _exporter_note(info: dict[str, Any] | None) -> None:
    """Say on stderr when the Prometheus exporter is not where it was asked (or missing)."""
    if info and info.get("metrics_note"):
        output.warn(f"note: {info['metrics_note']}")
