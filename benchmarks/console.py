"""Console benchmark: time to the first screen with data, CPU of the refresh loop, memory.

    python benchmarks/console.py            # 5 launches, 60 s of 1 s refreshes
    python benchmarks/console.py --quick    # 3 launches, 20 s

On a temporary home with the demo models and 50 deployments in the registry (rows only: no model
servers run, so what is measured is the console itself, reading the registry and asking a supervisor
that is not there, as over SSH at 3 a.m. when things are down):

  1. read verbs: `modeldeck models`, `versions iris`, `show iris@champion`, `status` and
     `history iris` (and `status` once more on a second home where a supervisor runs one
     deployment, so it asks the supervisor for live figures), each a fresh process running the
     script pip installs as `modeldeck` for the entry point `console.quick:main` (`ENTRY_SCRIPT`;
     `python -m console` would add runpy), wall time from process start to exit, median of N
     runs; beside them, in the same rounds,
     `python -c pass` and `python -c "import sqlite3"` as the baselines of what any Python command
     costs here. Budget: under 0.2 s each;
  2. launch: a fresh `python` process imports the console, starts it headless and waits until the
     models table has rows; wall time from process start to that moment (the process reports it;
     quitting and interpreter exit are shown apart), median of several launches. Budget: under 0.5 s;
  3. refresh: the console on the deployments view refreshing every second for the whole period; CPU
     time of the process over that period as % of one core, against the same app with refresh paused
     (the baseline), and resident memory at the end;
  4. whether the console and the read verbs imported scikit-learn, pandas, numpy, SQLAlchemy,
     SQLModel or Textual (the verbs) they have no use for.

The project's modules are byte-compiled first (`compileall`, into their `__pycache__`), as pip does
at install and as any run of a checkout does: without that, an environment with
PYTHONDONTWRITEBYTECODE set would have every launch compile the console's and registry's source
(~0.1-0.2 s), which no user's launch pays.

Budgets (DESIGN.md section 4): read verbs under 0.2 s; first screen with data under 0.5 s; a 1 Hz
refresh of 50 deployments under 5% of one core. The machine may be shared: the baselines of the same
run say how loaded it was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import ROOT, free_port, unshadow

LAUNCH = """
import sys, time, asyncio, json
from pathlib import Path
from console.app import ModeldeckApp

async def main():
    app = ModeldeckApp(Path(sys.argv[1]))
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.screen.query("#models") or app.screen.query_one("#models").row_count == 0:
            await pilot.pause(0.01)
        heavy = [m for m in ("sklearn", "pandas", "numpy", "sqlalchemy", "sqlmodel") if m in sys.modules]
        print(json.dumps({"seconds": time.perf_counter(), "heavy": heavy}))

asyncio.run(main())
"""

REFRESH = """
import sys, time, asyncio, json, resource
from pathlib import Path
from console.app import ModeldeckApp

async def main():
    seconds, paused = float(sys.argv[2]), sys.argv[3] == "paused"
    app = ModeldeckApp(Path(sys.argv[1]), refresh_seconds=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause(2.0)
        if paused:
            await pilot.press("p")
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        await pilot.pause(seconds)
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rows = app.screen.query_one("#deployments").row_count
        cpu = used / (time.perf_counter() - start)
        print(json.dumps({"cpu": cpu, "rss_mb": peak_rss_mb(after), "rows": rows}))

def peak_rss_mb(usage):
    # ru_maxrss survives fork+exec on Linux: it reported this benchmark's own peak (scikit-learn
    # loaded to build the demo), not the console's. VmHWM is the peak of this process image only.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return usage.ru_maxrss / 1024

asyncio.run(main())
"""


def make_home(home: Path) -> None:
    from console.demo import build_demo, open_demo_registry
    from registry.deployments import save_deployment
    from registry.info import DeploymentInfo

    build_demo(home)
    with open_demo_registry(home) as reg:
        for i in range(50):
            model = ("iris", "diabetes", "tumor")[i % 3]
            spec = DeploymentInfo(f"{model}-{i:02d}", model, 1, None, "127.0.0.1", 20000 + i, 1)
            save_deployment(reg, spec, "switched", actor="benchmark")


def timed_launch(code: str, args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    """Wall time of a whole run, and the run's JSON answer with `from_start`: its `seconds`
    (perf_counter, a system-wide clock) measured from this launch's start."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"exit {result.returncode}: {result.stderr[-2000:]}{result.stdout[-2000:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {}
    if "seconds" in answer:
        answer["from_start"] = answer["seconds"] - start
    return wall, answer


VERBS = {
    "models": ["models"],
    "versions": ["versions", "iris"],
    "show": ["show", "iris@champion"],
    "status": ["status"],
    "history": ["history", "iris"],
}
BASELINES = {"python -c pass": ["-c", "pass"], "python -c 'import sqlite3'": ["-c", "import sqlite3"]}
BEFORE = "models via Typer + Registry"
SUPERVISED = "status (supervisor up)"
VERB_BUDGET, SCREEN_BUDGET = 0.2, 0.5
#: What a read verb has no use for (checked in one extra run of each, not timed).
UNNEEDED = ("sklearn", "pandas", "numpy", "textual", "sqlalchemy", "sqlmodel", "typer")
WHAT_LOADED = """
import runpy, sys, json, atexit
atexit.register(lambda: print(json.dumps([m for m in {unneeded!r} if m in sys.modules]), file=sys.stderr))
sys.argv = ["modeldeck", *sys.argv[1:]]
runpy.run_module("console", run_name="__main__")
"""


#: What pip writes as the `modeldeck` command for `[project.scripts] modeldeck = "console.quick:main"`.
ENTRY_SCRIPT = """# -*- coding: utf-8 -*-
import re
import sys
from console.quick import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def measure_verbs(
    runs: int, env: dict[str, str], supervised: dict[str, str], bin_dir: Path
) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Each read verb and each baseline `runs` times, round-robin (so load spikes hit all alike);
    `status` also in the `supervised` environment (a home whose supervisor runs)."""
    entry = bin_dir / "modeldeck"
    entry.write_text(ENTRY_SCRIPT)
    commands = {name: ([sys.executable, *args], env) for name, args in BASELINES.items()}
    commands |= {verb: ([sys.executable, str(entry), *args], env) for verb, args in VERBS.items()}
    commands[SUPERVISED] = ([sys.executable, str(entry), "status"], supervised)
    # the path every verb took before console/quick.py: Typer and the Registry (SQLAlchemy, SQLModel)
    commands[BEFORE] = ([sys.executable, "-c", "from console.cli import app; app()", "models"], env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (command, environment) in commands.items():
            times[name].append(timed(command, environment))
    loaded = {}
    code = WHAT_LOADED.format(unneeded=UNNEEDED)
    for verb, (args, environment) in {
        **{verb: (args, env) for verb, args in VERBS.items()},
        SUPERVISED: (["status"], supervised),
    }.items():
        done = subprocess.run(
            [sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True
        )
        loaded[verb] = json.loads(done.stderr.strip().splitlines()[-1])
    return times, loaded


@contextmanager
def supervised_home(home: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`home` with the demo models and a supervisor serving iris (one worker); its environment."""
    from console.demo import build_demo
    from registry.serving.client import SupervisorClient

    build_demo(home)
    supervised = {**env, "MODELDECK_HOME": str(home), "MODELDECK_DB_URL": f"sqlite:///{home / 'registry.db'}"}
    client = SupervisorClient(home)
    try:
        client.ensure_running("--metrics=off")
        client.deploy("iris", name="iris", port=free_port())
        yield supervised
    finally:
        client.shutdown(stop_servers=True)
        client.close()


def verdict(seconds: float, budget: float) -> str:
    return "pass" if seconds < budget else "FAIL"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None, help="runs of each read verb (default 15; 7 quick)")
    parser.add_argument("--no-refresh", action="store_true", help="skip the refresh measurement")
    options = parser.parse_args(argv)
    unshadow()
    launches, seconds = (3, 20.0) if options.quick else (5, 60.0)
    runs = options.runs or (7 if options.quick else 15)
    with tempfile.TemporaryDirectory(prefix="modeldeck-console-") as tmp:
        home = Path(tmp) / "home"
        make_home(home)
        env = {
            **os.environ,
            "MODELDECK_HOME": str(home),
            "MODELDECK_DB_URL": f"sqlite:///{home / 'registry.db'}",
        }
        env["PYTHONPATH"] = str(ROOT)
        packages = [str(ROOT / name) for name in ("console", "registry", "themes")]
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *packages], env=env, capture_output=True, check=True
        )
        with supervised_home(Path(tmp) / "supervised", env) as supervised:
            verb_times, loaded = measure_verbs(runs, env, supervised, Path(tmp))
        console_times, heavy, whole_runs, bare = [], [], [], []
        for _ in range(launches):
            wall, answer = timed_launch(LAUNCH, [str(home)], env)
            console_times.append(answer["from_start"])
            whole_runs.append(wall)
            heavy = answer.get("heavy", [])
            bare.append(timed([sys.executable, "-c", "pass"], env))
        if not options.no_refresh:
            _, live = timed_launch(REFRESH, [str(home), str(seconds), "live"], env)
            _, idle = timed_launch(REFRESH, [str(home), str(seconds), "paused"], env)
    base = statistics.median(verb_times["python -c pass"])
    print(f"read verbs: wall time from process start to exit, median of {runs} runs, round-robin")
    print(f"  {'command':<28} {'median':>8} {'x pass':>7} {'budget':>7}  verdict  not needed, yet imported")
    for name, times in verb_times.items():
        median = statistics.median(times)
        verb = name in loaded
        budget = f"{VERB_BUDGET:.1f} s" if verb else "-"
        mark = verdict(median, VERB_BUDGET) if verb else "-"
        extra = (", ".join(loaded[name]) or "none") if verb else ""
        shown = f"modeldeck {' '.join(VERBS[name])}" if name in VERBS else name
        print(f"  {shown:<28} {median:>6.3f} s {median / base:>6.1f}x {budget:>7}  {mark:<7}  {extra}")
    first = statistics.median(console_times)
    print(
        f"first screen with data: median {first:.2f} s over {launches} launches "
        f"(budget < {SCREEN_BUDGET} s: {verdict(first, SCREEN_BUDGET)}); "
        f"python -c pass in the same rounds: {statistics.median(bare):.3f} s"
    )
    print(f"  whole run, quitting and interpreter exit included: {statistics.median(whole_runs):.2f} s")
    print(f"  heavy modules imported by the console: {heavy or 'none'}")
    if options.no_refresh:
        return
    ratio = live["cpu"] / max(idle["cpu"], 1e-9)
    print(
        f"1 Hz refresh of {live['rows']} deployments over {seconds:g} s: {100 * live['cpu']:.1f}% of one "
        f"core (goal < 5%); paused: {100 * idle['cpu']:.1f}% ({ratio:.1f}x)"
    )
    print(f"resident memory: {live['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
