"""The prediction store's write cost: what a worker's writer thread pays per request, against the
writer this one replaced, same run.

    python benchmarks/prediction_store.py           # 20 batches per figure
    python benchmarks/prediction_store.py --quick   # 8

Two writers fill a fresh store each (SQLite WAL, as workers open it), first with 200,000 rows so the
B-trees are not trivially small, then batch after batch of 2,000 requests (a busy worker's half
second), 1-row and 100-row requests:

  - `store`: `OutcomeStore.add_predictions` as a worker's `PredictionRecorder` calls it: a request is
    one row (its predictions as a JSON array) in two B-trees, the batch one SQL statement;
  - `row by row` (the baseline): the writer before it, a row per prediction in four B-trees (the key and
    indexes by version, by model and by time), written with `executemany`.

Printed: the writer's CPU per request (median over batches) and per prediction, and the ratio. Then
the GIL: the wall time of one 2,000-request batch written while another thread runs Python without
pause (a worker's event loop under load). `executemany` releases and takes back the GIL around every
row, and a busy thread gives it back only at each switch interval (5 ms), so that batch takes seconds,
and interrupts the busy thread as often; one statement releases it once.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import quick_options

PREFILL_ROWS = 200_000
BATCH = 2_000
BASELINE_SCHEMA = """
CREATE TABLE prediction (
    deployment TEXT NOT NULL, request_id TEXT NOT NULL, row_index INTEGER NOT NULL,
    model TEXT NOT NULL, version INTEGER NOT NULL, t REAL NOT NULL, prediction TEXT NOT NULL,
    confidence REAL, probabilities TEXT,
    PRIMARY KEY (deployment, request_id, row_index)
) WITHOUT ROWID;
CREATE INDEX prediction_by_version ON prediction (deployment, version, t);
CREATE INDEX prediction_by_model ON prediction (model, version, t);
CREATE INDEX prediction_by_time ON prediction (t);
"""

Request = tuple[str, float, list[Any], None]


class RowByRow:
    """The baseline writer: a row per prediction, `executemany`, four B-trees."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(BASELINE_SCHEMA)

    def write(self, requests: list[Request]) -> None:
        import orjson

        rows = [
            (rid, i, "bench", "bench", 1, t, orjson.dumps(value), None, None)
            for rid, t, values, _ in requests
            for i, value in enumerate(values)
        ]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(
            "INSERT OR IGNORE INTO prediction (request_id, row_index, deployment, model, version, t,"
            " prediction, confidence, probabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self.db.execute("COMMIT")


def batches(rows_per_request: int, count: int) -> list[list[Request]]:
    from registry.outcomes import new_request_id

    now = time.time()
    return [
        [(new_request_id(), now, [i % 3] * rows_per_request, None) for i in range(BATCH)]
        for _ in range(count)
    ]


def cpu_per_batch(write: Callable[[list[Request]], None], work: list[list[Request]]) -> float:
    """Median CPU seconds of writing one batch (process CPU: this thread is the only busy one)."""
    times = []
    for batch in work:
        start = time.process_time()
        write(batch)
        times.append(time.process_time() - start)
    return statistics.median(times)


def beside_a_busy_thread(write: Callable[[list[Request]], None], batch: list[Request]) -> float:
    """Wall seconds of writing `batch` in a thread while this one runs Python without pause."""
    done = threading.Event()
    elapsed: list[float] = []

    def writer() -> None:
        start = time.perf_counter()
        write(batch)
        elapsed.append(time.perf_counter() - start)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():  # Python without pause, as a loaded event loop
        pass
    thread.join()
    return elapsed[0]


def main(argv: list[str] | None = None) -> None:
    options = quick_options(__doc__, argv)
    from registry.outcomes import OutcomeStore

    count = 8 if options.quick else 20
    print(
        f"prediction store writes: batches of {BATCH:,} requests, {count} per figure,"
        f" after {PREFILL_ROWS:,} rows"
    )
    print(
        f"{'requests of':<12} | {'store cpu/request':>17} | {'row by row':>10} | {'per prediction':>16}"
        " | ratio"
    )
    with tempfile.TemporaryDirectory(prefix="modeldeck-store-") as tmp:
        writers: dict[str, Callable[[list[Request]], None]] = {}
        store = OutcomeStore(Path(tmp) / "store" / "outcomes.sqlite", shared=True)
        writers["store"] = lambda batch: store.add_predictions("bench", "bench", 1, batch)
        baseline = RowByRow(Path(tmp) / "baseline.sqlite")
        writers["row by row"] = baseline.write
        for write in writers.values():
            for batch in batches(100, PREFILL_ROWS // (100 * BATCH)):
                write(batch)
        for rows in (1, 100):
            work = batches(rows, count)
            figures = {name: cpu_per_batch(write, work) / BATCH for name, write in writers.items()}
            ours, theirs = figures["store"], figures["row by row"]
            print(
                f"{rows:>4} row(s)  | {ours * 1e6:>14.1f} us | {theirs * 1e6:>7.1f} us |"
                f" {ours / rows * 1e6:>6.2f} / {theirs / rows * 1e6:>5.2f} us | {theirs / ours:.1f}x"
            )
        print()
        batch = batches(1, 1)[0]
        walls = {name: beside_a_busy_thread(write, batch) for name, write in writers.items()}
        print(
            f"one batch of {BATCH:,} 1-row requests beside a busy thread (wall): store"
            f" {walls['store'] * 1e3:.0f} ms, row by row {walls['row by row'] * 1e3:.0f} ms"
            f" ({walls['row by row'] / walls['store']:.0f}x)"
        )
        store.close()
        baseline.db.close()


if __name__ == "__main__":
    main()
