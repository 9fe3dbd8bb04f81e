"""A real supervisor with objectives and a webhook receiver, for the alerting tests (import as `alerted`).

`alerted_home` registers a CategoricalNB (version 1: fast; it answers 500 for a negative category) and
a 600-tree forest (version 2: slow), deploys version 1 with short-window objectives (6 s long, 2 s
short, so a test waits seconds, not an hour: the arithmetic is the same, `test_alerts.py` checks it on
made-up pulls) and points the webhook at a `Receiver`, a real HTTP server in the test process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import free_port, stop_supervisor, wait_until

from registry import Registry
from registry import alerts as store
from registry.serving.client import SupervisorClient

COLUMNS = ["a", "b", "c"]
GOOD_ROW, BAD_ROW = [1.0, 2.0, 0.0], [-1.0, 1.0, 1.0]  # CategoricalNB refuses a negative category: a 500
FAST = [{"long": 6.0, "short": 2.0, "burn": 2.0, "severity": "critical"}]


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: keeps every body it took; answers `status` (503 to refuse)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.status = 200
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def transitions(self) -> list[tuple[str, str, str]]:
        return [
            (b["status"], b["commonLabels"]["deployment"], b["commonLabels"]["objective"])
            for b in self.bodies
        ]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.server.status == 200:
            self.server.bodies.append(body)
        else:
            self.server.refused += 1
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Traffic:
    """A client thread posting single rows, `bad` of them (a share) ones the model fails on."""

    url: str
    bad: float = 0.0
    codes: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: sum(self.codes.values()) > 20, what="traffic")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        # Every n-th row bad, not a random share: a random 5% leaves some 2 s window under the 2x burn
        # of a 1% budget by chance (the alert would flap); evenly spread, any 20 rows hold one.
        every = round(1 / self.bad) if self.bad else 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for sent in itertools.count():
                if self._stop.is_set():
                    break
                row = BAD_ROW if every and sent % every == 0 else GOOD_ROW
                answer = client.post(
                    "/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": [row]}}
                )
                self.codes[answer.status_code] = self.codes.get(answer.status_code, 0) + 1
                self._stop.wait(0.004)


@dataclass
class Alerted:
    home: Path
    client: SupervisorClient
    receiver: Receiver
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def registry(self) -> Registry:
        return Registry(home=self.home)

    def alerts(self) -> list[store.AlertInfo]:
        with self.registry() as reg:
            return store.alerts(reg)

    def state(self, kind: str = store.AVAILABILITY) -> str | None:
        found = [a for a in self.alerts() if a.kind == kind]
        return found[0].state if found else None

    def restart(self) -> None:
        self.client.ensure_running("--metrics=127.0.0.1:0")
        self.client.wait_settled()


@contextlib.contextmanager
def alerted_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerted]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.naive_bayes import CategoricalNB

    home = tmp_path_factory.mktemp("alerted")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.integers(0, 4, size=(400, 3)).astype(float), columns=COLUMNS)
    y = (X["a"] + X["b"] > 3).astype(int)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MODELDECK_DB_URL", raising=False)
        patch.setenv("MODELDECK_HOME", str(home))
        with Registry(home=home) as reg:
            reg.register(CategoricalNB().fit(X, y), "nb", reference=X)  # 1: fast
            slow = RandomForestClassifier(600, random_state=0).fit(X, y)  # 2: slow (~25 ms a row here)
            reg.register(slow, "nb", reference=X)
        receiver = Receiver()
        client = SupervisorClient(home)
        client.ensure_running("--metrics=127.0.0.1:0")
        alerted = Alerted(home, client, receiver, free_port())
        client.deploy("nb:1", port=alerted.port)
        with alerted.registry() as reg:
            store.set_objective(reg, "nb", store.AVAILABILITY, target=0.99, windows=FAST)
            # off but in the test about it: under load a fast version's slowest 2% can pass 10 ms
            store.set_objective(reg, "nb", store.LATENCY, target=0.99, threshold=0.010, windows=FAST)
            store.set_objective(reg, "nb", store.LATENCY, enabled=False)
            store.set_objective(reg, "nb", store.DRIFT, enabled=False)
            store.set_webhook(reg, receiver.url)
        try:
            yield alerted
        finally:
            stop_supervisor(client, home)
            receiver.shutdown()
