"""Adaptive micro-batching: requests that arrive while the model is busy share its next call.

No timer and no added latency when idle: the first request runs at once (in a worker thread, so
the event loop keeps accepting requests; `run` says how, by default `asyncio.to_thread`; or, for a
request that comes alone after another that did, `run_alone`, which may call it inline: see
`registry.serving.calls`); whatever queued up meanwhile becomes the next batch, up to `max_rows`.
Predictions are split back per request, so each client gets exactly what an unbatched call would
give. If a batch fails, its requests are retried one by one so one bad request cannot fail its
neighbours (a batch over the predict timeout fails all of its requests).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from registry.serving.calls import ModelTimeout

Rows = list[list[Any]]
Run = Callable[[Callable[[Rows], list[Any]], Rows], Awaitable[list[Any]]]


class MicroBatcher:
    """Queue requests' rows for `predict` (a blocking function of rows returning one item per row)."""

    def __init__(
        self,
        predict: Callable[[Rows], list[Any]],
        max_rows: int = 1024,
        on_call: Callable[[int], None] | None = None,
        run: Run | None = None,
        run_alone: Run | None = None,
    ) -> None:
        self._predict = predict
        self._call: Run = run or asyncio.to_thread
        self._call_alone: Run = run_alone or self._call
        self._waiting = 0  # requests submitted and not yet answered
        self._was_alone = True  # the last batch was one request no other waited beside (or none yet)
        self._on_call = on_call
        self.max_rows = max_rows
        self._queue: deque[tuple[Rows, asyncio.Future[list[Any]]]] = deque()
        self._busy = False
        self.batches = 0
        self.batched_requests = 0

    async def submit(self, rows: Rows) -> list[Any]:
        """The predictions for `rows`, computed alone or together with concurrent requests."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        self._waiting += 1
        try:
            return await future
        finally:
            self._waiting -= 1

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                await self._run(batch)
        finally:
            self._busy = False

    def _take(self) -> list[tuple[Rows, asyncio.Future[list[Any]]]]:
        batch = [self._queue.popleft()]
        size = len(batch[0][0])
        while self._queue and size + len(self._queue[0][0]) <= self.max_rows:
            rows, future = self._queue.popleft()
            batch.append((rows, future))
            size += len(rows)
        return batch

    async def _run(self, batch: list[tuple[Rows, asyncio.Future[list[Any]]]]) -> None:
        self.batches += 1
        self.batched_requests += len(batch)
        if self._on_call is not None:
            self._on_call(sum(len(rows) for rows, _ in batch))
        # Alone: no other request waits, even one whose answer is set but not yet taken, and the last
        # batch was alone too. Under concurrent load a lone batch is a gap between crowds: its call
        # goes to a thread, so the loop reads the next requests meanwhile.
        alone, was_alone = len(batch) == 1 and self._waiting == 1, self._was_alone
        self._was_alone = alone
        if len(batch) == 1:
            rows, future = batch[0]
            await self._settle(future, rows, self._call_alone if alone and was_alone else self._call)
            return
        together = [row for rows, _ in batch for row in rows]
        try:
            results = await self._call(self._predict, together)
        except ModelTimeout as exc:  # too slow together: answering one by one would only be slower
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception:  # one request may be at fault: answer each on its own
            for rows, future in batch:
                await self._settle(future, rows)
            return
        start = 0
        for rows, future in batch:
            if not future.done():
                future.set_result(results[start : start + len(rows)])
            start += len(rows)

    async def _settle(self, future: asyncio.Future[list[Any]], rows: Rows, call: Run | None = None) -> None:
        try:
            result = await (call or self._call)(self._predict, rows)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
