"""Monitor one deployment: requests, errors, latency, resources and drift, live."""

from __future__ import annotations

from collections import deque
from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from console.actions import bindings
from console.backend import Overview
from console.screens.base import OverviewScreen
from console.widgets.chart import Chart, ChartGrid
from console.widgets.tables import FitTable

HISTORY = 300  # points (seconds) on the charts


class MonitorScreen(OverviewScreen):
    """Charts redraw only when new points arrive; the drift table lists the worst features first."""

    AUTO_FOCUS = "#drift"
    BINDINGS = bindings("monitor")
    DEFAULT_CSS = """
    MonitorScreen #drift { height: 1fr; }
    MonitorScreen #summary { height: 1; padding: 0 1; }
    """

    def __init__(self, deployment: str) -> None:
        super().__init__(name="monitor")
        self.deployment = deployment
        self.points: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.cursor = 0
        self.drift: dict[str, Any] | None = None
        self._fresh = False

    def body(self) -> ComposeResult:
        yield Static(f" {self.deployment}: waiting for data", id="summary", markup=False)
        with ChartGrid(id="charts"):
            yield Chart(id="traffic")
            yield Chart(id="latency")
            yield Chart(id="cpu")
            yield Chart(id="memory")
        table: DataTable[str] = FitTable(
            drop=("UNSEEN", "MISSING", "P-VALUE"), cursor_type="row", zebra_stripes=True, id="drift"
        )
        table.add_columns("FEATURE", "KIND", "PSI", "DISTANCE", "MISSING", "UNSEEN", "P-VALUE", "STATUS")
        yield table

    def load(self) -> Overview:
        answer = self.deck.backend.client.monitor(self.cursor, self.deployment)
        seen = answer["deployments"].get(self.deployment) or {}
        new = seen.get("points") or []
        self.points.extend(new)
        self.cursor = answer["cursor"]
        self.drift = seen.get("drift")
        self._fresh = bool(new)
        return super().load()

    def show(self, overview: Overview) -> None:
        if not self._fresh:
            return
        points = list(self.points)
        last = points[-1]
        stale = f", {last['stale']} stale" if last.get("stale") else ""
        verdict = (self.drift or {}).get("status", "-")
        workers = f"{last['workers']} worker(s){stale}"
        self.query_one("#summary", Static).update(
            f" {self.deployment}: version {last['version']}, {workers}; drift {verdict}"
        )
        self.query_one("#traffic", Chart).plot(
            "requests/s and errors/s",
            {
                "req/s": [p["rps"] for p in points],
                "errors/s": [p["client_errors"] + p["server_errors"] for p in points],
            },
        )
        self.query_one("#latency", Chart).plot(
            "latency (ms, last minute)",
            {q: [None if p[q] is None else p[q] * 1e3 for p in points] for q in ("p50", "p95", "p99")},
        )
        pids = sorted({pid for p in points for pid in (p.get("processes") or {})})
        self.query_one("#cpu", Chart).plot(
            "CPU % per worker",
            {
                f"pid {pid}": [((p.get("processes") or {}).get(pid) or {}).get("cpu") for p in points]
                for pid in pids
            },
        )
        self.query_one("#memory", Chart).plot(
            "memory (MB) per worker",
            {
                f"pid {pid}": [_mb(((p.get("processes") or {}).get(pid) or {}).get("rss")) for p in points]
                for pid in pids
            },
        )
        self._drift_table()

    def _drift_table(self) -> None:
        table = self.query_one("#drift", DataTable)
        table.clear()
        report = self.drift or {}
        features = list(report.get("features") or [])
        if report.get("prediction"):
            features.append(report["prediction"])
        for f in sorted(features, key=lambda f: -(f.get("psi") or 0.0)):
            distance = f.get("wasserstein") if f["kind"] == "numeric" else f.get("jensen_shannon")
            table.add_row(
                f["name"],
                f["kind"],
                _num(f.get("psi")),
                _num(distance),
                f"{100 * f['missing_share']:.1f}%",
                f"{100 * f['unseen_share']:.1f}%" if f["kind"] == "categorical" else "-",
                _num(f.get("p_value")),
                f["status"],
            )

    def action_charts(self) -> None:
        self.query_one(ChartGrid).next_page()

    def action_back(self) -> None:
        self.app.pop_screen()


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1e6
