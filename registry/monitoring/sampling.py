"""A bounded sample of the inputs a model server validated and the predictions it gave.

Kept in memory on the request path (an append per sampled row, nothing else); the supervisor pulls
what is new once a second with a cursor, and feeds it to drift. Rows that failed validation never get
here: they are counted as errors instead.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: Rows kept for the supervisor's next pull (it pulls every second; beyond this, older rows are dropped).
CAPACITY = 4096
#: At most this many rows of one request are sampled (spread evenly over the request).
PER_REQUEST = 8


class InputSampler:
    """A ring of (sequence number, input row, prediction), newest last."""

    def __init__(self, capacity: int = CAPACITY, per_request: int = PER_REQUEST) -> None:
        self._ring: deque[tuple[int, list[Any], Any]] = deque(maxlen=capacity)
        self._per_request = per_request
        self.sequence = 0

    def add(self, rows: list[list[Any]], predictions: list[Any]) -> None:
        """Sample rows of one answered request with their predictions."""
        count = len(rows)
        step = 1 if count <= self._per_request else count // self._per_request
        for index in range(0, min(count, step * self._per_request), step):
            self.sequence += 1
            self._ring.append((self.sequence, rows[index], predictions[index]))

    def since(self, cursor: int) -> tuple[int, list[list[Any]], list[Any]]:
        """Rows sampled after `cursor` (as many as are still kept): new cursor, rows, predictions."""
        fresh = [item for item in self._ring if item[0] > cursor] if self._ring else []
        return self.sequence, [item[1] for item in fresh], [item[2] for item in fresh]
