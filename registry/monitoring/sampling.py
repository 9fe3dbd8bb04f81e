"""A bounded sample of the inputs a model server validated and the predictions it gave.

Kept in memory on the request path (an append per sampled row, nothing else); the supervisor pulls
what is new once a second with a cursor, and feeds it to drift. Rows that failed validation never get
here: they are counted as errors instead.

Every request is sampled while a worker is offered fewer than `ROWS_PER_SECOND` rows a second (each
request's counted up to `PER_REQUEST`, the most it gives the sample). Beyond, one request in `stride`
is (at random gaps averaging `stride`, so no periodic pattern of the traffic is favoured), the stride
set from the rows offered since it was last set: at each pull, and as soon as `ROWS_PER_SECOND` rows
have been sampled since then, so a burst after a quiet spell is kept whole up to that many rows and
thinned from there on, not kept whole until the next pull. Drift's window then spans minutes of a
busy deployment's traffic, not its last few seconds, and neither the request path nor the pull pays
for rows drift would push out of its window at once.

One pull's reply is bounded (`pull`): at most `PULL_ROWS` rows and about `PULL_BYTES` of JSON; the
returned cursor says where it stopped, so the next pull continues from there. Rows that fell out of
the ring before anyone pulled them are counted as dropped, never silently lost.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

#: Rows kept for the supervisor's next pull (it pulls every second; beyond this, older rows are dropped).
CAPACITY = 4096
#: At most this many rows of one request are sampled (at random positions: re-sending one batch then
#: samples all of it over time, not the same few rows, which would read as drift).
PER_REQUEST = 8
#: At most this many sample rows in one pull's reply, and about this many bytes of them.
PULL_ROWS = 2048
PULL_BYTES = 1024 * 1024
#: A pull asking from this cursor skips to the newest row (a supervisor's first sight of an adopted
#: worker, whose earlier rows were seen before, or after a reply it could not read).
SKIP = -1
#: Above this many rows a second offered to one worker's sampler, it samples one request in `stride`.
ROWS_PER_SECOND = 256
#: The stride is set again at a pull at least this many seconds after the last setting.
STRIDE_SECONDS = 0.5


class InputSampler:
    """A ring of (sequence number, input row, prediction), newest last."""

    def __init__(
        self,
        capacity: int = CAPACITY,
        per_request: int = PER_REQUEST,
        seed: int | None = None,
        rows_per_second: float = ROWS_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ring: deque[tuple[int, list[Any], Any]] = deque(maxlen=capacity)
        self._per_request = per_request
        self._random = random.Random(seed)  # this process's own (None: seeded from the OS)
        self.sequence = 0
        self._rows_per_second, self._clock = rows_per_second, clock
        #: One request in `stride` is sampled; `_countdown` requests to go until the next one.
        self.stride, self._countdown = 1, 1
        # rows offered since the stride was set, each request's counted up to `per_request` (what
        # sampling it would keep): the stride then keeps about `rows_per_second` rows, whatever the size
        # of the requests
        self._offered, self._offered_since = 0, clock()
        self._restride_at = rows_per_second  # ... and the sequence number that sets it again

    def add(self, rows: list[list[Any]], predictions: list[Any]) -> None:
        """Offer one answered request's rows and predictions: sampled, or skipped by the stride."""
        count = len(rows)
        self._offered += count if count < self._per_request else self._per_request
        self._countdown -= 1
        if self._countdown:
            return
        if self.sequence >= self._restride_at:  # a second's worth sampled since the stride was set
            self._set_stride(self._clock())
        if self.stride > 1:
            self._countdown = self._random.randint(1, 2 * self.stride - 1)  # mean `stride`
        else:
            self._countdown = 1
        if count == 1:  # the common case, kept to one append
            self.sequence += 1
            self._ring.append((self.sequence, rows[0], predictions[0]))
            return
        taken = (
            range(count)
            if count <= self._per_request
            else sorted(self._random.sample(range(count), self._per_request))
        )
        for index in taken:
            self.sequence += 1
            self._ring.append((self.sequence, rows[index], predictions[index]))

    def since(self, cursor: int) -> tuple[int, list[list[Any]], list[Any]]:
        """Rows sampled after `cursor` (as many as are still kept): new cursor, rows, predictions."""
        fresh = [item for item in self._ring if item[0] > cursor] if self._ring else []
        return self.sequence, [item[1] for item in fresh], [item[2] for item in fresh]

    def pull(self, cursor: int, max_rows: int = PULL_ROWS, max_bytes: int = PULL_BYTES) -> dict[str, Any]:
        """At most `max_rows` rows after `cursor` within about `max_bytes` of JSON: the cursor to ask
        from next, the rows and predictions, and how many rows were dropped (fell out of the ring
        unpulled, or alone too large for a reply)."""
        now = self._clock()
        if now - self._offered_since >= STRIDE_SECONDS:
            self._set_stride(now)
        if cursor < 0:  # SKIP: nothing now, continue from the newest row
            return {"cursor": self.sequence, "rows": [], "predictions": [], "dropped": 0}
        fresh = [item for item in self._ring if item[0] > cursor] if self._ring else []
        dropped = max(0, (fresh[0][0] if fresh else self.sequence + 1) - cursor - 1)
        taken = fresh[:max_rows]
        while taken and len(orjson.dumps([[i[1], i[2]] for i in taken])) > max_bytes:
            if len(taken) == 1:  # one row over the budget on its own: skip it, say so
                dropped += 1
                return {"cursor": taken[0][0], "rows": [], "predictions": [], "dropped": dropped}
            taken = taken[: len(taken) // 2]
        next_cursor = taken[-1][0] if len(taken) < len(fresh) else self.sequence
        return {
            "cursor": next_cursor,
            "rows": [item[1] for item in taken],
            "predictions": [item[2] for item in taken],
            "dropped": dropped,
        }

    def _set_stride(self, now: float) -> None:
        """From the rows offered since the last setting: the stride that keeps about `rows_per_second`
        of them."""
        elapsed = now - self._offered_since
        if elapsed <= 0:  # no time to measure a rate over (a clock that stood still)
            return
        stride = max(1, int(self._offered / elapsed / self._rows_per_second))
        if stride != self.stride:
            self.stride, self._countdown = stride, min(self._countdown, stride)
        self._offered, self._offered_since = 0, now
        self._restride_at = self.sequence + self._rows_per_second
