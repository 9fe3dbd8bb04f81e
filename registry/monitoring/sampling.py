"""A bounded sample of the inputs a model server validated and the predictions it gave.

Kept in memory on the request path (an append per sampled row, nothing else); the supervisor pulls
what is new once a second with a cursor, and feeds it to drift. Rows that failed validation never get
here: they are counted as errors instead.

One pull's reply is bounded (`pull`): at most `PULL_ROWS` rows and about `PULL_BYTES` of JSON; the
returned cursor says where it stopped, so the next pull continues from there. Rows that fell out of
the ring before anyone pulled them are counted as dropped, never silently lost.
"""

from __future__ import annotations

import random
from collections import deque
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


class InputSampler:
    """A ring of (sequence number, input row, prediction), newest last."""

    def __init__(
        self, capacity: int = CAPACITY, per_request: int = PER_REQUEST, seed: int | None = None
    ) -> None:
        self._ring: deque[tuple[int, list[Any], Any]] = deque(maxlen=capacity)
        self._per_request = per_request
        self._random = random.Random(seed)  # this process's own (None: seeded from the OS)
        self.sequence = 0

    def add(self, rows: list[list[Any]], predictions: list[Any]) -> None:
        """Sample rows of one answered request with their predictions."""
        count = len(rows)
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
