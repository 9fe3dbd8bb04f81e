"""Hung workers are noticed and replaced; a slow model call never blocks health checks (issue 10, 13).

A stopped or stuck worker used to be kept forever with `status` saying running, and a 30 s predict ran
on the event loop, so `/health/live` did not answer meanwhile. Figures: seconds from SIGSTOP to a new
worker serving; the slowest `/health/live` answer during a long predict; the predict timeout's 503.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import error_of, free_port
from helpers import wait_until as wait
from supervised import Deck

HANG_TIMEOUT = 3.0
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture
def deck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deck]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    monkeypatch.setenv("MODELDECK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    deck = Deck(tmp_path / "home", (f"--hang-timeout={HANG_TIMEOUT}",))
    deck.register(LogisticRegression(max_iter=300).fit(X, y), "iris", reference=X)
    try:
        yield deck
    finally:
        deck.stop()


def test_a_stopped_worker_is_killed_and_replaced_and_status_says_so_meanwhile(deck: Deck) -> None:
    deck.start()
    port = free_port()
    deck.client.deploy("iris:1", port=port)
    url = f"http://127.0.0.1:{port}"
    (victim,) = deck.active_pids("iris")
    stopped = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    try:
        degraded = wait(
            lambda: (d := deck.deployment("iris"))["status"] != "running" and d, 15, "status to say so"
        )
        assert degraded["status"] == "degraded" and f"worker {victim}" in degraded["message"]
        wait(lambda: deck.active_pids("iris") not in ([], [victim]), 60, "a new worker")
        wait(lambda: httpx.post(f"{url}/invocations", json=ROW, timeout=5).status_code == 200, 30, "answers")
        recovered = time.monotonic() - stopped
    finally:
        if psutil.pid_exists(victim):
            os.kill(victim, signal.SIGCONT)
    print(f"recovered {recovered:.1f} s after SIGSTOP (hang timeout {HANG_TIMEOUT:g} s)")
    assert recovered < 60
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    crashed = deck.events("iris", "crashed")[-1]
    assert crashed.detail["pid"] == victim
    assert crashed.reason.startswith(f"worker {victim} did not answer for ") and "killed" in crashed.reason
    assert deck.events("iris")[-1].kind == "restarted"
    final = wait(lambda: (d := deck.deployment("iris"))["status"] == "running" and d, 15, "running again")
    assert final["restarts"] == 1 and "did not answer" in final["message"]


SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    from registry import Registry
    from registry.serving.predictor import Predictor
    from registry.serving.worker import bind_socket, run_server

    home, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) or None
    with Registry(home=home) as reg:
        predictor = Predictor(reg.load("iris:1"), reg.get("iris:1"))
        reference = reg.reference("iris:1")
    model_predict = predictor.predict

    def predict(rows):  # a slow model: 5 ms a call, and 5 s for a sepal length of 99
        time.sleep(5.0 if rows[0][0] == 99 else 0.005)
        return model_predict(rows)

    predictor.predict = predict
    predictor.warm_up(reference)
    run_server(predictor, bind_socket("127.0.0.1", port), batching=False, predict_timeout=timeout)
    """
)


def _serve_slow(home: Path, timeout: float | None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server of the slow model (ready: see `_ready`)."""
    port = free_port()
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    command = [sys.executable, "-c", SLOW_SERVER, str(home), str(port), str(timeout or 0)]
    log = (home / f"slow-{port}.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def _ready(url: str, process: subprocess.Popen[bytes], home: Path) -> bool:
    """Whether the server at `url` is ready (a server that exited fails the test with its log)."""
    if process.poll() is not None:
        port = url.rsplit(":", 1)[1]
        raise AssertionError(f"the slow server on {port} exited: {(home / f'slow-{port}.log').read_text()}")
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _slowest_live_answer(url: str, seconds: float) -> float:
    slowest, deadline = 0.0, time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            start = time.monotonic()
            assert client.get(f"{url}/health/live").status_code == 200
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.05)
    return slowest


def test_a_long_predict_leaves_health_checks_answering_and_the_timeout_answers_503(deck: Deck) -> None:
    slow = {"inputs": [[99, 3.5, 1.4, 0.2]]}
    untimed, untimed_url = _serve_slow(deck.home, None)
    timed, timed_url = _serve_slow(deck.home, 1.0)
    try:
        ready = [(untimed_url, untimed, deck.home), (timed_url, timed, deck.home)]
        wait(lambda: all(_ready(*server) for server in ready), 120, "the slow servers")
        with httpx.Client(timeout=30) as client:
            results: dict[str, httpx.Response] = {}
            long_call = threading.Thread(
                target=lambda: results.update(slow=client.post(f"{untimed_url}/invocations", json=slow))
            )
            long_call.start()
            time.sleep(0.3)  # the 5 s predict is under way
            slowest = _slowest_live_answer(untimed_url, 2.0)
            assert httpx.post(f"{untimed_url}/invocations", json=ROW, timeout=10).status_code == 200
            long_call.join(30)
        print(f"slowest /health/live during a 5 s predict: {slowest * 1000:.0f} ms")
        assert slowest < 1.0 and results["slow"].status_code == 200

        started = time.monotonic()
        response = httpx.post(f"{timed_url}/invocations", json=slow, timeout=30)
        waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        error = error_of(response)
        assert error["code"] == "predict_timeout" and "predict timeout of 1 s" in error["message"]
        assert error["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert waited < 5.0  # answered at the timeout, not when the model finished
        assert httpx.post(f"{timed_url}/invocations", json=ROW, timeout=10).status_code == 200
        assert httpx.get(f"{timed_url}/health/live", timeout=1).status_code == 200
    finally:
        for process in (untimed, timed):
            process.kill()
            process.wait(10)
