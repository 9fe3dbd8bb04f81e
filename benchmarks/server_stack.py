"""Server stacks side by side: which HTTP server a model worker should run on, by measurement.

    python benchmarks/server_stack.py            # 5 runs of 2 s per server and concurrency
    python benchmarks/server_stack.py --quick    # 3 runs

Candidates: uvicorn with httptools and uvloop (what workers run), and granian (a Rust HTTP server
with an ASGI interface; `pip install granian`, in the `bench` extra). On each, the same four apps:

  raw       a raw ASGI no-op (no framework, no router): the stack's own cost per request;
  bare      the same no-op as a Starlette route: what the framework adds;
  ceiling   the Starlette route calling the model's predict on a ready float array;
  modeldeck modeldeck's own model-server app (`create_app`, monitoring on) on the same model.

The model is serving.py's LogisticRegression on 20 features, single-row `dataframe_split` bodies;
wrk (one thread) on one core, the servers on the other, as in serving.py, servers taking turns run
by run. Both stacks bind by host and port and run one process with uvloop; granian runs its Rust
runtime with one thread beside the Python loop, on the same core. Printed: req/s at concurrency 8,
p50 at concurrency 1, each app's granian/uvicorn ratio, and modeldeck's share of each stack's
ceiling. The stack whose modeldeck app serves the most is the one to run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

from common import free_port, unshadow
from serving import (
    Cores,
    Launcher,
    Series,
    Wrk,
    fmt_ms,
    fmt_rps,
    make_fixture,
    post_script,
    print_table,
    register_models,
)

STACKS = ("uvicorn", "granian")
APPS = ("raw", "bare", "ceiling", "modeldeck")
CONFIGS = ((1, 8), (1, 1))  # (rows, concurrency)

STACK_APP = '''"""One app on one stack: python stack_app.py STACK APP PORT MODEL_PICKLE HOME"""
import asyncio
import pickle
import sys

import sklearn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

stack, kind, port, model_path, home = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
ANSWER = b'{"predictions": [0]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
sklearn.set_config(assume_finite=True)
with open(model_path, "rb") as f:
    MODEL, ARRAYS = pickle.load(f)


async def raw(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def starlette(predict):
    async def invocations(request):
        body = await request.body()
        if predict:
            MODEL.predict(ARRAYS[body.count(b"],[") + 1])
        return Response(ANSWER, media_type="application/json")

    async def health(request):
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/health", health)])


def modeldeck():
    from registry import Registry
    from registry.serving.server import create_app
    from registry.serving.worker import load_predictor

    with Registry(home=home) as reg:
        return create_app(load_predictor(reg, "logreg"))


app = {"raw": lambda: raw, "bare": lambda: starlette(False), "ceiling": lambda: starlette(True),
       "modeldeck": modeldeck}[kind]()
if stack == "uvicorn":
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning",
                                  lifespan="off", http="httptools", loop="uvloop")).run()
else:
    import uvloop
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    async def serve():
        await Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI, http=HTTPModes.http1,
                     websockets=False, log_enabled=False).serve()

    uvloop.install()
    asyncio.run(serve())
'''


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 5")
    args = parser.parse_args(argv)
    unshadow()
    wrk_binary = shutil.which("wrk")
    if wrk_binary is None:
        sys.exit("wrk: not found (apt-get install wrk)")
    stacks = [s for s in STACKS if s != "granian" or _importable("granian")]
    if len(stacks) < len(STACKS):
        print("granian: not importable (pip install -e '.[bench]'): uvicorn only")
    runs, seconds = (3, 2.0) if args.quick else (5, 2.0)
    cores = Cores()
    print(cores.describe())
    if cores.pinned:
        os.sched_setaffinity(0, {cores.client})
    with tempfile.TemporaryDirectory(prefix="md-stack-bench-") as tmp_name:
        tmp = Path(tmp_name)
        fixture = make_fixture()
        register_models(tmp / "home", fixture)
        scripts = {rows: post_script(tmp, rows, body) for rows, body in fixture.bodies.items()}
        model = tmp / "model.pickle"
        with model.open("wb") as out:
            pickle.dump((fixture.fast["logreg"], fixture.arrays), out)
        (tmp / "stack_app.py").write_text(STACK_APP)
        launcher = Launcher(tmp, tmp / "home", cores, {})
        wrk = Wrk(wrk_binary, cores, scripts)
        results: dict[tuple[str, str, int], Series] = {}
        try:
            servers = {}
            for stack in stacks:
                for app in APPS:
                    port = free_port()
                    command = [sys.executable, str(tmp / "stack_app.py"), stack, app, str(port), str(model)]
                    server = launcher.start(
                        f"{stack} {app}", [*command, str(tmp / "home")], "/health", port, tmp
                    )
                    server.wait_ready()
                    servers[stack, app] = server
            for rows, conc in CONFIGS:
                print(f"  {rows} row, concurrency {conc} ...", flush=True)
                for server in servers.values():
                    wrk.run(server.url, rows, conc, 1.0)
                for _ in range(runs):
                    for (stack, app), server in servers.items():
                        load = wrk.run(server.url, rows, conc, seconds)
                        results.setdefault((stack, app, conc), Series()).runs.append(load)
        finally:
            launcher.close()
    report(results, stacks)


def report(results: dict[tuple[str, str, int], Series], stacks: list[str]) -> None:
    rows = []
    for app in APPS:
        for stack in stacks:
            busy, idle = results[stack, app, 8], results[stack, app, 1]
            base = results["uvicorn", app, 8]
            per_run = " ".join(f"{r.rps:.0f}" for r in busy.runs)
            rows.append(
                [
                    app,
                    stack,
                    fmt_rps(busy.rps),
                    per_run,
                    fmt_ms(idle.p50),
                    f"{busy.rps / base.rps:.2f}x" if stack != "uvicorn" else "-",
                    f"{sum(r.errors for s in (busy, idle) for r in s.runs)}",
                ]
            )
    print("\nsingle-row requests (medians over runs)")
    print_table(["app", "stack", "req/s c=8", "per run", "p50 c=1", "vs uvicorn", "errors"], rows)
    print("\nmodeldeck's app against its stack's ceiling (req/s at c=8)")
    shares = {s: results[s, "modeldeck", 8].rps / results[s, "ceiling", 8].rps for s in stacks}
    print_table(
        ["stack", "modeldeck", "ceiling", "share"],
        [
            [
                s,
                fmt_rps(results[s, "modeldeck", 8].rps),
                fmt_rps(results[s, "ceiling", 8].rps),
                f"{shares[s]:.1%}",
            ]
            for s in stacks
        ],
    )
    best = max(stacks, key=lambda s: results[s, "modeldeck", 8].rps)
    print(f"\nfastest for modeldeck's app at c=8: {best}")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
