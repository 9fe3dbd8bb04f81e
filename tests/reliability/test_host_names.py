"""Host names on a shared registry, with real supervisors: a name another running supervisor uses is
refused, and so is a home started under a new name while deployments are placed on its old one
(either would make deployments vanish or two supervisors beat as one host)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from registry import Registry, hosts
from tests.helpers import free_port

MODELDECK = str(Path(sys.executable).parent / "modeldeck")
BASE = {k: v for k, v in os.environ.items() if not k.startswith("MODELDECK_")}


@pytest.fixture
def shared(postgres_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A PostgreSQL registry with model `m` (3 features)."""
    x = np.random.default_rng(0).normal(size=(60, 3))
    with Registry(home=tmp_path / "registrar", db_url=postgres_url) as reg:
        reg.register(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), "m", reference=x)
        yield reg


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELDECK, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_second_supervisor_cannot_take_a_host_name_in_use(postgres_url: str, tmp_path: Path) -> None:
    """Two homes of one machine on one registry, both named after the machine: the second supervisor
    refuses to start, saying why, instead of both beating as one host."""
    envs = [
        {
            **BASE,
            "MODELDECK_HOME": str(tmp_path / home),
            "MODELDECK_DB_URL": postgres_url,
            "MODELDECK_HOST_NAME": "same",
        }
        for home in ("one", "two")
    ]
    try:
        first = run(envs[0], "supervisor", "start", "--metrics", "off")
        assert first.returncode == 0, first.stderr
        second = run(envs[1], "supervisor", "start", "--metrics", "off")
        assert second.returncode != 0
        assert (
            "host name 'same' is used by a running supervisor on this machine"
            in second.stdout + second.stderr
        )
        with Registry(home=tmp_path / "reader", db_url=postgres_url) as reg:
            (host,) = hosts.hosts(reg)
        assert host.state == "up" and host.name == "same"
    finally:
        for env in envs:
            run(env, "supervisor", "stop")
    with Registry(home=tmp_path / "reader", db_url=postgres_url) as reg:
        assert [h.state for h in hosts.hosts(reg)] == ["stopped"]


def test_a_home_started_under_a_new_host_name_refuses_while_its_old_name_serves(
    shared: Registry, postgres_url: str, tmp_path: Path
) -> None:
    """Renaming a host would stop what is placed on its old name without a word: refused, saying how."""
    home = {**BASE, "MODELDECK_HOME": str(tmp_path / "x-home"), "MODELDECK_DB_URL": postgres_url}

    def as_host(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run({**home, "MODELDECK_HOST_NAME": name}, *args)

    port = free_port()
    try:
        assert as_host("x", "supervisor", "start", "--metrics", "off").returncode == 0
        deployed = as_host("ops", "deploy", "m:1", "--name", "r", "--on", "x", "--port", str(port))
        assert "x: serves version 1" in deployed.stdout, deployed.stdout + deployed.stderr
        assert as_host("x", "supervisor", "stop").returncode == 0
        renamed = as_host("y", "supervisor", "start", "--metrics", "off")
        assert renamed.returncode != 0
        assert "this home ran as host 'x', where r is placed" in renamed.stdout + renamed.stderr
        answer = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"inputs": [[0.1, 0.2, 0.3]]}, timeout=10
        )
        assert answer.status_code == 200  # still served, by the workers the old name left running
        assert as_host("x", "supervisor", "start", "--metrics", "off").returncode == 0
    finally:
        as_host("x", "supervisor", "stop", "--servers")
