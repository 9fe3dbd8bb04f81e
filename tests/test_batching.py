"""Micro-batching: concurrent requests share model calls and still get exactly their own answers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from registry.serving.batching import MicroBatcher


def slow_double(rows):
    time.sleep(0.01)  # a model whose fixed cost per call dominates
    return [row[0] * 2 for row in rows]


def test_requests_arriving_while_the_model_is_busy_share_one_call():
    calls: list[int] = []

    def model(rows):
        calls.append(len(rows))
        return slow_double(rows)

    async def scenario():
        batcher = MicroBatcher(model)
        results = await asyncio.gather(*(batcher.submit([[i], [i + 100]]) for i in range(20)))
        return batcher, results

    batcher, results = asyncio.run(scenario())
    assert results == [[2 * i, 2 * (i + 100)] for i in range(20)]
    assert sum(calls) == 40 and len(calls) < 20, calls
    assert batcher.batched_requests == 20


def test_a_lone_request_runs_at_once_as_its_own_batch():
    async def scenario():
        batcher = MicroBatcher(lambda rows: [r[0] for r in rows])
        return await batcher.submit([[7]]), batcher

    result, batcher = asyncio.run(scenario())
    assert result == [7]
    assert (batcher.batches, batcher.batched_requests) == (1, 1)


def test_batches_respect_the_row_limit():
    sizes: list[int] = []
    lock = threading.Lock()

    def model(rows):
        with lock:
            sizes.append(len(rows))
        return slow_double(rows)

    async def scenario():
        batcher = MicroBatcher(model, max_rows=10)
        return await asyncio.gather(*(batcher.submit([[i]] * 4) for i in range(12)))

    results = asyncio.run(scenario())
    assert all(r == [2 * i] * 4 for i, r in enumerate(results))
    assert max(sizes) <= 10


def test_one_bad_request_does_not_fail_its_neighbours():
    def model(rows):
        time.sleep(0.005)
        if any(row[0] == "bad" for row in rows):
            raise ValueError("cannot predict 'bad'")
        return [row[0] * 2 for row in rows]

    async def scenario():
        batcher = MicroBatcher(model)
        return await asyncio.gather(
            *(batcher.submit([["bad"]] if i == 5 else [[i]]) for i in range(12)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert isinstance(results[5], ValueError)
    assert [r for i, r in enumerate(results) if i != 5] == [[2 * i] for i in range(12) if i != 5]


@pytest.fixture
def forest(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    from registry import Registry

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(300, 6)), columns=[f"f{i}" for i in range(6)])
    y = (X["f0"] + X["f1"] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=60, random_state=0).fit(X, y)
    home = tmp_path / "home"
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        reg.register(model, "forest", reference=X)
    return home, model, X


def test_a_batching_server_answers_each_client_exactly_as_unbatched(forest):
    import os

    import httpx
    from oip_servers import start_server, wait_ready

    home, model, X = forest
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    server = start_server(env, home / "serve.log", "forest", "--batching", "on")
    try:
        wait_ready(server)
        assert "micro-batching on" in server.log.read_text()
        rows = X.to_numpy().tolist()[:64]

        async def fire():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                answers = await asyncio.gather(
                    *(client.post("/invocations", json={"inputs": [row]}) for row in rows)
                )
            return [a.json()["predictions"][0] for a in answers]

        assert asyncio.run(fire()) == model.predict(X.iloc[:64]).tolist()
    finally:
        server.process.terminate()
        server.process.wait(timeout=15)
