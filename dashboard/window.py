"""What the feed keeps: per robot, the chart window, the last minute and the latest value per axis; and the
feed's own health (for the status strip and /health)."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import numpy as np

from common.defaults import STOPPAGE_RESET_S
from common.wire.clock import NO_LEAP, far_behind_run, late, next_silence
from common.wire.schemas import Reading, iso_utc
from dashboard.columns import epoch_ms
from dashboard.stats import PEAK_WINDOW, AxisValue, one_minute_peak, update_latest

logger = logging.getLogger(__name__)


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

    def keep_until(self, ts_ms: float) -> None:
        """Drop the rows after ``ts_ms`` (the rows of a robot's clock that leapt ahead and came back)."""
        rows = self.last()
        kept = rows[rows[:, self.keys.index("ts")] <= ts_ms]
        self.values[: len(kept)] = kept
        self._count = len(kept)
        self._next = self._count % len(self.values)

    def rows(self) -> list[dict[str, float]]:
        return [dict(zip(self.keys, values, strict=True)) for values in self.last().tolist()]


class Taken(Enum):
    """What a robot's window did with a reading (``RobotWindow.add``)."""

    SHOWN = "shown"
    WENT_BACK = "went back"  # shown, and the robot's clock went back at it: nothing after it is kept
    BEHIND = "behind"  # more than a stoppage behind the robot's newest: not part of its live view


@dataclass
class RobotWindow:
    rows: RowRing
    # the peak of each reading of the last minute, for the 1-minute peak: a few blocks each, where a whole
    # reading was ~20 (see RowRing)
    recent: deque[AxisValue] = field(default_factory=deque)
    latest: dict[int, AxisValue] = field(default_factory=dict)
    newest: datetime | None = None
    # how far back the robot's clock must come to be followed back (the setting STOPPAGE_RESET_S)
    clock_back_s: float = STOPPAGE_RESET_S
    set_back_run: tuple[int, float] | None = None  # readings in a row far behind the newest (``common.wire.clock``)
    # the span of the robot's last silence, a leap its Kafka records' times leapt with (``common.wire.clock``):
    # readings inside it are late ones sent from a buffer, never its clock going back
    silence: tuple[float, float] = NO_LEAP
    newest_record: float | None = None  # the time of the newest reading's Kafka record (None: not known)
    rewinds: int = 0  # how many times the robot's clock went back: a tab then takes the window whole

    def add(self, reading: Reading, row: dict[str, float], record_ts: float | None = None) -> Taken:
        """Fold the reading in, unless it is far behind the robot's present (``Taken.BEHIND``). ``Taken.WENT_BACK``:
        the robot's clock came back from a leap ahead, or the reading is the last of a run that tells it was set back
        to stay, after which the window holds nothing from the old clock ahead (its latest values, peak and chart
        rows follow the robot again). ``record_ts``: the time of the reading's Kafka record, which tells an outage
        from a clock leaping ahead (readings stamped inside an outage are late, however many come in a row)."""
        taken = Taken.SHOWN
        ts, newest = reading.ts.timestamp(), self.newest.timestamp() if self.newest is not None else None
        if newest is not None and ts <= newest:
            if late(self.silence, newest, ts, self.clock_back_s):
                return Taken.BEHIND
            if self._went_back(newest, ts):
                self._back_from_ahead(reading)
                taken = Taken.WENT_BACK
            elif newest - ts > self.clock_back_s:
                # a stray or late reading (or the first of a run): drawn, it stretched the chart's time axis back
                # to it, the robot's present a sliver at its end, and counted in the minute's peak
                return Taken.BEHIND
        else:
            self.set_back_run = None
            if record_ts is not None:
                self.silence = next_silence(self.silence, newest, self.newest_record, ts, record_ts, self.clock_back_s)
        self.rows.append(row)
        update_latest(self.latest, reading)
        if self.newest is None or reading.ts > self.newest:
            self.newest, self.newest_record = reading.ts, record_ts
        peak = one_minute_peak([reading])
        if peak is not None:
            self.recent.append(peak)
        # newest - oldest, never newest - PEAK_WINDOW: that overflows for a reading dated in year 1
        while self.recent and self.newest - self.recent[0].ts > PEAK_WINDOW:
            self.recent.popleft()
        return taken

    def _went_back(self, newest: float, ts: float) -> bool:
        """Whether a reading at ``ts``, more than a stoppage behind the newest, ends a run of ``SET_BACK_RUN``: the
        clock came back from a leap ahead or was set back to stay (``common.wire.clock``). The feed reads each
        message once (from the topics' end, committing nothing), so unlike consumer_alerts it never sees a
        redelivery and needs no offsets: without this the live view kept the old clock's latest values until the
        new clock passed them, days later. One reading never says it: late readings stamped inside a past gap,
        sent between live ones, each dropped the robot's live rows."""
        self.set_back_run, set_back = far_behind_run(self.set_back_run, newest, ts, self.clock_back_s)
        return set_back

    def _back_from_ahead(self, reading: Reading) -> None:
        at = reading.ts
        logger.warning(
            "dashboard feed: robot %r: its clock went back from %s to %s (it had leapt ahead, or was set back): "
            "its readings after %s dropped from its live view",
            reading.robot_id,
            iso_utc(self.newest),
            iso_utc(at),
            iso_utc(at),
        )
        self.newest, self.set_back_run, self.silence = None, None, NO_LEAP
        self.rewinds += 1
        self.rows.keep_until(epoch_ms(at))
        self.latest = {axis: value for axis, value in self.latest.items() if value.ts <= at}
        self.recent = deque(peak for peak in self.recent if peak.ts <= at)


@dataclass
class FeedStatus:
    error: str | None = None
    subscribed: bool = False
    lag: int | None = None
    last_message: float | None = None  # monotonic time of the newest message received
    newest_ts: datetime | None = None
    arrivals: deque = field(default_factory=lambda: deque(maxlen=4096))  # monotonic times, for readings/s
    rejected: int = 0
