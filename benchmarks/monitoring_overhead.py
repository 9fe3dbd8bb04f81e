"""Monitoring overhead: serving throughput with metrics and input sampling on against off, same run.

    python benchmarks/monitoring_overhead.py           # 6 runs of 4 s per side and configuration
    python benchmarks/monitoring_overhead.py --quick   # 4 runs of 2 s

A supervisor (pinned to one core with its workers; wrk on the other) serves the same
LogisticRegression (20 features) twice, one worker each: deployment `on` with monitoring (metrics on
every request, input sampling, the supervisor's pull every second and drift every 10 s) and `off`
deployed with `--no-monitoring`. wrk alternates between them run by run, single-row requests at
concurrency 8 and 64 on kept-alive connections. Printed: req/s and p50 per side (medians), the
per-run ratios on/off and their median. Goal: at least 95%.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
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
        try:
            while not client.running():
                time.sleep(0.05)
            urls = {}
            for side, monitoring in (("on", True), ("off", False)):
                port = free_port()
                client.deploy("bench:1", name=side, port=port, options={"monitoring": monitoring})
                urls[side] = f"http://127.0.0.1:{port}"
            rows = []
            for conc in (8, 64):
                for side in urls:  # warm-up
                    runner.run(urls[side], 1, conc, 1)
                results: dict[str, list] = {"on": [], "off": []}
                for _ in range(runs):
                    for side in ("on", "off"):
                        results[side].append(runner.run(urls[side], 1, conc, seconds))
                ratios = [a.rps / b.rps for a, b in zip(results["on"], results["off"], strict=True)]
                on_rps = statistics.median(r.rps for r in results["on"])
                off_rps = statistics.median(r.rps for r in results["off"])
                rows.append(
                    [
                        f"c={conc}",
                        fmt_rps(on_rps),
                        fmt_rps(off_rps),
                        fmt_ms(statistics.median(r.p50 for r in results["on"])),
                        fmt_ms(statistics.median(r.p50 for r in results["off"])),
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
    print_table(["load", "on req/s", "off req/s", "on p50", "off p50", "on/off", "per run"], rows)
    print(f"\nfailed requests: {failed}; goal: on/off at least 95%")


if __name__ == "__main__":
    main()
