"""Canary benchmark: what the traffic split costs on the request path, and how fast an abort is.

    python benchmarks/canary.py              # 3 ABBA rounds of 5 s per configuration, about 12 minutes
    python benchmarks/canary.py --rounds 1   # quicker

A supervisor serves version 1 of a 20-feature LogisticRegression with one worker; version 2 is the same
model refitted (the same cost per call). wrk (one thread, 8 kept-alive connections) loads it:

  1. the split's cost: throughput and p50 with a canary of version 2 at 5%, 25% and 50% (steps of an
     hour: the canary stays at its first step) and with a shadow of it, each against plain serving
     measured in the same round (A B B A, the median of the rounds' ratios); goal: within 5% of plain
     serving. Twice: with the supervisor and every worker pinned to one core and wrk to the other (the
     candidate then takes its cycles from the serving worker's core), and with nothing pinned (a core to
     spare, as a canary's own pod has);
  2. the abort (pinned): a canary at 25% under load aborted by hand, 5 times; the seconds from the
     decision to every serving worker confirming it sends the candidate nothing more (the ledger's
     `aborted` event carries them; an automatic abort takes the same path), and, as a client sees it,
     from the abort command to the last answer of version 2 a client thread got. Goal: under 0.5 s.

Failed requests (wrk socket errors and non-2xx) are counted everywhere; goal 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import unshadow
from serving import Cores, Wrk, fmt_ms, free_port, print_table
from swap import FEATURES, finish, prepare, wrk

WEIGHTS = (5.0, 25.0, 50.0)
HOUR = 3600.0


def start(client: object, label: str) -> None:
    """Start a rollout of version 2: `shadow`, or a canary at `label` percent that stays at its step."""
    if label == "shadow":
        client.deploy("bench:2", name="bench", rollout="shadow")  # type: ignore[attr-defined]
        return
    client.deploy(  # type: ignore[attr-defined]
        "bench:2",
        name="bench",
        rollout="canary",
        analysis={
            "steps": [float(label)],
            "step_seconds": HOUR,
            "min_agreement": 0.0,
            "max_latency_ratio": 100.0,
        },
    )


def measure_split(
    client: object, runner: Wrk, url: str, seconds: float, rounds: int, labels: list[str]
) -> tuple[dict[str, list[tuple[float, float, float, float]]], int]:
    """Per configuration, per round: plain and split req/s and p50 (each the mean of an A B B A round's
    two runs); and the failed requests."""
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    failures = 0
    for _ in range(rounds):
        for label in labels:
            plain, split = [], []
            for with_split in (False, True, True, False):  # A B B A
                if with_split:
                    start(client, label)
                load = finish(wrk(runner, url, seconds))
                if with_split:
                    client.abort("bench")  # type: ignore[attr-defined]
                failures += load.errors  # type: ignore[attr-defined]
                (split if with_split else plain).append(load)
            results.setdefault(label, []).append(
                (
                    statistics.mean(x.rps for x in plain),  # type: ignore[attr-defined]
                    statistics.mean(x.rps for x in split),  # type: ignore[attr-defined]
                    statistics.mean(x.p50 for x in plain),  # type: ignore[attr-defined]
                    statistics.mean(x.p50 for x in split),  # type: ignore[attr-defined]
                )
            )
    return results, failures


def measure_aborts(client: object, home: Path, port: int, count: int) -> tuple[list[float], list[float], int]:
    """Abort a 25% canary `count` times under a client thread's load: the ledger's seconds from decision
    to every worker confirming, and the client-side seconds from the abort command to the last answer
    of version 2; and the requests that failed."""
    import httpx

    from registry import Registry

    decided, observed = [], []
    failed = 0
    body = {"inputs": [[0.1] * FEATURES]}
    for _ in range(count):
        start(client, "25")
        stop = threading.Event()
        last_candidate = [0.0]
        errors = [0]

        def load(
            stop: threading.Event = stop, errors: list[int] = errors, last: list[float] = last_candidate
        ) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                while not stop.is_set():
                    answer = http.post("/invocations", json=body)
                    if answer.status_code != 200:
                        errors[0] += 1
                    elif answer.headers.get("x-model-version") == "2":
                        last[0] = time.monotonic()

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        asked = time.monotonic()
        client.abort("bench")  # type: ignore[attr-defined]
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
        failed += errors[0]
        observed.append(max(0.0, last_candidate[0] - asked))
        with Registry(home=home) as reg:
            aborted = [e for e in reg.history("bench").events if e.kind == "aborted"][-1]
        decided.append(float(aborted.detail["seconds"]))
    return decided, observed, failed


class Unpinned(Cores):
    """No taskset: wrk, the serving worker and the candidate go where the scheduler puts them."""

    def __init__(self) -> None:
        super().__init__()
        self.pinned = False

    def describe(self) -> str:
        return "not pinned: wrk and the workers where the scheduler puts them"


def run_placement(
    cores: Cores, options: argparse.Namespace, labels: list[str], aborts: int
) -> dict[str, object]:
    """One supervisor on `cores`' placement: the split's cost per configuration, then the aborts."""
    from registry.serving.client import SupervisorClient

    with tempfile.TemporaryDirectory() as tmp:
        home, script, supervisor = prepare(Path(tmp), cores)
        runner = Wrk("wrk", cores, {1: script})
        os.environ["MODELDECK_HOME"] = str(home)
        client = SupervisorClient(home)
        try:
            client.ensure_running()
            port = free_port()
            client.deploy("bench:1", name="bench", port=port)
            url = f"http://127.0.0.1:{port}"
            finish(wrk(runner, url, 2))  # warm-up
            split, failed = measure_split(client, runner, url, options.seconds, options.rounds, labels)
            decided, observed, abort_failed = (
                measure_aborts(client, home, port, aborts) if aborts else ([], [], 0)
            )
        finally:
            client.shutdown(stop_servers=True)
            if supervisor.poll() is None:
                os.killpg(supervisor.pid, signal.SIGTERM)
    return {"split": split, "failed": failed + abort_failed, "decided": decided, "observed": observed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--aborts", type=int, default=5)
    parser.add_argument(
        "--weights", default=",".join(f"{w:g}" for w in WEIGHTS), help="canary shares, percent"
    )
    options = parser.parse_args()
    unshadow()
    labels = [f"{float(w):g}" for w in options.weights.split(",")] + ["shadow"]
    print(f"canary benchmark: {options.rounds} ABBA rounds of {options.seconds:g} s per configuration\n")
    rows, failures, worst = [], 0, {}
    decided: list[float] = []
    observed: list[float] = []
    for placement, cores in (("one core", Cores()), ("scheduler", Unpinned())):
        result = run_placement(cores, options, labels, options.aborts if placement == "one core" else 0)
        failures += int(result["failed"])  # type: ignore[call-overload]
        decided += result["decided"]  # type: ignore[arg-type]
        observed += result["observed"]  # type: ignore[arg-type]
        for label, runs in result["split"].items():  # type: ignore[attr-defined]
            ratio = statistics.median(s / p for p, s, _, _ in runs)
            worst[placement] = min(worst.get(placement, 1.0), ratio)
            rows.append(
                [
                    placement,
                    "shadow (a copy of each)" if label == "shadow" else f"canary at {label}%",
                    f"{statistics.median(p for p, _, _, _ in runs):,.0f}",
                    f"{statistics.median(s for _, s, _, _ in runs):,.0f}",
                    f"{ratio:.3f}",
                    f"{statistics.median(s / p for _, _, p, s in runs):.2f}x",
                    "met" if ratio >= 0.95 else "missed",
                ]
            )
    print("one core: the serving worker, the candidate and the supervisor share one core (wrk on the other);")
    print("scheduler: nothing pinned, as on a machine with a core to spare\n")
    print_table(
        ["placement", "split", "plain req/s", "split req/s", "throughput ratio", "p50 ratio", "goal >= 0.95"],
        rows,
    )
    print()
    if decided:
        abort_rows = [
            ["decision to every worker confirming", fmt_ms(statistics.median(decided)), fmt_ms(max(decided))],
            [
                "abort command to the last answer of v2",
                fmt_ms(statistics.median(observed)),
                fmt_ms(max(observed)),
            ],
        ]
        print_table(["abort (25% canary under load, one core)", "median", "worst"], abort_rows)
        verdict = "met" if max(decided) < 0.5 else "missed"
        print(
            f"\nabort goal (under 0.5 s from the failed check to all traffic on the old version): {verdict}"
        )
    print(f"failed requests: {failures} (goal 0)")
    print(
        json.dumps(
            {
                "worst_ratio": {k: round(v, 3) for k, v in worst.items()},
                "abort_median_s": statistics.median(decided) if decided else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
