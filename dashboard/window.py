"""What the feed keeps: per robot, the chart window, the last minute and the latest value per axis; and the
feed's own health (for the status strip and /health)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from common.wire.schemas import Reading
from dashboard.stats import PEAK_WINDOW, AxisValue, one_minute_peak, update_latest


class RowRing:
    """The last ``capacity`` chart rows of one robot, in one array. As dicts, each row was 44 small blocks
    of the C heap (the dict and its floats) that live ~100 s: made all through a burst of page loads, they
    sat among the pages' freed memory and kept the heap's pages in the RSS after the pages were gone
    (docs/dashboard.md, "Memory")."""

    def __init__(self, keys: list[str], capacity: int) -> None:
        self.keys = keys
        self.values = np.empty((capacity, len(keys)))
        self._next = self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, row: dict[str, float]) -> None:
        self.values[self._next] = [row[key] for key in self.keys]
        self._next = (self._next + 1) % len(self.values)
        self._count = min(self._count + 1, len(self.values))

    def last(self, n: int | None = None) -> np.ndarray:
        """The newest ``n`` rows (all by default), oldest first: a copy."""
        n = self._count if n is None else max(0, min(n, self._count))
        return np.take(self.values, range(self._next - n, self._next), axis=0, mode="wrap")

    def columns(self, keys: list[str], n: int | None = None) -> dict[str, np.ndarray]:
        rows = self.last(n)
        return {key: np.ascontiguousarray(rows[:, self.keys.index(key)]) for key in keys}

    def rows(self) -> list[dict[str, float]]:
        return [dict(zip(self.keys, values, strict=True)) for values in self.last().tolist()]


@dataclass
class RobotWindow:
    rows: RowRing
    # the peak of each reading of the last minute, for the 1-minute peak: a few blocks each, where a whole
    # reading was ~20 (see RowRing)
    recent: deque[AxisValue] = field(default_factory=deque)
    latest: dict[int, AxisValue] = field(default_factory=dict)
    newest: datetime | None = None

    def add(self, reading: Reading, row: dict[str, float]) -> None:
        self.rows.append(row)
        update_latest(self.latest, reading)
        if self.newest is None or reading.ts > self.newest:
            self.newest = reading.ts
        peak = one_minute_peak([reading])
        if peak is not None:
            self.recent.append(peak)
        # newest - oldest, never newest - PEAK_WINDOW: that overflows for a reading dated in year 1
        while self.recent and self.newest - self.recent[0].ts > PEAK_WINDOW:
            self.recent.popleft()


@dataclass
class FeedStatus:
    error: str | None = None
    subscribed: bool = False
    lag: int | None = None
    last_message: float | None = None  # monotonic time of the newest message received
    newest_ts: datetime | None = None
    arrivals: deque = field(default_factory=lambda: deque(maxlen=4096))  # monotonic times, for readings/s
    rejected: int = 0
