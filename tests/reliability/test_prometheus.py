"""A real Prometheus (Debian's package) with the README's scrape config and the shipped rules, against a
real supervisor serving a 2-worker deployment under traffic sent at a known rate: every target is up,
every panel of the shipped Grafana dashboard answers, and its rates and p99 equal what was sent.

Needs `prometheus` and `promtool` on PATH (`.ci/prometheus.sh` installs them); skipped without them
unless MODELDECK_REQUIRE_PROMETHEUS=1 (CI), where their absence fails.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import (
    ROW,
    free_port,
    iris_home,
    kill_leftovers,
    need_prometheus,
    promtool,
    stop_supervisor,
    wait_until,
)

import registry as registry_package
from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.serving.client import SupervisorClient

# one Prometheus and supervisor for the module, its tests in order (with -n, on one xdist worker)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prometheus")]

ROOT = Path(__file__).resolve().parents[2]
MONITORING = Path(registry_package.__file__).parent / "monitoring"
DASHBOARD = MONITORING / "grafana" / "modeldeck.json"
RULES = MONITORING / "prometheus" / "rules.yml"
RATE = 20  # requests sent per second
BAD_EVERY = 4  # every 4th request has one column too few: a 422
# Seconds the dashboard's rates are evaluated over ($__rate_interval). The exporter's counts move once a
# second (the supervisor's pull), so a rate can be off by one pull's requests: under 3 % over 45 s.
WINDOW = 45
MARGIN = 3  # seconds of traffic before the window (worker pull, then scrape) and 1 after it


def readme_configs() -> list[dict[str, Any]]:
    """The YAML blocks of the README's "Prometheus and Grafana" paragraph, parsed: the supervisor's
    scrape config with the rules, then the token example for a server beyond loopback."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Prometheus and Grafana.**")
    section = readme[start : readme.index("\n## ", start)]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]


@dataclass
class PacedTraffic:
    """Requests at `rate` per second on a fixed schedule (a new connection each, so both workers
    answer; enough senders that a slow answer delays no other request),
    every `bad_every`-th one refused (422); each answer kept as (time answered, status, seconds taken)."""

    url: str
    token: str
    rate: int
    seconds: float
    bad_every: int
    answers: list[tuple[float, int, float]] = field(default_factory=list)

    def run(self, senders: int = 10) -> float:
        """Send for `seconds`; returns when the schedule ended (wall-clock time)."""
        start = time.time() + 0.2
        count = int(self.rate * self.seconds)
        threads = [
            threading.Thread(target=self._send, args=(start, range(k, count, senders)))
            for k in range(senders)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return start + self.seconds

    def _send(self, start: float, slots: range) -> None:
        bad = {"inputs": [[5.1, 3.5, 1.4]]}
        headers = {"authorization": f"Bearer {self.token}"}
        no_keep_alive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, headers=headers, limits=no_keep_alive, timeout=10) as client:
            for slot in slots:
                time.sleep(max(0.0, start + slot / self.rate - time.time()))
                body = bad if slot % self.bad_every == 0 else ROW
                sent = time.perf_counter()
                status = client.post("/invocations", json=body).status_code
                self.answers.append((time.time(), status, time.perf_counter() - sent))

    def rate_between(self, start: float, end: float, refused: bool | None = None) -> float:
        """Answers per second in (start, end]: all, or only the refused (4xx) or the others."""
        chosen = [a for a in self.answers if start < a[0] <= end and refused in (None, a[1] >= 400)]
        return len(chosen) / (end - start)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        reply = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert reply["status"] == "success", (expr, reply)
        return reply["data"]["result"]

    def value(self, expr: str, at: float | None = None) -> float:
        (result,) = self.query(expr, at)
        return float(result["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]


@dataclass
class Stack:
    home: Path
    client: SupervisorClient
    prometheus: Prometheus
    server: str  # the deployment's URL
    exporter: str  # the exporter's /metrics URL
    token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A supervisor serving `iris` with 2 workers beyond loopback (so with the token), and a Prometheus
    scraping with the README's config (1 s apart here), the shipped rules loaded, and, as the README's
    token example, the deployment's own server too: its series must not count twice."""
    need_prometheus("prometheus", "promtool")
    with iris_home(tmp_path_factory, "prometheus-home", (1.0,)) as home:
        client = SupervisorClient(home)
        client.ensure_running("--drift-every=5", "--metrics=127.0.0.1:0")  # pulls on time
        process = None
        try:
            port = free_port()
            client.deploy("iris:1", host="0.0.0.0", port=port, workers=2)
            config, token_example = readme_configs()
            (supervisor_job,) = config["scrape_configs"]
            supervisor_job["file_sd_configs"][0]["files"] = [str(home / "prometheus" / "targets.json")]
            (server_job,) = token_example["scrape_configs"]
            server_job["authorization"]["credentials_file"] = str(home / "serving-token")
            server_job["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
            config["scrape_configs"].append(server_job)
            config["rule_files"] = [str(RULES)]
            config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
            for job in config["scrape_configs"]:
                job["scrape_interval"] = "1s"
            work = tmp_path_factory.mktemp("prometheus")
            (work / "prometheus.yml").write_text(yaml.safe_dump(config))
            address = f"127.0.0.1:{free_port()}"
            log = (work / "prometheus.log").open("wb")
            process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address={address}",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            prometheus = Prometheus(f"http://{address}", process)

            def ready() -> bool:
                assert process.poll() is None, (work / "prometheus.log").read_text()[-3000:]
                try:
                    return httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, 30, "Prometheus to be ready")
            yield Stack(
                home,
                client,
                prometheus,
                f"http://127.0.0.1:{port}",
                client.status()["supervisor"]["metrics"],
                (home / "serving-token").read_text().strip(),
            )
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            stop_supervisor(client, home)
            kill_leftovers(home)


def test_the_dashboard_shows_the_rates_and_p99_that_were_sent(stack: Stack) -> None:
    prometheus = stack.prometheus
    wait_until(
        lambda: prometheus.targets() and all(t["health"] == "up" for t in prometheus.targets()),
        30,
        "every target up",
    )
    traffic = PacedTraffic(stack.server, stack.token, RATE, WINDOW + MARGIN + 1, BAD_EVERY)
    at = traffic.run() - 1  # the window [at - WINDOW, at] saw traffic all along, pulled and scraped
    scraped = 'max(timestamp(up{job="modeldeck"}))'
    wait_until(lambda: prometheus.value(scraped) > at + 2, 30, "scrapes after the window")

    # every target up, including the server scraped with the token file; no label renamed
    targets = prometheus.targets()
    assert {t["health"] for t in targets} == {"up"}, [(t["scrapeUrl"], t["lastError"]) for t in targets]
    assert stack.exporter in {t["scrapeUrl"] for t in targets}
    assert prometheus.query('{__name__=~"modeldeck_.+", exported_model!=""}') == []
    assert prometheus.query('{__name__=~"modeldeck_.+", exported_deployment!=""}') == []
    assert prometheus.query(
        'modeldeck_requests_total{deployment=""}'
    )  # a server's own: there, counted nowhere

    panels = dashboard_queries(f"{WINDOW}s")
    sent = traffic.rate_between(at - WINDOW, at)
    sent_bad = traffic.rate_between(at - WINDOW, at, refused=True)
    shown = prometheus.value(panels["Requests per second by version"][0], at)  # one version
    # The usual error codes are there at 0 (shown before they count); the ones sent are not 0.
    errors = [
        r for r in prometheus.query(panels["Errors per second by status"][0], at) if float(r["value"][1])
    ]
    refused = {str(status) for _, status, _ in traffic.answers if status >= 400}
    assert [r["metric"]["code"] for r in errors] == sorted(refused)
    shown_bad = float(errors[0]["value"][1])
    print(
        f"\nscheduled {RATE} req/s; answered in the window {sent:.2f} req/s ({sent_bad:.2f} 4xx); "
        f"dashboard {shown:.2f} req/s ({shown_bad:.2f} 4xx)"
    )
    assert shown == pytest.approx(sent, rel=0.05)
    assert shown_bad == pytest.approx(sent_bad, rel=0.05)
    (ratio_4xx, ratio_5xx) = (
        prometheus.value(expr, at) for expr in panels["Error ratio by version (4xx, 5xx)"]
    )
    assert ratio_4xx == pytest.approx(1 / BAD_EVERY, rel=0.05) and ratio_5xx == 0

    # p99: in the bucket of the window's exact p99 (the stored samples, no extrapolation), and no
    # slower than the bucket of the p99 the client measured (a server cannot take longer than that)
    p99 = prometheus.value(panels["Latency p50 / p95 / p99 by version"][2], at)
    exact = window_histogram(prometheus, at)
    rank = 0.99 * exact[-1]
    bounds = [*LATENCY_BUCKETS, math.inf]
    index = next(i for i, count in enumerate(exact) if count >= rank)
    client_p99 = sorted(a[2] for a in traffic.answers)[int(0.99 * len(traffic.answers))]
    client_bucket = bisect.bisect_left(bounds, client_p99)
    print(f"p99: dashboard {p99:.4f} s, exact in bucket le={bounds[index]:g}, client {client_p99:.4f} s")
    assert (bounds[index - 1] if index else 0.0) < p99 <= bounds[index]
    assert p99 <= bounds[client_bucket]

    # every panel's every query answers (drift takes a few pulls to be computed)
    for title, exprs in panels.items():
        for expr in exprs:
            wait_until(lambda expr=expr: prometheus.query(expr), 30, f"data for {title!r}: {expr}")


def test_worker_restarts_are_counted_and_every_recording_rule_has_data(stack: Stack) -> None:
    prometheus = stack.prometheus
    (deployment,) = stack.client.status()["deployments"]
    victim = next(p["pid"] for p in deployment["processes"] if p["role"] == "active")
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: prometheus.query('modeldeck_worker_restarts_total{deployment="iris",model="iris"} == 1'),
        60,
        "the restart in Prometheus",
    )
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                wait_until(lambda r=rule["record"]: prometheus.query(r), 30, f"data for {rule['record']}")
    wait_until(
        lambda: prometheus.query('deployment:modeldeck_worker_restarts:increase15m{deployment="iris"} >= 1'),
        30,
        "the restart in the recording rule",
    )


def test_every_metrics_endpoint_passes_promtool(stack: Stack) -> None:
    headers = {"authorization": f"Bearer {stack.token}"}
    pages = {"exporter": httpx.get(stack.exporter, timeout=10).text}
    for n in range(4):  # new connections: both workers answer some
        pages[f"server {n}"] = httpx.get(f"{stack.server}/metrics", headers=headers, timeout=10).text
    for name, text in pages.items():
        assert "modeldeck_requests_total" in text, name
        checked = promtool("check", "metrics", stdin=text)
        assert checked.returncode == 0 and not checked.stdout.strip(), (name, checked.stdout, checked.stderr)


def test_the_shipped_rules_pass_promtool_and_fire_as_documented() -> None:
    need_prometheus("prometheus", "promtool")
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(ROOT / "tests" / "prometheus_rules_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries(rate_interval: str) -> dict[str, list[str]]:
    """Every panel's queries from the shipped dashboard, for all deployments and models (the
    variables' "All" value) and with `rate_interval` for Grafana's $__rate_interval."""
    dashboard = json.loads(DASHBOARD.read_text())
    every = {v["name"]: v["allValue"] for v in dashboard["templating"]["list"] if v["type"] == "query"}

    def substitute(expr: str) -> str:
        expr = expr.replace("$__rate_interval", rate_interval)
        return re.sub(r"\$(\w+)", lambda m: every[m.group(1)], expr)

    return {p["title"]: [substitute(t["expr"]) for t in p["targets"]] for p in dashboard["panels"]}


def window_histogram(prometheus: Prometheus, at: float) -> list[float]:
    """Cumulative latency bucket counts of the window ending at `at`, from the very samples rate()
    reads there (each bucket's last minus its first: no extrapolation)."""
    selector = f'modeldeck_request_duration_seconds_bucket{{deployment="iris"}}[{WINDOW}s]'
    counts = {
        r["metric"]["le"]: float(r["values"][-1][1]) - float(r["values"][0][1])
        for r in prometheus.query(selector, at)
    }
    return [counts[le] for le in sorted(counts, key=float)]
