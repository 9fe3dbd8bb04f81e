"""A real supervisor on a private home for the liveness and monitoring tests (import as `supervised`).

`Deck` registers small models, runs the daemon with the given flags, and offers the waits and load
the tests need; `stop()` shuts it down and kills anything of this home left behind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from helpers import stop_supervisor

from registry import Registry
from registry.serving.client import SupervisorClient


@dataclass
class Deck:
    """A home on SQLite (set MODELDECK_HOME to it and unset MODELDECK_DB_URL, e.g. with monkeypatch)."""

    home: Path
    flags: tuple[str, ...]
    client: SupervisorClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = SupervisorClient(self.home)

    def register(self, estimator: Any, name: str, reference: Any = None) -> None:
        with Registry(home=self.home) as reg:
            reg.register(estimator, name, reference=reference)

    def start(self) -> None:
        self.client.ensure_running("--metrics=off", "--drift-every=30", *self.flags)

    def deployment(self, name: str) -> dict[str, Any]:
        return next(d for d in self.client.status()["deployments"] if d["name"] == name)

    def active_pids(self, name: str) -> list[int]:
        return [p["pid"] for p in self.deployment(name)["processes"] if p["role"] == "active"]

    def events(self, model: str, kind: str | None = None) -> list[Any]:
        with Registry(home=self.home) as reg:
            return [e for e in reg.history(model).events if kind is None or e.kind == kind]

    def stop(self) -> None:
        stop_supervisor(self.client, self.home)


@dataclass
class Load:
    """`clients` threads posting `body` on kept-alive connections until `count` requests were sent
    (or stopped); counts answers by status and transport failures."""

    url: str
    body: dict[str, Any]
    count: int
    clients: int = 4
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> Load:
        self._left = self.count
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        return self

    def _take(self) -> bool:
        with self._lock:
            self._left -= 1
            return self._left >= 0

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while self._take():
                try:
                    status = client.post("/invocations", json=self.body).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())
