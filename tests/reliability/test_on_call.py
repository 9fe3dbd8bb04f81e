"""What an on-call engineer meets on a shared machine: several homes, one default exporter address.

Every home's supervisor wants the Prometheus exporter's default address (127.0.0.1:9464); the second
one used to start "fine" with no exporter at all, and only its log said so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
from faults import modeldeck

from registry.serving.client import SupervisorClient


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    return subprocess.run(modeldeck(*args), env=env, capture_output=True, text=True, timeout=120)


def test_three_homes_on_one_machine_each_get_a_working_exporter(tmp_path: Path) -> None:
    homes = [tmp_path / f"home{n}" for n in range(3)]
    exporters: list[str] = []
    try:
        for home in homes:
            started = _cli(home, "supervisor", "start")
            assert started.returncode == 0, started.stderr
            info = SupervisorClient(home).status()["supervisor"]
            exporters.append(info["metrics"])
            status = json.loads(_cli(home, "status", "--json").stdout)
            assert status["supervisor"]["metrics"] == info["metrics"]
        answering = sum(httpx.get(url, timeout=10).status_code == 200 for url in exporters if url)
        # The figure: every home has its own exporter (at most one of them on the default port).
        assert answering == 3 and len(set(exporters)) == 3
        for home, url in zip(homes, exporters, strict=True):
            address = url.removeprefix("http://").removesuffix("/metrics")
            targets = json.loads((home / "prometheus" / "targets.json").read_text())
            assert targets[0]["targets"] == [address]
    finally:
        for home in homes:
            SupervisorClient(home).shutdown()
