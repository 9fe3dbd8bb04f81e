"""The drift windows kept across supervisor restarts.

A restarted supervisor re-adopts the running workers, but the rows they sampled before live only in
the old supervisor's memory, and the rollups in the DB keep only the drifted share, not rows to judge
again. So the windows are written to the private run directory (0600, atomically) every minute and
at shutdown, and read back at start: a restart loses at most a minute of samples instead of the whole
window (up to an hour), and a killed supervisor loses at most that minute too. Input rows never leave
the run directory, which only this user can read.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from registry.files import read_private, write_atomic
from registry.monitoring.window import DriftWindow
from registry.serving.rundir import RunDir

log = logging.getLogger("modeldeck.supervisor")
FILE_NAME = "drift-windows.json"


def snapshot(windows: dict[str, tuple[int, DriftWindow]]) -> dict[str, Any]:
    """What `save_windows` writes, copied on the event loop (the windows keep growing meanwhile)."""
    return {
        name: {"version": version, "rows": window.entries()} for name, (version, window) in windows.items()
    }


def save_windows(rundir: RunDir, saved: dict[str, Any]) -> None:
    """Write a `snapshot` of the windows; a failure is logged, never raised."""
    try:
        rundir.check()
        write_atomic(rundir.path / FILE_NAME, orjson.dumps(saved, option=orjson.OPT_SERIALIZE_NUMPY))
    except Exception as exc:  # monitoring must never stop the supervisor
        log.warning("drift windows not saved: %s", exc)


def load_windows(rundir: RunDir, max_rows: int, max_seconds: float) -> dict[str, tuple[int, DriftWindow]]:
    """The windows saved by the previous supervisor of this home (none if there is no usable file)."""
    try:
        rundir.check()
        saved: dict[str, Any] = orjson.loads(read_private(rundir.path / FILE_NAME))
    except FileNotFoundError:
        return {}
    except Exception as exc:
        log.warning("drift windows not restored: %s", exc)
        return {}
    windows: dict[str, tuple[int, DriftWindow]] = {}
    for name, entry in saved.items():
        try:
            window = DriftWindow(max_rows, max_seconds)
            window.restore(entry["rows"])
            windows[str(name)] = (int(entry["version"]), window)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("drift window of %s not restored: %s", name, exc)
    return windows
