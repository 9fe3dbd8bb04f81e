"""Demo traffic: realistic requests to the demo deployments, and drifted inputs to one after a while.

Rows are drawn at random from each version's stored reference sample (what the model was trained on;
noise would already look like drift on features with few distinct values); after `drift_after`
seconds the inputs of `drifting` shift by one standard deviation on half their features, so the
drift verdict changes while you watch.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from registry import Registry


class DemoTraffic:
    """Sends about `rate` requests per second to each deployment until `stop()`.

    Each deployment has its own sender thread and HTTP client: a deployment that is stopped, drained or
    stuck slows only its own traffic, never the others' (one thread for all of them made every other
    deployment drop to 0 req/s while one was being stopped)."""

    def __init__(
        self,
        home: Path,
        targets: dict[str, tuple[str, str]],  # deployment -> (url, version ref)
        *,
        rate: float = 20.0,
        drifting: str | None = None,
        drift_after: float = 60.0,
        seed: int = 7,
    ) -> None:
        self.home, self.targets, self.rate = home, targets, rate
        self.drifting, self.drift_after = drifting, drift_after
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.senders: dict[str, _Sender] = {}
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._start_senders, daemon=True, name="demo-traffic")

    @property
    def sent(self) -> int:
        return sum(sender.sent for sender in list(self.senders.values()))

    @property
    def failed(self) -> int:
        return sum(sender.failed for sender in list(self.senders.values()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for every sender to finish (at most about `timeout` seconds in all)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in [self._thread, *list(self.senders.values())]:
            if thread.ident is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _start_senders(self) -> None:
        """Read the reference samples (the registry, off the caller's thread), then one sender each."""
        samples = self._samples()
        started = time.monotonic()
        for index, (name, (url, _)) in enumerate(self.targets.items()):
            if name not in samples or self._stop_event.is_set():
                continue
            sender = _Sender(self, name, url, samples[name], started, self.seed + 1 + index)
            self.senders[name] = sender
            sender.start()

    def _samples(self) -> dict[str, dict[str, Any]]:
        samples: dict[str, dict[str, Any]] = {}
        with Registry(home=self.home) as reg:
            for name, (_, ref) in self.targets.items():
                reference = reg.reference(ref)
                if reference is None:
                    continue
                continuous = {
                    column: values.dtype.kind == "f" and len(np.unique(values)) > 20
                    for column, values in reference.columns.items()
                }
                samples[name] = {
                    "columns": list(reference.columns),
                    "data": reference.columns,
                    "continuous": continuous,
                }
        return samples

    def _rows(self, sample: dict[str, Any], drifted: bool) -> dict[str, Any]:
        return _rows(self.rng, sample, drifted)


class _Sender(threading.Thread):
    """The traffic of one deployment: its own thread, HTTP client and random rows."""

    def __init__(
        self, traffic: DemoTraffic, name: str, url: str, sample: dict[str, Any], started: float, seed: int
    ) -> None:
        super().__init__(daemon=True, name=f"demo-traffic-{name}")
        self.traffic, self.deployment, self.url, self.sample = traffic, name, url, sample
        self.started, self.rng = started, np.random.default_rng(seed)
        self.sent = 0
        self.failed = 0

    def run(self) -> None:
        traffic = self.traffic
        with httpx.Client(timeout=5) as client:
            while not traffic._stop_event.is_set():
                drifted = (
                    self.deployment == traffic.drifting
                    and time.monotonic() - self.started >= traffic.drift_after
                )
                body = {"dataframe_split": _rows(self.rng, self.sample, drifted)}
                try:
                    ok = client.post(f"{self.url}/invocations", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.sent += 1
                self.failed += not ok
                traffic._stop_event.wait(1.0 / traffic.rate)


def _rows(rng: np.random.Generator, sample: dict[str, Any], drifted: bool) -> dict[str, Any]:
    """One request's `dataframe_split`: a random reference row, shifted when `drifted`."""
    columns = sample["columns"]
    index = int(rng.integers(len(sample["data"][columns[0]])))
    row: list[Any] = []
    for position, name in enumerate(columns):
        value = sample["data"][name][index]
        if value.dtype.kind == "f":
            spread = float(np.nanstd(sample["data"][name])) or 1.0
            value = float(value)
            if drifted and position % 2 == 0:
                value += spread
            if np.isnan(value):
                value = None
        else:
            value = str(value)
        row.append(value)
    return {"columns": columns, "data": [row]}
