"""From a command on one host to the switch on another: what several hosts add to a rollback.

Three hosts (Linux network namespaces with their own addresses, homes and supervisors; see
tests/hosts_lab.py) share one real PostgreSQL database. Deployment `web` serves version 2 on host b with
version 1 warm as its standby, and each round rolls it back and forth twice:

  local   `modeldeck rollback web` run on b itself (b's supervisor through its control socket): the baseline
  remote  the same command run on host a: written to the database, b woken by LISTEN/NOTIFY, b switches,
          a sees b's outcome in b's heartbeat row

Each is timed from the command's start to its return (it returns once the switch is made), and the
remote one also from its request to b's switch in the ledger. Rounds alternate the two (ABBA) on a shared,
noisy machine; the figures are medians. Goal: remote at most 1 s more than local.

Needs root (network namespaces) and a PostgreSQL server: MODELDECK_TEST_PG_URL, else .ci/postgres.sh.
    python benchmarks/hosts.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import common

GOAL_EXTRA_SECONDS = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="ABBA rounds (each: 2 local, 2 remote)")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    options = parser.parse_args(argv)
    common.unshadow()
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sqlalchemy import create_engine, text

    from registry import Registry
    from tests import hosts_lab

    why = hosts_lab.available()
    if why is not None:
        print(f"hosts benchmark not run: {why}")
        return 2
    admin_url = (
        os.environ.get("MODELDECK_TEST_PG_URL")
        or subprocess.run(
            ["bash", str(common.ROOT / ".ci" / "postgres.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    database = f"md_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = f"{admin_url.rsplit('/', 1)[0]}/{database}"
    rounds = 2 if options.quick else options.rounds
    try:
        with (
            tempfile.TemporaryDirectory(prefix="md-hosts-bench-") as tmp,
            hosts_lab.Lab(Path(tmp), url) as lab,
        ):
            frame = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=["a", "b", "c"])
            labels = (frame["a"] > 0).astype(int)
            with Registry(home=Path(tmp) / "registrar", db_url=url) as reg:
                reg.register(LogisticRegression().fit(frame, labels), "m", reference=frame)
                reg.register(LogisticRegression(C=0.1).fit(frame, labels), "m", reference=frame)
            a, b = lab["a"], lab["b"]
            a.start()
            b.start()
            a.run("deploy", "m:1", "--name", "web", "--on", "b", "--host", "0.0.0.0", "--no-auth")
            a.run("deploy", "m:2", "--name", "web")
            local: list[float] = []
            remote: list[float] = []
            in_db: list[float] = []
            with Registry(home=Path(tmp) / "reader", db_url=url) as reg:
                for index in range(rounds):
                    order = (
                        ("local", "remote", "remote", "local")
                        if index % 2 == 0
                        else ("remote", "local", "local", "remote")
                    )
                    for which in order:
                        host = b if which == "local" else a
                        started = time.perf_counter()
                        host.run("rollback", "web")
                        took = time.perf_counter() - started
                        (local if which == "local" else remote).append(took)
                        if which == "remote":
                            in_db.append(_request_to_switch(reg))
            extra = statistics.median(remote) - statistics.median(local)
            print(f"rollbacks per kind: {len(local)} (ABBA, {rounds} rounds); medians:")
            print(f"  local   modeldeck rollback on b          {statistics.median(local):7.3f} s")
            print(f"  remote  modeldeck rollback on a -> b     {statistics.median(remote):7.3f} s")
            print(f"  remote  request to b's switch (ledger)   {statistics.median(in_db):7.3f} s")
            ratio = statistics.median(remote) / statistics.median(local)
            print(f"  ratio remote / local                     {ratio:7.2f}")
            verdict = "met" if extra <= GOAL_EXTRA_SECONDS else "MISSED"
            print(f"goal: remote at most {GOAL_EXTRA_SECONDS:g} s over local: +{extra:.3f} s ({verdict})")
            return 0 if extra <= GOAL_EXTRA_SECONDS else 1
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def _request_to_switch(reg: object) -> float:
    """Seconds from the newest `requested` event of `web` to the `rolled_back` after it (b's switch)."""
    events = [e for e in reg.history("m").events if e.deployment == "web"]  # type: ignore[attr-defined]
    requested = max(i for i, e in enumerate(events) if e.kind == "requested")
    switched = next(e for e in events[requested:] if e.kind == "rolled_back")
    return (switched.at - events[requested].at).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
