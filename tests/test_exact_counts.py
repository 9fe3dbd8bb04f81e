"""The exporter's request counters equal what clients were answered, by version and code, exactly:
through switches, rollbacks, scale-downs and supervisor restarts (workers keep serving meanwhile), and
Prometheus sees every series at 0 first so rate()/increase() count its first requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers import ROW, Load, free_port, iris_home, stop_supervisor, wait_until
from prometheus_client.parser import text_string_to_metric_families

from registry.info import DeploymentInfo
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.monitoring.timeseries import LATENCY, DeploymentSeries, Totals
from registry.serving.client import SupervisorClient
from registry.serving.count_state import load_counts, save_counts, snapshot
from registry.serving.drift_state import load_windows
from registry.serving.exporter import INITIAL_CODES, exposition
from registry.serving.processes import STOPPED, Worker
from registry.serving.rundir import RunDir
from registry.serving.scraper import OK, SILENT
from registry.serving.supervision.state import Runtime
from registry.serving.supervisor import Supervisor

BAD = {"inputs": [[5.1, "wide", 1.4, 0.2]]}  # a 422
FLAGS = ("--drain-grace=2", "--drift-every=30", "--metrics=127.0.0.1:0")


def requests_total(text: str, deployment: str = "iris") -> Counter[tuple[str, str]]:
    """The exporter's modeldeck_requests_total of `deployment` by (version, code), zeros left out."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "modeldeck_requests_total" and labels["deployment"] == deployment:
                counts[labels["version"], labels["code"]] += sample.value
    return +counts


def test_every_request_series_is_shown_at_zero_before_it_counts(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "home")
    try:
        series = supervisor.scraper.series["iris"] = DeploymentSeries("iris")
        series.totals[1] = Totals()  # version 1 started loading
        first = exposition(supervisor).decode()
        for code in INITIAL_CODES:  # exist before any request, so a first burst is an increase
            assert (
                f'modeldeck_requests_total{{code="{code}",deployment="iris",model="",version="1"}} 0.0'
                in first
            )
        assert 'modeldeck_request_duration_seconds_count{deployment="iris",model="",version="1"} 0.0' in first
        series.totals[1].requests.update({"422": 20.0, "418": 3.0})
        series.totals[2] = Totals(requests={"200": 12.0})  # a version first seen with counts already
        second = requests_total(exposition(supervisor).decode())
        assert second == {("1", "422"): 20}  # 418 and version 2 appear at 0 first: their counts are not lost
        assert requests_total(exposition(supervisor).decode()) == {
            ("1", "422"): 20,
            ("1", "418"): 3,
            ("2", "200"): 12,
        }
    finally:
        supervisor.registry.close()


def test_a_supervisor_stopped_before_its_first_pull_leaves_its_workers_counted_from_zero(
    tmp_path: Path,
) -> None:
    """Stopped right after a deploy (no pull yet), the saved counts still name the new worker, at
    nothing seen: the next supervisor adopts it and counts everything it answered."""
    spec = IRIS
    first = Supervisor(tmp_path / "home")
    try:
        started = Worker(pid=4242, version=1, create_time=100.0, forked=True)
        leaving = Worker(pid=4343, version=1, create_time=100.0, forked=True, state=STOPPED)
        first.runtimes["iris"] = Runtime(spec, active=[started], outgoing=[leaving])
        first.workers.update({4242: started, 4343: leaving})
        asyncio.run(first.scraper.save_counts())
        assert load_counts(first.rundir)[1] == {4242: (100.0, {"requests": {}})}  # 4343's final was counted
    finally:
        first.registry.close()
    second = Supervisor(tmp_path / "home")
    try:
        adopted = Worker(pid=4242, version=1, create_time=100.0)
        second.runtimes["iris"] = Runtime(spec, active=[adopted])
        second.workers[4242] = adopted
        asyncio.run(second.scraper.restore_counts())
        asyncio.run(second.scraper.save_counts())  # stopped again before a pull: the baseline stays
        restored, workers = load_counts(second.rundir)
        assert workers == {4242: (100.0, {"requests": {}})}
        series = second.scraper.series["iris"] = restored.get("iris", DeploymentSeries("iris"))
        second.scraper._resume(series, [adopted])
        answered = {"requests": {"200": 50.0}}
        series.ingest(1, 1, {4242: {"metrics": answered}}, {}, 1.0, 1.0, set(), {4242}, {4242: 1}, {4242})
        assert requests_total(exposition(second).decode()) == {}  # shown at 0 first
        assert requests_total(exposition(second).decode()) == {("1", "200"): 50}
    finally:
        second.registry.close()


IRIS = DeploymentInfo("iris", "iris", 1, None, "127.0.0.1", 1, 1)


@contextlib.contextmanager
def counting(home: Path, **roles: list[Worker]) -> Iterator[Supervisor]:
    """A supervisor (not started) tracking deployment iris with workers in `roles` (`active=[...]`,
    `outgoing=[...]`), its drift off (no model is registered): its scraper's counting, driven by hand."""
    supervisor = Supervisor(home)
    try:
        supervisor.runtimes["iris"] = Runtime(IRIS, **roles)
        supervisor.workers.update({w.pid: w for workers in roles.values() for w in workers})
        supervisor.scraper.drift_every = math.inf
        yield supervisor
    finally:
        supervisor.registry.close()


def answering(counts: dict[int, float | None]) -> Callable[..., Any]:
    """A stand-in for `Scraper._pull`: each worker's 200s so far, or silence (None)."""

    async def pull(pid: int, fresh: bool) -> tuple[dict[str, Any] | None, str]:
        if counts[pid] is None:
            return None, SILENT
        return {"pid": pid, "metrics": {"requests": {"200": counts[pid]}}}, OK

    return pull


def test_a_pull_answered_as_its_worker_exits_is_not_counted_again_after_the_final_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A draining worker's exit report (its final snapshot) can come in while a pull of it is under
    way, and its socket answers until the process is gone: neither pull may count it again (it counted
    all that worker had answered twice, in its version's 200s)."""
    leaving = Worker(pid=4343, version=2, create_time=100.0, forked=True)
    with counting(tmp_path / "home", outgoing=[leaving]) as supervisor:
        scraper, answered, reported = supervisor.scraper, [10.0], []

        async def pull(pid: int, fresh: bool) -> tuple[dict[str, Any], str]:
            metrics = {"requests": {"200": answered[0]}}
            if answered[0] == 31 and not reported:  # it exits meanwhile: its report (final) comes first
                reported.append(True)
                scraper.final("iris", leaving, metrics)
            return {"pid": pid, "metrics": metrics}, OK

        monkeypatch.setattr(scraper, "_pull", pull)
        asyncio.run(scraper.restore_counts())  # as `Scraper.run` does first
        asyncio.run(scraper.tick())
        answered[0] = 31
        asyncio.run(scraper.tick())
        asyncio.run(scraper.tick())  # not reaped yet, and its socket still answers
        assert scraper.series["iris"].totals[2].requests == {"200": 31.0}


@pytest.mark.parametrize("still_answers", [False, True], ids=["gone", "socket-still-answers"])
def test_a_worker_that_leaves_before_its_deployments_first_pass_is_counted(
    still_answers: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scaled down right after the deploy (within the second before the first pull): the leaving
    worker's final snapshot is all it answered, counted once whether or not its socket still answers
    the next pull."""
    stays = Worker(pid=4242, version=1, create_time=100.0, forked=True)
    leaves = Worker(pid=4343, version=1, create_time=100.0, forked=True)
    with counting(tmp_path / "home", active=[stays], outgoing=[leaves]) as supervisor:
        scraper = supervisor.scraper
        asyncio.run(scraper.restore_counts())
        scraper.final("iris", leaves, {"requests": {"200": 7.0}})
        monkeypatch.setattr(scraper, "_pull", answering({4242: 3.0, 4343: 7.0 if still_answers else None}))
        asyncio.run(scraper.tick())
        assert scraper.series["iris"].totals[1].requests == {"200": 10.0}


def test_a_final_handed_over_before_the_saved_counts_are_back_is_counted_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted supervisor tracks the workers it adopts before its scraper has read the counts
    the previous one saved: an adopted worker's exit report then is counted once they are back."""
    draining = Worker(pid=4343, version=1, create_time=100.0, forked=True)
    with counting(tmp_path / "home", outgoing=[draining]) as first:
        # it counted 10 answers of the worker, then stopped while the worker drained
        monkeypatch.setattr(first.scraper, "_pull", answering({4343: 10.0}))
        asyncio.run(first.scraper.restore_counts())
        asyncio.run(first.scraper.tick())
        asyncio.run(first.scraper.save_counts())
    adopted = Worker(pid=4343, version=1, create_time=100.0)
    with counting(tmp_path / "home", outgoing=[adopted]) as second:
        second.scraper.final("iris", adopted, {"requests": {"200": 15.0}})  # 5 more, then it exits
        monkeypatch.setattr(second.scraper, "_pull", answering({4343: 15.0}))
        asyncio.run(second.scraper.restore_counts())
        asyncio.run(second.scraper.tick())
        assert second.scraper.series["iris"].totals[1].requests == {"200": 15.0}


@dataclass
class Deck:
    home: Path
    port: int
    client: SupervisorClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exported(self) -> Counter[tuple[str, str]]:
        url = self.client.status()["supervisor"]["metrics"]
        return requests_total(httpx.get(url, timeout=10, verify=False).text)

    def check(self, before: Counter[tuple[str, str]], *loads: Load) -> None:
        """Every answer the `loads` got is in the exporter (counted from `before`), under its version
        and code, exactly."""
        sent = Counter(before)
        for load in loads:
            assert [f for f in load.failures if not f.startswith("422")] == []
            sent += load.answers
        with contextlib.suppress(AssertionError):
            wait_until(lambda: self.exported() == sent, timeout=15, what="exact counts")
        assert self.exported() == sent

    def restart(self) -> None:
        """Stop the supervisor, leaving its workers serving, and start a new one that adopts them."""
        self.client.shutdown(stop_servers=False)
        self.client.ensure_running(*FLAGS)
        self.client.wait_settled()


@pytest.fixture(scope="module")
def deck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    with iris_home(tmp_path_factory, "counts") as home:
        client = SupervisorClient(home)
        client.ensure_running(*FLAGS)
        result = client.deploy("iris:1", port=free_port(), workers=2)
        deck = Deck(home, result["port"], client)
        try:
            yield deck
        finally:
            stop_supervisor(client, home)


def traffic(deck: Deck) -> tuple[Load, Load]:
    """Good requests on three kept-alive clients and a 422 now and then on a fourth."""
    return Load(deck.url, clients=3, pause=0.01, warm=20), Load(
        deck.url, clients=1, pause=0.05, body=BAD, expect=422
    )


def test_what_workers_answer_while_no_supervisor_runs_is_counted(deck: Deck) -> None:
    before, (good, bad) = deck.exported(), traffic(deck)
    with good, bad:
        good.more(20)
        deck.client.shutdown(stop_servers=False)
        good.more(50)  # answered by the workers alone
        deck.client.ensure_running(*FLAGS)
        deck.client.wait_settled()
        good.more(20)
    deck.check(before, good, bad)
    saved = RunDir.of(deck.home).path / "request-counts.json"
    assert oct(saved.stat().st_mode & 0o777) == "0o600"


def test_draining_workers_count_until_they_exit_under_their_own_version(deck: Deck) -> None:
    before, (good, bad) = deck.exported(), traffic(deck)
    with good, bad:
        deck.client.deploy("iris:2")  # version 1 drains, then waits as the standby
        good.more(30)
        deck.client.rollback("iris")
        good.more(30)
        deck.client.scale("iris", 1)
        good.more(30)
    assert {v for v, _ in good.answers} == {"1", "2"}
    deck.check(before, good, bad)
    deck.client.scale("iris", 2)


def test_exact_counts_through_deploy_rollback_scale_down_and_a_supervisor_restart(deck: Deck) -> None:
    before, (good, bad) = deck.exported(), traffic(deck)
    with good, bad:
        for step in (
            lambda: deck.client.deploy("iris:2"),
            lambda: deck.client.rollback("iris"),
            lambda: deck.client.scale("iris", 1),
            deck.restart,
            lambda: deck.client.deploy("iris:2"),
        ):
            step()
            good.more(30)
    assert httpx.post(f"{deck.url}/invocations", json=ROW, timeout=10).headers["x-model-version"] == "2"
    good.answers["2", "200"] += 1
    deck.check(before, good, bad)


def worker_metrics(ok: float, slow_sum: float = 0.5) -> dict[str, Any]:
    """A worker's cumulative counts as a pull returns them: `ok` 200s, all in the last latency bucket."""
    buckets = [0.0] * len(LATENCY_BUCKETS) + [ok]
    return {"requests": {"200": ok}, LATENCY: {"buckets": buckets, "sum": slow_sum, "count": ok}}


def saved_counts(home: Path) -> tuple[RunDir, dict[str, Any]]:
    """The run directory of `home` and the request counts a supervisor would save for it."""
    series = DeploymentSeries("iris")
    series.ingest(1, 1, {41: {"metrics": worker_metrics(7)}}, {}, fresh={41})
    rundir = RunDir.of(home).create()
    return rundir, orjson.loads(orjson.dumps(snapshot({"iris": series}, {41: 1.5})))


def test_saved_counts_a_supervisor_wrote_are_restored(tmp_path: Path) -> None:
    rundir, saved = saved_counts(tmp_path / "home")
    save_counts(rundir, orjson.dumps(saved))
    restored, workers = load_counts(rundir)
    assert restored["iris"].totals[1].requests == {"200": 7.0}
    assert workers == {41: (1.5, worker_metrics(7))}


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s["iris"]["totals"]["1"]["requests"].update({"200": -1000}),
        lambda s: s["iris"]["totals"]["1"]["requests"].update({"500": 1e300}),
        lambda s: s["iris"]["totals"]["1"]["requests"].update({"503": 2.5}),
        lambda s: s["iris"]["totals"]["1"]["requests"].update({"-1": 1}),
        lambda s: s["iris"]["totals"]["1"]["requests"].update({'x"} 1\nfoo': 1}),
        lambda s: s["iris"]["totals"].update({"-3": s["iris"]["totals"]["1"]}),
        lambda s: s["iris"]["totals"]["1"].update({"latency_sum": -5}),
        lambda s: s["iris"]["workers"]["41"]["metrics"][LATENCY]["buckets"].reverse(),
        lambda s: s["iris"]["totals"]["1"]["latency_buckets"].pop(),
        lambda s: s["iris"]["workers"]["41"]["metrics"]["requests"].update({"422": -5e6}),
        lambda s: s["iris"]["workers"]["41"].update({"create_time": "soon"}),
    ],
)
def test_a_damaged_counts_file_is_ignored_whole_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[dict[str, Any]], None]
) -> None:
    rundir, saved = saved_counts(tmp_path / "home")
    damage(saved)
    (rundir.path / "request-counts.json").write_bytes(orjson.dumps(saved))
    supervisor = Supervisor(tmp_path / "home")
    try:
        with caplog.at_level(logging.WARNING, "modeldeck.supervisor"):
            restored, workers = load_counts(rundir)
        assert (restored, workers) == ({}, {})  # counting starts from the live workers
        [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert "request-counts.json" in warning
        supervisor.scraper.series = restored
        for family in text_string_to_metric_families(exposition(supervisor).decode()):
            for sample in family.samples:
                assert math.isfinite(sample.value) and sample.value >= 0, sample
    finally:
        supervisor.registry.close()


def test_a_worker_counting_below_its_saved_snapshot_counts_as_new() -> None:
    """The same pid counting anew (or a false snapshot) adds its current counts, never a negative or
    huge step."""
    series = DeploymentSeries("iris")
    series.resume(41, worker_metrics(5e6, slow_sum=100.0))
    series.ingest(1, 1, {41: {"metrics": worker_metrics(12)}}, {})
    assert series.totals[1].requests == {"200": 12.0}
    assert series.totals[1].latency_buckets[-1] == 12.0 and series.totals[1].latency_sum == 0.5
    series.ingest(2, 1, {41: {"metrics": worker_metrics(15)}}, {})
    assert series.totals[1].requests == {"200": 15.0}


def test_a_fifo_in_place_of_a_saved_file_is_refused_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rundir = RunDir.of(tmp_path / "home").create()
    for name in ("request-counts.json", "drift-windows.json"):
        os.mkfifo(rundir.path / name)
    results: list[Any] = []
    reader = threading.Thread(
        target=lambda: results.extend([load_counts(rundir), load_windows(rundir, 100, 60.0)]), daemon=True
    )
    with caplog.at_level(logging.WARNING):
        reader.start()
        reader.join(timeout=30)
    assert not reader.is_alive(), "reading a FIFO blocked the supervisor thread"
    assert results == [({}, {}), {}]
    assert any(
        "request-counts.json" in r.getMessage() and "not a regular file" in r.getMessage()
        for r in caplog.records
    )


def test_monitoring_error_counters_are_shown_at_zero_for_every_known_deployment(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "home")
    try:
        supervisor.scraper.series["iris"] = DeploymentSeries("iris")
        text = exposition(supervisor).decode()
        assert 'modeldeck_monitoring_pull_errors_total{deployment="iris"} 0.0' in text
        assert 'modeldeck_monitoring_sample_dropped_total{deployment="iris"} 0.0' in text
        supervisor.scraper.pull_errors["iris"] = 2
        assert (
            'modeldeck_monitoring_pull_errors_total{deployment="iris"} 2.0' in exposition(supervisor).decode()
        )
    finally:
        supervisor.registry.close()
