"""Ground truth: request ids, the prediction store, labels by `POST /feedback`, `modeldeck feedback`
and `Registry.feedback`, and realised performance in status, Prometheus, rollups and the console.

One supervisor runs for the module, serving an iris classifier and a diabetes regressor; every
figure is checked against scikit-learn's own metrics on the same labels.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from click.testing import Result
from helpers import ROW, error_of, free_port, iris_home, run_modeldeck, stop_supervisor, wait_until
from sklearn import metrics

from registry import Registry
from registry.errors import DeploymentNotChosen
from registry.monitoring.performance import read_performance_rollups
from registry.outcomes import MAX_LABELS_PER_REQUEST, SCHEMA_VERSION, OutcomeStore, store_path
from registry.serving.client import SupervisorClient

pytestmark = [pytest.mark.slow, pytest.mark.anyio]  # anyio's pytest plugin runs the async test


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SUPERVISOR_ARGS = ("--drain-grace=2", "--drift-every=1", "--metrics=127.0.0.1:0")


@dataclass
class Stack:
    home: Path
    client: SupervisorClient
    iris: str
    diabetes: str

    def cli(self, *args: str, stdin: str | None = None) -> Result:
        return run_modeldeck(self.home, *args, stdin=stdin)

    def realised(self, name: str) -> dict[str, Any] | None:
        deployments = self.client.monitor(0, name)["deployments"]
        return ((deployments.get(name) or {}).get("performance") or {}).get("realised")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    with iris_home(tmp_path_factory, "feedback", (1.0, 0.5)) as home:
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        with Registry(home=home) as reg:
            reg.register(LinearRegression().fit(X, y), "diabetes", reference=X)
        client = SupervisorClient(home)
        client.ensure_running(*SUPERVISOR_ARGS)
        iris_port, diabetes_port = free_port(), free_port()
        client.deploy("iris:1", port=iris_port)
        client.deploy("diabetes:1", port=diabetes_port)
        try:
            yield Stack(home, client, f"http://127.0.0.1:{iris_port}", f"http://127.0.0.1:{diabetes_port}")
        finally:
            stop_supervisor(client, home)


def iris_data() -> tuple[list[list[float]], list[int]]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X.tolist(), y.tolist()


def predict_batches(url: str, rows: list[list[float]], size: int) -> list[tuple[str, list[Any]]]:
    """(request id, predictions) of `rows` sent `size` at a time to `/invocations`."""
    answers = []
    with httpx.Client(base_url=url, timeout=10, verify=False) as client:
        for start in range(0, len(rows), size):
            response = client.post("/invocations", json={"inputs": rows[start : start + size]})
            assert response.status_code == 200, response.text
            answers.append((response.headers["x-request-id"], response.json()["predictions"]))
    return answers


def wait_stored(home: Path, request_ids: list[str]) -> None:
    """Wait until a worker wrote these requests' predictions (it writes twice a second): a label sent
    before is rightly counted "unknown" (kept pending), which a test of the counts must not race."""

    def stored() -> bool:
        with OutcomeStore.of(home) as store:
            query = (
                "SELECT COUNT(DISTINCT request_id) FROM prediction"
                " WHERE request_id IN (SELECT value FROM json_each(?))"
            )
            return store.db.execute(query, (json.dumps(request_ids),)).fetchone()[0] == len(request_ids)

    wait_until(stored, what="the predictions stored")


def test_every_prediction_response_carries_a_request_id(stack: Stack) -> None:
    with httpx.Client(base_url=stack.iris, timeout=10) as client:
        generated = client.post("/invocations", json=ROW).headers["x-request-id"]
        again = client.post("/invocations", json=ROW).headers["x-request-id"]
        assert len(generated) == 32 and generated != again
        mine = client.post("/invocations", json=ROW, headers={"X-Request-ID": "order-17.a"})
        assert mine.headers["x-request-id"] == "order-17.a"
        odd = client.post("/invocations", json=ROW, headers={"X-Request-ID": "has spaces; and more"})
        assert odd.headers["x-request-id"] not in ("", "has spaces; and more")
        refused = client.post("/invocations", json={"inputs": [[1.0]]})  # errors carry one too
        assert refused.status_code == 422 and len(refused.headers["x-request-id"]) == 32
        oip = {
            "id": "oip-1",
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": ROW["inputs"][0]}],
        }
        for path in ("/v2/models/iris/infer", "/v2/models/iris/versions/1/infer"):
            answer = client.post(path, json=oip)
            assert answer.status_code == 200, answer.text
            assert answer.json()["id"] == "oip-1" and answer.headers["x-request-id"] == "oip-1"
        body = {k: v for k, v in oip.items() if k != "id"}
        unnamed = client.post("/v2/models/iris/infer", json=body)
        assert unnamed.json()["id"] == unnamed.headers["x-request-id"] != ""


def test_realised_accuracy_f1_and_coverage_equal_sklearns_on_the_same_labels(stack: Stack) -> None:
    rows, truth = iris_data()
    port = free_port()
    stack.client.deploy("iris:1", name="iris-acc", port=port)
    try:
        answers = predict_batches(f"http://127.0.0.1:{port}", rows, 10)
        # 12 of 15 requests labelled; one label flipped so accuracy is not trivially 1
        labels = [
            {"request_id": rid, "labels": truth[i * 10 : i * 10 + 10]} for i, (rid, _) in enumerate(answers)
        ]
        labels = labels[:12]
        labels[3]["labels"] = [(v + 1) % 3 for v in labels[3]["labels"]]
        sent = httpx.post(f"http://127.0.0.1:{port}/feedback", json=labels, timeout=10)
        assert sent.status_code == 200 and sent.json() == {"accepted": 120, "duplicates": 0, "unknown": 0}
        realised = wait_until(
            lambda: (r := stack.realised("iris-acc")) and r.get("labelled") == 120 and r,
            what="realised figures",
        )
        predicted = [p for _, batch in answers[:12] for p in batch]
        given = [v for entry in labels for v in entry["labels"]]
        assert realised["accuracy"] == pytest.approx(metrics.accuracy_score(given, predicted), abs=1e-12)
        assert realised["f1"] == pytest.approx(metrics.f1_score(given, predicted, average="macro"), abs=1e-12)
        assert realised["predicted"] == 150 and realised["coverage"] == pytest.approx(0.8)
        assert (
            realised["delay"] >= 0
            and "log_loss" not in realised
            and "predict_proba" in realised["log_loss_omitted"]
        )
        # status, text and JSON
        status = json.loads(stack.cli("status", "--json").stdout)
        shown = next(d for d in status["deployments"] if d["name"] == "iris-acc")
        assert shown["performance"]["realised"]["accuracy"] == realised["accuracy"]
        assert "estimated" in shown["performance"]
        text = stack.cli("status").stdout
        assert (
            f"iris-acc v1 realised: accuracy {realised['accuracy']:.3f}" in text
            and "coverage 80% (120/150)" in text
        )
        # Prometheus
        url = stack.client.status()["supervisor"]["metrics"]
        exposition = httpx.get(url, timeout=10).text
        labels_of = 'deployment="iris-acc",model="iris",version="1"'
        assert f"modeldeck_realised_accuracy{{{labels_of}}} {realised['accuracy']}" in exposition
        assert f"modeldeck_label_coverage_ratio{{{labels_of}}} 0.8" in exposition
        assert f"modeldeck_label_delay_seconds{{{labels_of}}}" in exposition
        assert 'modeldeck_feedback_labels_total{outcome="accepted"}' in exposition

        # minute rollups in the registry DB
        def rolled() -> list[dict[str, Any]]:
            with Registry(home=stack.home) as reg:
                return read_performance_rollups(reg.db, "iris-acc")

        rows_stored = wait_until(
            lambda: sum(r["labelled"] for r in rolled()) == 120 and rolled(), what="rollups"
        )
        assert sum(r["predicted"] for r in rows_stored) == 150
        assert all(r["accuracy"] is not None for r in rows_stored if r["labelled"])
    finally:
        stack.client.stop("iris-acc")


def test_log_loss_where_probabilities_were_asked_for(stack: Stack) -> None:
    rows, truth = iris_data()
    port = free_port()
    stack.client.deploy("iris:1", name="iris-proba", port=port)
    try:
        body = {
            "id": "proba-1",
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [150, 4], "data": np.ravel(rows).tolist()}],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }
        answer = httpx.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json=body, timeout=10).json()
        predicted, probabilities = (
            answer["outputs"][0]["data"],
            np.reshape(answer["outputs"][1]["data"], (150, 3)),
        )
        sent = httpx.post(
            f"http://127.0.0.1:{port}/feedback", json={"request_id": "proba-1", "labels": truth}, timeout=10
        )
        assert sent.json()["accepted"] == 150
        realised = wait_until(
            lambda: (r := stack.realised("iris-proba")) and r["labelled"] == 150 and r, what="figures"
        )
        assert realised["log_loss"] == pytest.approx(metrics.log_loss(truth, probabilities), rel=1e-9)
        assert realised["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    finally:
        stack.client.stop("iris-proba")


def test_regressor_mae_and_rmse_equal_sklearns(stack: Stack) -> None:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    answers = predict_batches(stack.diabetes, X[:100].tolist(), 25)
    labels = [
        {"request_id": rid, "row": row, "label": float(y[i * 25 + row])}
        for i, (rid, batch) in enumerate(answers)
        for row in range(len(batch))
    ]
    with Registry(home=stack.home) as reg:  # straight to the store: predictions the worker has not
        counts = reg.feedback(labels, deployment="diabetes")  # written yet count as unknown, and join
    assert counts["accepted"] + counts["unknown"] == 100 and counts["duplicates"] == 0
    realised = wait_until(
        lambda: (r := stack.realised("diabetes")) and r["labelled"] >= 100 and r, what="figures"
    )
    predicted = [p for _, batch in answers for p in batch]
    assert realised["mae"] == pytest.approx(metrics.mean_absolute_error(y[:100], predicted), rel=1e-12)
    assert realised["rmse"] == pytest.approx(
        np.sqrt(metrics.mean_squared_error(y[:100], predicted)), rel=1e-12
    )
    assert "accuracy" not in realised


def test_feedback_in_bulk_duplicated_unknown_and_malformed(stack: Stack) -> None:
    answers = predict_batches(stack.iris, iris_data()[0][:20], 5)
    url = f"{stack.iris}/feedback"
    bulk = [
        {"request_id": rid, "row": row, "label": 0} for rid, batch in answers for row in range(len(batch))
    ]
    assert httpx.post(url, json=bulk, timeout=10).json() == {"accepted": 20, "duplicates": 0, "unknown": 0}
    unknown = [{"request_id": "never-seen", "label": 1}, {"request_id": "never-seen-2", "labels": [1, 2]}]
    again = [*bulk[:5], *unknown]
    assert httpx.post(url, json=again, timeout=10).json() == {"accepted": 5, "duplicates": 5, "unknown": 3}
    for body, field in (
        ({"label": 1}, "request_id"),
        ([{"request_id": "a", "label": 1}, {"request_id": "b"}], "[1].label"),
        ({"request_id": "a", "row": "first", "label": 1}, "row"),
        ({"request_id": "a", "row": 2**70, "label": 1}, "row"),
        ({"request_id": "a", "labels": []}, "labels"),
    ):
        refused = httpx.post(url, json=body, timeout=10)
        assert refused.status_code == 422 and error_of(refused)["field"] == field, refused.text
    broken = httpx.post(url, content=b"{not json", timeout=10)
    assert broken.status_code == 400 and error_of(broken)["field"] == "body"
    # last wins: the duplicate's label is the one stored
    with OutcomeStore.of(stack.home) as store:
        rid = answers[0][0]
        assert store.db.execute(
            "SELECT label FROM label WHERE request_id=? AND row_index=0", (rid,)
        ).fetchone() == ("0",)


def test_a_label_before_its_prediction_is_stored_and_hours_after_it_is_joined(stack: Stack) -> None:
    stack.client.deploy("iris:1", name="iris-late", port=free_port())
    try:
        # The label comes first: unknown, kept pending. The prediction it labels was made three hours
        # before the label (written as a worker would have, with its time).
        with Registry(home=stack.home) as reg:
            answer = reg.feedback({"request_id": "late-bird", "label": 2}, deployment="iris-late")
        assert answer == {"accepted": 0, "duplicates": 0, "unknown": 1}
        made = time.time() - 3 * 3600
        with OutcomeStore.of(stack.home) as store:
            store.add_predictions("iris-late", "iris", 1, [("late-bird", made, [2], None)])
        realised = wait_until(lambda: (r := stack.realised("iris-late")) and r["labelled"] and r, what="join")
        assert realised["accuracy"] == 1.0 and realised["delay"] == pytest.approx(3 * 3600, abs=60)
        assert "delay 3.0h" in stack.cli("status").stdout
    finally:
        stack.client.stop("iris-late")


def test_labels_and_figures_survive_a_supervisor_restart(stack: Stack) -> None:
    earlier = (stack.realised("diabetes") or {}).get("labelled") or 0
    answers = predict_batches(stack.diabetes, [[0.0] * 10] * 4, 2)
    labels = [{"request_id": rid, "labels": [100.0, 200.0]} for rid, _ in answers]
    sent = httpx.post(f"{stack.diabetes}/feedback", json=labels, timeout=10)
    assert sent.json() == {"accepted": 4, "duplicates": 0, "unknown": 0}
    before = wait_until(
        lambda: (r := stack.realised("diabetes")) and r["labelled"] == earlier + 4 and r, what="figures"
    )
    old = stack.client.status()["supervisor"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie", what="death")
    stack.client.ensure_running(*SUPERVISOR_ARGS)
    stack.client.wait_settled()
    after = wait_until(lambda: stack.realised("diabetes"), what="figures after the restart")
    assert after["labelled"] == before["labelled"] and after["mae"] == pytest.approx(before["mae"], rel=1e-12)


def test_modeldeck_feedback_reads_csv_and_json_lines(stack: Stack, tmp_path: Path) -> None:
    answers = predict_batches(stack.iris, iris_data()[0][:4], 2)
    wait_stored(stack.home, [rid for rid, _ in answers])
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "request_id,row,label\n" + "".join(f"{rid},{r},0\n" for rid, _ in answers for r in (0, 1))
    )
    done = stack.cli("feedback", str(csv_file), "--deployment", "iris", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"accepted": 4, "duplicates": 0, "unknown": 0}
    lines = "\n".join(json.dumps({"request_id": rid, "labels": [1, 1]}) for rid, _ in answers)
    again = stack.cli("feedback", "-", "--deployment", "iris", stdin=lines)
    assert again.exit_code == 0 and "4 accepted, 4 duplicates (last wins), 0 for unknown" in again.stdout
    elsewhere = stack.cli("feedback", "-", "--deployment", "diabetes", stdin=lines)  # not its predictions
    assert (
        elsewhere.exit_code == 0 and "0 accepted, 0 duplicates (last wins), 4 for unknown" in elsewhere.stdout
    )
    bad = stack.cli(
        "feedback", "-", "--deployment", "iris", stdin='{"request_id": "x", "row": -1, "label": 1}\n'
    )
    assert bad.exit_code == 1 and "row" in bad.stderr


def test_the_store_is_private_and_bounded(stack: Stack, tmp_path: Path) -> None:
    path = store_path(stack.home)
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    with OutcomeStore(tmp_path / "o" / "outcomes.sqlite") as store:
        from registry.outcomes import Label

        now = time.time()
        old = [(f"old{i}", now - 30 * 86400, [1], None) for i in range(5)]
        store.add_predictions("d", "m", 1, old)  # stored in the order they were made, as workers store them
        store.add_predictions("d", "m", 1, [(f"r{i}", now - 100 + i, [1], None) for i in range(100)])
        labels = [Label("r0", 0, 1), Label("r99", 0, 1), Label("old1", 0, 1), Label("ghost", 0, 1)]
        store.add_labels(labels, "d", now=now - 2 * 86400)

        by_age = store.prune(max_rows=1000, max_age=7 * 86400, pending_seconds=86400, now=now)
        assert by_age == {"predictions": 5, "labels_expired": 1}  # the old ones; the ghost's label
        assert store.size() == {"predictions": 100, "labels": 2}

        by_count = store.prune(max_rows=50, max_age=7 * 86400, pending_seconds=86400, now=now)
        assert by_count == {"predictions": 50, "labels_expired": 0}
        kept = {rid for (rid,) in store.db.execute("SELECT request_id FROM prediction")}
        assert kept == {f"r{i}" for i in range(50, 100)}  # the newest 50
        assert store.db.execute("SELECT request_id FROM label").fetchall() == [("r99",)]
        assert store.counters()["labels_expired"] == 1


def test_feedback_needs_the_token_beyond_loopback(stack: Stack) -> None:
    port = free_port()
    stack.client.deploy("iris:1", name="iris-public", host="0.0.0.0", port=port)
    try:
        token = (stack.home / "serving-token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        body = {"request_id": "someone", "label": 1}
        refused = httpx.post(f"{url}/feedback", json=body, timeout=10)
        assert refused.status_code == 401 and error_of(refused)["field"] == "Authorization"
        unauthorized = httpx.post(
            f"{url}/invocations", json=ROW, headers={"X-Request-ID": "r-401"}, timeout=10
        )
        assert unauthorized.status_code == 401 and unauthorized.headers["x-request-id"] == "r-401"
        allowed = httpx.post(
            f"{url}/feedback", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert allowed.status_code == 200 and allowed.json()["unknown"] == 1
    finally:
        stack.client.stop("iris-public")


async def test_the_console_shows_realised_performance_in_the_monitor_and_the_version_diff(
    stack: Stack,
) -> None:
    from console_deck import settle
    from console_deck import wait_until as pilot_wait_until

    from console.app import ModeldeckApp
    from console.screens.diff import DiffScreen
    from console.screens.monitor import MonitorScreen

    rows, truth = iris_data()
    port = free_port()
    stack.client.deploy("iris:2", name="iris-two", port=port)
    try:
        for url in (stack.iris, f"http://127.0.0.1:{port}"):
            answers = predict_batches(url, rows[:60], 10)
            labels = [
                {"request_id": rid, "labels": truth[i * 10 : i * 10 + 10]}
                for i, (rid, _) in enumerate(answers)
            ]
            assert httpx.post(f"{url}/feedback", json=labels, timeout=10).json()["accepted"] == 60
        two = wait_until(
            lambda: (r := stack.realised("iris-two")) and r["labelled"] == 60 and r, what="figures"
        )
        one = wait_until(
            lambda: (r := stack.realised("iris")) and r.get("accuracy") is not None and r, what="v1"
        )
        app = ModeldeckApp(stack.home, refresh_seconds=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(MonitorScreen("iris"))
            with httpx.Client(base_url=stack.iris, timeout=10) as client:
                for _ in range(3):  # the monitor redraws when new points arrive
                    client.post("/invocations", json=ROW)
                    await pilot.pause(1.0)
            shown = lambda: str(app.screen.query_one("#performance").render())  # noqa: E731
            await pilot_wait_until(pilot, lambda: "realised v1" in shown())
            assert f"realised v1: accuracy {one['accuracy']:.3f}" in shown().replace("\n", " ")
            await app.push_screen(DiffScreen("iris", 1, 2))
            await settle(pilot, app)

            def live_rows() -> dict[str, tuple[str, str]]:
                rows = app.screen.rows
                return {r.field: (r.left, r.right) for r in rows if r.section == "live performance"}

            for _ in range(30):  # the diff reads once; ctrl+r reads it again, as a person would
                if "accuracy" in live_rows():
                    break
                await pilot.press("ctrl+r")
                await pilot.pause(1.0)
            live = live_rows()
            assert live["accuracy"][1] == f"{two['accuracy']:.6g}" and live["accuracy"][0] != "-"
            assert live["labelled"][1] == "60 (100%)" and "label delay (s)" in live
    finally:
        stack.client.stop("iris-two")


def test_a_store_that_cannot_be_opened_leaves_serving_on_and_feedback_says_why(tmp_path: Path) -> None:
    from oip_servers import iris, register, serving

    home = tmp_path / "home"
    env = register(home, {"iris": iris()})
    (home / "outcomes").write_text("a file where the store's directory goes")
    with serving(env, tmp_path, {"iris": ["iris:1"]}) as started, started["iris"].client() as http:
        answered = http.post("/invocations", json=ROW)
        assert answered.status_code == 200 and answered.headers["x-request-id"]
        refused = http.post("/feedback", json={"request_id": answered.headers["x-request-id"], "label": 0})
        assert refused.status_code == 503 and error_of(refused)["code"] == "store_unavailable"
        assert error_of(refused)["message"].startswith("prediction store unavailable: ")
    assert "no prediction store" in (tmp_path / "iris.log").read_text()


def test_modeldeck_feedback_needs_a_deployment_it_knows(stack: Stack, tmp_path: Path) -> None:
    line = '{"request_id": "x", "label": 1}\n'
    unnamed = stack.cli("feedback", "-", stdin=line)  # the home has several deployments
    assert (
        unnamed.exit_code == 1 and "--deployment" in unnamed.stderr and len(unnamed.stderr.splitlines()) == 1
    )
    unknown = stack.cli("feedback", "-", "--deployment", "nosuch", stdin=line)
    assert unknown.exit_code == 1 and "'nosuch'" in unknown.stderr
    with Registry(home=stack.home) as reg, pytest.raises(DeploymentNotChosen, match="--deployment"):
        reg.feedback({"request_id": "x", "label": 1})
    from oip_servers import iris, register

    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo

    single = tmp_path / "single"
    register(single, {"iris": iris()})
    with Registry(home=single, db_url=f"sqlite:///{single / 'registry.db'}") as reg:
        save_deployment(reg, DeploymentInfo("only", "iris", 1, None, "127.0.0.1", 0, 1), "deploy")
        assert reg.feedback({"request_id": "x", "label": 1}) == {"accepted": 0, "duplicates": 0, "unknown": 1}
    with OutcomeStore.of(single) as store:
        assert store.db.execute("SELECT deployment FROM label").fetchall() == [("only",)]


def test_a_reused_request_id_never_replaces_another_clients_prediction_or_label(stack: Stack) -> None:
    port = free_port()
    stack.client.deploy("iris:1", name="iris-other", port=port)
    other = f"http://127.0.0.1:{port}"
    try:
        setosa, virginica = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}, {"inputs": [[7.7, 3.0, 6.1, 2.3]]}
        shared = {"X-Request-ID": "order-shared-1"}
        first = httpx.post(f"{stack.iris}/invocations", json=setosa, headers=shared, timeout=10)
        assert first.json()["predictions"] == [0]
        # another client reuses A's id, on the same deployment and on another one
        for url in (stack.iris, other):
            reused = httpx.post(f"{url}/invocations", json=virginica, headers=shared, timeout=10)
            assert reused.json()["predictions"] == [2]
        labels = {"request_id": "order-shared-1", "label": 0}
        # the label to iris joins A's prediction (setosa), written first, not the reuser's
        assert httpx.post(f"{stack.iris}/feedback", json=labels, timeout=10).json()["accepted"] == 1
        query = "SELECT deployment, predictions FROM prediction WHERE request_id='order-shared-1'"
        with OutcomeStore.of(stack.home) as store:  # iris-other's worker writes within half a second
            stored = wait_until(lambda: len(rows := dict(store.db.execute(query))) == 2 and rows, what="both")
            assert stored == {"iris": "[0]", "iris-other": "[2]"}
            assert store.counters()["predictions_collided"] >= 1
        # a label sent to iris never changes iris-other's figures
        mine = wait_until(
            lambda: (r := stack.realised("iris-other")) and r["predicted"] == 1 and r, what="figures"
        )
        assert mine["labelled"] == 0
        assert (
            httpx.post(f"{other}/feedback", json={**labels, "label": 2}, timeout=10).json()["accepted"] == 1
        )
        with OutcomeStore.of(stack.home) as store:
            assert dict(
                store.db.execute("SELECT deployment, label FROM label WHERE request_id='order-shared-1'")
            ) == {"iris": "0", "iris-other": "2"}  # iris' label stays
    finally:
        stack.client.stop("iris-other")


def test_a_store_of_an_older_schema_is_recreated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "o" / "outcomes.sqlite"
    path.parent.mkdir(mode=0o700)
    with sqlite3.connect(path) as old:  # the first schema: keyed by request id alone, user_version 0
        old.execute(
            "CREATE TABLE prediction (request_id TEXT, row_index INTEGER,"
            " PRIMARY KEY (request_id, row_index))"
        )
    path.chmod(0o600)
    with OutcomeStore(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        store.add_predictions("d", "m", 1, [("r", time.time(), [1], None)])
        assert store.size() == {"predictions": 1, "labels": 0}


def test_feedback_is_bounded_and_never_starves_another_deployments_predictions(stack: Stack) -> None:
    too_many = {"request_id": "flood", "labels": [1] * (MAX_LABELS_PER_REQUEST + 1)}
    refused = httpx.post(f"{stack.iris}/feedback", json=too_many, timeout=30)
    assert refused.status_code == 413 and "at most 10,000 labels" in error_of(refused)["message"]
    with OutcomeStore.of(stack.home) as store:
        dropped_before = store.counters().get("predictions_dropped", 0)
    allowed = [{"request_id": f"flood-{i}", "label": 1} for i in range(MAX_LABELS_PER_REQUEST)]
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(httpx.post, f"{stack.iris}/feedback", json=allowed, timeout=120)
        with httpx.Client(base_url=stack.diabetes, timeout=10) as client:
            for i in range(40):  # while the labels are written
                headers = {"X-Request-ID": f"starve-{i}"}
                assert client.post("/invocations", json={"inputs": [[0.0] * 10]}, headers=headers).is_success
        assert sent.result().json() == {"accepted": 0, "duplicates": 0, "unknown": MAX_LABELS_PER_REQUEST}

    def stored() -> int:
        with OutcomeStore.of(stack.home) as store:
            query = (
                "SELECT COUNT(*) FROM prediction WHERE deployment='diabetes' AND request_id LIKE 'starve-%'"
            )
            return store.db.execute(query).fetchone()[0]

    wait_until(lambda: stored() == 40, what="every prediction of the other deployment stored")
    with OutcomeStore.of(stack.home) as store:
        assert store.counters().get("predictions_dropped", 0) == dropped_before


def test_a_batch_of_predictions_or_labels_is_a_few_statements_not_one_per_row(tmp_path: Path) -> None:
    """Each statement releases and retakes the GIL; a worker's busy event loop gives it back only at
    its switch interval, so a statement per row stalled the writer and interrupted the requests."""
    from registry.outcomes import Label, PredictionRecorder

    path = tmp_path / "o" / "outcomes.sqlite"
    recorder = PredictionRecorder(path, "d", "m", 1, every=3600)
    try:
        statements: list[str] = []
        recorder._store.db.set_trace_callback(statements.append)
        for i in range(1000):
            recorder.record(f"r{i}", [i % 3])
        recorder.flush()
        assert len(statements) <= 6, statements  # BEGIN, the newest rowid, the insert, its rows, COMMIT
        statements.clear()
        counts = recorder.add_labels([Label(f"r{i}", 0, i % 3) for i in range(1000)])
        assert counts == {"accepted": 1000, "duplicates": 0, "unknown": 0}
        assert len(statements) <= 8, statements  # BEGIN, the counts, the insert, the counters, COMMIT
    finally:
        recorder.close()
    with OutcomeStore(path) as store:
        assert store.size() == {"predictions": 1000, "labels": 1000}
        pairs = store.joined("d", 1, 0)
        assert len(pairs) == 1000 and all(p == label for p, label, _, _ in pairs)


def test_predictions_and_labels_come_back_from_the_store_exactly_as_given(tmp_path: Path) -> None:
    """The store writes a batch as one JSON document that SQLite takes apart: every value must come
    back the same, to the bit and the type (a label joins its prediction by equality)."""
    import math
    import random
    import struct

    from registry.outcomes import Label

    rng = random.Random(3)
    doubles = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(500)]
    values: list[Any] = [v for v in doubles if math.isfinite(v)]
    values += [0.1, -0.0, 5e-324, 1.7976931348623157e308, 2**63 - 1, -(2**63), True, False, 0, 'é"\\\n😀', ""]
    values += [[1.5, 2.5], [[1, 2]]]  # multi-output predictions
    made = time.time()
    # requests of up to 7 rows; each row's label is its index, to find it again
    requests = [
        (f"r{i}", made + i, values[i : i + 7], [[0.25, v] for v in values[i : i + 7]])
        for i in range(0, len(values), 7)
    ]
    with OutcomeStore(tmp_path / "o" / "outcomes.sqlite") as store:
        store.add_predictions("d", "m", 1, requests)
        labels = [Label(f"r{i - i % 7}", i % 7, i) for i in range(len(values))]
        assert store.add_labels(labels, "d")["accepted"] == len(values)
        joined = store.joined("d", 1, 0)
        stored_times = [t for (t,) in store.db.execute("SELECT t FROM prediction ORDER BY rowid")]
    assert len(joined) == len(values) and stored_times == [made + i for i in range(0, len(values), 7)]
    for prediction, label, probabilities, _ in joined:
        v = values[label]
        assert repr(prediction) == repr(v) and type(prediction) is type(v)
        assert probabilities == [0.25, v]


def test_a_prediction_json_cannot_hold_costs_its_own_request_only(tmp_path: Path) -> None:
    from decimal import Decimal

    from registry.outcomes import Label, PredictionRecorder

    recorder = PredictionRecorder(tmp_path / "o" / "outcomes.sqlite", "d", "m", 1, every=3600)
    try:
        recorder.record("good-1", [1, 2, 3])
        recorder.record("bad", [Decimal("1.5"), 2])  # orjson refuses a Decimal: the whole batch did
        recorder.record("good-2", [4])
        recorder.flush()
        assert recorder.add_labels([Label("good-1", 2, 3), Label("good-2", 0, 4)])["accepted"] == 2
        assert recorder.dropped == 2
    finally:
        recorder.close()
    with OutcomeStore(tmp_path / "o" / "outcomes.sqlite") as store:
        assert store.size()["predictions"] == 4 and store.counters()["predictions_dropped"] == 2


def test_one_deployment_serving_version_1_of_two_models_keeps_them_apart(tmp_path: Path) -> None:
    """A deployment can serve version 1 of one model, then version 1 of another: reads by model must
    not give one's predictions to the other."""
    from registry.outcomes import Label

    with OutcomeStore(tmp_path / "o" / "outcomes.sqlite") as store:
        store.add_predictions("dep", "a", 1, [("x", 100.0, [0], None)])
        store.add_predictions("dep", "b", 1, [("y", 100.0, [1, 1], None)])
        store.add_labels([Label("x", 0, 0), Label("y", 1, 0)], "dep", now=200.0)
        assert store.predicted("a", 1, 0, by="model") == 1 and store.predicted("b", 1, 0, by="model") == 2
        assert store.joined("a", 1, 0, by="model") == [(0, 0, None, 100.0)]
        assert store.joined("b", 1, 0, by="model") == [(1, 0, None, 100.0)]
        assert store.predicted("dep", 1, 0) == 3 and store.versions("dep", 0) == [1]
        assert store.prune(max_age=50, now=200.0)["predictions"] == 3  # both models' streams age out


def test_a_label_row_that_is_not_a_row_is_refused_by_the_store_itself(tmp_path: Path) -> None:
    from registry.outcomes import Label, LabelError

    with OutcomeStore(tmp_path / "o" / "outcomes.sqlite") as store:
        store.add_predictions("d", "m", 1, [("r", 100.0, [10, 11, 12], None)])
        for row in (-1, 1.5, True, "1"):
            with pytest.raises(LabelError, match="row must be an integer"):
                store.add_labels([Label("r", 0, 1), Label("r", row, 1)], "d")  # type: ignore[arg-type]
        assert store.size()["labels"] == 0  # nothing of a refused batch is written
        store.add_labels([Label("r", 2, 12)], "d")
        assert store.joined("d", 1, 0) == [(12, 12, None, store.joined("d", 1, 0)[0][3])]


def test_pending_labels_are_capped_oldest_first(tmp_path: Path) -> None:
    from registry.outcomes import Label

    with OutcomeStore(tmp_path / "o" / "outcomes.sqlite") as store:
        store.add_predictions("d", "m", 1, [("known", time.time(), [1], None)])
        store.add_labels([Label("known", 0, 1)], "d")
        old = [Label(f"old-{i}", 0, 1) for i in range(60)]
        new = [Label(f"new-{i}", 0, 1) for i in range(60)]
        store.add_labels(old, "d", now=1000.0, max_pending=100)
        counts = store.add_labels(new, "d", now=2000.0, max_pending=100)
        assert counts == {"accepted": 0, "duplicates": 0, "unknown": 60}
        assert store.size()["labels"] == 101  # 100 pending and the known one's
        assert store.counters()["labels_expired"] == 20
        kept = {rid for (rid,) in store.db.execute("SELECT request_id FROM label")}
        assert {"known", *(f"new-{i}" for i in range(60))} <= kept and "old-0" not in kept


def test_every_label_counts_once_as_accepted_or_unknown_and_duplicates_are_a_subset(stack: Stack) -> None:
    (rid, _), *_ = predict_batches(stack.iris, iris_data()[0][:1], 1)
    url = f"{stack.iris}/feedback"
    label = {"request_id": rid, "label": 0}
    answers = [httpx.post(url, json=label, timeout=10).json() for _ in range(3)]
    assert answers == [
        {"accepted": 1, "duplicates": 0, "unknown": 0},
        {"accepted": 1, "duplicates": 1, "unknown": 0},
        {"accepted": 1, "duplicates": 1, "unknown": 0},
    ]
    twice = [{"request_id": "count-ghost", "label": 1}] * 2
    assert httpx.post(url, json=twice, timeout=10).json() == {"accepted": 0, "duplicates": 1, "unknown": 2}
    metrics_url = stack.client.status()["supervisor"]["metrics"]

    def exposed() -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        samples = {}
        for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=10, verify=False).text):
            for sample in family.samples:
                if sample.name.startswith("modeldeck_feedback_label"):
                    samples[sample.labels.get("outcome", sample.name)] = sample.value
        return samples

    with OutcomeStore.of(stack.home) as store:
        counters = store.counters()

    def caught_up() -> dict[str, float] | None:
        """The exposed counts once a supervisor pass has read every label sent (a pass between two
        writes has the accepted count already but not the last duplicate)."""
        e = exposed()
        done = e.get("accepted") == counters["labels_accepted"]
        return (
            e
            if done and e.get("modeldeck_feedback_label_duplicates_total") == counters["labels_duplicate"]
            else None
        )

    shown = wait_until(caught_up, what="counts")
    assert set(shown) == {"accepted", "unknown", "expired", "modeldeck_feedback_label_duplicates_total"}
    assert shown["modeldeck_feedback_label_duplicates_total"] == counters["labels_duplicate"]


def test_float_labels_from_a_csv_are_the_same_classes_as_integers(stack: Stack, tmp_path: Path) -> None:
    import pandas as pd

    rows, truth = iris_data()
    port = free_port()
    stack.client.deploy("iris:1", name="iris-float", port=port)
    try:
        answers = predict_batches(f"http://127.0.0.1:{port}", rows[::10], 5)
        labels = pd.DataFrame(
            [
                (rid, r, truth[::10][i * 5 + r])
                for i, (rid, batch) in enumerate(answers)
                for r in range(len(batch))
            ]
            + [("not-labelled-yet", 0, None)],  # a missing value makes pandas keep 0.0, 1.0, ...
            columns=["request_id", "row", "label"],
        )
        labels.dropna().to_csv(tmp_path / "labels.csv", index=False)
        assert "0.0" in (tmp_path / "labels.csv").read_text()
        done = stack.cli("feedback", str(tmp_path / "labels.csv"), "--deployment", "iris-float", "--json")
        assert done.exit_code == 0, done.stderr
        predicted = [p for _, batch in answers for p in batch]
        realised = wait_until(
            lambda: (r := stack.realised("iris-float")) and r["labelled"] == 15 and r, what="join"
        )
        assert realised["accuracy"] == pytest.approx(metrics.accuracy_score(truth[::10], predicted))
    finally:
        stack.client.stop("iris-float")


def test_a_regressors_label_must_be_a_number_and_unscorable_figures_say_why(stack: Stack) -> None:
    from console.performance_text import summary

    (rid, _), *_ = predict_batches(stack.diabetes, [[0.0] * 10], 1)
    words = [{"request_id": rid, "label": "tall"}]
    refused = httpx.post(f"{stack.diabetes}/feedback", json=words, timeout=10)
    assert refused.status_code == 422 and error_of(refused)["field"] == "[0].label", refused.text
    assert "must be a number" in error_of(refused)["message"]
    lines = "\n".join(json.dumps(entry) for entry in [*words, {"request_id": rid, "label": "151.5"}])
    done = stack.cli("feedback", "-", "--deployment", "diabetes", "--json", stdin=lines)
    assert done.exit_code == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["accepted"] + counts["unknown"] == 1 and counts["invalid"] == 1
    assert "must be a number" in counts["invalid_reason"]
    # figures that cannot be computed say why, never "no labels yet" beside a coverage
    unscorable = {
        "predicted": 1,
        "labelled": 1,
        "coverage": 1.0,
        "delay": 1.0,
        "error": "a label is not a number",
    }
    shown = summary(unscorable)
    assert "a label is not a number" in shown and "no labels yet" not in shown and "coverage 100%" in shown


def test_a_deployment_without_a_prediction_store_says_so_for_good(stack: Stack) -> None:
    port = free_port()
    stack.client.deploy("iris:1", name="iris-nostore", port=port, options={"prediction_store": False})
    try:
        refused = httpx.post(
            f"http://127.0.0.1:{port}/feedback", json={"request_id": "a", "label": 0}, timeout=10
        )
        assert refused.status_code == 409, refused.text
        assert error_of(refused)["message"] == (
            "this deployment keeps no predictions: deployed with --no-prediction-store"
        )
    finally:
        stack.client.stop("iris-nostore")


def test_status_says_when_the_supervisor_cannot_read_the_store(stack: Stack) -> None:
    path = store_path(stack.home)
    aside = path.with_name("aside.sqlite")
    path.rename(aside)  # workers keep writing the file they opened; the supervisor cannot open this
    path.mkdir()
    try:
        text = wait_until(
            lambda: "prediction store cannot be read" in (done := stack.cli("status")).stderr and done.stderr,
            what="the hint",
        )
        assert text.count("prediction store cannot be read") == 1
    finally:
        path.rmdir()
        aside.rename(path)


def test_the_store_writer_logs_an_error_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.outcomes import PredictionRecorder

    recorder = PredictionRecorder(tmp_path / "o" / "outcomes.sqlite", "d", "m", 1, every=0.05)
    store_write = recorder._store.add_predictions

    def fails_once(*args: Any) -> int:  # a fault the writer does not expect (a bug, say)
        recorder._store.add_predictions = store_write  # type: ignore[method-assign]
        raise RuntimeError("an unexpected fault")

    recorder._store.add_predictions = fails_once  # type: ignore[method-assign]
    try:
        recorder.record("unwritable", [1])
        wait_until(lambda: "writer failed" in caplog.text, what="the failure logged")
        recorder.record("fine", [1])
        with OutcomeStore(recorder.path) as store:
            wait_until(lambda: store.size()["predictions"] == 1, what="the next prediction stored")
    finally:
        recorder.close()


def test_a_worker_killed_by_a_fatal_signal_leaves_a_line_in_its_log(stack: Stack) -> None:
    from registry.serving.rundir import RunDir

    stack.client.deploy("iris:1", name="iris-crash", port=free_port())
    try:
        status = next(d for d in stack.client.status()["deployments"] if d["name"] == "iris-crash")
        pid = status["processes"][0]["pid"]
        os.kill(pid, signal.SIGBUS)  # what a store file made immutable under its mmap caused
        log = RunDir.of(stack.home).deployment_log("iris-crash")
        wait_until(lambda: "Fatal Python error: Bus error" in log.read_text(), what="the traceback")
    finally:
        stack.client.stop("iris-crash")


def test_a_symlinked_store_directory_is_refused(tmp_path: Path) -> None:
    from registry.files import UnsafePath

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "outcomes").symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match="symbolic link"):
        OutcomeStore.of(tmp_path / "home")
    assert not list(elsewhere.iterdir())


def test_modeldeck_feedback_reads_a_csv_with_a_bom_and_names_a_json_array(
    stack: Stack, tmp_path: Path
) -> None:
    (rid, _), *_ = predict_batches(stack.iris, iris_data()[0][:1], 1)
    wait_stored(stack.home, [rid])
    bom = tmp_path / "bom.csv"
    bom.write_text(f"request_id,label\n{rid},0\n", encoding="utf-8-sig")
    done = stack.cli("feedback", str(bom), "--deployment", "iris", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 1
    array = tmp_path / "labels.json"
    array.write_text(json.dumps([{"request_id": rid, "label": 0}]))
    refused = stack.cli("feedback", str(array), "--deployment", "iris")
    assert refused.exit_code == 1 and "JSON lines expected, not a JSON array" in refused.stderr
