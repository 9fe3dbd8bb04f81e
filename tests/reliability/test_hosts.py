"""Several hosts on one PostgreSQL registry, for real: three Linux network namespaces (a, b, c), each
with its own address, home and supervisor (`tests/hosts_lab.py`), sharing one real PostgreSQL database.
Commands run on one host and change deployments on another; requests come from a third host's
namespace to the serving host's address, under load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests import hosts_lab
from tests.helpers import free_port, need_prometheus, wait_until
from tests.hosts_lab import Host, Lab

pytestmark = pytest.mark.xdist_group("hosts")


@pytest.fixture(scope="module")
def lab(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = hosts_lab.available()
    if why is not None:
        pytest.skip(f"several-hosts tests skipped: {why}")
    from registry import Registry
    from tests.conftest import _database

    root = tmp_path_factory.mktemp("hosts")
    with _database(postgres_server) as url, Lab(root, url) as built:
        rng = np.random.default_rng(3)
        frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
        labels = (frame["a"] + frame["b"] > 0).astype(int)
        with Registry(home=root / "registrar", db_url=url) as reg:
            reg.register(LogisticRegression().fit(frame, labels), "m", reference=frame)
            reg.register(LogisticRegression(C=0.1).fit(frame, labels), "m", reference=frame)
        for host in built.hosts.values():
            host.start()
        yield built


def hosts_json(host: Host) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in json.loads(host.run("hosts", "--json").stdout)}


def predict(client: Host, url: str) -> httpx.Response:
    """One prediction from `client`'s namespace (a request that crosses the bridge)."""
    code = (
        "import httpx,sys,json;r=httpx.post(sys.argv[1],json={'dataframe_split':{'columns':['a','b','c'],"
        "'data':[[0.1,0.2,0.3]]}},timeout=10);print(json.dumps([r.status_code,dict(r.headers),r.text]))"
    )
    proc = client.popen([hosts_lab.sys.executable, "-c", code, url], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    status, headers, text = json.loads(out)
    return httpx.Response(status, headers=headers, text=text)


def registry_of(lab: Lab) -> Any:
    from registry import Registry

    return Registry(home=lab.root / "registrar", db_url=lab.db_url)


def port_of(lab: Lab, name: str) -> int:
    """The port deployment `name` listens on, on every host that serves it (from the registry)."""
    from registry.deployments import list_deployments

    with registry_of(lab) as reg:
        return next(d.port for d in list_deployments(reg) if d.name == name)


def test_deploy_to_b_from_a_then_roll_back_from_c_under_load(lab: Lab, tmp_path: Path) -> None:
    a, b, c = lab["a"], lab["b"], lab["c"]
    assert not (b.home / "artifacts").exists() or not any((b.home / "artifacts").rglob("*"))  # empty cache
    first = a.run("deploy", "m:1", "--name", "web", "--on", "b", "--host", "0.0.0.0", "--no-auth")
    assert "b: serves version 1" in first.stdout, first.stdout
    assert any((b.home / "artifacts").rglob("*")), "b served a version it had never had on disk"
    second = a.run("deploy", "m:2", "--name", "web")  # placed on b: goes to b, not to a's supervisor
    assert "b: serves version 2" in second.stdout, second.stdout
    url = f"http://{b.address}:{port_of(lab, 'web')}/invocations"
    assert predict(c, url).headers["x-model-version"] == "2"

    with hosts_lab.load(c, url, tmp_path) as counts:
        started = time.monotonic()
        back = c.run("rollback", "web")
        took = time.monotonic() - started
        wait_until(lambda: counts.now()["versions"].get("1", 0) > 50, what="answers after the rollback")
    assert "b: rolled back to version 1" in back.stdout, back.stdout
    assert counts["failed"] == 0, counts["errors"]
    assert counts["ok"] > 50 and set(counts["versions"]) == {"1", "2"}, counts
    assert took < 30
    seen = hosts_json(c)["b"]
    assert seen["state"] == "up" and seen["deployments"]["web"]["version"] == 1
    placed = json.loads(c.run("status", "--json").stdout)["placements"]
    (row,) = [p for p in placed if p["name"] == "web"]
    assert (row["host"], row["state"], row["version"], row["address"]) == (
        "b",
        "running",
        1,
        url[7:].split("/")[0],
    )
    history = json.loads(c.run("history", "m", "--json").stdout)
    events = history["events"] if isinstance(history, dict) else history
    kinds = [(e["kind"], (e.get("detail") or {}).get("host")) for e in events if e.get("deployment") == "web"]
    assert ("requested", "c") in kinds and ("rolled_back", "b") in kinds, kinds
    assert not any(kind == "switched" and where != "b" for kind, where in kinds)


def test_scale_across_two_hosts_then_stop_from_a(lab: Lab) -> None:
    a, b, c = lab["a"], lab["b"], lab["c"]
    a.run("deploy", "m:1", "--name", "wide", "--on", "b", "--host", "0.0.0.0", "--no-auth")
    scaled = a.run("scale", "wide", "2", "--on", "b,c")
    assert "b:" in scaled.stdout and "c:" in scaled.stdout, scaled.stdout
    port = port_of(lab, "wide")
    seen = hosts_json(a)
    assert seen["b"]["deployments"]["wide"]["workers"] == 2
    assert seen["c"]["deployments"]["wide"]["workers"] == 2
    for serving in (b, c):
        answer = predict(a, f"http://{serving.address}:{port}/invocations")
        assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
    stopped = a.run("stop", "wide")
    assert "b: stopped" in stopped.stdout and "c: stopped" in stopped.stdout, stopped.stdout
    from registry.deployments import list_deployments

    with registry_of(lab) as reg:
        assert "wide" not in [d.name for d in list_deployments(reg)]
    for serving in (b, c):
        entry = hosts_json(a)[serving.name]["deployments"].get("wide")  # forgotten once it left, or stopped
        assert entry is None or entry["state"] == "stopped", entry
        with pytest.raises(httpx.TransportError):
            httpx.post(f"http://{serving.address}:{port}/invocations", json={}, timeout=2)


def test_lost_host_keeps_serving_and_is_readopted(lab: Lab) -> None:
    a, b = lab["a"], lab["b"]
    a.run("deploy", "m:1", "--name", "lone", "--on", "b", "--host", "0.0.0.0", "--no-auth")
    port = port_of(lab, "lone")
    url = f"http://{b.address}:{port}/invocations"
    pid = json.loads(b.run("supervisor", "status", "--json").stdout)["pid"]
    (served,) = [
        d for d in json.loads(b.run("status", "--json").stdout)["deployments"] if d["name"] == "lone"
    ]
    worker = served["processes"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while hosts_json(a)["b"]["state"] != "lost" and time.monotonic() < deadline:
        time.sleep(1)
    assert hosts_json(a)["b"]["state"] == "lost"
    table = a.run("hosts").stdout
    assert "lone (unknown)" in table, table
    status = a.run("status", "--host", "b").stdout
    assert "unknown (host lost)" in status and "lone" in status, status
    assert predict(a, url).status_code == 200  # its servers did not notice
    asked = a.run("scale", "lone", "2")  # written now; b makes it when it is back
    assert "b is lost" in asked.stderr, asked.stderr
    b.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mine = hosts_json(a)["b"]
        if mine["state"] == "up" and mine["deployments"].get("lone", {}).get("workers") == 2:
            break
        time.sleep(0.5)
    assert mine["deployments"]["lone"]["workers"] == 2, mine
    assert predict(a, url).status_code == 200
    (served,) = [
        d for d in json.loads(b.run("status", "--json").stdout)["deployments"] if d["name"] == "lone"
    ]
    assert worker in [p["pid"] for p in served["processes"]], served  # adopted, not started anew


def test_two_operators_racing_are_serialised(lab: Lab) -> None:
    a, b, c = lab["a"], lab["b"], lab["c"]
    a.run("deploy", "m:1", "--name", "race", "--on", "b", "--host", "0.0.0.0", "--no-auth")
    one = a.popen([hosts_lab.MODELDECK, "scale", "race", "2"], stdout=subprocess.PIPE)
    two = c.popen([hosts_lab.MODELDECK, "deploy", "m:2", "--name", "race"], stdout=subprocess.PIPE)
    out_one, _ = one.communicate(timeout=180)
    out_two, _ = two.communicate(timeout=180)
    assert one.returncode == 0 and two.returncode == 0, (out_one, out_two)
    generations = sorted(int(o.split("generation ")[1].split(")")[0]) for o in (out_one, out_two))
    assert generations[1] == generations[0] + 1  # one after the other, never the same
    final = hosts_json(b)["b"]["deployments"]["race"]
    assert final["version"] == 2 and final["workers"] == 2, final  # both changes kept


def test_prometheus_finds_every_host_through_one_exporter(lab: Lab, tmp_path: Path) -> None:
    """A real Prometheus given one host's `/sd` (HTTP service discovery) scrapes every host's exporter,
    each with its `host` label, which is what the dashboard's host variable lists."""
    need_prometheus("prometheus")
    a = lab["a"]
    deadline = time.monotonic() + 30  # every host's heartbeat has told the others its exporter
    while time.monotonic() < deadline:
        groups = httpx.get(f"http://{a.address}:9464/sd", timeout=5).json()
        if len(groups) == 3:
            break
        time.sleep(0.5)
    assert sorted(g["labels"]["host"] for g in groups) == ["a", "b", "c"], groups
    assert {g["targets"][0] for g in groups} == {f"{h.address}:9464" for h in lab.hosts.values()}
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "modeldeck",
                "scrape_interval": "1s",
                "http_sd_configs": [{"url": f"http://{a.address}:9464/sd", "refresh_interval": "1s"}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=log,
    )
    try:

        def query(expr: str) -> list[dict[str, Any]]:
            """The result of `expr`, or nothing while Prometheus is still starting (503)."""
            try:
                reply = httpx.get(f"http://{address}/api/v1/query", params={"query": expr}, timeout=5)
            except httpx.HTTPError:
                return []
            return reply.json()["data"]["result"] if reply.status_code == 200 else []

        def up() -> dict[str, str]:
            return {r["metric"].get("host", ""): r["value"][1] for r in query("up")}

        found = wait_until(lambda: (lambda seen: seen if len(seen) == 3 else None)(up()), 60, "three targets")
        assert found == {"a": "1", "b": "1", "c": "1"}, found
        cpu = wait_until(lambda: query('modeldeck_host_cpu_percent{host="b"}'), 30, "b's series by host")
        assert cpu and {r["metric"]["host"] for r in cpu} == {"b"}  # what the dashboard's host variable does
    finally:
        process.terminate()
        process.wait(30)


def test_a_canary_on_b_started_from_a_is_aborted_from_c_and_promoted_from_a(lab: Lab) -> None:
    a, b, c = lab["a"], lab["b"], lab["c"]
    a.run("deploy", "m:1", "--name", "can", "--on", "b", "--host", "0.0.0.0", "--no-auth")
    started = a.run("deploy", "m:2", "--name", "can", "--canary", "5,100", "--step-seconds", "600")
    assert "b: canary of version 2 started" in started.stdout, started.stdout
    assert hosts_json(c)["b"]["deployments"]["can"]["rollout"] == {
        "mode": "canary",
        "version": 2,
        "weight": 5,
    }
    aborted = c.run("abort", "can")
    assert "b: canary of version 2 aborted" in aborted.stdout, aborted.stdout
    entry = hosts_json(c)["b"]["deployments"]["can"]
    assert "rollout" not in entry and entry["version"] == 1
    a.run("deploy", "m:2", "--name", "can", "--canary", "5,100", "--step-seconds", "600")
    promoted = a.run("promote", "can")
    assert "b: promoted version 2" in promoted.stdout, promoted.stdout
    entry = hosts_json(a)["b"]["deployments"]["can"]
    assert "rollout" not in entry and entry["version"] == 2
    port = port_of(lab, "can")
    assert predict(c, f"http://{b.address}:{port}/invocations").headers["x-model-version"] == "2"
