"""Monitoring overhead: serving throughput with metrics and input sampling on against off (and, with
`--extras`, OpenTelemetry export and the prediction store), interleaved in short rounds, same run.

    python benchmarks/monitoring_overhead.py            # 16 blocks of 2 rounds of 1 s per side
    python benchmarks/monitoring_overhead.py --quick    # 8 blocks
    python benchmarks/monitoring_overhead.py --extras   # also `otel` and `nostore` (see below)
    python benchmarks/monitoring_overhead.py --rows 100 # 100-row requests instead of single rows

A supervisor (pinned to one core with its workers; wrk on the other) serves the same
LogisticRegression (20 features) from three deployments alive at the same time, one worker each:
`on` with monitoring (metrics on every request, input sampling, the prediction store, the
supervisor's pull every second and drift every 10 s), `off` deployed with `--no-monitoring` and no
prediction store, and `ctl` deployed as `off` (the control, see below). With `--extras`, `otel`
adds OpenTelemetry export (`--otlp`: a span per request through the SDK's batch processor) to an
OTLP/HTTP sink in this process that discards, and `nostore` is `on` without the prediction store
(`on/nostore` is the store's cost).

Why rounds: on a shared 2-core machine, throughput drifts by tens of percent over seconds (other
processes, the supervisor's drift pass, CPU frequency), so two long runs taken one after the other
compare the moments as much as the servers. Here wrk goes round the sides in many short runs (1 s:
wrk's least), the order reversed every round (ABBA...) so that a steady drift favours neither side;
each round gives one ratio from runs taken within about a second of each other.

Why many blocks: two worker processes serving the same model the same way differ by up to 5% in CPU
per request (where their heaps and caches fall), as much as the effect measured, and a pair keeps
its difference however many rounds it runs. So the rounds come in many short blocks (16 of 2 rounds,
8 with `--quick`), each deploying every side afresh, in the opposite order to the block before (no
side is always the first forked); the blocks' pairs of processes then average out. `ctl` is a second
`off` deployment, the control: `off/ctl` (an A/A comparison) shows how far apart two identical sides
land in this run, which is the resolution of the `on/off` figure (the script says so when the control
is more than 2% from 100%: `--quick`'s 8 blocks often are, the default 16 seldom).

Printed per concurrency (8 and 64, single-row requests on kept-alive connections; `--rows N`: N
rows): req/s and p50 per side (medians over rounds), the median of the per-round ratios with its
interquartile range (the middle half of the rounds) and the verdict against the goal: on/off at
least 97%.

Throughput on a shared machine moves with everything else on it; the CPU a worker spends per request
moves far less. So each run also reads the worker processes' CPU time (user + system, from /proc),
and the second table gives CPU per request per side, summed over all rounds, and `off/on`: the share
of `off`'s throughput that `on` would reach on a saturated core (the same goal, 97%). The
supervisor's own CPU (its pulls and drift, for the monitored sides) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
from common import unshadow
from serving import Cores, Load, Wrk, fmt_ms, fmt_rps, free_port, post_script, print_table
from swap import FEATURES, prepare

GOAL = 0.97  # on/off throughput
#: The rounds come in blocks, each deploying every side afresh: one pair of worker processes differs
#: by up to 5% from the next (where their heaps and caches fall), which one pair's many rounds cannot
#: average out; many fresh pairs can.
BLOCKS, BLOCKS_QUICK, ROUNDS_PER_BLOCK = 16, 8, 2
#: How far from 100% the A/A control may land for on/off to be read to the goal's precision.
CONTROL_TOLERANCE = 0.02
PAIRS = (
    ("on/off", ("on", "off")),
    ("off/ctl", ("off", "ctl")),
    ("otel/on", ("otel", "on")),
    ("on/nostore", ("on", "nostore")),
)


def spread(ratios: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range (25th and 75th percentiles) of per-round ratios."""
    if len(ratios) < 2:
        only = ratios[0] if ratios else float("nan")
        return only, only, only
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return median, q1, q3


@dataclass
class Cpu:
    """CPU seconds the workers of one side spent over its runs, and the requests they answered."""

    seconds: float = 0.0
    requests: int = 0
    per_run: list[float] = field(default_factory=list)  # CPU seconds per request, each run

    @property
    def per_request(self) -> float:
        return self.seconds / self.requests if self.requests else float("nan")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU time of `processes` (their threads included), in seconds."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def rounds(
    runner: Wrk,
    urls: dict[str, str],
    rows: int,
    conc: int,
    count: int,
    workers: dict[str, list[psutil.Process]],
    cpu: dict[str, Cpu],
) -> dict[str, list[Load]]:
    """`count` rounds of one 1 s run per side, the order reversed every round (ABBA...); each run's
    worker CPU time is added to `cpu`."""
    sides = list(urls)
    results: dict[str, list[Load]] = {side: [] for side in sides}
    for number in range(count):
        for side in sides if number % 2 == 0 else reversed(sides):
            before = cpu_seconds(workers[side])
            load = runner.run(urls[side], rows, conc, 1.0)
            spent = cpu_seconds(workers[side]) - before
            results[side].append(load)
            cpu[side].seconds += spent
            cpu[side].requests += load.requests
            if load.requests:
                cpu[side].per_run.append(spent / load.requests)
    return results


def deploy_sides(
    client: Any, sides: list[tuple[str, bool, bool, str]]
) -> tuple[dict[str, str], dict[str, list[psutil.Process]]]:
    """Deploy each side (name, monitoring, prediction store, OTLP endpoint) on a free port: their
    URLs and worker processes."""
    urls = {}
    for side, monitoring, store, otlp in sides:
        port = free_port()
        settings = {"monitoring": monitoring, "prediction_store": store, "otlp": otlp}
        client.deploy("bench:1", name=side, port=port, options=settings)
        urls[side] = f"http://127.0.0.1:{port}"
    status = client.status()
    workers = {d.name: [psutil.Process(w.pid) for w in d.processes] for d in status.deployments}
    return urls, workers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"{BLOCKS_QUICK} blocks instead of {BLOCKS}")
    parser.add_argument("--blocks", type=int, help="blocks (fresh deployments) per concurrency")
    parser.add_argument("--rounds", type=int, default=ROUNDS_PER_BLOCK, help="rounds per block")
    parser.add_argument("--extras", action="store_true", help="also the otel and nostore sides")
    parser.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    options = parser.parse_args(argv)
    unshadow()
    from registry.serving.client import SupervisorClient

    binary = shutil.which("wrk")
    if binary is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    blocks = options.blocks or (BLOCKS_QUICK if options.quick else BLOCKS)
    per_block = max(1, options.rounds)
    count = per_block * blocks
    cores = Cores()
    print(
        f"monitoring overhead: {count} rounds of 1 s per side, order reversed every round, in {blocks}"
        f" blocks of {per_block} with fresh workers each; {options.rows}-row requests"
    )
    print(f"pinning: {cores.describe()}")
    with tempfile.TemporaryDirectory(prefix="modeldeck-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        home, script, supervisor = prepare(tmp, cores, "--metrics=off")
        if options.rows != 1:
            inputs = [[0.1 + i / 1000] * FEATURES for i in range(options.rows)]  # rows unlike each other
            script = post_script(tmp, options.rows, json.dumps({"inputs": inputs}).encode())
        runner = Wrk(binary, cores, {options.rows: script})
        client = SupervisorClient(home)
        try:
            while not client.running():
                time.sleep(0.05)
            sides = [("on", True, True, "off"), ("off", False, False, "off"), ("ctl", False, False, "off")]
            if options.extras:
                sides += [("otel", True, True, otlp_sink()), ("nostore", True, False, "off")]
            boss = psutil.Process(supervisor.pid)
            rows, verdicts, failed, cpu_rows = [], [], 0, []
            controls: dict[int, float] = {}  # off/ctl by CPU per request, per concurrency
            for conc in (8, 64):
                results: dict[str, list[Load]] = {side[0]: [] for side in sides}
                cpu = {side[0]: Cpu() for side in sides}
                boss_before, wall = cpu_seconds([boss]), time.perf_counter()
                for block in range(blocks):  # fresh workers each block: no one process's luck decides
                    urls, workers = deploy_sides(client, sides if block % 2 == 0 else sides[::-1])
                    for side in urls:  # warm-up
                        runner.run(urls[side], options.rows, conc, 1)
                    done = rounds(runner, urls, options.rows, conc, per_block, workers, cpu)
                    for side, loads in done.items():
                        results[side] += loads
                    for side in urls:
                        client.stop(side)
                boss_share = (cpu_seconds([boss]) - boss_before) / (time.perf_counter() - wall)
                for name, (a, b) in PAIRS:
                    if a in cpu and b in cpu and cpu[a].requests and cpu[b].requests:
                        share = cpu[b].per_request / cpu[a].per_request
                        if name == "off/ctl":
                            controls[conc] = share
                        pairs = [y / x for x, y in zip(cpu[a].per_run, cpu[b].per_run, strict=False) if x]
                        median, q1, q3 = spread(pairs)
                        cpu_verdict = ("ok" if share >= GOAL else "MISS") if name == "on/off" else "-"
                        if name == "on/off":
                            verdicts.append(cpu_verdict)
                        cpu_rows.append(
                            [
                                f"c={conc}",
                                name,
                                f"{cpu[a].per_request * 1e6:.1f} us",
                                f"{cpu[b].per_request * 1e6:.1f} us",
                                f"{share:.1%}",
                                f"{median:.1%} ({q1:.1%} - {q3:.1%})",
                                f"{boss_share:.1%}",
                                f">= {GOAL:.0%}" if name == "on/off" else "",
                                cpu_verdict,
                            ]
                        )
                failed += sum(r.errors for side in results.values() for r in side)
                for name, (a, b) in PAIRS:
                    if a not in results or b not in results:
                        continue
                    ratios = [x.rps / y.rps for x, y in zip(results[a], results[b], strict=True) if y.rps]
                    median, q1, q3 = spread(ratios)
                    verdict = ("ok" if median >= GOAL else "MISS") if name == "on/off" else "-"
                    if name == "on/off":
                        verdicts.append(verdict)
                    rows.append(
                        [
                            f"c={conc}",
                            name,
                            fmt_rps(statistics.median(r.rps for r in results[a])),
                            fmt_rps(statistics.median(r.rps for r in results[b])),
                            fmt_ms(statistics.median(r.p50 for r in results[a])),
                            fmt_ms(statistics.median(r.p50 for r in results[b])),
                            f"{median:.1%}",
                            f"{q1:.1%} - {q3:.1%}",
                            f">= {GOAL:.0%}" if name == "on/off" else "",
                            verdict,
                        ]
                    )
        finally:
            try:
                client.shutdown(stop_servers=True)
            finally:
                client.close()
                supervisor.wait(60)
    print()
    headers = ["load", "sides a/b", "a req/s", "b req/s", "a p50", "b p50", "a/b median", "IQR", "goal"]
    print_table([*headers, "verdict"], rows)
    print()
    print("worker CPU per request (user + system over all rounds; b/a = the throughput share a keeps)")
    headers = ["load", "sides a/b", "a cpu/req", "b cpu/req", "b/a", "per round b/a (IQR)"]
    print_table([*headers, "supervisor cpu", "goal", "verdict"], cpu_rows)
    print(
        f"\nrounds: {count} per concurrency; a/b is the median of per-round ratios, IQR the middle half "
        f"of them; failed requests: {failed}; goal: on/off at least {GOAL:.0%}, by throughput and by "
        f"CPU per request ({'met' if verdicts and all(v == 'ok' for v in verdicts) else 'not met'})"
    )
    wide = {conc: share for conc, share in controls.items() if abs(share - 1) > CONTROL_TOLERANCE}
    if wide:
        figures = ", ".join(f"{share:.1%} (c={conc})" for conc, share in wide.items())
        print(
            f"the control is off: two identical sides came out at {figures} of each other, more than "
            f"{CONTROL_TOLERANCE:.0%} from 100%, so this run cannot resolve on/off to the goal's precision; "
            f"run more blocks (--blocks N; the default is {BLOCKS})"
        )


def otlp_sink() -> str:
    """The URL of an OTLP/HTTP receiver (in a thread of this process) that accepts and discards."""

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


if __name__ == "__main__":
    main()
