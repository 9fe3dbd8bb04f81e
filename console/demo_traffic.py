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


class DemoTraffic(threading.Thread):
    """Sends about `rate` requests per second to each deployment until `stop()`."""

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
        super().__init__(daemon=True, name="demo-traffic")
        self.home, self.targets, self.rate = home, targets, rate
        self.drifting, self.drift_after = drifting, drift_after
        self.rng = np.random.default_rng(seed)
        self.sent = 0
        self.failed = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        samples = self._samples()
        started = time.monotonic()
        with httpx.Client(timeout=5) as client:
            while not self._stop_event.is_set():
                drifted = time.monotonic() - started >= self.drift_after
                for name, (url, _) in self.targets.items():
                    sample = samples.get(name)
                    if sample is None:
                        continue
                    body = {"dataframe_split": self._rows(sample, drifted and name == self.drifting)}
                    try:
                        ok = client.post(f"{url}/invocations", json=body).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    self.sent += 1
                    self.failed += not ok
                self._stop_event.wait(1.0 / self.rate)

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
        columns = sample["columns"]
        index = int(self.rng.integers(len(sample["data"][columns[0]])))
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
