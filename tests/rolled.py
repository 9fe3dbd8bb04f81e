"""A real supervisor with candidates for canaries and shadows, and clients under load (import as `rolled`).

`rolled_home` registers four versions of model `m` on three integer features (0 to 3) and deploys
version 1 (a LogisticRegression) on one worker:

- 2: the same model refitted with another C: a good candidate (the same answers, the same speed);
- 3: a CategoricalNB: the same answers on good rows, but it raises on a negative value, so a client
  sending `bad` rows sees it fail exactly on those (version 1 answers them);
- 4: a 300-tree forest: the same answers, several milliseconds slower (a p99 regression).

`Clients` are threads posting single rows and counting each answer by status and by the version that
gave it (the `x-model-version` header).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import free_port, stop_supervisor, wait_until

from registry import Registry
from registry.serving.client import SupervisorClient

COLUMNS = ["a", "b", "c"]
BAD_ROW = [-1.0, 1.0, 1.0]
#: Fast steps for tests: the arithmetic is the same as with minutes.
QUICK = {"step_seconds": 2.0, "min_requests": 50}
#: QUICK for tests about errors and promotion, not latency: a few answers stalled by a loaded machine
#: must not decide them (latency has its own test), and 5 points allowed pass a step on ~60 answers.
STEADY = {**QUICK, "latency_slack": 1.0}


@dataclass
class Clients:
    """`threads` clients posting single rows to `url`, `bad` of them (a share) rows version 3 fails on."""

    url: str
    threads: int = 4
    bad: float = 0.0
    #: Answers by (status, version that answered).
    answers: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: Requests that got no answer at all (connection errors, timeouts).
    lost: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Clients:
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()
        wait_until(lambda: self.total() > 50, what="traffic")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def total(self) -> int:
        with self._lock:
            return sum(self.answers.values())

    def by_version(self, version: int) -> int:
        with self._lock:
            return sum(n for (_, v), n in self.answers.items() if v == str(version))

    def failed(self) -> dict[tuple[int, str], int]:
        with self._lock:
            return {key: n for key, n in self.answers.items() if key[0] != 200}

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30, verify=False) as client:
            while not self._stop.is_set():
                row = BAD_ROW if rng.random() < self.bad else [float(rng.randint(0, 3)) for _ in COLUMNS]
                try:
                    answer = client.post(
                        "/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": [row]}}
                    )
                except httpx.HTTPError:
                    with self._lock:
                        self.lost += 1
                    continue
                with self._lock:
                    self.answers[answer.status_code, answer.headers.get("x-model-version", "?")] += 1


@dataclass
class Rolled:
    home: Path
    client: SupervisorClient
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self, *kinds: str) -> list[object]:
        with Registry(home=self.home) as reg:
            return [e for e in reg.history("m").events if not kinds or e.kind in kinds]

    def serving(self) -> int:
        return self.client.status().deployments[0].version

    def reset(self) -> None:
        """Version 1 serving and no rollout under way (after a test that promoted or left one)."""
        status = self.client.status().deployments[0]
        if "rollout" in status:
            with contextlib.suppress(Exception):
                self.client.abort("m")
        if status.version != 1:
            self.client.deploy("m:1", name="m")


@contextlib.contextmanager
def rolled_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rolled]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import CategoricalNB

    home = tmp_path_factory.mktemp("rolled")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.integers(0, 4, size=(400, 3)).astype(float), columns=COLUMNS)
    y = (X["a"] + X["b"] > 3).astype(int)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(home))
        with Registry(home=home) as reg:
            reg.register(LogisticRegression().fit(X, y), "m", reference=X)
            reg.register(LogisticRegression(C=0.5).fit(X, y), "m", reference=X)
            reg.register(CategoricalNB().fit(X, y), "m", reference=X)
            reg.register(RandomForestClassifier(300, random_state=0).fit(X, y), "m", reference=X)
        client = SupervisorClient(home)
        client.ensure_running("--metrics=127.0.0.1:0")
        rolled = Rolled(home, client, free_port())
        client.deploy("m:1", port=rolled.port)
        try:
            yield rolled
        finally:
            stop_supervisor(client, home)
