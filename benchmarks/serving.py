"""Serving benchmark: `modeldeck serve` next to a bare Starlette app and `mlflow models serve`, same run.

The goals: for a LogisticRegression on 20 numeric features, single-row requests at concurrency 8,
modeldeck serves at least 85% of the ceiling (the bare app calling the model's predict) and at least
25x the throughput of `mlflow models serve`; a 100-tree RandomForest, single-row at concurrency 64,
at least 10x MLflow; and at concurrency 1 modeldeck's median latency stays within "bare
Starlette+uvicorn no-op + the model's own predict time + 0.15 ms" for both models and 1 and 100 rows.
The last table, "budgets", gives each goal with its figure, its budget and pass or FAIL.

    python benchmarks/serving.py              # the default run (about 8 minutes)
    python benchmarks/serving.py --quick      # fewer and shorter runs, no 100-row at concurrency 64
    python benchmarks/serving.py --no-mlflow  # modeldeck and the bare app only
    python benchmarks/serving.py --profile    # also cProfile modeldeck's app in-process (no HTTP)

Measured, for each model (LogisticRegression, RandomForestClassifier(100)) and request size (1 and
100 rows of `{"dataframe_split": ...}`, the same body for every server):

  (a) the model's predict in-process, per call (as modeldeck calls it: a float array, sklearn's
      assume_finite), i.e. the ceiling no server can beat;
  (b) a bare Starlette + uvicorn app whose POST endpoint reads the body and answers a constant,
      started with modeldeck's uvicorn settings: the cost of HTTP alone;
  (b+) the ceiling: the same app calling the model's predict on a ready float array of the request's
      row count (no parsing, no validation): what no server of this stack can beat (one per model;
      the budgets table gives its p50 + 0.15 ms beside the budget, which stays bare + (a) + 0.15 ms);
  (c) `modeldeck serve REF` (a temporary MODELDECK_HOME where the models are registered);
  (d) `mlflow models serve --env-manager local` on the same model saved by mlflow.sklearn.

The load generator is wrk (one thread, `-c` connections) pinned to one core with taskset and every
server to the other, so that on a 2-core machine the client is not the bottleneck. For every
configuration each server gets a warm-up, then the servers take turns run by run (round-robin),
so the per-run ratios compare runs made seconds apart. Figures are medians over runs; the machine
is shared and noisy, so only ratios taken within this run mean anything. The script prints; it
asserts nothing. wrk comes from `apt-get install wrk`, MLflow from the `bench` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import http.client
import io
import json
import os
import pickle
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import free_port, quiet_mlflow, unshadow

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 20
COLUMNS = [f"f{i}" for i in range(FEATURES)]
MODELS = ("logreg", "forest")
MODEL_TITLES = {"logreg": "LogisticRegression", "forest": "RandomForest(100)"}
LOGREG_GOAL = 25.0  # modeldeck / MLflow req/s, LogisticRegression, 1 row, concurrency 8
FOREST_GOAL = 10.0  # modeldeck / MLflow req/s, RandomForest, 1 row, concurrency 64
BUDGET_SLACK = 0.15e-3  # seconds modeldeck may add to bare HTTP + predict at concurrency 1
CEILING_GOAL = 0.85  # modeldeck / ceiling req/s, LogisticRegression, 1 row, concurrency 8
READY_TIMEOUT = 120.0
NAGLE_SUSPECT = 0.030  # seconds over bare + predict at concurrency 1 that look like Nagle + delayed ACK

BARE_APP = '''"""A no-op POST endpoint on Starlette + uvicorn with modeldeck's uvicorn settings; given a
pickle of the model and its arrays, the ceiling: the same, calling the model's predict on an array of
the request's row count."""
import pickle
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"predictions": [0]}'
if len(sys.argv) > 2:
    import sklearn

    sklearn.set_config(assume_finite=True)
    with open(sys.argv[2], "rb") as f:
        MODEL, ARRAYS = pickle.load(f)
else:
    MODEL = ARRAYS = None


async def invocations(request):
    body = await request.body()
    if MODEL is not None:
        # rows = separators between them + 1; json.dumps writes "], [", a compact writer "],["
        MODEL.predict(ARRAYS[body.count(b"], [") + body.count(b"],[") + 1])
    return Response(ANSWER, media_type="application/json")


async def ready(request):
    return Response(b'{"status": "ready"}', media_type="application/json")


app = Starlette(
    routes=[Route("/invocations", invocations, methods=["POST"]), Route("/health/ready", ready)]
)
config = uvicorn.Config(
    app,
    host="127.0.0.1",
    port=int(sys.argv[1]),
    access_log=False,
    log_level="warning",
    lifespan="off",
    proxy_headers=False,
    server_header=False,
)
uvicorn.Server(config).run()
'''

WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open({path}, "rb"))
wrk.body = f:read("*a")
f:close()
"""


def post_script(folder: Path, rows: int, body: bytes) -> Path:
    """wrk's script POSTing `body` (a request of `rows` rows), written to `folder` with the body."""
    body_file = folder / f"body-{rows}.json"
    body_file.write_bytes(body)
    script = folder / f"post-{rows}.lua"
    script.write_text(WRK_SCRIPT.format(path=json.dumps(str(body_file))))
    return script


# ---------------------------------------------------------------------- plan and results
@dataclass
class Plan:
    """How much to measure."""

    warmup: float
    seconds: float
    runs: int
    configs: list[tuple[int, int]]  # (rows per request, concurrency)
    cold_reps: int
    predict_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            configs = [(1, 1), (1, 8), (1, 64), (100, 1), (100, 8)]
            return cls(1.0, 2.0, 2, configs, 2, 0.3)
        configs = [(rows, conc) for rows in (1, 100) for conc in (1, 8, 64)]
        return cls(2.0, 3.0, 3, configs, 3, 1.0)


@dataclass
class Load:
    """One wrk run."""

    rps: float
    p50: float  # seconds
    p99: float
    requests: int
    errors: int  # non-2xx responses + socket errors


@dataclass
class Series:
    """The runs of one server on one configuration."""

    runs: list[Load] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50 for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99 for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


@dataclass
class Timing:
    """Per-call durations of an in-process loop, in seconds."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p99(self) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms"


def fmt_rps(rps: float | None) -> str:
    return "-" if rps is None else f"{rps:,.0f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("-+-".join("-" * w for w in widths))
    for cells in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


# ---------------------------------------------------------------------- wrk
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> Load:
    """req/s, p50, p99 and error counts from `wrk --latency` output."""
    percentiles = {int(p): float(v) * _UNITS[u] for p, v, u in _PERCENTILE.findall(text)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if rps is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(int(g) for g in sockets.groups()) if sockets else 0
    return Load(float(rps.group(1)), percentiles[50], percentiles[99], int(total.group(1)), errors)


class Cores:
    """taskset prefixes: the load generator on one core, servers (and in-process loops) on another."""

    def __init__(self) -> None:
        available = sorted(os.sched_getaffinity(0))
        self.taskset = shutil.which("taskset")
        self.pinned = self.taskset is not None and len(available) >= 2
        self.client = available[0]
        self.server = available[1] if len(available) >= 2 else available[0]
        self.all = set(available)

    def prefix(self, core: int) -> list[str]:
        return [self.taskset, "-c", str(core)] if self.pinned and self.taskset else []

    @contextlib.contextmanager
    def on_server_core(self) -> Iterator[None]:
        """Run this process's in-process loops on the server core, as the servers run."""
        if not self.pinned:
            yield
            return
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.server})
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    def describe(self) -> str:
        if self.pinned:
            return f"wrk on cpu {self.client}, servers and in-process loops on cpu {self.server}"
        why = "no taskset" if self.taskset is None else "fewer than 2 cpus"
        return f"not pinned ({why}): wrk and the servers share the cpus, figures understate servers"


class Wrk:
    def __init__(self, binary: str, cores: Cores, scripts: dict[int, Path]) -> None:
        self.binary, self.cores, self.scripts = binary, cores, scripts

    def command(self, url: str, rows: int, conc: int, seconds: float) -> list[str]:
        """wrk pinned to the client core: one thread, `conc` kept-alive connections, POSTs of `rows` rows."""
        return [
            *self.cores.prefix(self.cores.client),
            self.binary,
            "-t1",
            f"-c{conc}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(self.scripts[rows]),
            url + "/invocations",
        ]

    def run(self, url: str, rows: int, conc: int, seconds: float) -> Load:
        command = self.command(url, rows, conc, seconds)
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
        return parse_wrk(result.stdout)


# ---------------------------------------------------------------------- processes
def http_status(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    """A server process of ours (its own process group, so its children go with it)."""

    label: str
    port: int
    ready_path: str
    process: subprocess.Popen
    log: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Seconds from process start to the first 200 on the readiness path."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited ({self.process.returncode}): {self.tail()}")
            try:
                status, _ = http_status(self.port, self.ready_path)
            except OSError:
                status = 0
            if status == 200:
                return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"{self.label} not ready in {timeout:.0f} s: {self.tail()}")

    def batching(self) -> str | None:
        """'on'/'off' as `modeldeck serve` announces micro-batching, None if it says nothing."""
        try:
            found = re.search(r"micro-?\s*batching\s+(on|off)", self.log.read_text(errors="replace"))
        except OSError:
            return None
        return found.group(1) if found else None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 10 s."""
        if self.process.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # stray children, if any
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Launcher:
    """Starts the servers, pinned to the server core, and stops every one of them on close."""

    def __init__(self, tmp: Path, home: Path, cores: Cores, mlflow_dirs: dict[str, Path]) -> None:
        self.tmp, self.home, self.cores, self.mlflow_dirs = tmp, home, cores, mlflow_dirs
        self.live: list[Server] = []
        self.count = 0
        bin_dir = str(Path(sys.executable).parent)
        self.env = dict(os.environ)
        self.env.update(
            MODELDECK_HOME=str(home),
            PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
            PYTHONUNBUFFERED="1",
        )
        self.env.pop("PYTHONPATH", None)
        (tmp / "bare_app.py").write_text(BARE_APP)

    def start(self, label: str, command: list[str], ready_path: str, port: int, cwd: Path) -> Server:
        self.count += 1
        log = self.tmp / f"server-{self.count}-{label.split()[0]}.log"
        with log.open("w") as out:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*self.cores.prefix(self.cores.server), *command],
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(label, port, ready_path, process, log, started)
        self.live.append(server)
        return server

    def bare(self, model: Path | None = None) -> Server:
        """The no-op app, or with `model` (a pickle of the model and its arrays) the ceiling."""
        port = free_port()
        command = [sys.executable, str(self.tmp / "bare_app.py"), str(port)]
        command += [str(model)] if model is not None else []
        label = "bare Starlette" if model is None else "ceiling (bare + predict)"
        return self.start(label, command, "/health/ready", port, self.tmp)

    def modeldeck(self, model: str) -> Server:
        port = free_port()
        command = [sys.executable, "-m", "console.cli", "serve", model, "--port", str(port)]
        return self.start(f"modeldeck {model}", command, "/health/ready", port, ROOT)

    def mlflow(self, model: str) -> Server:
        port = free_port()
        cli = Path(sys.executable).parent / "mlflow"
        entry = [str(cli)] if cli.exists() else [sys.executable, "-m", "mlflow"]
        command = [*entry, "models", "serve", "-m", str(self.mlflow_dirs[model])]
        command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
        return self.start(f"mlflow {model}", command, "/ping", port, self.tmp)

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.live:
            self.live.remove(server)

    def close(self) -> None:
        for server in list(self.live):
            try:
                self.stop(server)
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {server.label} (pid {server.process.pid}): {exc}")


# ---------------------------------------------------------------------- models and bodies
@dataclass
class Fixture:
    models: dict[str, Any]  # fitted on the DataFrame
    fast: dict[str, Any]  # copies that take float arrays (feature names forgotten)
    X: Any
    bodies: dict[int, bytes]
    arrays: dict[int, Any]
    expected: dict[tuple[str, int], list[Any]]


def make_fixture() -> Fixture:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    data, target = make_classification(
        n_samples=3000, n_features=FEATURES, n_informative=10, n_redundant=4, random_state=0
    )
    X = pd.DataFrame(data, columns=COLUMNS)
    train, test = X.iloc[:2000], X.iloc[2000:]
    models = {
        "logreg": LogisticRegression(max_iter=1000).fit(train, target[:2000]),
        "forest": RandomForestClassifier(n_estimators=100, random_state=0).fit(train, target[:2000]),
    }
    fast = {}
    for name, model in models.items():
        copied = copy.deepcopy(model)
        del copied.feature_names_in_
        fast[name] = copied
    bodies, arrays, expected = {}, {}, {}
    for rows in (1, 100):
        block = test.iloc[:rows]
        bodies[rows] = json.dumps(
            {"dataframe_split": {"columns": COLUMNS, "data": block.to_numpy().tolist()}}
        ).encode()
        arrays[rows] = np.ascontiguousarray(block.to_numpy(dtype=np.float64))
        for name, model in models.items():
            expected[name, rows] = model.predict(block).tolist()
    return Fixture(models, fast, train, bodies, arrays, expected)


def register_models(home: Path, fixture: Fixture) -> None:
    from registry import Registry

    with Registry(home=home) as reg:
        for name, model in fixture.models.items():
            reg.register(model, name, reference=fixture.X)


def save_mlflow_models(tmp: Path, fixture: Fixture) -> dict[str, Path]:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    dirs = {}
    for name, model in fixture.models.items():
        path = tmp / f"mlflow-{name}"
        signature = infer_signature(fixture.X, model.predict(fixture.X))
        mlflow.sklearn.save_model(
            model,
            str(path),
            signature=signature,
            pip_requirements=["scikit-learn"],
            skops_trusted_types=["sklearn.tree._tree.Tree"],  # MLflow's default format, skops
        )
        dirs[name] = path
    return dirs


# ---------------------------------------------------------------------- measurements
def measure_predict(fixture: Fixture, cores: Cores, seconds: float) -> dict[tuple[str, int], Timing]:
    """(a): `predict` in a loop on the server core, as modeldeck calls it (float array, names
    forgotten, sklearn assume_finite); per-call durations."""
    import sklearn

    out = {}
    with cores.on_server_core(), sklearn.config_context(assume_finite=True):
        for name in MODELS:
            model = fixture.fast[name]
            for rows in (1, 100):
                array = fixture.arrays[rows]
                for _ in range(5):
                    model.predict(array)
                times: list[float] = []
                until = time.perf_counter() + seconds
                while time.perf_counter() < until or len(times) < 50:
                    start = time.perf_counter()
                    model.predict(array)
                    times.append(time.perf_counter() - start)
                out[name, rows] = Timing(times)
    return out


def check_answers(server: Server, model: str | None, fixture: Fixture) -> list[str]:
    """One request of each size: 200 and, for model servers, the model's own predictions."""
    problems = []
    for rows, body in fixture.bodies.items():
        status, payload = http_status(server.port, "/invocations", body)
        if status != 200:
            problems.append(f"{server.label} {rows} row(s): HTTP {status}: {payload[:300]!r}")
            continue
        if model is not None:
            got = json.loads(payload).get("predictions")
            if got != fixture.expected[model, rows]:
                problems.append(f"{server.label} {rows} row(s): predictions differ from model.predict")
    return problems


def measure_cold_start(
    launcher: Launcher, reps: int, kinds: list[str], out: dict[tuple[str, str], Timing]
) -> None:
    """Process start to first 200 on /health/ready (modeldeck) or /ping (MLflow), servers in turn."""
    for _ in range(reps):
        for model in MODELS:
            for kind in kinds:
                server = launcher.modeldeck(model) if kind == "modeldeck" else launcher.mlflow(model)
                try:
                    out[kind, model].times.append(server.wait_ready())
                finally:
                    launcher.stop(server)


@dataclass
class Target:
    kind: str  # "bare", "ceiling", "modeldeck", "mlflow"
    model: str | None
    server: Server


def measure_load(
    wrk: Wrk, targets: list[Target], plan: Plan
) -> dict[tuple[str, str | None, int, int], Series]:
    """Every configuration: a warm-up per target (full length on the first configuration, at most
    1 s later), then `runs` rounds, targets in turn."""
    results: dict[tuple[str, str | None, int, int], Series] = {}
    for number, (rows, conc) in enumerate(plan.configs):
        print(f"  {rows} row(s), concurrency {conc} ...", flush=True)
        for t in targets:  # the first warm-up also warms the process; later ones open connections
            wrk.run(t.server.url, rows, conc, plan.warmup if number == 0 else min(plan.warmup, 1.0))
        for _ in range(plan.runs):
            for t in targets:
                load = wrk.run(t.server.url, rows, conc, plan.seconds)
                results.setdefault((t.kind, t.model, rows, conc), Series()).runs.append(load)
    return results


# ---------------------------------------------------------------------- profile
def profile_in_process(home: Path, fixture: Fixture, cores: Cores, requests: int, rows: int) -> None:
    """cProfile modeldeck's ASGI app driven directly (no socket, no HTTP parser) on the LogisticRegression,
    `rows` rows per request."""
    import asyncio

    import sklearn

    from registry import Registry
    from registry.serving.server import create_app
    from registry.serving.worker import load_predictor

    with Registry(home=home) as reg:
        predictor = load_predictor(reg, "logreg")
    sklearn.set_config(assume_finite=True)  # as run_server does for non-nullable schemas
    app = create_app(predictor)
    body = fixture.bodies[rows]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }

    async def one() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        await app(scope, receive, send)

    async def loop(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await one()
        return (time.perf_counter() - start) / n

    print()
    print(f"profile: modeldeck app in-process, logreg, {rows}-row /invocations, {requests} requests")
    with cores.on_server_core():
        asyncio.run(loop(200))
        per_request = min(asyncio.run(loop(requests)) for _ in range(3))
        predict = min(Timing(fixture_times(fixture, "logreg", rows)).median for _ in range(3))
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(loop(requests))
        profiler.disable()
    print(f"  per request without HTTP: {fmt_ms(per_request)} (model predict alone: {fmt_ms(predict)})")
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(25)
    lines = stream.getvalue().splitlines()
    start_at = next((i for i, s in enumerate(lines) if "ncalls" in s), 0)
    print("  top 25 by own time (tottime):")
    for line in lines[start_at:]:
        if line.strip():
            print("  " + line.replace(str(ROOT) + os.sep, "").replace(sys.prefix, "<venv>"))
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("cumulative")
    stats.print_stats(r"registry[/\\]serving|registry[/\\]signature", 20)
    lines = stream.getvalue().splitlines()
    start_at = next((i for i, s in enumerate(lines) if "ncalls" in s), 0)
    print("  registry/serving and registry/signature by cumulative time:")
    for line in lines[start_at:]:
        if line.strip():
            print("  " + line.replace(str(ROOT) + os.sep, "").replace(sys.prefix, "<venv>"))


def fixture_times(fixture: Fixture, model: str, rows: int, calls: int = 2000) -> list[float]:
    import sklearn

    times = []
    with sklearn.config_context(assume_finite=True):
        for _ in range(calls):
            start = time.perf_counter()
            fixture.fast[model].predict(fixture.arrays[rows])
            times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------- report
def report(
    plan: Plan,
    predict: dict[tuple[str, int], Timing],
    load: dict[tuple[str, str | None, int, int], Series],
    cold: dict[tuple[str, str], Timing],
    with_mlflow: bool,
    batching: dict[str, str | None],
) -> None:
    print()
    print(
        f"throughput and latency (wrk -t1, {plan.runs} x {plan.seconds:g} s after a warm-up of "
        f"{plan.warmup:g} s, {min(plan.warmup, 1.0):g} s after the first configuration; medians over runs)"
    )
    headers = ["server", "model", "rows", "conc", "req/s", "p50", "p99", "req/s per run", "errors"]
    table = []
    for name in MODELS:
        for rows in (1, 100):
            t = predict[name, rows]
            table.append(
                [
                    "(a) predict in-process",
                    MODEL_TITLES[name],
                    str(rows),
                    "-",
                    fmt_rps(1 / t.median),
                    fmt_ms(t.median),
                    fmt_ms(t.p99),
                    f"{len(t.times)} calls",
                    "-",
                ]
            )
    kinds = [
        ("bare", "(b) bare Starlette"),
        ("ceiling", "(b+) bare + predict"),
        ("modeldeck", "(c) modeldeck"),
        ("mlflow", "(d) MLflow"),
    ]
    for kind, title in kinds:
        for name in [None] if kind == "bare" else list(MODELS):
            for rows, conc in plan.configs:
                series = load.get((kind, name, rows, conc))
                if series is None:
                    continue
                table.append(
                    [
                        title,
                        MODEL_TITLES.get(name or "", "-"),
                        str(rows),
                        str(conc),
                        fmt_rps(series.rps),
                        fmt_ms(series.p50),
                        fmt_ms(series.p99),
                        " ".join(f"{r.rps:.0f}" for r in series.runs),
                        str(series.errors),
                    ]
                )
    print_table(headers, table)

    if with_mlflow:
        print()
        print("modeldeck / MLflow throughput (ratio of medians; per-run ratios pair runs seconds apart)")
        headers = ["model", "rows", "conc", "modeldeck req/s", "MLflow req/s", "ratio", "per run"]
        headers += ["p50 ML/md", "goal", "verdict"]
        table = []
        for name in MODELS:
            for rows, conc in plan.configs:
                ours, theirs = (
                    load.get(("modeldeck", name, rows, conc)),
                    load.get(("mlflow", name, rows, conc)),
                )
                if ours is None or theirs is None:
                    continue
                per_run = [a.rps / b.rps for a, b in zip(ours.runs, theirs.runs, strict=True) if b.rps > 0]
                overall = ours.rps / theirs.rps if theirs.rps > 0 else None
                goal = None
                if (name, rows, conc) == ("logreg", 1, 8):
                    goal = LOGREG_GOAL
                elif (name, rows, conc) == ("forest", 1, 64):
                    goal = FOREST_GOAL
                verdict = "-" if goal is None or overall is None else ("ok" if overall >= goal else "MISS")
                table.append(
                    [
                        MODEL_TITLES[name],
                        str(rows),
                        str(conc),
                        fmt_rps(ours.rps),
                        fmt_rps(theirs.rps),
                        f"{overall:.1f}x" if overall else "-",
                        " ".join(f"{r:.1f}" for r in per_run),
                        f"{theirs.p50 / ours.p50:.1f}x" if ours.p50 > 0 else "-",
                        f">= {goal:g}x" if goal else "",
                        verdict,
                    ]
                )
        print_table(headers, table)
    if batching and any(batching.values()):
        modes = ", ".join(f"{MODEL_TITLES[m]} {batching.get(m) or '?'}" for m in MODELS)
        print(f"note: modeldeck micro-batching as `serve` chose it (auto): {modes}.")
    elif load:
        print(
            "note: this modeldeck announced no micro-batching: at concurrency 64 each request calls "
            "the model once, so the RandomForest goal rests on per-request overhead alone."
        )

    print()
    print("latency budget at concurrency 1: modeldeck p50 <= (b) bare p50 + (a) predict + 0.15 ms")
    headers = ["model", "rows", "modeldeck p50", "(b) bare p50", "(a) predict", "budget", "over bare+predict"]
    headers += ["verdict"]
    table, nagle = [], False
    for name in MODELS:
        for rows in (1, 100):
            ours, bare = load.get(("modeldeck", name, rows, 1)), load.get(("bare", None, rows, 1))
            if ours is None or bare is None:
                continue
            model_time = predict[name, rows].median
            budget = bare.p50 + model_time + BUDGET_SLACK
            extra = ours.p50 - bare.p50 - model_time
            table.append(
                [
                    MODEL_TITLES[name],
                    str(rows),
                    fmt_ms(ours.p50),
                    fmt_ms(bare.p50),
                    fmt_ms(model_time),
                    fmt_ms(budget),
                    f"{extra * 1000.0:+.3f} ms",
                    "ok" if ours.p50 <= budget else "MISS",
                ]
            )
            nagle = nagle or extra > NAGLE_SUSPECT
    print_table(headers, table)
    if nagle:
        print(
            "hint: modeldeck spends tens of ms more than bare HTTP + predict at concurrency 1. A steady "
            "~40 ms is Nagle's algorithm meeting delayed ACKs: uvicorn's fd= path wraps the socket as "
            "AF_UNIX, so TCP_NODELAY is never set on connections (bare uvicorn with host/port sets it)."
        )

    print_budgets(predict, load, with_mlflow)

    if cold:
        print()
        print("cold start: process start to first 200 on /health/ready (modeldeck) or /ping (MLflow)")
        headers = ["server", "model", "median", "runs", "ratio ML/md"]
        table = []
        for (kind, name), t in cold.items():
            if not t.times:
                continue
            other = cold.get(("modeldeck", name))
            r = f"{t.median / other.median:.1f}x" if kind == "mlflow" and other and other.times else ""
            title = "modeldeck serve" if kind == "modeldeck" else "mlflow models serve"
            table.append(
                [title, MODEL_TITLES[name], f"{t.median:.2f} s", " ".join(f"{x:.2f}" for x in t.times), r]
            )
        print_table(headers, table)


def print_budgets(
    predict: dict[tuple[str, int], Timing],
    load: dict[tuple[str, str | None, int, int], Series],
    with_mlflow: bool,
) -> None:
    """Every goal of the serving path in one table: what was measured, the budget, pass or fail."""
    rows: list[list[str]] = []
    for name in MODELS:
        for count in (1, 100):
            ours, bare = load.get(("modeldeck", name, count, 1)), load.get(("bare", None, count, 1))
            if ours is None or bare is None:
                continue
            budget = bare.p50 + predict[name, count].median + BUDGET_SLACK
            ceiling = load.get(("ceiling", name, count, 1))
            beside = f"; ceiling p50 + 0.15 ms: {fmt_ms(ceiling.p50 + BUDGET_SLACK)}" if ceiling else ""
            rows.append(
                [
                    f"p50, {MODEL_TITLES[name]}, {count} row(s), c=1",
                    fmt_ms(ours.p50),
                    f"<= {fmt_ms(budget)} (bare + predict + 0.15 ms{beside})",
                    "pass" if ours.p50 <= budget else "FAIL",
                ]
            )
    ours, ceiling = load.get(("modeldeck", "logreg", 1, 8)), load.get(("ceiling", "logreg", 1, 8))
    if ours is not None and ceiling is not None and ceiling.rps > 0:
        share = ours.rps / ceiling.rps
        per_run = [a.rps / b.rps for a, b in zip(ours.runs, ceiling.runs, strict=True) if b.rps > 0]
        rows.append(
            [
                f"req/s, {MODEL_TITLES['logreg']}, 1 row, c=8, of the ceiling",
                f"{share:.1%} ({fmt_rps(ours.rps)} / {fmt_rps(ceiling.rps)}; runs "
                + " ".join(f"{r:.0%}" for r in per_run)
                + ")",
                f">= {CEILING_GOAL:.0%} of bare + predict",
                "pass" if share >= CEILING_GOAL else "FAIL",
            ]
        )
    for name, rows_, conc, goal in (("logreg", 1, 8, LOGREG_GOAL), ("forest", 1, 64, FOREST_GOAL)):
        ours, theirs = load.get(("modeldeck", name, rows_, conc)), load.get(("mlflow", name, rows_, conc))
        if not with_mlflow or ours is None or theirs is None or theirs.rps <= 0:
            continue
        ratio = ours.rps / theirs.rps
        rows.append(
            [
                f"req/s, {MODEL_TITLES[name]}, {rows_} row, c={conc}, against MLflow",
                f"{ratio:.1f}x ({fmt_rps(ours.rps)} / {fmt_rps(theirs.rps)})",
                f">= {goal:g}x",
                "pass" if ratio >= goal else "FAIL",
            ]
        )
    if rows:
        print()
        print("budgets (same run; medians over runs)")
        print_table(["goal", "measured", "budget", "verdict"], rows)


def describe_environment(cores: Cores, wrk: str | None, with_mlflow: bool) -> None:
    import sklearn
    import starlette
    import uvicorn

    parts = [
        f"python {platform.python_version()}",
        f"scikit-learn {sklearn.__version__}",
        f"uvicorn {uvicorn.__version__}",
        f"starlette {starlette.__version__}",
        f"cpus {len(cores.all)}",
    ]
    for extra in ("uvloop", "httptools"):
        with contextlib.suppress(ImportError):
            parts.append(f"{extra} {__import__(extra).__version__}")
    if with_mlflow:
        import mlflow

        parts.append(f"mlflow {mlflow.__version__}")
    if wrk:
        version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        first = (version.stdout or version.stderr).strip().splitlines()
        parts.append(first[0].split(" [")[0] if first else "wrk")
    print("environment: " + ", ".join(parts))
    print("pinning: " + cores.describe())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs, no 100 rows at c=64")
    parser.add_argument("--no-mlflow", action="store_true", help="skip `mlflow models serve`")
    parser.add_argument("--profile", action="store_true", help="cProfile modeldeck's app in-process")
    parser.add_argument("--seconds", type=float, help="length of each timed wrk run")
    parser.add_argument("--runs", type=int, help="timed wrk runs per server and configuration")
    args = parser.parse_args(argv)
    unshadow()

    plan = Plan.make(args.quick)
    if args.seconds:
        plan.seconds = args.seconds
    if args.runs:
        plan.runs = args.runs
    cores = Cores()
    wrk_binary = shutil.which("wrk")
    with_mlflow = not args.no_mlflow and quiet_mlflow()
    describe_environment(cores, wrk_binary, with_mlflow)
    if wrk_binary is None:
        print(
            "wrk: not found (apt-get install wrk): skipped (b), (c) and (d) under load; "
            "measured (a) and cold start"
        )
    if not with_mlflow:
        print("MLflow: skipped (--no-mlflow, or not importable: pip install -e '.[bench]')")
    if cores.pinned:
        os.sched_setaffinity(0, {cores.client})  # this process waits on wrk: keep it off the server core

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="md-serving-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        print("fitting and registering the models ...", flush=True)
        fixture = make_fixture()
        register_models(home, fixture)
        mlflow_dirs = save_mlflow_models(tmp, fixture) if with_mlflow else {}
        launcher = Launcher(tmp, home, cores, mlflow_dirs)
        try:
            print("(a) predict in-process ...", flush=True)
            predict = measure_predict(fixture, cores, plan.predict_seconds)
            print("starting the servers one at a time (each start is a cold-start sample) ...", flush=True)
            kinds = ["modeldeck"] + (["mlflow"] if with_mlflow else [])
            cold = {(kind, name): Timing([]) for name in MODELS for kind in kinds}
            targets = [Target("bare", None, launcher.bare())]
            targets[0].server.wait_ready()
            for name in MODELS:  # each model's ceiling: bare + that model's predict, over HTTP
                ceiling_model = tmp / f"ceiling-{name}.pickle"
                with ceiling_model.open("wb") as out:
                    pickle.dump((fixture.fast[name], fixture.arrays), out)
                targets.append(Target("ceiling", name, launcher.bare(ceiling_model)))
                targets[-1].server.wait_ready()
            for name in MODELS:
                for kind in kinds:
                    server = launcher.modeldeck(name) if kind == "modeldeck" else launcher.mlflow(name)
                    cold[kind, name].times.append(server.wait_ready())
                    targets.append(Target(kind, name, server))
            answering = [(t.server, None if t.kind == "ceiling" else t.model) for t in targets]
            for problem in [p for server, model in answering for p in check_answers(server, model, fixture)]:
                print("CHECK: " + problem)
            if plan.cold_reps > 1:
                print(f"cold start ({plan.cold_reps - 1} more each) ...", flush=True)
                measure_cold_start(launcher, plan.cold_reps - 1, kinds, cold)

            load: dict[tuple[str, str | None, int, int], Series] = {}
            if wrk_binary is not None:
                scripts = {rows: post_script(tmp, rows, body) for rows, body in fixture.bodies.items()}
                print(f"load ({len(plan.configs)} configurations x {len(targets)} servers) ...", flush=True)
                load = measure_load(Wrk(wrk_binary, cores, scripts), targets, plan)
                for t in targets:
                    launcher.stop(t.server)
            elapsed = time.perf_counter() - started
            batching = {t.model: t.server.batching() for t in targets if t.kind == "modeldeck" and t.model}
            report(plan, predict, load, cold, with_mlflow, batching)
            print()
            print(
                "notes: (a) is fast.predict(float array) with the DataFrame-fitted model's feature names "
                "removed and sklearn assume_finite, as modeldeck's server calls it. (b) reads the body "
                "and answers a constant; it has modeldeck's uvicorn settings but binds with host/port "
                "(which sets TCP_NODELAY), not fd=. (c) and (d) get the same dataframe_split body; "
                "MLflow's model is saved with its inferred signature (so MLflow checks the input too) and "
                "runs as shipped (uvicorn CLI, access log on, output discarded). errors = non-2xx + "
                "socket errors over all runs."
            )
            print(f"measured in {elapsed:.0f} s")
            if args.profile:
                for rows, count in ((1, 10_000), (100, 2_000)):
                    profile_in_process(home, fixture, cores, count // 5 if args.quick else count, rows)
        finally:
            launcher.close()


if __name__ == "__main__":
    main()
