"""Model calls kept off the event loop, with an optional timeout.

The event loop answers health checks, the supervisor's pulls and every other connection; a model call
that runs on it (a 30 s predict) stops all of them. Calls therefore run in a small pool of daemon
threads, except where a thread hand-off would cost more than the call itself:

- a model measured fast at warm-up (under `INLINE_SECONDS` a row, the models not worth
  micro-batching), a request of at most `INLINE_ROWS` rows, and no timeout asked for;
- a request of a slower (micro-batched) model that comes alone, one at a time (`run_alone`, see
  `MicroBatcher`), of at most `INLINE_ROWS` rows, when the warm-up's figures put the call at most at
  `ALONE_SECONDS` (a forest: a fixed cost per call, little per row). There is nothing for the loop
  to do meanwhile, and handing the call to a thread on an idle CPU and the answer back costs
  0.15-0.4 ms of latency on this project's 2-CPU machines (a forest's predict is 4 ms).

Such a model whose calls turn out slow anyway (over `DEMOTE_SECONDS`, `DEMOTE_AFTER` calls in a row)
moves to the threads for good. One slow call is not enough: on a busy machine the process is often
descheduled for tens of milliseconds in the middle of a call, and a fast model moved to the threads
pays a thread hand-off (and the GIL going back and forth) on every request from then on, measured at
2-3x the CPU per 100-row request. A call that never returns leaves the loop blocked, and the
supervisor, whose pulls then go unanswered, kills and replaces the worker.

With a predict timeout, a call over it answers 503 naming the timeout. Its thread cannot be stopped
and runs on; at most `MAX_STUCK` such calls may run at once, beyond which requests are refused with
503 at once rather than queued behind them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from registry.signature import InputError

log = logging.getLogger("modeldeck.worker")
Rows = list[list[Any]]
Call = Callable[[Rows], list[Any]]

#: Threads that run model calls (concurrent requests of unbatched models run side by side).
THREADS = 4
#: Calls past their timeout that may still run; beyond this new calls are refused (503).
MAX_STUCK = THREADS - 1
#: A model whose single-row call took at most this long at warm-up may run small calls inline.
INLINE_SECONDS = 0.001
INLINE_ROWS = 1000
#: A lone request of at most `INLINE_ROWS` rows expected to take at most this long (from the warm-up's
#: figures) may run inline.
ALONE_SECONDS = 0.02
#: Each row beyond the first is taken to cost at least this share of a one-row call: a model whose
#: fixed cost per call is large and noisy (joblib or OpenMP starting threads) can time 32 rows no
#: slower than one at warm-up, which alone would let a request of any size run inline.
ROW_COST_FLOOR = 0.01
#: `DEMOTE_AFTER` inline calls in a row that each took longer than this move the model to the threads.
DEMOTE_SECONDS = 0.05
DEMOTE_AFTER = 3


class ModelTimeout(InputError):
    """A model call over the deployment's predict timeout (503), or refused because too many are."""


class _Pool:
    """A few daemon threads running submitted calls (daemons: a stuck call never holds up exit)."""

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Call, Rows, concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        # scikit-learn's settings are per thread: the threads take the server's (assume_finite, ...).
        sklearn = sys.modules.get("sklearn")
        self._config = sklearn.get_config() if sklearn is not None else None
        for index in range(size):
            threading.Thread(target=self._work, name=f"model-{index}", daemon=True).start()

    def submit(self, call: Call, rows: Rows) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((call, rows, future))
        return future

    def _work(self) -> None:
        if self._config is not None:
            sys.modules["sklearn"].set_config(**self._config)
        while True:
            call, rows, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():  # timed out before it started
                continue
            try:
                future.set_result(call(rows))
            except BaseException as exc:  # handed to the waiting request
                future.set_exception(exc)


def _alone_rows(single_row_seconds: float | None, row_seconds: float | None) -> int:
    """The most rows, up to `INLINE_ROWS`, that the warm-up's figures put within `ALONE_SECONDS`: a
    one-row call, then `row_seconds` a row (at least `ROW_COST_FLOOR` of the first; unknown: as much
    as the first). No figures: none."""
    if single_row_seconds is None or single_row_seconds > ALONE_SECONDS:
        return 0
    per_row = (
        single_row_seconds if row_seconds is None else max(row_seconds, single_row_seconds * ROW_COST_FLOOR)
    )
    if per_row <= 0:
        return INLINE_ROWS
    # + 1e-9: a call estimated at exactly ALONE_SECONDS stays in, whatever the division rounds to
    return min(INLINE_ROWS, 1 + int((ALONE_SECONDS - single_row_seconds) / per_row + 1e-9))


class ModelCaller:
    """Runs a predictor's calls inline or in threads (see the module's docstring)."""

    def __init__(
        self,
        single_row_seconds: float | None,
        timeout: float | None = None,
        threads: int = THREADS,
        row_seconds: float | None = None,
    ) -> None:
        """`single_row_seconds`: a one-row call at warm-up; `row_seconds`: what each further row added
        (unknown: as much as the first, which overestimates a forest's many-row calls)."""
        self.timeout = timeout
        self.inline = timeout is None and (single_row_seconds or 0.0) <= INLINE_SECONDS
        #: The most rows a lone request may have to run inline (`run_alone`); 0 once demoted, for good.
        self.alone_rows = 0 if timeout is not None else _alone_rows(single_row_seconds, row_seconds)
        self.stuck = 0
        self._slow = 0  # inline calls in a row over DEMOTE_SECONDS
        self._max_stuck = max(1, min(MAX_STUCK, threads - 1))
        self._pool: _Pool | None = None
        self._threads = threads
        self._lock = threading.Lock()

    async def __call__(self, call: Call, rows: Rows) -> list[Any]:
        """`call(rows)`, inline when that is cheaper and safe, else in a thread."""
        if self.takes_inline(rows):
            return self.run_inline(call, rows)
        return await self.threaded(call, rows)

    def takes_inline(self, rows: Rows) -> bool:
        """Whether `rows` are called inline (`run_inline`) rather than in a thread (`threaded`)."""
        return self.inline and len(rows) <= INLINE_ROWS

    def run_inline(self, call: Call, rows: Rows) -> list[Any]:
        """`call(rows)` on the event loop; the model moves to the threads after slow calls in a row."""
        start = time.perf_counter()
        result = call(rows)
        took = time.perf_counter() - start
        if took <= DEMOTE_SECONDS:
            self._slow = 0
            return result
        self._slow += 1
        if self._slow >= DEMOTE_AFTER:
            self.inline, self.alone_rows = False, 0
            log.warning(
                "%d model calls in a row took over %.3f s on the event loop (the last %.3f s); "
                "model calls run in threads from now on",
                self._slow,
                DEMOTE_SECONDS,
                took,
            )
        return result

    async def run_alone(self, call: Call, rows: Rows) -> list[Any]:
        """`call(rows)` for a request no other waits beside: inline if it has at most `alone_rows`
        rows, else in a thread."""
        if len(rows) <= self.alone_rows:
            return self.run_inline(call, rows)
        return await self.threaded(call, rows)

    async def threaded(self, call: Call, rows: Rows) -> list[Any]:
        """`call(rows)` in a thread, within the timeout if there is one."""
        if self.stuck >= self._max_stuck:
            raise self._refused()
        if self._pool is None:
            self._pool = _Pool(self._threads)
        future = self._pool.submit(call, rows)
        if self.timeout is None:
            return await asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            if not future.cancel():  # it runs (a queued call is just dropped): count it until it returns
                with self._lock:
                    self.stuck += 1
                future.add_done_callback(self._unstuck)
            raise ModelTimeout(
                503,
                "predict_timeout",
                f"the model did not answer within the predict timeout of {self.timeout:g} s",
            ) from None

    def _unstuck(self, _: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self.stuck -= 1

    def _refused(self) -> ModelTimeout:
        return ModelTimeout(
            503,
            "predict_timeout",
            f"{self.stuck} model calls are still running past the predict timeout of {self.timeout:g} s; "
            "try again later",
        )
