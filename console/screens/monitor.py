"""Monitor one deployment: requests, errors, latency, resources and drift, live."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from console.actions import bindings
from console.backend import READ_TIMEOUT, Overview, placed_point
from console.screens.base import OverviewScreen
from console.widgets.chart import Chart, ChartGrid
from console.widgets.live import multivariate_text
from console.widgets.tables import FitTable
from registry.errors import SupervisorError
from registry.monitoring.ranking import worst_first

HISTORY = 300  # points (seconds) on the charts
DRIFT_MINUTES = 30  # the drift-share chart's span


@dataclass
class MonitorRead:
    """What one poll of the monitor read (in the worker thread)."""

    #: the stored drift shares (the first read only, else None)
    history: list[tuple[float, float]] | None
    #: False: the supervisor did not answer (the rest is empty)
    answered: bool = False
    cursor: int = 0
    points: list[dict[str, Any]] = field(default_factory=list)
    drift: dict[str, Any] | None = None
    performance: dict[str, Any] = field(default_factory=dict)
    #: the hosts of a deployment placed elsewhere, whose heartbeats gave the points (None: this host's)
    placed: list[str] | None = None


class MonitorScreen(OverviewScreen[MonitorRead]):
    """Charts redraw only when new points arrive; the drift table lists the worst features first."""

    AUTO_FOCUS = "#drift"
    BINDINGS = bindings("monitor")
    DEFAULT_CSS = """
    MonitorScreen #drift { height: 1fr; }
    MonitorScreen #summary { height: auto; padding: 0 1; }
    MonitorScreen #performance { height: auto; padding: 0 1; }
    MonitorScreen #rollout { height: auto; padding: 0 1; display: none; }
    MonitorScreen #rollout.on { display: block; }
    """

    def __init__(self, deployment: str) -> None:
        super().__init__(name="monitor")
        self.deployment = deployment
        self.points: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.cursor = 0
        self.drift: dict[str, Any] | None = None
        #: {"realised": ..., "estimated": ...} of the serving version, from the supervisor
        self.performance: dict[str, Any] = {}
        #: (time, drifted share of features): stored rollups first, then each new report
        self.drift_shares: list[tuple[float, float]] = []
        self._history_read = False
        self._fresh = False
        self._rollout = False
        #: the hosts serving it when it is placed elsewhere (its points come from their heartbeats)
        self.placed: list[str] | None = None

    def body(self) -> ComposeResult:
        yield Static(f" {self.deployment}: waiting for data", id="summary", markup=False)
        yield Static("", id="performance", markup=False)
        yield Static("", id="rollout", markup=False)
        with ChartGrid(id="charts"):
            yield Chart(id="traffic")
            yield Chart(id="latency")
            yield Chart(id="errors")
            yield Chart(id="cpu")
            yield Chart(id="memory")
            yield Chart(id="drift-share")
        table: DataTable[str] = FitTable(
            drop=("PSI", "UNSEEN", "MISSING", "KIND"), cursor_type="row", zebra_stripes=True, id="drift"
        )
        table.add_columns("FEATURE", "STATUS", "REASON", "KIND", "MISSING", "UNSEEN", "PSI")
        yield table

    def request(self) -> tuple[int, bool]:
        """The cursor of the points already here, and whether the stored drift shares were read."""
        return self.cursor, self._history_read

    def fetch(self, request: tuple[int, bool]) -> MonitorRead:
        cursor, history_read = request
        backend = self.deck.backend
        # once: while the supervisor is down no rollups are written
        read = MonitorRead(None if history_read else backend.drift_history(self.deployment, DRIFT_MINUTES))
        elsewhere = backend.placed_elsewhere(self.deployment)
        if elsewhere is not None:  # another host's supervisor has the series: its heartbeats have a point
            point = placed_point(elsewhere, backend.hosts())
            read.answered, read.cursor, read.placed = True, cursor, list(elsewhere.placement)
            if point is not None and point["t"] * 1000 > cursor:  # here the cursor is the newest point's ms
                read.points, read.cursor = [point], int(point["t"] * 1000)
            return read
        try:
            answer = backend.client.monitor(cursor, self.deployment, timeout=READ_TIMEOUT)
        except SupervisorError:  # the banner says so (from the overview); the charts keep what they have
            return read
        seen = answer.deployments.get(self.deployment)
        read.answered, read.cursor = True, answer.cursor
        if seen is not None:
            # the charts' widgets take the points as plain dicts (`LivePoint`s are plain dicts at runtime)
            read.points = cast("list[dict[str, Any]]", seen.points)
            read.drift = seen.drift
            read.performance = seen.performance.as_dict()
        return read

    def take(self, extra: MonitorRead, request: tuple[int, bool]) -> None:
        self._fresh = False
        if request != self.request():
            return  # read for a cursor already moved past (a refresh raced a poll): nothing new in it
        if extra.history is not None:
            self.drift_shares, self._history_read = extra.history, True
        if not extra.answered:
            return
        self._fresh = bool(extra.points)
        self.placed = extra.placed
        self.points.extend(extra.points)
        self.cursor = extra.cursor
        self.drift = extra.drift
        self.performance = extra.performance
        drift = self.drift or {}
        judged = drift.get("status") in ("ok", "warn", "drift")
        if judged and (not self.drift_shares or drift["t"] > self.drift_shares[-1][0]):
            self.drift_shares.append((drift["t"], drift["drifted_share"]))
            start = drift["t"] - 60 * DRIFT_MINUTES
            self.drift_shares = [(t, share) for t, share in self.drift_shares if t >= start]

    def show(self, overview: Overview) -> None:
        self._show_rollout(overview.live.get(self.deployment) or {})
        if not self._fresh:
            return
        points = list(self.points)
        last = points[-1]
        stale = f", {last['stale']} stale" if last.get("stale") else ""
        verdict = (self.drift or {}).get("status", "-")
        if (self.drift or {}).get("message"):  # e.g. the reference sample is damaged
            verdict = (self.drift or {})["message"]
        workers = f"{last['workers']} worker{'s' if last['workers'] != 1 else ''}{stale}"
        summary = self.query_one("#summary", Static)
        phrases = [f"{self.deployment}: version {last['version']}, {workers}", f"drift: {verdict}"]
        if self.placed:  # figures from the serving hosts' heartbeats, every 2 s
            where = ", ".join(self.placed)
            phrases[1] = f"on {where}: from its heartbeats; drift, CPU and memory are in the console there"
        if multivariate := multivariate_text(self.drift):
            phrases.append(f"multivariate: {multivariate}")
        phrases += version_figures(points)
        width = (summary.size.width or self.app.size.width) - 3
        summary.update(pack(phrases, width))
        self.query_one("#performance", Static).update(performance_text(self.performance, width))
        seconds_ago = [p["t"] - last["t"] for p in points]  # the x axis of the live charts
        self.query_one("#traffic", Chart).plot(
            "requests/s", by_version(points, "req/s", lambda p: p["rps"], _part("rps")), xs=seconds_ago
        )
        self.query_one("#latency", Chart).plot(
            "latency p50/p95/p99 (ms)",
            {
                label: series
                for q in ("p50", "p95", "p99")
                # during a canary or shadow each version has its own p99 only
                for label, series in by_version(points, q, _in_ms(q), _part(q, 1e3)).items()
                if any(value is not None for value in series)
            },
            xs=seconds_ago,
        )
        self.query_one("#errors", Chart).plot(
            "errors (% of requests)",
            by_version(points, "4xx+5xx %", _error_percent, _server_error_percent),
            xs=seconds_ago,
        )
        workers_of = worker_labels(points)
        self.query_one("#cpu", Chart).plot(
            "CPU % per worker",
            {
                label: [((p.get("processes") or {}).get(pid) or {}).get("cpu") for p in points]
                for pid, label in workers_of.items()
            },
            xs=seconds_ago,
        )
        self.query_one("#memory", Chart).plot(
            "memory (MB) per worker",
            {
                label: [_mb(((p.get("processes") or {}).get(pid) or {}).get("rss")) for p in points]
                for pid, label in workers_of.items()
            },
            xs=seconds_ago,
        )
        self.query_one("#drift-share", Chart).plot(
            f"drifted share of features (last {DRIFT_MINUTES} min)",
            {"share": [share for _, share in self.drift_shares]},
            xs=[t - last["t"] for t, _ in self.drift_shares],
        )
        self._drift_table()

    def _show_rollout(self, live: dict[str, Any]) -> None:
        """A canary's or shadow's step, next check and every check's verdict, above the charts."""
        from console.rollout_text import check_lines, rollout_headline, traffic_text

        panel = self.query_one("#rollout", Static)
        rollout = live.get("rollout")
        if bool(rollout) != self._rollout:
            self._rollout = bool(rollout)
            self.refresh_bindings()
        panel.set_class(bool(rollout), "on")
        if not rollout:
            panel.update("")
            return
        traffic = traffic_text(rollout)
        lines = [rollout_headline(live) + (f" · {traffic}" if traffic else "") + " · P promote · A abort"]
        lines += [f"  {name:<11} {verdict:<5} {why}" for name, verdict, why in check_lines(rollout)]
        panel.update("\n".join(lines))

    def _drift_table(self) -> None:
        table = self.query_one("#drift", DataTable)
        table.clear()
        report = self.drift or {}
        features = list(report.get("features") or [])
        if report.get("prediction"):
            features.append(report["prediction"])
        for f in sorted(features, key=worst_first):
            table.add_row(
                f["name"],
                f["status"],
                f.get("reason") or "-",
                f["kind"],
                f"{100 * f['missing_share']:.1f}%",
                f"{100 * f['unseen_share']:.1f}%" if f["kind"] == "categorical" else "-",
                _num(f.get("psi")),
            )

    def action_logs(self) -> None:
        self.deck.open_deployment("logs", self.deployment)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Promote and abort are offered only while a canary or shadow is under way."""
        if action not in ("promote", "abort"):
            return True
        return None if self.deck.read_only and self._rollout else self._rollout

    def action_promote(self) -> None:
        self.deck.operations.promote(self.deployment)

    def action_abort(self) -> None:
        self.deck.operations.abort(self.deployment)

    def action_charts(self) -> None:
        self.query_one(ChartGrid).next_page()


Series = list[float | None]


def by_version(
    points: list[dict[str, Any]],
    label: str,
    value: Callable[[dict[str, Any]], float | None],
    part: Callable[[dict[str, Any]], float | None] = lambda figures: None,
) -> dict[str, Series]:
    """One series per version in the window (gaps where another served), so a deploy shows the old
    and the new version's figures side by side; a single version keeps the plain label. Points of a
    canary or shadow (both versions serving at once) give each version's own figures (`part` of the
    point's `by_version` entry)."""
    versions = sorted({int(v) for p in points for v in p.get("by_version") or (p["version"],)})
    if len(versions) == 1:
        return {label: [value(p) for p in points]}

    def figure(point: dict[str, Any], version: int) -> float | None:
        split = point.get("by_version")
        if split is None:
            return value(point) if point["version"] == version else None
        mine = split.get(str(version))
        return part(mine) if mine else None

    return {f"{label} v{v}": [figure(p, v) for p in points] for v in versions}


def _part(key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    """A version's figure `key` from a point's `by_version` entry, times `scale`."""
    return lambda figures: None if figures.get(key) is None else figures[key] * scale


def _server_error_percent(figures: dict[str, Any]) -> float | None:
    return 100 * figures["server_errors"] / figures["requests"] if figures["requests"] else None


def version_figures(points: list[dict[str, Any]]) -> list[str]:
    """Per version in the window, newest first: mean req/s, worst p99 and error share while it served."""
    texts = []
    order = [int(v) for p in reversed(points) for v in p.get("by_version") or (p["version"],)]
    for version in dict.fromkeys(order):
        # a canary's or shadow's points carry each version's own figures (5xx only)
        mine = [
            p["by_version"][str(version)] if p.get("by_version") else p
            for p in points
            if str(version) in (p.get("by_version") or {})
            or (not p.get("by_version") and p["version"] == version)
        ]
        requests = sum(p["requests"] for p in mine)
        errors = sum(p.get("client_errors", 0) + p["server_errors"] for p in mine)
        p99s = [p["p99"] for p in mine if p["p99"] is not None]
        texts.append(
            f"v{version}: {sum(p['rps'] for p in mine) / len(mine):.1f} req/s, p99 "
            + (f"{max(p99s) * 1e3:.1f} ms" if p99s else "-")
            + (f", {100 * errors / requests:.1f}% errors" if requests else "")
            + (f" ({len(mine)} s)" if len(mine) < len(points) else "")
        )
    return texts


def realised_phrases(performance: dict[str, Any]) -> list[str]:
    """The realised-performance line: the serving version's figures from labels, or why there are none."""
    from console.performance_text import summary_parts

    realised = performance.get("realised")
    if not realised:
        return ["realised: no prediction store (or no pass yet)"]
    metrics, coverage = summary_parts(realised)
    return [f"realised v{realised['version']}: {metrics}", *([coverage] if coverage else [])]


def worker_labels(points: list[dict[str, Any]]) -> dict[str, str]:
    """pid -> `worker 1` (one version in the window) or `v2 worker 1`: the workers of a point serve
    its version, numbered per version in the order they appear."""
    versions: dict[str, int] = {}
    for point in points:
        for pid in point.get("processes") or {}:
            versions.setdefault(pid, point["version"])
    several = len(set(versions.values())) > 1
    labels, counts = {}, dict.fromkeys(versions.values(), 0)
    for pid, version in versions.items():
        counts[version] += 1
        labels[pid] = f"v{version} worker {counts[version]}" if several else f"worker {counts[version]}"
    return labels


def performance_text(performance: dict[str, Any], width: int) -> str:
    """The serving version's performance: realised (from labels) and, below it, estimated (before labels
    arrive)."""
    from console.performance_text import estimated_text

    lines = [pack(realised_phrases(performance), width)]
    estimated = estimated_text(performance.get("estimated"))
    return "\n".join([*lines, *([f" {estimated}"] if estimated else [])])  # indented as `pack` does


def pack(phrases: list[str], width: int, separator: str = " · ") -> str:
    """The phrases on as few lines of `width` as they fit, broken only between phrases."""
    lines: list[str] = []
    for phrase in phrases:
        if lines and len(lines[-1]) + len(separator) + len(phrase) <= width:
            lines[-1] += separator + phrase
        else:
            lines.append(phrase)
    return "\n".join(" " + line for line in lines)


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1e3


def _in_ms(key: str) -> Callable[[dict[str, Any]], float | None]:
    """A point's figure `key` (seconds) in milliseconds."""
    return lambda point: _ms(point[key])


def _error_percent(point: dict[str, Any]) -> float | None:
    if not point["requests"]:
        return None
    return 100 * (point["client_errors"] + point["server_errors"]) / point["requests"]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1e6
