"""Monitoring overhead: serving throughput with metrics and input sampling on against off, and with
OpenTelemetry export on against off, same run.

    python benchmarks/monitoring_overhead.py           # 6 runs of 4 s per side and configuration
    python benchmarks/monitoring_overhead.py --quick   # 4 runs of 2 s

A supervisor (pinned to one core with its workers; wrk on the other) serves the same
LogisticRegression (20 features) four times, one worker each: deployment `on` with monitoring
(metrics on every request, input sampling, the supervisor's pull every second and drift every 10 s),
`off` deployed with `--no-monitoring`, and `otel`: monitoring and OpenTelemetry export (`--otlp`: a
span per request through the SDK's batch processor, metrics every 60 s) to an OTLP/HTTP sink in this
process that accepts and discards, and `nostore`: monitoring without the prediction store (`on/nostore`
is the store's cost: every prediction queued and written to SQLite by a background thread). wrk goes
round the four run by run, single-row requests at concurrency 8 and 64 on kept-alive connections.
Printed: req/s and p50 per side (medians), the per-run ratios on/off, otel/on and on/nostore and their
medians. Goal: on/off at least 95%.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import unshadow
from serving import Cores, Wrk, fmt_ms, fmt_rps, free_port, print_table
from swap import prepare


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    unshadow()
    from registry.serving.client import SupervisorClient

    binary = shutil.which("wrk")
    if binary is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    runs, seconds = (4, 2.0) if options.quick else (6, 4.0)
    cores = Cores()
    print(f"monitoring overhead: {runs} runs of {seconds:g} s per side; {cores.describe()}")
    with tempfile.TemporaryDirectory(prefix="modeldeck-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        home, script, supervisor = prepare(tmp, cores, "--metrics=off")
        runner = Wrk(binary, cores, {1: script})
        client = SupervisorClient(home)
        sink = otlp_sink()
        try:
            while not client.running():
                time.sleep(0.05)
            urls = {}
            sides = (("on", True, True, "off"), ("off", False, False, "off"), ("otel", True, True, sink))
            sides += (("nostore", True, False, "off"),)
            for side, monitoring, store, otlp in sides:
                port = free_port()
                options = {"monitoring": monitoring, "prediction_store": store, "otlp": otlp}
                client.deploy("bench:1", name=side, port=port, options=options)
                urls[side] = f"http://127.0.0.1:{port}"
            rows = []
            for conc in (8, 64):
                for side in urls:  # warm-up
                    runner.run(urls[side], 1, conc, 1)
                results: dict[str, list] = {side: [] for side in urls}
                for _ in range(runs):
                    for side in urls:
                        results[side].append(runner.run(urls[side], 1, conc, seconds))
                medians = {side: statistics.median(r.rps for r in results[side]) for side in urls}
                p50s = {side: statistics.median(r.p50 for r in results[side]) for side in urls}
                pairs = (
                    ("on/off", ("on", "off")),
                    ("otel/on", ("otel", "on")),
                    ("on/nostore", ("on", "nostore")),
                )
                for name, (a, b) in pairs:
                    ratios = [x.rps / y.rps for x, y in zip(results[a], results[b], strict=True)]
                    rows.append(
                        [
                            f"c={conc}",
                            name,
                            fmt_rps(medians[a]),
                            fmt_rps(medians[b]),
                            fmt_ms(p50s[a]),
                            fmt_ms(p50s[b]),
                            f"{statistics.median(ratios):.1%}",
                            " ".join(f"{r:.0%}" for r in ratios),
                        ]
                    )
            failed = sum(r.errors for side in results.values() for r in side)
        finally:
            try:
                client.shutdown(stop_servers=True)
            finally:
                client.close()
                supervisor.wait(60)
    print()
    print_table(["load", "sides a/b", "a req/s", "b req/s", "a p50", "b p50", "a/b", "per run"], rows)
    print(f"\nfailed requests: {failed}; goal: on/off at least 95%")


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
