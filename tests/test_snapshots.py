"""Snapshot tests (pytest-textual-snapshot) of every console view at 80x24 and 120x40.

Regenerate the SVGs after a deliberate change to what the console shows (then look at them:
`tests/__snapshots__/test_snapshots/*.svg` open in a browser, and check the diff in the review):

    PYTHONPATH=. python -m pytest tests/test_snapshots.py --snapshot-update -q

Everything on screen is pinned: the registry is built here on a temporary home with fixed content
and fixed times (shown in UTC), no supervisor runs (so the banner says so and the live columns read
"-"), the monitor is fed a fixed list of recorded points instead of a supervisor's, the home path in
the header is replaced and the cursor does not blink. Behaviour against a real supervisor is tested
in tests/test_console.py.
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from registry import Registry

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
ACTOR = "ops@deck"
START = datetime(2026, 3, 2, 9, 0, 0)  # UTC; shown in UTC (TZ is pinned below)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`console.output.when()` shows stored UTC times in the local zone: make that zone UTC."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("MODELDECK_ASCII", "0")  # the charts' markers must not follow the locale
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with three models, two deployments and a ledger, at fixed times and by a fixed actor."""
    import numpy as np
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo

    path = tmp_path_factory.mktemp("snapshots")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(path))
        with Registry(home=path) as reg:
            for c, auc in ((1.0, 0.912), (0.5, 0.934), (0.1, 0.951)):
                reg.register(
                    LogisticRegression(C=c).fit(X, y), "iris", metrics={"auc": auc, "accuracy": auc - 0.05}
                )
            reg.set_alias("iris", "champion", 2)
            reg.set_alias("iris", "challenger", 3)
            reg.register(
                LinearRegression().fit(X, X[:, 1]), "diabetes", metrics={"r2": 0.48}, alias="champion"
            )
            reg.register(LinearRegression().fit(X[:, :3], X[:, 1]), "diabetes", metrics={"r2": 0.52})
            reg.register(DecisionTreeClassifier(max_depth=3).fit(X, y), "fraud-detector-eu-west")
            for name, model, version, standby, port, workers in (
                ("iris", "iris", 2, 1, 8101, 2),
                ("diabetes", "diabetes", 1, None, 8102, 1),
            ):
                spec = DeploymentInfo(name, model, version, standby, "127.0.0.1", port, workers)
                save_deployment(reg, spec, "deployed", actor=ACTOR, reason="release 2026.03")
            _alerts(reg)
    _pin_times(path / "registry.db")
    (path / "logs").mkdir(exist_ok=True)
    (path / "logs" / "iris.log").write_text(
        "".join(
            f"2026-03-02 09:{i // 60:02d}:{i % 60:02d} INFO 127.0.0.1 POST /invocations 200 "
            f"rows=1 {2 + i % 5}.{i % 10}ms"
            + (" (a long line that only shows in full with wrap on)" * 2) * (i % 7 == 0)
            + "\n"
            for i in range(60)
        )
    )
    return path


def _alerts(reg: Registry) -> None:
    """diabetes: a latency alert that fired and resolved; iris: an availability alert firing."""
    from registry import alert_outbox as outbox
    from registry import alerts
    from registry.serving.alerting import payload

    def change(alert, deployment: str, kind: str, state: str, summary: str):  # type: ignore[no-untyped-def]
        return outbox.save_transition(
            reg,
            alert,
            state,
            deployment=deployment,
            model=deployment,
            version=2 if deployment == "iris" else 1,
            kind=kind,
            severity="critical",
            reason=summary,
            figures={"summary": summary},
            url=None,
            payload=payload,
        )

    slow = change(
        None,
        "diabetes",
        alerts.LATENCY,
        alerts.FIRING,
        "3.10% bad over 5m; burn 3.1x (5m), 1.2x (1h) vs 14.4x",
    )
    change(
        slow,
        "diabetes",
        alerts.LATENCY,
        alerts.RESOLVED,
        "0.20% bad over 5m; burn 0.2x (5m), 0.9x (1h) vs 14.4x",
    )
    change(
        None,
        "iris",
        alerts.AVAILABILITY,
        alerts.FIRING,
        "5.20% bad over 5m; burn 10.4x (5m), 8.1x (1h) vs 6x",
    )


def _pin_times(db: Path) -> None:
    """Every stored time a fixed minute apart, in insertion order, and one actor everywhere."""
    with sqlite3.connect(db) as conn:
        for table, columns in (
            ("registered_model", ("created_at", "updated_at")),
            ("model_version", ("created_at",)),
            ("model_alias", ("updated_at",)),
            ("deployment", ("created_at", "updated_at")),
            ("event", ("at",)),
            ("alert", ("started_at", "fired_at")),
        ):
            ids = [row[0] for row in conn.execute(f"SELECT rowid FROM {table} ORDER BY rowid")]
            for index, row_id in enumerate(ids):
                moment = (START + timedelta(minutes=7 * index)).isoformat(sep=" ")
                sets = ", ".join(f"{c} = ?" for c in columns)
                conn.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", (*[moment] * len(columns), row_id))
        conn.execute("UPDATE model_version SET created_by = ?", (ACTOR,))
        # skops archives carry their write time, so their digests differ from run to run
        conn.execute("UPDATE model_version SET artifact_sha256 = printf('%064d', rowid)")
        conn.execute("UPDATE event SET actor = ?", (ACTOR,))


def _points() -> list[dict[str, Any]]:
    """120 recorded seconds of one deployment with two workers, version 1 then (after a deploy at 80 s)
    version 2: a fixed, smooth, made-up series."""
    points = []
    for i in range(120):
        wave = math.sin(i / 9)
        points.append(
            {
                "seq": i + 1,
                "t": 1_772_442_000.0 + i,
                "version": 1 if i < 80 else 2,
                "requests": 40 + 10 * wave,
                "rps": 40 + 10 * wave,
                "client_errors": 1.0 if i % 17 == 0 else 0.0,
                "server_errors": 0.0,
                "p50": 0.0021 + 0.0003 * wave,
                "p95": 0.0048 + 0.0006 * wave,
                "p99": 0.0071 + 0.0011 * wave,
                "workers": 2,
                "stale": 0,
                "processes": {
                    "4101": {"cpu": 21 + 6 * wave, "rss": 182e6 + 1e5 * i},
                    "4102": {"cpu": 18 + 5 * math.cos(i / 9), "rss": 176e6 + 8e4 * i},
                },
            }
        )
    return points


#: (time, drifted share of features) over the last half hour, rising towards the threshold
DRIFT_SHARES = [(1_772_442_119.0 - 60 * (29 - i), min(0.75, 0.25 * (i / 10) ** 2)) for i in range(30)]

DRIFT = {
    "status": "warn",
    "features": [
        {
            "name": f"x{i}",
            "kind": "numeric",
            "psi": psi,
            "wasserstein": psi / 2,
            "missing_share": 0.0,
            "unseen_share": 0.0,
            "p_value": p / 8,
            "p_adjusted": p,
            "reason": f"KS p={p / 8:.2g} (adj {p:.2g}), W1/scale {psi / 2:.3g}",
            "status": "warn" if p < 0.01 else "ok",
        }
        for i, (psi, p) in enumerate(((0.02, 0.6), (0.14, 0.004), (0.05, 0.3), (0.01, 1.0)))
    ],
    "prediction": {
        "name": "prediction",
        "kind": "categorical",
        "psi": 0.03,
        "jensen_shannon": 0.04,
        "missing_share": 0.0,
        "unseen_share": 0.0,
        "p_value": 0.41,
        "p_adjusted": 1.0,
        "reason": "chi2 p=0.41 (adj 1), TV 0.021",
        "status": "ok",
    },
}


#: Performance of the serving version, as the supervisor reports it: realised (labels sent as feedback)
#: and estimated from the model's calibrated confidence.
PERFORMANCE = {
    "realised": {
        "version": 2,
        "kind": "classification",
        "predicted": 1200,
        "labelled": 900,
        "coverage": 0.75,
        "delay": 5400.0,
        "accuracy": 0.9511,
        "f1": 0.9487,
        "log_loss": 0.1432,
    },
    "estimated": {
        "version": 2,
        "accuracy": 0.9432,
        "f1": 0.9401,
        "calibrated": True,
        "rows": 2048,
        "std_error": 0.0051,
    },
}


@pytest.fixture
def app(home: Path, monkeypatch: pytest.MonkeyPatch):
    """The console on the pinned registry; the monitor shows the fixed points instead of asking."""
    from console.app import ModeldeckApp
    from console.screens import monitor

    class RecordedMonitor(monitor.MonitorScreen):
        def fetch(self, request):  # type: ignore[no-untyped-def]
            return None  # asks the supervisor nothing: `take` puts the fixed points in

        def take(self, extra, request):  # type: ignore[no-untyped-def]
            if not self.points:  # the same points whichever of the first polls comes first
                self.points.extend(_points())
                self.drift = DRIFT
                self.drift_shares = list(DRIFT_SHARES)
                self.performance = PERFORMANCE
            self._fresh = True

    monkeypatch.setattr(monitor, "MonitorScreen", RecordedMonitor)
    monkeypatch.setenv("MODELDECK_HOME", str(home))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    return ModeldeckApp(home, refresh_seconds=3600)


async def _settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Pin what depends on the machine, then let every poll finish."""
    from textual.worker import WorkerCancelled

    pilot.app.sub_title = "~/.local/share/modeldeck"
    pilot.app.cursor_blink = False
    for worker in list(pilot.app.workers):  # one replaced by a newer one (a moved cursor) is done too
        with contextlib.suppress(WorkerCancelled):
            await worker.wait()
    for _ in range(200):  # a poll's message posted but not yet taken: the screen is still polling
        if not getattr(pilot.app.screen, "_polling", False):
            break
        await pilot.pause(0.02)
    for _ in range(3):  # the poll's rows arrive, then tables fit their columns after a refresh
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def _after(pilot, keys: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    while type(pilot.app.screen).__name__ != "ModelsScreen":  # the first view, before any key
        await pilot.pause(0.05)
    await _settle(pilot)
    for key in keys:
        await pilot.press(key)
        await _settle(pilot)
    for widget in pilot.app.screen.query("Input"):
        widget.cursor_blink = False


#: view -> the keys that open it (from the start) and the screen they lead to
VIEWS = {
    "models": (("1",), "ModelsScreen"),
    "versions": (("1", "enter"), "VersionsScreen"),
    "deployments": (("2",), "DeploymentsScreen"),
    "events": (("3",), "EventsScreen"),
    "alerts": (("4",), "AlertsScreen"),
    "help": (("question_mark",), "HelpScreen"),
    "monitor": (("2", "down", "m"), "RecordedMonitor"),
    "confirm": (("2", "s"), "Confirm"),
    "logs": (("2", "down", "l"), "LogsScreen"),
    "diff": (("1", "enter", "c"), "DiffScreen"),
    # every input open with text typed (the text and the cursor must show), every modal over its view
    "filter": (("1", "slash", *"ir"), "ModelsScreen"),
    "command": (("2", "colon", *"rollback iris"), "DeploymentsScreen"),
    "time": (("3", "t", *"14:30"), "EventsScreen"),
    "deploy": (("1", "colon", *"deploy iris:3", "enter"), "Confirm"),
    "alias": (("1", "enter", "a", *"staging"), "Ask"),
}
#: what the 256-colour snapshots show: the inputs, the modals and the monitor of two versions
IN_256 = ("filter", "command", "time", "confirm", "deploy", "alias", "help", "monitor")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", VIEWS)
def test_view(view: str, size: str, app, snap_compare) -> None:  # type: ignore[no-untyped-def]
    keys, screen = VIEWS[view]

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _after(pilot, keys)
        assert type(pilot.app.screen).__name__ == screen  # a view that failed to open is no snapshot

    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


def _eight_bit(app) -> None:  # type: ignore[no-untyped-def]
    """Show `app` as a 256-colour terminal does: every colour quantized to the xterm-256 palette.

    `TEXTUAL_COLOR_SYSTEM=256` makes Textual's driver quantize when it writes to the terminal, but
    screenshots are always taken in truecolour; this line filter does the same quantization."""
    from functools import lru_cache

    from rich.color import Color, ColorSystem
    from rich.segment import Segment
    from rich.style import Style
    from textual.filter import LineFilter

    @lru_cache(maxsize=1024)
    def quantized(style: Style) -> Style:
        def eight_bit(colour: Color | None) -> Color | None:
            if colour is None or colour.triplet is None:
                return colour
            return Color.from_triplet(colour.downgrade(ColorSystem.EIGHT_BIT).get_truecolor())

        return style + Style(color=eight_bit(style.color), bgcolor=eight_bit(style.bgcolor))

    class EightBit(LineFilter):
        def apply(self, segments: list[Segment], background):  # type: ignore[no-untyped-def]
            return [
                Segment(text, quantized(style) if style else style, control)
                for text, style, control in segments
            ]

    line_filters = app.get_line_filters  # the public hook every widget asks for the app's filters
    app.get_line_filters = lambda: [*line_filters(), EightBit()]


@pytest.mark.parametrize(
    ("view", "size"), [("events", "80x24"), ("monitor", "120x40"), *((v, "80x24") for v in IN_256)]
)
def test_view_in_256_colours(
    view: str, size: str, app, snap_compare, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """What SSH usually gives: `TEXTUAL_COLOR_SYSTEM=256` (surfaces and zebra rows must not merge)."""
    monkeypatch.setenv("TEXTUAL_COLOR_SYSTEM", "256")
    keys, screen = VIEWS[view]
    _eight_bit(app)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _after(pilot, keys)
        assert type(pilot.app.screen).__name__ == screen

    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("theme", ["modeldeck-dark", "modeldeck-light", "modeldeck-contrast"])
async def test_surfaces_stay_apart_in_256_colours(theme: str, app) -> None:  # type: ignore[no-untyped-def]
    """Over SSH (`TEXTUAL_COLOR_SYSTEM=256`) every colour is quantized to the xterm-256 palette: the
    surfaces a table is read by (header, zebra rows, cursor, the screen below, footer, banner) must
    not merge there. Checked on what the console really renders, in each theme."""
    from rich.color import Color, ColorSystem

    app.theme = theme
    async with app.run_test(size=(80, 24)) as pilot:
        await _after(pilot, ("3",))  # events: enough rows for the zebra stripes
        svg = pilot.app.export_screenshot()
    # the screenshot's background cells: one rect per run of a colour, rows 24.4 units apart from 1.5
    cells = re.findall(r'<rect fill="(#[0-9a-f]{6})" x="([\d.]+)" y="([\d.]+)"[^>]*crispEdges', svg)
    leftmost: dict[int, tuple[float, str]] = {}
    for fill, x, y in cells:
        row = round((float(y) - 1.5) / 24.4)
        leftmost[row] = min(leftmost.get(row, (math.inf, "")), (float(x), fill))

    def colour(y: int) -> tuple[str, int]:
        fill = leftmost[y][1]
        return fill, Color.parse(fill).downgrade(ColorSystem.EIGHT_BIT).number

    tall = next(y for y in range(24) if leftmost[y][1] != leftmost[0][1])  # the banner's rows (1 to 3)
    rows = {"banner": 0, "header": tall, "cursor": tall + 1, "odd row": tall + 2, "even row": tall + 3}
    rows |= {"below": 17 + tall - 1, "footer": 23}
    seen = {name: colour(y) for name, y in rows.items()}
    for a, b in (
        ("banner", "header"),
        ("header", "cursor"),
        ("header", "odd row"),
        ("cursor", "odd row"),
        ("odd row", "even row"),
        ("even row", "below"),
        ("odd row", "below"),
        ("below", "footer"),
    ):
        assert seen[a][1] != seen[b][1], (
            f"{theme}: {a} {seen[a][0]} and {b} {seen[b][0]} merge in 256 colours"
        )
