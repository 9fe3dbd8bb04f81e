"""The console's pure parts: table texts of live figures, per-version series and figures, version diffs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from console.screens.monitor import by_version, version_figures
from console.version_diff import diff_versions
from console.widgets.live import multivariate_text, sparkline, state_text, uptime_text
from registry.info import VersionInfo


def worker(version: int, role: str, state: str, uptime: float) -> dict:
    return {"pid": version * 100, "version": version, "role": role, "state": state, "uptime_s": uptime}


def test_the_state_says_what_the_workers_are_doing_and_uptime_is_the_oldest_serving_worker() -> None:
    live = {
        "status": "running",
        "processes": [
            worker(1, "active", "serving", 3725.0),
            worker(1, "active", "serving", 12.0),
            worker(2, "standby", "loaded", 1.0),
            worker(0, "standby", "draining", 99999.0),
        ],
    }
    assert state_text(live, supervisor_up=True) == "running, loading v2, draining v0"
    assert uptime_text(live) == "1h02m"  # standby workers do not count
    assert uptime_text({"processes": [worker(1, "active", "serving", 2 * 86400 + 7200)]}) == "2d02h"
    assert uptime_text({"processes": [worker(1, "active", "serving", 75)]}) == "1m15s"
    assert (state_text({}, supervisor_up=True), state_text({}, supervisor_up=False)) == ("stopped", "down")
    assert uptime_text({}) == "-"


def point(version: int, rps: float, p99: float | None, errors: float = 0.0) -> dict:
    return {
        "version": version,
        "rps": rps,
        "requests": rps,
        "p99": p99,
        "client_errors": errors,
        "server_errors": 0,
    }


def test_after_a_deploy_each_version_gets_its_own_series_and_figures() -> None:
    points = [point(1, 10, 0.004), point(1, 12, 0.006, errors=1), point(2, 20, 0.002), point(2, 22, None)]
    assert by_version(points, "req/s", lambda p: p["rps"]) == {
        "req/s v1": [10, 12, None, None],
        "req/s v2": [None, None, 20, 22],
    }
    assert by_version(points[:2], "req/s", lambda p: p["rps"]) == {"req/s": [10, 12]}
    assert version_figures(points) == [
        "v2: 21.0 req/s, p99 2.0 ms, 0.0% errors (2 s)",  # the serving version first
        "v1: 11.0 req/s, p99 6.0 ms, 4.5% errors (2 s)",
    ]
    assert version_figures(points[:2]) == ["v1: 11.0 req/s, p99 6.0 ms, 4.5% errors"]


def version(number: int, **changes) -> VersionInfo:
    base = VersionInfo(
        name="iris",
        version=number,
        estimator_class="sklearn.linear_model._logistic.LogisticRegression",
        created_at=datetime(2026, 3, 2, 9, number, tzinfo=UTC),
        created_by="ops",
        artifact_sha256="ab" * 32,
        artifact_size=100,
        trusted_types=[],
        params={"C": 1.0, "max_iter": 100},
        signature={"named": True, "columns": [{"name": "x", "dtype": "float64", "nullable": False}]},
        output={"kind": "classification", "classes": [0, 1]},
        metrics={"auc": 0.9},
        description="",
        python_version="3.11.7",
        sklearn_version="1.9.1",
        numpy_version="2.4.6",
        reference_sha256=None,
        reference_rows=0,
        source="",
        origin={},
        parent_version=None,
        archived=False,
    )
    return replace(base, **changes)


def test_a_diff_marks_what_changed_and_shows_what_one_side_lacks() -> None:
    left = version(1)
    right = version(
        2,
        params={"C": 0.5, "max_iter": 100},
        metrics={"auc": 0.93, "f1": 0.8},
        signature={"named": True, "columns": [{"name": "x", "dtype": "float64", "nullable": True}]},
        tags={"team": "risk"},
        aliases=["champion"],
    )
    rows = {(r.section, r.field): r for r in diff_versions(left, right)}
    assert (rows[("params", "C")].left, rows[("params", "C")].right) == ("1", "0.5")
    assert not rows[("params", "max_iter")].differs
    assert (rows[("metrics", "f1")].left, rows[("metrics", "f1")].right) == ("-", "0.8")
    assert (rows[("signature", "x")].left, rows[("signature", "x")].right) == ("float64", "float64?")
    assert rows[("tags", "team")].differs and rows[("version", "aliases")].right == "champion"
    assert rows[("version", "estimator")].left == "LogisticRegression"
    assert rows[("signature", "→ output")].left == "classification [0, 1]"
    assert not any(r.differs for r in diff_versions(left, left))


def test_a_sparkline_scales_to_its_largest_value_and_has_an_ascii_form() -> None:
    assert sparkline([0, 1, 2, 4, 8, 8, 3]) == "▁▂▃▅██▄"
    assert sparkline([1, 2, 3], ascii=True) == "-+#"
    assert (sparkline([0.0, 0.0]), sparkline([])) == ("▁▁", "-")


async def _grown_width() -> tuple[int, int]:
    from textual.app import App, ComposeResult

    from console.widgets.tables import FitTable, refresh_rows

    class One(App[None]):
        def compose(self) -> ComposeResult:
            table = FitTable(id="t")
            table.add_columns("MODEL", "P99")
            yield table

    app = One()
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(FitTable)
        refresh_rows(table, [("iris", ["iris", "-"])])
        await pilot.pause()
        refresh_rows(table, [("iris", ["iris", "1234.5ms"])])  # same rows: only the cell changes
        await pilot.pause()
        return table.columns[table.ordered_columns[1].key].get_render_width(table), len("1234.5ms")


def test_a_cell_that_grows_widens_its_column() -> None:
    import asyncio

    width, needed = asyncio.run(_grown_width())
    assert width >= needed + 2  # the value and the cell padding: nothing cut off


def test_action_progress_names_every_step_with_its_time_since_the_start() -> None:
    from datetime import UTC, datetime, timedelta

    from console.operations import progress

    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    steps = [("deploy_requested", start), ("loading", start + timedelta(seconds=0.1))]
    steps += [("ready", start + timedelta(seconds=1.24)), ("switched", start + timedelta(seconds=1.3))]
    assert progress("deploying iris:2 (1.4 s)", steps, start) == (
        "deploying iris:2 (1.4 s): deploy_requested → loading 0.1 s → ready 1.2 s → switched 1.3 s"
    )
    assert progress("deploying iris:2 (0.2 s)", [], start) == "deploying iris:2 (0.2 s)"


async def _deployments_columns() -> list[tuple[list[str], list[int]]]:
    """The deployments table at 80 columns: (labels shown, their x offsets) before and after live
    figures arrive."""
    from textual.app import App, ComposeResult

    from console.screens.deployments import DeploymentsScreen
    from console.widgets.tables import FitTable, refresh_rows

    class One(App[None]):
        def compose(self) -> ComposeResult:
            table = FitTable(drop=DeploymentsScreen.DROP, reserve=DeploymentsScreen.RESERVE, id="t")
            table.add_columns(*DeploymentsScreen.COLUMNS)
            yield table

    quiet = [
        "fraud-detector-eu",
        "fraud-detector-eu:12",
        "11",
        "8101",
        "0/2",
        "down",
        "-",
        "-",
        "-",
        "-",
        "-",
    ]
    busy = [*quiet[:4], "2/2", "running, loading v13", "3d04h", "1234.5", "123.4ms", "12.5", "drift"]
    seen = []
    app = One()
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(FitTable)
        for cells in (quiet, busy):
            refresh_rows(table, [("fraud", cells)])
            await pilot.pause()
            await pilot.pause()
            shown = [table.labels[i] for i in table.shown]
            offsets = [
                sum(c.get_render_width(table) for c in table.ordered_columns[:i]) for i in range(len(shown))
            ]
            seen.append((shown, offsets))
    return seen


def test_at_80_columns_deployments_keep_identity_state_port_and_uptime_and_live_figures_move_nothing() -> (
    None
):
    import asyncio

    (quiet, quiet_at), (busy, busy_at) = asyncio.run(_deployments_columns())
    assert {"DEPLOYMENT", "SERVING", "STATE", "PORT", "UPTIME"} <= set(quiet)
    assert "ERR%" not in quiet and "STANDBY" not in quiet  # the least useful go first
    assert (busy, busy_at) == (quiet, quiet_at)  # figures arriving neither hide nor move a column


def test_workers_are_named_by_version_and_the_summary_breaks_between_phrases() -> None:
    from console.screens.monitor import pack, worker_labels

    points = [
        {"version": 1, "processes": {"41": {}, "42": {}}},
        {"version": 2, "processes": {"43": {}}},
    ]
    assert worker_labels(points) == {"41": "v1 worker 1", "42": "v1 worker 2", "43": "v2 worker 1"}
    assert worker_labels(points[:1]) == {"41": "worker 1", "42": "worker 2"}
    phrases = ["iris: version 2, 2 workers", "drift: warn", "v2: 41.2 req/s, p99 7.9 ms", "v1: 40.1 req/s"]
    lines = pack(phrases, 60).splitlines()
    assert lines == [
        " iris: version 2, 2 workers · drift: warn",
        " v2: 41.2 req/s, p99 7.9 ms · v1: 40.1 req/s",
    ]


def test_the_multivariate_signal_reads_as_error_ratio_chance_and_verdict() -> None:
    def report(ratio: float | None, p: float | None, status: str) -> dict:
        signal = {"method": "pca-reconstruction", "error_ratio": ratio, "p_value": p, "status": status}
        return {"status": "ok", "multivariate": signal}

    assert multivariate_text(report(1.4238, 1e-9, "drift")) == "PCA error x1.42  p<0.001  drift"
    assert multivariate_text(report(0.98, 0.41237, "ok")) == "PCA error x0.98  p=0.412  ok"
    assert multivariate_text(report(1.3, None, "not enough data")) == "PCA error x1.30  p -  not enough data"
    # no reference, a profile saved before the signal existed, or no rows yet: nothing to show
    assert multivariate_text(None) is None
    assert multivariate_text({"status": "ok", "multivariate": None}) is None
    assert multivariate_text(report(None, None, "not enough data")) is None


def test_a_live_cell_longer_than_its_reserved_width_ends_in_an_ellipsis() -> None:
    import asyncio

    from textual.app import App, ComposeResult

    from console.widgets.tables import FitTable, refresh_rows

    class One(App[None]):
        def compose(self) -> ComposeResult:
            table = FitTable(reserve={"STATE": 12}, id="t")
            table.add_columns("NAME", "STATE")
            yield table

    async def shown() -> list[str]:
        async with One().run_test(size=(80, 10)) as pilot:
            table = pilot.app.query_one(FitTable)
            refresh_rows(table, [("iris", ["iris", "running"])])
            await pilot.pause()
            refresh_rows(table, [("iris", ["iris", "serving (supervisor down)"])])
            await pilot.pause()
            return [str(cell) for cell in table.get_row_at(0)]

    assert asyncio.run(shown()) == ["iris", "serving (su…"]


def test_an_estimate_of_a_few_rows_is_not_shown_as_a_figure() -> None:
    from console.performance_text import estimated_text

    few = {"accuracy": 1.0, "f1": 1.0, "rows": 1, "std_error": 0.0, "calibrated": True}
    assert estimated_text(few) == "estimated: - (1 sampled rows, too few yet)"
    enough = {**few, "accuracy": 0.93, "rows": 1234, "std_error": 0.01}
    assert estimated_text(enough) == "estimated: accuracy 0.930 ±0.010 · F1 1.000 · 1,234 rows · calibrated"
