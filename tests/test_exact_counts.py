"""The exporter's request counters equal what clients were answered, by version and code, exactly:
through switches, rollbacks, scale-downs and supervisor restarts (workers keep serving meanwhile), and
Prometheus sees every series at 0 first so rate()/increase() count its first requests."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import ROW, Load, free_port, stop_supervisor, wait_until
from prometheus_client.parser import text_string_to_metric_families

from registry import Registry
from registry.monitoring.timeseries import DeploymentSeries, Totals
from registry.serving.client import SupervisorClient
from registry.serving.exporter import INITIAL_CODES, exposition
from registry.serving.rundir import RunDir
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
        return requests_total(httpx.get(url, timeout=10).text)

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
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("counts")
    X, y = load_iris(return_X_y=True, as_frame=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(home))
        with Registry(home=home) as reg:
            for c in (1.0, 0.5):
                reg.register(LogisticRegression(C=c, max_iter=500).fit(X, y), "iris", reference=X)
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
