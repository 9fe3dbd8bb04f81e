"""CPU, memory, threads and open files of worker processes and of the host (psutil)."""

from __future__ import annotations

import os
from typing import Any

import psutil


class ResourceSampler:
    """Per-process figures; CPU % is measured between two calls, so processes are kept between calls."""

    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}

    def process(self, pid: int) -> dict[str, float] | None:
        """CPU % (of one core) since the last call, RSS bytes, threads and open fds; None if gone."""
        process = self._processes.get(pid)
        try:
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
                process.cpu_percent()  # primes the measurement; the first figure comes next time
            with process.oneshot():
                return {
                    "cpu": process.cpu_percent(),
                    "rss": float(process.memory_info().rss),
                    "threads": float(process.num_threads()),
                    "fds": float(process.num_fds()),
                }
        except psutil.Error:
            self._processes.pop(pid, None)
            return None

    def forget(self, alive: set[int]) -> None:
        for pid in [p for p in self._processes if p not in alive]:
            del self._processes[pid]

    @staticmethod
    def host() -> dict[str, Any]:
        memory = psutil.virtual_memory()
        return {
            "cpu": psutil.cpu_percent(),
            "cpus": psutil.cpu_count() or 1,
            "memory_used": float(memory.total - memory.available),
            "memory_total": float(memory.total),
            "load": list(os.getloadavg()),
        }
