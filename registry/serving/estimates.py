"""The supervisor's estimated performance of each deployment (`registry.monitoring.estimate`).

Workers send the class probabilities of the sample rows a pull carries (computed at pull time, off
the request path). They are kept per deployment and serving version for the same span as the drift
window, and the estimate is recomputed with drift, calibrated by the version's stored calibration.
Like the drift windows, they are saved in the private run directory and taken back by the next
supervisor (`save` / `restore`), so a restart keeps the estimate's rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from registry.files import read_private, write_atomic
from registry.monitoring.estimate import NO_PROBA, Calibration, ConfidenceWindow
from registry.serving.rundir import RunDir

log = logging.getLogger("modeldeck.supervisor")
FILE_NAME = "estimate-windows.json"


class Estimates:
    """Per deployment: the window of class probabilities and its newest estimate."""

    def __init__(self, registry: Any, max_rows: int = 10_000, max_seconds: float = 3600.0) -> None:
        self.registry = registry
        self.max_rows, self.max_seconds = max_rows, max_seconds
        self.windows: dict[str, tuple[int, ConfidenceWindow]] = {}  # name -> (version, window)
        #: name -> the figures under `"performance": {"estimated": ...}` (see `estimate.estimate`).
        self.figures: dict[str, dict[str, Any]] = {}
        #: (model, version) -> (has predict_proba, calibration or None)
        self._versions: dict[tuple[str, int], tuple[bool, Calibration | None]] = {}

    def add(self, name: str, version: int, probabilities: list[list[float]], now: float) -> None:
        """The class probabilities of sample rows a worker of `version` sent."""
        entry = self.windows.get(name)
        if entry is None or entry[0] != version:  # estimated per serving version, like drift
            entry = self.windows[name] = (version, ConfidenceWindow(self.max_rows, self.max_seconds))
        entry[1].add(probabilities, now)

    async def compute(self, name: str, model: str, version: int, now: float | None = None) -> None:
        """Recompute the estimate of deployment `name`, serving `model:version`."""
        now = time.time() if now is None else now
        has_proba, calibration = await self._version(model, version)
        entry = self.windows.get(name)
        if not has_proba:
            figures = {"accuracy": None, "f1": None, "calibrated": False, "rows": 0, "reason": NO_PROBA}
        elif entry is None or entry[0] != version:
            figures = {"accuracy": None, "f1": None, "calibrated": calibration is not None, "rows": 0}
        else:
            figures = await asyncio.to_thread(entry[1].estimate, calibration, now)
        self.figures[name] = {"t": now, "version": version, **figures}

    def forget(self, names: set[str]) -> None:
        """Drop deployments that are gone."""
        for table in (self.windows, self.figures):
            for name in [n for n in table if n not in names]:
                del table[name]

    def snapshot(self) -> dict[str, Any]:
        """What `save` writes, copied on the event loop (the windows keep growing meanwhile)."""
        return {name: {"version": v, "rows": window.entries()} for name, (v, window) in self.windows.items()}

    @staticmethod
    def save(rundir: RunDir, saved: dict[str, Any]) -> None:
        """Write a `snapshot` to the run directory (0600, atomically); a failure is logged, never raised."""
        try:
            rundir.check()
            write_atomic(rundir.path / FILE_NAME, orjson.dumps(saved))
        except Exception as exc:  # monitoring must never stop the supervisor
            log.warning("estimate windows not saved: %s", exc)

    def restore(self, rundir: RunDir) -> None:
        """Take back the windows the previous supervisor saved (none if there is no usable file)."""
        try:
            rundir.check()
            saved = orjson.loads(read_private(rundir.path / FILE_NAME))
            for name, entry in saved.items():
                if name not in self.windows:
                    window = ConfidenceWindow(self.max_rows, self.max_seconds)
                    window.restore(entry["rows"])
                    self.windows[str(name)] = (int(entry["version"]), window)
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("estimate windows not restored: %s", exc)

    async def _version(self, model: str, version: int) -> tuple[bool, Calibration | None]:
        key = (model, version)
        if key not in self._versions:
            ref = f"{model}:{version}"
            info = await asyncio.to_thread(self.registry.get, ref)
            has_proba = bool(info.output.get("predict_proba"))
            calibration = None
            if has_proba and info.reference_sha256 is not None:
                try:
                    calibration = await asyncio.to_thread(self.registry.calibration, ref)
                except Exception as exc:  # a damaged reference: the raw probabilities stand in
                    log.warning("no calibration for %s: %s", ref, exc)
            self._versions[key] = (has_proba, calibration)
        return self._versions[key]
