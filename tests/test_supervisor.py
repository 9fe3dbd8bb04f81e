"""The serving supervisor with real processes: a daemon, uvicorn workers, HTTP under load, signals.

One supervisor runs for the module; tests leave it serving `iris` and set up what they need with
deploys, most of which are warm switches (cheap) once versions 1 and 2 have been loaded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from click.testing import Result
from helpers import (
    ROW,
    Load,
    error_of,
    free_port,
    iris_home,
    iris_rows_with_broken_correlation,
    run_modeldeck,
    stop_supervisor,
)
from helpers import wait_until as _wait

import registry as registry_package
from registry import Registry
from registry.deployments import get_deployment
from registry.errors import SupervisorError
from registry.serving.client import SupervisorClient
from registry.serving.rundir import RunDir

pytestmark = pytest.mark.slow


@dataclass
class Served:
    home: Path
    client: SupervisorClient
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def version(self) -> str:
        return httpx.post(f"{self.url}/invocations", json=ROW, timeout=10, verify=False).headers[
            "x-model-version"
        ]

    def active_pids(self, name: str = "iris") -> list[int]:
        deployment = next(d for d in self.client.status()["deployments"] if d["name"] == name)
        return [p["pid"] for p in deployment["processes"] if p["role"] == "active"]

    def events(self, kind: str | None = None) -> list:
        with Registry(home=self.home) as reg:
            return [e for e in reg.history("iris").events if kind is None or e.kind == kind]

    def cli(self, *args: str, typer_only: bool = False) -> Result:
        """`modeldeck ARGS` by the installed command's path (`console.quick`, then Typer), or with
        `typer_only` through the Typer command line alone."""
        return run_modeldeck(self.home, *args, typer_only=typer_only)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    with iris_home(tmp_path_factory, "supervised", (1.0, 0.5, 0.1)) as home:
        X, y = load_iris(return_X_y=True, as_frame=True)
        with Registry(home=home) as reg:
            reg.register(LogisticRegression(max_iter=500).fit(X, y), "iris")  # 4: no reference sample
        client = SupervisorClient(home)
        client.ensure_running("--drain-grace=2", "--drift-every=1", "--metrics=127.0.0.1:0")
        served = Served(home, client, free_port())
        try:
            yield served
        finally:
            stop_supervisor(client, home)


def test_deploy_answers_with_the_version_and_the_control_socket_is_private(served: Served) -> None:
    result = served.client.deploy("iris:1", port=served.port)
    assert (result["version"], result["status"], result["url"]) == (1, "running", served.url)
    assert served.version() == "1"
    rundir = RunDir.of(served.home)
    assert oct(rundir.control_socket.stat().st_mode & 0o777) == "0o600"
    assert oct(rundir.path.stat().st_mode & 0o777) == "0o700"
    with Registry(home=served.home) as reg:
        stored = get_deployment(reg, "iris")
    assert stored is not None and (stored.version, stored.port) == (1, served.port)
    kinds = [e.kind for e in served.events()]
    assert kinds[-4:] == ["deploy_requested", "loading", "ready", "switched"]


def test_swaps_and_rollbacks_under_keep_alive_load_lose_no_request(served: Served) -> None:
    served.client.deploy("iris:1", port=served.port)
    with Load(served.url) as load:
        _wait(lambda: load.answered > 50, what="load to start")
        served.client.deploy("iris:2")  # loads version 2; version 1 becomes the warm standby
        for _ in range(3):
            assert served.client.rollback("iris")["version"] == 1  # warm switches from here on
            load.more()  # answers after each switch (a fixed 0.3 s pause before)
            assert served.client.deploy("iris:2")["version"] == 2
            load.more()
    assert load.failures == []
    assert load.versions["1"] > 0 and load.versions["2"] > 0
    assert served.version() == "2"
    switched = [e for e in served.events() if e.kind in ("switched", "rolled_back")]
    assert [e.to_version for e in switched[-7:]] == [2, 1, 2, 1, 2, 1, 2]
    assert switched[-2].detail["warm"] is True


def test_rollback_is_a_switch_to_the_warm_standby(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    status = served.client.status()["deployments"][0]
    standby = [p for p in status["processes"] if p["role"] == "standby"]
    assert status["standby_version"] is not None and standby and standby[0]["state"] == "standby"
    result = served.cli("rollback", "iris", "-m", "bad metrics")
    assert result.exit_code == 0, result.stderr
    assert "rolled back to iris:" in result.stdout
    assert served.version() == str(status["standby_version"])
    last = served.events("rolled_back")[-1]
    assert last.reason == "bad metrics" and last.detail["warm"] is True and "@" in last.actor


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    with Registry(home=served.home) as reg:
        blob = reg.artifacts.path_of(reg.get("iris:3").artifact_sha256)
    blob.chmod(0o644)
    original = blob.read_bytes()
    blob.write_bytes(original[:-10] + b"tampered!!")
    try:
        with Load(served.url, clients=2) as load:
            result = served.cli("deploy", "iris:3")
        assert result.exit_code == 1
        assert "iris:3 failed to start" in result.stderr and "sha256" in result.stderr
        assert "still serves version 2" in result.stderr
        assert load.failures == [] and set(load.versions) == {"2"}
        failed = served.events("failed")[-1]
        assert failed.to_version == 3 and "sha256" in failed.reason
        with Registry(home=served.home) as reg:
            assert get_deployment(reg, "iris").version == 2
        with pytest.raises(SupervisorError, match="failed to start"):  # a new deployment leaves nothing
            served.client.deploy("iris:3", name="iris-new", port=free_port())
        assert [d["name"] for d in served.client.status()["deployments"]] == ["iris"]
    finally:
        blob.write_bytes(original)


def test_a_killed_worker_is_restarted(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    (victim,) = served.active_pids()
    # queued requests wait for the new worker: on a loaded machine its start can take over 10 s
    with Load(served.url, clients=2, timeout=30) as load:
        _wait(lambda: load.answered > 20, what="load to start")
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: served.active_pids() and served.active_pids() != [victim], what="a new worker")
        answered = load.answered
        _wait(lambda: load.answered > answered + 20, what="answers from the new worker")
    # Requests in flight on the killed worker's connections fail; queued ones wait for the new worker.
    assert len(load.failures) <= 2, load.failures
    kinds = [e.kind for e in served.events()]
    assert "crashed" in kinds and kinds[-1] == "restarted"
    assert served.events("crashed")[-1].detail["pid"] == victim


def test_servers_outlive_a_killed_supervisor_and_a_new_one_adopts_them(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    workers = sorted(p["pid"] for p in served.client.status()["deployments"][0]["processes"])
    old = served.client.status()["supervisor"]["pid"]
    with Load(served.url, clients=2) as load:
        _wait(lambda: load.answered > 20, what="load to start")
        os.kill(old, signal.SIGKILL)
        _wait(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie", what="death")
        answered = load.answered
        _wait(lambda: load.answered > answered + 50, what="answers without a supervisor")
        served.client.ensure_running("--drain-grace=2", "--drift-every=1", "--metrics=127.0.0.1:0")
        status = served.client.wait_settled()
        assert status["supervisor"]["pid"] != old
        assert sorted(p["pid"] for p in status["deployments"][0]["processes"]) == workers
        # The adopted workers handed the socket back: a switch and a fresh load work without a new socket.
        served.client.rollback("iris")
        served.client.deploy("iris:2")
    assert load.failures == []
    for _ in range(20):  # every new connection is accepted (no orphaned socket swallowing some)
        assert served.version() == "2"


def test_a_crash_loop_rolls_back_to_the_standby(served: Served) -> None:
    served.client.deploy("iris:1", port=served.port)
    served.client.deploy("iris:2")
    for _ in range(3):
        (victim,) = served.active_pids()
        os.kill(victim, signal.SIGKILL)
        _wait(lambda v=victim: served.active_pids() not in ([], [v]), timeout=90, what="a restart")
    _wait(lambda: served.version() == "1", what="the automatic rollback")
    rollback = served.events("rolled_back")[-1]
    assert rollback.from_version == 2 and rollback.to_version == 1
    assert rollback.reason.startswith("crash loop: version 2 crashed 3 times")
    assert rollback.actor.startswith("supervisor@")


def test_concurrent_deploy_and_rollback_are_serialised_and_match_the_ledger(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    served.client.rollback("iris", to=1)
    before = len(served.events())
    results: list[object] = []

    def act(call) -> None:
        with SupervisorClient(served.home) as other:
            try:
                results.append(call(other))
            except SupervisorError as exc:
                results.append(exc)

    threads = [
        threading.Thread(target=act, args=(lambda c: c.deploy("iris:2"),)),
        threading.Thread(target=act, args=(lambda c: c.rollback("iris", to=1),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    new = served.events()[before:]
    moves = [e for e in new if e.kind in ("switched", "rolled_back")]
    requested = [e for e in new if e.kind == "deploy_requested"]
    assert len(requested) == 1 and len(moves) + sum(isinstance(r, SupervisorError) for r in results) == 2
    with Registry(home=served.home) as reg:
        final = get_deployment(reg, "iris").version
    assert moves[-1].to_version == final and served.version() == str(final)


def test_monitoring_counts_requests_and_latency_and_judges_drift_on_valid_rows_only(served: Served) -> None:
    from sklearn.datasets import load_iris

    # A deployment of its own: a new worker with nothing sampled yet, so the drift window holds
    # exactly what this test sends (a reused worker may bring rows it sampled in earlier tests).
    port = free_port()
    served.client.deploy("iris:2", name="iris-mon", port=port)
    try:
        rows = load_iris().data.tolist()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for row in rows:
                assert client.post("/invocations", json={"inputs": [row]}).status_code == 200
            for _ in range(3):
                bad = {"inputs": [[1.0, "wide", 1.0, 1.0]]}
                assert client.post("/invocations", json=bad).status_code == 422

        def seen() -> dict:
            return served.client.monitor(0, "iris-mon")["deployments"].get("iris-mon") or {}

        _wait(lambda: sum(p["requests"] for p in seen().get("points", [])) >= 153, what="the requests")
        points = seen()["points"]
        assert sum(p["ok"] for p in points) == 150 and sum(p["client_errors"] for p in points) == 3
        assert any(p["p50"] is not None and p["p50"] < 0.1 for p in points)
        assert all(p["version"] == 2 for p in points) and points[-1]["workers"] == 1
        _wait(lambda: (seen().get("drift") or {}).get("rows") == 150, what="drift of the 150 valid rows")
        drift = seen()["drift"]
        assert drift["status"] == "ok" and drift["version"] == 2  # the training data does not drift
        assert [f["name"] for f in drift["features"]][:1] == ["sepal length (cm)"]
        assert drift["prediction"]["kind"] == "categorical"
    finally:
        served.client.stop("iris-mon")


def test_rows_whose_correlation_broke_are_multivariate_drift_in_status_and_prometheus(served: Served) -> None:
    port = free_port()  # a deployment of its own: its window holds only these rows
    served.client.deploy("iris:2", name="iris-mv", port=port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for row in iris_rows_with_broken_correlation():
                assert client.post("/invocations", json={"inputs": [row]}).status_code == 200

        def drift() -> dict:
            seen = served.client.monitor(0, "iris-mv")["deployments"].get("iris-mv") or {}
            return seen.get("drift") or {}

        _wait(lambda: drift().get("rows") == 150, what="drift of the 150 rows")
        assert all(f["status"] == "ok" for f in drift()["features"])  # each feature is as in the reference
        listed = json.loads(served.cli("status", "--json").stdout)["deployments"]
        signal = next(d for d in listed if d["name"] == "iris-mv")["live"]["multivariate"]
        assert signal["method"] == "pca-reconstruction" and signal["status"] == "drift"
        assert signal["error_ratio"] > 1.1 and signal["p_value"] < 0.001 and signal["rows"] == 150
        shown = served.cli("status").stdout
        assert re.search(r"^iris-mv: multivariate PCA error x[0-9.]+  p<0\.001  drift$", shown, re.M), shown
        metrics = httpx.get(served.client.status()["supervisor"]["metrics"], timeout=10).text
        labels = '{deployment="iris-mv",model="iris",version="2"}'
        assert f"modeldeck_drift_multivariate_level{labels} 2.0" in metrics
        ratio = re.search(
            rf"^modeldeck_drift_multivariate_error_ratio{re.escape(labels)} (\S+)$", metrics, re.M
        )
        assert ratio and float(ratio[1]) == pytest.approx(signal["error_ratio"], rel=0.2)
        assert f"modeldeck_drift_multivariate_p_value{labels} " in metrics
    finally:
        served.client.stop("iris-mv")


def test_the_exporter_sums_workers_for_prometheus_and_lists_targets(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port, workers=2)
    deployed = served.client.monitor()["cursor"]
    _wait(
        lambda: len(served.client.monitor(deployed, "iris")["deployments"]["iris"]["points"]) >= 2,
        what="pulls",
    )
    for _ in range(120):  # a new connection each: both workers answer some
        httpx.post(f"{served.url}/invocations", json=ROW, timeout=10, verify=False)
    url = served.client.status()["supervisor"]["metrics"]

    def total() -> float:
        text = httpx.get(url, timeout=10).text
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith("modeldeck_requests_total{")
                and 'code="200"' in x
                and 'version="2"' in x
                and 'deployment="iris"' in x
            ),
            None,
        )
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    _wait(lambda: total() >= 40, what="the requests in the exporter")
    text = httpx.get(url, timeout=10).text
    assert (
        'modeldeck_request_duration_seconds_bucket{deployment="iris",le="0.0001",model="iris",version="2"}'
        in text
    )
    assert 'modeldeck_workers{deployment="iris",model="iris",version="2"} 2.0' in text
    assert "modeldeck_host_cpu_percent" in text
    _wait(lambda: "modeldeck_drift_psi{" in httpx.get(url, timeout=10).text, what="drift in the exporter")
    text = httpx.get(url, timeout=10).text
    for gauge in ("p_value", "p_adjusted", "effect", "feature_level"):  # each feature's reason
        assert f'modeldeck_drift_{gauge}{{deployment="iris",feature="sepal length (cm)"' in text, gauge
    dashboard = (
        Path(registry_package.__file__).parent / "monitoring" / "grafana" / "modeldeck.json"
    ).read_text()
    used = set(re.findall(r"modeldeck_[a-z0-9_]+", dashboard))
    exported = set(re.findall(r"^(modeldeck_[a-z0-9_]+)", text, re.M))
    assert used and used <= exported, used - exported  # the shipped dashboard only charts what exists
    assert 'modeldeck_worker_restarts_total{deployment="iris",model="iris"} ' in text
    targets = json.loads((served.home / "prometheus" / "targets.json").read_text())
    exporter = url.removeprefix("http://").removesuffix("/metrics")
    # the exporter alone: the servers' own /metrics listed too counted every request twice
    assert targets == [{"targets": [exporter], "labels": {"job": "modeldeck", "source": "supervisor"}}]
    served.client.scale("iris", 1)


def test_a_version_without_reference_has_no_drift_and_everything_else_works(served: Served) -> None:
    port = free_port()
    served.client.deploy("iris:4", name="iris-old", port=port)
    try:
        for _ in range(5):
            assert httpx.post(f"http://127.0.0.1:{port}/invocations", json=ROW, timeout=10).status_code == 200

        def seen() -> dict:
            return served.client.monitor(0, "iris-old")["deployments"].get("iris-old") or {}

        _wait(lambda: (seen().get("drift") or {}).get("status") == "no reference", what="drift's verdict")
        _wait(lambda: sum(p["requests"] for p in seen()["points"]) >= 4, what="requests counted")
    finally:
        served.client.stop("iris-old")


def test_connection_options_reach_the_workers(served: Served) -> None:
    """A deployment's idle and header timeouts are its workers' (the supervisor passes them on)."""
    port = free_port()
    options = {"idle_timeout": 0.5, "header_timeout": 1.5, "max_connections": 100}
    served.client.deploy("iris:1", name="iris-limits", port=port, options=options)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            assert idle.recv(1) == b"", "an idle connection is closed by the worker"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /health/live HTTP/1.1\r\n")
            assert slow.recv(100).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:  # idle after an answer
            kept.sendall(b"GET /health/live HTTP/1.1\r\nHost: w\r\n\r\n")
            answer = b""
            while b'"live"' not in answer:
                answer += kept.recv(1000)
            assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in answer.lower()
            assert kept.recv(1) == b"", "a kept-alive connection is closed once idle"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as pipelined:  # three at once
            pipelined.sendall(b"GET /health/live HTTP/1.1\r\nHost: w\r\n\r\n" * 3)
            answers = b""
            while answers.count(b'"status":"live"}') < 3:  # each body names "live" twice
                answers += pipelined.recv(4096)
            assert answers.count(b"HTTP/1.1 200 ") == 3, answers
        with socket.create_connection(("127.0.0.1", port), timeout=10) as pipelined:
            # the next request's first bytes came with the first one: it is no idle connection, and
            # its header deadline, not the idle one, runs while the rest of it is on its way
            second = b"GET /health/live HTTP/1.1\r\nHost: w\r\n\r\n"
            pipelined.sendall(second + second[:12])
            answer = b""
            while b'"live"' not in answer:
                answer += pipelined.recv(1000)
            time.sleep(1.0)  # past the idle timeout, within the header timeout
            pipelined.sendall(second[12:])
            answer = pipelined.recv(1000)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
        stored = served.client.status()["deployments"]
        assert next(d for d in stored if d["name"] == "iris-limits")["options"]["idle_timeout"] == 0.5
    finally:
        served.client.stop("iris-limits")


def test_a_worker_that_stops_answering_its_pull_is_shown_stale(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    (pid,) = served.active_pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        _wait(
            lambda: (served.client.monitor()["deployments"]["iris"]["live"] or {}).get("stale") == 1,
            what="a stale point",
        )
        live = served.client.monitor()["deployments"]["iris"]["live"]
        assert live["workers"] == 1 and live["requests"] == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait(lambda: served.client.monitor()["deployments"]["iris"]["live"]["stale"] == 0, what="fresh again")


def test_port_in_use_is_a_clear_error(served: Served) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = served.cli("deploy", "iris:1", "--name", "iris-b", "--port", str(port))
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    taken = served.cli("deploy", "iris:1", "--name", "iris-c", "--port", str(served.port))
    assert taken.exit_code == 1 and "already used by deployment 'iris'" in taken.stderr


def test_status_logs_scale_and_stop(served: Served) -> None:
    served.client.deploy("iris:1", port=served.port)
    served.client.deploy("iris:2")
    status = served.cli("status")
    assert status.exit_code == 0
    row = next(line for line in status.stdout.splitlines() if line.startswith("iris "))
    assert row.split()[:6] == ["iris", "iris:2", "1", served.url, "1/1", "running"]
    assert served.client.scale("iris", 2)["workers_running"] == 2
    assert len(set(served.active_pids())) == 2
    assert served.client.deploy("iris:2", workers=1)["workers_running"] == 1  # same version: a scale

    as_json = json.loads(served.cli("status", "--json").stdout)
    assert as_json["deployments"][0]["workers"] == 1
    logs = served.cli("logs", "iris", "-n", "5")
    assert logs.exit_code == 0
    other = free_port()
    served.client.deploy("iris:1", name="iris-extra", port=other)
    stopped = served.cli("stop", "iris-extra", "-m", "done")
    assert stopped.exit_code == 0 and "iris-extra: stopped" in stopped.stdout
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{other}/health/live", timeout=2)
    with Registry(home=served.home) as reg:
        assert get_deployment(reg, "iris-extra") is None
    assert served.events("stopped")[-1].deployment == "iris-extra"
    missing = served.cli("stop", "nope")
    assert missing.exit_code == 1 and "no deployment 'nope'" in missing.stderr


def test_beyond_loopback_predictions_need_the_token_shown_by_status(served: Served) -> None:
    port = free_port()
    deployed = served.cli(
        "deploy", "iris:1", "--name", "iris-public", "--host", "0.0.0.0", "--port", str(port)
    )
    try:
        assert deployed.exit_code == 0, deployed.stderr
        status = served.cli("status")
        token = (served.home / "serving-token").read_text().strip()
        assert f"iris-public: bearer token {token}" in status.stdout
        # the address printed is one other hosts can use (this host's own, not loopback), and it answers
        outside = re.search(r"serves on (http://[^ ]+)", deployed.stdout)
        assert outside and "127.0.0.1" not in outside[1] and "0.0.0.0" not in outside[1], deployed.stdout
        assert f"other hosts use {outside[1]}" in deployed.stdout and outside[1] in status.stdout
        assert httpx.get(f"{outside[1]}/health/ready", timeout=10).status_code == 200
        assert oct((served.home / "serving-token").stat().st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{port}/invocations"
        refused = httpx.post(url, json=ROW, timeout=10)
        assert refused.status_code == 401 and error_of(refused)["field"] == "Authorization"
        allowed = httpx.post(url, json=ROW, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert allowed.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10).status_code == 200
    finally:
        served.client.stop("iris-public")


def test_supervisor_start_brings_deployments_back(served: Served) -> None:
    served.client.deploy("iris:2", port=served.port)
    assert served.cli("supervisor", "stop", "--servers").exit_code == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{served.url}/health/live", timeout=2)
    started = served.cli("supervisor", "start", "--drain-grace", "2")
    assert started.exit_code == 0, started.stderr
    assert f"iris: iris:2 running on {served.url}" in started.stdout
    assert served.version() == "2"
    assert served.events()[-1].reason in ("supervisor started", "")


def test_the_control_api_refuses_bad_requests_with_a_reason(served: Served) -> None:
    transport = httpx.HTTPTransport(uds=str(RunDir.of(served.home).control_socket), verify=False)
    with httpx.Client(transport=transport, base_url="http://supervisor", timeout=30) as control:
        missing = control.post("/deploy", json={"port": served.port})
        assert missing.status_code == 400 and "'ref'" in missing.json()["error"]["message"]
        not_object = control.post("/rollback", json=[1, 2])
        assert not_object.status_code == 400 and "JSON object" in not_object.json()["error"]["message"]
        unknown = control.post("/deploy", json={"ref": "nope:1"})
        assert unknown.status_code == 404 and "no model 'nope'" in unknown.json()["error"]["message"]
    with pytest.raises(SupervisorError, match="between 1 and 64"):
        served.client.scale("iris", 0)
    with pytest.raises(SupervisorError, match="between 1 and 64"):
        served.client.deploy("iris:1", workers=65)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "../x"}, "name", "deployment name '../x' is not allowed"),
        ({"name": "../../x"}, "name", "deployment name '../../x' is not allowed"),
        ({"name": "a/b"}, "name", "deployment name 'a/b' is not allowed"),
        ({"name": ".hidden"}, "name", "deployment name '.hidden' is not allowed"),
        (
            {"name": "x", "port": 0},
            "port",
            "--port must be between 1 and 65535 (leave it out for a free port)",
        ),
        ({"name": "x", "port": 70000}, "port", "--port must be between 1 and 65535"),
        ({"name": "x", "port": "80; rm"}, "port", "'port' must be an integer, not a string"),
        ({"name": "x", "host": "example.com"}, "host", "--host must be an IP address or localhost"),
        ({"name": "x", "workers": 1.5}, "workers", "'workers' must be an integer, not a number"),
        ({"name": "x", "options": {"max_body_mb": -1}}, "max_body_mb", "--max-body-mb must be above 0"),
        ({"name": "x", "options": {"idle_timeout": 0}}, "idle_timeout", "--idle-timeout must be above 0"),
        ({"name": "x", "options": {"max_connections": 0}}, "max_connections", "--max-connections must be"),
        ({"name": "x", "options": {"log": "/etc/x"}}, "options", "unknown deployment option 'log'"),
    ],
)
def test_the_control_api_names_the_bad_field_and_does_nothing(
    served: Served, body: dict, field: str, message: str
) -> None:
    before = set(served.home.parent.rglob("*"))
    transport = httpx.HTTPTransport(uds=str(RunDir.of(served.home).control_socket), verify=False)
    with httpx.Client(transport=transport, base_url="http://supervisor", timeout=30) as control:
        answer = control.post("/deploy", json={"ref": "iris:1", **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field and message in answer.json()["error"]["message"]
    assert not {d["name"] for d in served.client.status()["deployments"]} & {"x", "../x", "a/b"}
    outside = set(served.home.parent.rglob("*")) - before
    assert not [p for p in outside if served.home not in p.parents], "nothing written outside the home"
    assert not (served.home / "logs" / "x.log").exists() and not (served.home / "x.log").exists()


def test_status_with_a_supervisor_prints_what_typer_prints_without_typer_or_the_orm(served: Served) -> None:
    """The installed `modeldeck status` (console.quick) asks a running supervisor itself: the same
    table and lines as the Typer command, loading neither Typer, SQLAlchemy nor numpy (0.15 s, where
    the Typer command takes 0.4 s)."""
    served.client.deploy("iris:2", port=served.port)
    quick, typer = served.cli("status"), served.cli("status", typer_only=True)
    assert quick.exit_code == typer.exit_code == 0, (quick.stderr, typer.stderr)
    assert "iris:2" in quick.stdout and "running" in quick.stdout

    def shape(text: str) -> list[str]:  # live figures move between the two calls (the last 10 s)
        return [" ".join(re.sub(r"\d+(\.\d+)?( ms)?|-", "N", line).split()) for line in text.splitlines()]

    assert shape(quick.stdout) == shape(typer.stdout) and quick.stderr == typer.stderr
    probe = (
        "import sys, json\nfrom console.quick import run\ncode = run(['status', '--json'])\n"
        "loaded = [m for m in ('typer', 'sqlalchemy', 'numpy') if m in sys.modules]\n"
        "print(json.dumps([code, loaded]), file=sys.stderr)"
    )
    env = {**os.environ, "MODELDECK_HOME": str(served.home)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    code, loaded = json.loads(done.stderr.splitlines()[-1])
    assert code == 0 and loaded == [], done.stderr
    answer = done.stdout
    assert json.loads(answer)["supervisor"]["pid"] == served.client.status()["supervisor"]["pid"]


def test_status_names_a_supervisor_that_runs_but_does_not_answer(served: Served) -> None:
    """A stuck supervisor is not "no supervisor": `status` names it (pid, the wait) and shows what
    each deployment's own port answers meanwhile."""
    served.client.deploy("iris:2", port=served.port)
    pid = served.client.status()["supervisor"]["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive, holding its socket, answering nothing
    try:
        human, as_json = served.cli("status"), served.cli("status", "--json")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert human.exit_code == as_json.exit_code == 0, (human.stderr, as_json.stderr)
    said = f"the supervisor (pid {pid}) did not answer within 2 s: each state is what the deployment's"
    assert said in " ".join(human.stderr.split()), human.stderr
    assert "no supervisor is running" not in human.stderr
    row = next(line for line in human.stdout.splitlines() if line.startswith("iris "))
    assert "serving (supervisor down)" in row
    answer = json.loads(as_json.stdout)
    assert answer["supervisor"] is None
    assert answer["supervisor_problem"] == f"the supervisor (pid {pid}) did not answer within 2 s"
    assert served.client.wait_settled()["supervisor"]["pid"] == pid  # and it goes on once continued


def test_with_the_supervisor_stopped_status_and_the_console_say_serving(served: Served) -> None:
    from console.backend import Backend
    from console.widgets.live import state_text

    served.client.deploy("iris:2", port=served.port)
    port = free_port()
    served.client.deploy("iris:2", name="iris-drift", port=port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for row in load_iris_rows()[:120]:
            assert client.post("/invocations", json={"inputs": [row]}).status_code == 200

    def drift_rows() -> int | None:
        seen = served.client.monitor(0, "iris-drift")["deployments"].get("iris-drift") or {}
        return (seen.get("drift") or {}).get("rows")

    _wait(lambda: drift_rows() == 120, what="the drift window")

    def uptime() -> float:
        status = served.client.status()["deployments"]
        return next(d for d in status if d["name"] == "iris")["processes"][0]["uptime_s"]

    _wait(lambda: uptime() >= 1.0, what="a worker up for a second")
    before, asked = uptime(), time.time()
    try:
        assert served.cli("supervisor", "stop").exit_code == 0
        assert httpx.get(f"{served.url}/health/ready", timeout=10).status_code == 200
        as_json = json.loads(served.cli("status", "--json").stdout)
        assert as_json["supervisor"] is None
        states = {d["name"]: (d["status"], d["message"]) for d in as_json["deployments"]}
        assert states["iris"] == ("serving", "supervisor down")
        human = served.cli("status")
        assert human.exit_code == 0
        row = next(line for line in human.stdout.splitlines() if line.startswith("iris "))
        assert "serving (supervisor down)" in row and " down" not in row.replace("(supervisor down)", "")
        backend = Backend(served.home)
        try:
            overview = backend.overview()
        finally:
            backend.close()
        assert not overview.supervisor_up
        assert state_text(overview.live["iris"], overview.supervisor_up) == "serving (sup. down)"
    finally:
        served.client.ensure_running("--drain-grace=2", "--drift-every=1", "--metrics=127.0.0.1:0")
        served.client.wait_settled()
    # A restart keeps what the workers did before it: their uptime, and the drift window's rows.
    assert uptime() >= before + (time.time() - asked) - 0.5
    _wait(lambda: drift_rows() is not None, what="drift after the restart")
    assert drift_rows() == 120  # without the saved window: 0 rows, "not enough data"
    served.client.stop("iris-drift")


def load_iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return load_iris().data.tolist()


def test_an_explicit_metrics_address_in_use_fails_supervisor_start(tmp_path: Path) -> None:
    env = {**os.environ, "MODELDECK_HOME": str(tmp_path)}
    env.pop("MODELDECK_DB_URL", None)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        address = f"127.0.0.1:{squatter.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "console.cli", "supervisor", "start", "--metrics", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1, result.stdout
    assert "started" not in result.stdout
    assert f"no Prometheus exporter on {address}" in result.stderr and "--metrics" in result.stderr
    assert "--port" not in result.stderr and "Traceback" not in result.stderr
    assert not SupervisorClient(tmp_path).running()


def test_the_default_metrics_address_taken_falls_back_to_a_free_port_and_says_so(tmp_path: Path) -> None:
    from registry.serving.control import DEFAULT_METRICS

    host, _, port = DEFAULT_METRICS.rpartition(":")
    env = {**os.environ, "MODELDECK_HOME": str(tmp_path)}
    env.pop("MODELDECK_DB_URL", None)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Another test's supervisor may hold the port for a moment and free it just before this one
        # starts (it happened in CI): hold it here once it is free; one that keeps it for 10 s is a
        # supervisor that stays, and the port stays taken either way.
        deadline = time.monotonic() + 10
        while True:
            try:
                squatter.bind((host, int(port)))
                squatter.listen()
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        run = [sys.executable, "-m", "console.cli", "supervisor", "start"]
        result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
        client = SupervisorClient(tmp_path)
        try:
            assert result.returncode == 0, result.stderr
            info = client.status()["supervisor"]
            assert info["metrics"] and f":{port}/" not in info["metrics"]
            assert f"{DEFAULT_METRICS} was taken" in info["metrics_note"]
            assert f"note: {DEFAULT_METRICS} was taken" in result.stderr
            assert f"Prometheus: {info['metrics']}" in result.stdout
            exporter = info["metrics"].removeprefix("http://").removesuffix("/metrics")
            targets = json.loads((tmp_path / "prometheus" / "targets.json").read_text())
            assert targets[0]["targets"] == [exporter]
            assert httpx.get(info["metrics"], timeout=10).status_code == 200
            status = subprocess.run(
                [sys.executable, "-m", "console.cli", "status"], env=env, capture_output=True, text=True
            )
            assert f"{DEFAULT_METRICS} was taken" in status.stderr
        finally:
            client.shutdown()
            client.close()


def test_stopping_one_demo_deployment_leaves_the_others_traffic_flowing(served: Served) -> None:
    from console.demo_traffic import DemoTraffic

    ports = {"demo-a": free_port(), "demo-b": free_port()}
    for name, port in ports.items():
        served.client.deploy("iris:2", name=name, port=port)
    targets = {name: (f"http://127.0.0.1:{port}", "iris:2") for name, port in ports.items()}
    traffic = DemoTraffic(served.home, targets, rate=20)
    start = served.client.monitor()["cursor"]

    def requests_to_b() -> int:
        seen = served.client.monitor(start, "demo-b")["deployments"].get("demo-b") or {}
        return sum(p["requests"] for p in seen.get("points", []))

    (stuck,) = [p["pid"] for p in _deployment(served, "demo-a")["processes"] if p["role"] == "active"]
    traffic.start()
    try:
        _wait(lambda: requests_to_b() >= 20, what="traffic to demo-b")
        # demo-a stops answering (SIGSTOP: its requests hang until the client's 5 s timeout), then is
        # stopped for good; one sender for all deployments sent demo-b one request per 5 s meanwhile.
        os.kill(stuck, signal.SIGSTOP)
        before = requests_to_b()
        _wait(lambda: requests_to_b() >= before + 60, timeout=30, what="demo-b's traffic with demo-a stuck")
        os.kill(stuck, signal.SIGCONT)
        served.client.stop("demo-a")
        before = requests_to_b()
        _wait(
            lambda: requests_to_b() >= before + 60, timeout=30, what="demo-b's traffic after stopping demo-a"
        )
        assert traffic.senders["demo-b"].failed == 0
    finally:
        if psutil.pid_exists(stuck):
            os.kill(stuck, signal.SIGCONT)
        traffic.stop()
        traffic.join(10)
        for name in ports:
            if any(d["name"] == name for d in served.client.status()["deployments"]):
                served.client.stop(name)


def _deployment(served: Served, name: str) -> dict:
    return next(d for d in served.client.status()["deployments"] if d["name"] == name)
