"""Swap benchmark: deploys and rollbacks under steady keep-alive load, with the supervisor.

    python benchmarks/swap.py            # 20 swaps (10 rollbacks, 10 deploys), about 1 minute
    python benchmarks/swap.py --swaps 6  # fewer

A supervisor runs on a temporary home with two versions of a LogisticRegression on 20 features,
deployed as one worker (the earlier version warm on standby). wrk (one thread, 8 kept-alive
connections, pinned to one core; the supervisor and its workers on the other) loads it:

  1. steady: a run with no swap, the baseline;
  2. swaps: the same load while the script alternates `rollback` (to the standby) and `deploy`
     (of the other version, now on standby) every --interval seconds;
  3. cold: a few rollbacks with no warm standby (`--to` a version that must load), for comparison.

Then (skip with --no-startup; alone with --startup-only) the startup section: for a 4-feature
LogisticRegression and a 100-tree RandomForest, with workers forked from the preloader and, as the
baseline in the same run, spawned anew (MODELDECK_PRELOAD=off): deploy to ready (the deploy command
of a new deployment, which answers once its worker serves), a rollback that must load (no standby),
a crash restart (SIGKILL of the only worker to the first answer of a request sent right after it),
each a median of --startup runs (goal under 1 s each with the preloader), and the unique memory
(USS) of each worker of the LogisticRegression (goal at most 40 MB), with the ratios to spawning.

Printed: failed requests during the swaps (wrk socket errors and non-2xx; goal 0), the time each
rollback command took, which is an upper bound on the time until all traffic is on the old version
(the command answers only once the outgoing worker has stopped accepting and closed its last
connection; goal p50 under 100 ms), and p50/p99 latency during swaps against steady state, as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import unshadow
from serving import Cores, Wrk, fmt_ms, free_port, parse_wrk, post_script, print_table

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 20


def make_home(home: Path) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from registry import Registry

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, FEATURES))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with Registry(home=home) as reg:
        for c in (1.0, 0.1, 0.01):
            reg.register(LogisticRegression(C=c).fit(X, y), "bench", reference=X[:500])


def prepare(tmp: Path, cores: Cores, *flags: str) -> tuple[Path, Path, subprocess.Popen[bytes]]:
    """A home with the benchmark model, wrk's POST script, and a supervisor pinned to the server core."""
    home = tmp / "home"
    make_home(home)
    script = post_script(tmp, 1, json.dumps({"inputs": [[0.1] * FEATURES]}).encode())
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    command = [sys.executable, "-m", "registry.serving.control", "--home", str(home), *flags]
    supervisor = subprocess.Popen(
        [*cores.prefix(cores.server), *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return home, script, supervisor


def wrk(runner: Wrk, url: str, seconds: float) -> subprocess.Popen[str]:
    """wrk at concurrency 8, started in the background (the script swaps meanwhile)."""
    command = runner.command(url, 1, 8, seconds)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> object:
    out, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {err or out}")
    return parse_wrk(out)


STARTUP_FEATURES = 4


def make_startup_home(home: Path) -> None:
    """`lr`: three 4-feature LogisticRegressions, `rf`: three 100-tree RandomForests, with references."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from registry import Registry

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, STARTUP_FEATURES))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with Registry(home=home) as reg:
        for c in (1.0, 0.1, 0.01):
            reg.register(LogisticRegression(C=c).fit(X, y), "lr", reference=X[:500])
        for seed in (0, 1, 2):
            forest = RandomForestClassifier(n_estimators=100, random_state=seed).fit(X, y)
            reg.register(forest, "rf", reference=X[:500])


def post(port: int, timeout: float = 60.0) -> int:
    """One single-row prediction; its HTTP status."""
    import httpx

    body = {"inputs": [[0.1] * STARTUP_FEATURES]}
    return httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=timeout).status_code


def startup_run(home: Path, cores: Cores, preload: bool, runs: int) -> dict[str, float]:
    """Start a supervisor on `home` (preloading or not) and measure deploys, cold rollbacks, crash
    restarts and the workers' unique memory."""
    import psutil

    from registry.serving.client import SupervisorClient
    from registry.serving.rundir import RunDir

    env = {**os.environ, "MODELDECK_HOME": str(home), "MODELDECK_PRELOAD": "on" if preload else "off"}
    env.pop("MODELDECK_DB_URL", None)
    command = [sys.executable, "-m", "registry.serving.control", "--home", str(home)]
    started = time.perf_counter()
    supervisor = subprocess.Popen(
        [*cores.prefix(cores.server), *command],
        env=env,
        cwd=ROOT,  # not benchmarks/, whose registry.py would shadow the package
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = SupervisorClient(home)
    figures: dict[str, float] = {}
    log = RunDir.of(home).supervisor_log
    try:
        while not client.running():
            if supervisor.poll() is not None:
                raise RuntimeError(f"the supervisor exited with status {supervisor.returncode}")
            time.sleep(0.05)
        if preload:  # deploys made while it imports wait for it: measure the steady state
            while " ready in " not in (log.read_text() if log.exists() else ""):
                time.sleep(0.05)
            figures["preloader_ready"] = time.perf_counter() - started
        for model in ("lr", "rf"):
            deploys, colds, restarts = [], [], []
            for i in range(runs):
                name, port = f"{model}-{i}", free_port()
                start = time.perf_counter()
                client.deploy(f"{model}:1", port=port, name=name)
                deploys.append(time.perf_counter() - start)
                client.deploy(f"{model}:2", name=name)  # version 1 on standby; 3 must load
                now = client.status()["deployments"]
                entry = next(d for d in now if d["name"] == name)
                (target,) = {1, 2, 3} - {entry["version"], entry["standby_version"]}
                start = time.perf_counter()
                client.rollback(name, to=target)
                colds.append(time.perf_counter() - start)
                assert post(port) == 200
                entry = next(d for d in client.status()["deployments"] if d["name"] == name)
                (victim,) = [p["pid"] for p in entry["processes"] if p["role"] == "active"]
                start = time.perf_counter()
                os.kill(victim, signal.SIGKILL)
                status = post(port)  # queued on the deployment's socket until a new worker accepts
                restarts.append(time.perf_counter() - start)
                assert status == 200, status
                client.stop(name)
            figures[f"{model}_deploy"] = statistics.median(deploys)
            figures[f"{model}_cold"] = statistics.median(colds)
            figures[f"{model}_restart"] = statistics.median(restarts)
        port = free_port()
        client.deploy("lr:1", port=port, name="memory", workers=2)
        client.deploy("lr:2", name="memory", workers=2)  # and version 1's two workers on standby
        for _ in range(200):
            post(port)
        entry = next(d for d in client.status()["deployments"] if d["name"] == "memory")
        uss: dict[str, list[float]] = {p["role"]: [] for p in entry["processes"]}
        for process in entry["processes"]:
            uss[process["role"]].append(psutil.Process(process["pid"]).memory_full_info().uss)
        figures["uss_active"] = statistics.median(uss["active"])
        figures["uss_standby"] = statistics.median(uss.get("standby") or [0])
        client.stop("memory")
    finally:
        client.shutdown(stop_servers=True)
        try:
            supervisor.wait(60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        client.close()
    return figures


def startup(cores: Cores, runs: int) -> None:
    """The startup section: spawned (baseline) then preloaded, on one home, same run."""
    print(f"\nstartup: {runs} runs of each; {cores.describe()}; the machine is shared: compare ratios")
    with tempfile.TemporaryDirectory(prefix="modeldeck-startup-") as tmp_name:
        home = Path(tmp_name) / "home"
        make_startup_home(home)
        spawned = startup_run(home, cores, False, runs)
        forked = startup_run(home, cores, True, runs)
    rows = []
    for key, label in (
        ("deploy", "deploy to ready"),
        ("cold", "rollback, no standby"),
        ("restart", "crash restart"),
    ):
        for model, title in (("lr", "LogisticRegression"), ("rf", "RandomForest(100)")):
            base, new = spawned[f"{model}_{key}"], forked[f"{model}_{key}"]
            goal = "yes" if new < 1.0 else "NO"
            rows.append([f"{label}, {title}", fmt_ms(base), fmt_ms(new), f"{base / new:.1f}x", goal])
    print()
    print_table(["median (goal < 1 s preloaded)", "spawned", "preloaded", "faster", "met"], rows)
    mb = 1024 * 1024
    base_uss, new_uss = spawned["uss_active"], forked["uss_active"]
    met = "met" if new_uss <= 40 * mb else "NOT met"
    print(
        f"\nunique memory (USS) per worker of a {STARTUP_FEATURES}-feature LogisticRegression: "
        f"{new_uss / mb:.1f} MB preloaded vs {base_uss / mb:.1f} MB spawned "
        f"({base_uss / new_uss:.1f}x less; goal at most 40 MB: {met}); "
        f"standby workers {forked['uss_standby'] / mb:.1f} MB vs {spawned['uss_standby'] / mb:.1f} MB"
    )
    ready = forked["preloader_ready"]
    print(f"the preloader was ready {ready:.1f} s after the supervisor's start (its imports, once)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--swaps", type=int, default=20, help="deploys + rollbacks under load (even)")
    parser.add_argument("--interval", type=float, default=0.75, help="seconds between swaps")
    parser.add_argument("--cold", type=int, default=3, help="rollbacks without a warm standby")
    parser.add_argument("--startup", type=int, default=5, help="runs of each startup measurement")
    parser.add_argument("--no-startup", action="store_true", help="skip the startup section")
    parser.add_argument("--startup-only", action="store_true", help="only the startup section")
    options = parser.parse_args(argv)
    unshadow()
    from registry.serving.client import SupervisorClient

    binary = shutil.which("wrk")
    if binary is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    cores = Cores()
    if options.startup_only:
        startup(cores, options.startup)
        return
    print(f"swap benchmark: {options.swaps} swaps every {options.interval:g} s; {cores.describe()}")
    with tempfile.TemporaryDirectory(prefix="modeldeck-swap-") as tmp_name:
        tmp = Path(tmp_name)
        home, script, supervisor = prepare(tmp, cores)
        runner = Wrk(binary, cores, {1: script})
        client = SupervisorClient(home)
        try:
            while not client.running():
                time.sleep(0.05)
            port = free_port()
            client.deploy("bench:1", port=port)
            client.deploy("bench:2")
            url = f"http://127.0.0.1:{port}"
            seconds = max(5.0, options.swaps * options.interval + 2)

            steady = finish(wrk(runner, url, seconds))

            rollbacks: list[float] = []
            deploys: list[float] = []
            load = wrk(runner, url, seconds)
            time.sleep(1.0)
            for i in range(options.swaps):
                start = time.perf_counter()
                if i % 2 == 0:
                    client.rollback("bench")
                    rollbacks.append(time.perf_counter() - start)
                else:
                    client.deploy("bench:2")
                    deploys.append(time.perf_counter() - start)
                time.sleep(options.interval)
            swapping = finish(load)

            cold: list[float] = []
            for _ in range(options.cold):
                now = client.status()["deployments"][0]
                (target,) = {1, 2, 3} - {now["version"], now["standby_version"]}
                start = time.perf_counter()
                client.rollback("bench", to=target)
                cold.append(time.perf_counter() - start)
        finally:
            threading.Thread(target=client.shutdown, kwargs={"stop_servers": True}, daemon=True).start()
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                supervisor.kill()
            client.close()

    warm = statistics.median(rollbacks)
    print()
    print_table(
        ["phase", "requests", "failed", "p50", "p99"],
        [
            ["steady", f"{steady.requests:,}", str(steady.errors), fmt_ms(steady.p50), fmt_ms(steady.p99)],
            [
                "swaps",
                f"{swapping.requests:,}",
                str(swapping.errors),
                fmt_ms(swapping.p50),
                fmt_ms(swapping.p99),
            ],
        ],
    )
    print()
    print(f"failed requests during {options.swaps} swaps: {swapping.errors} (goal 0)")
    print(
        f"rollback to the warm standby, command to all traffic moved: p50 {fmt_ms(warm)}, "
        f"max {fmt_ms(max(rollbacks))} (goal p50 < 100 ms)"
    )
    print(f"deploy of the version on standby: p50 {fmt_ms(statistics.median(deploys))}")
    if cold:
        print(
            f"rollback that must load (no standby): p50 {fmt_ms(statistics.median(cold))}, "
            f"{statistics.median(cold) / warm:.1f}x the warm rollback"
        )
    p50, p99 = swapping.p50 / steady.p50, swapping.p99 / steady.p99
    print(f"latency during swaps vs steady: p50 {p50:.2f}x, p99 {p99:.2f}x")
    if not options.no_startup:
        startup(cores, options.startup)


if __name__ == "__main__":
    main()
