"""What the feed keeps: per robot, the chart window, the last minute and the latest value per axis; and the
feed's own health (for the status strip and /health)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from common.wire.schemas import Reading
from dashboard.stats import PEAK_WINDOW, AxisValue, update_latest


@dataclass
class RobotWindow:
    rows: deque
    recent: deque = field(default_factory=deque)  # readings of the last minute, for the 1-minute peak
    latest: dict[int, AxisValue] = field(default_factory=dict)
    newest: datetime | None = None

    def add(self, reading: Reading, row: dict[str, float]) -> None:
        self.rows.append(row)
        update_latest(self.latest, reading)
        if self.newest is None or reading.ts > self.newest:
            self.newest = reading.ts
        self.recent.append(reading)
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
