"""In-memory versions of consumer_db's phrase queries, so the live page and the database agree.

* latest per axis: for each axis, the newest reading that carries it, and its value (None = "OK null");
* 1-minute peak: the axis with the highest current among the readings of the 60 s up to and including the
  newest reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from common.wire.schemas import Reading

PEAK_WINDOW = timedelta(seconds=60)


class AxisValue(NamedTuple):
    axis: int
    ts: datetime
    amps: float | None


def latest_per_axis(readings: Iterable[Reading]) -> dict[int, AxisValue]:
    latest: dict[int, AxisValue] = {}
    for reading in readings:
        update_latest(latest, reading)
    return latest


def update_latest(latest: dict[int, AxisValue], reading: Reading) -> None:
    """Fold one reading into ``latest``, in any arrival order (the newer timestamp wins)."""
    for axis, amps in reading.currents.items():
        known = latest.get(axis)
        if known is None or reading.ts >= known.ts:
            latest[axis] = AxisValue(axis, reading.ts, amps)


def one_minute_peak(readings: Iterable[Reading], *, at: datetime | None = None) -> AxisValue | None:
    """The highest current of any axis in the minute up to ``at`` (default: the newest reading).
    Ties go to the earlier reading, then to the lower axis number."""
    readings = list(readings)
    if not readings:
        return None
    end = at or max(r.ts for r in readings)
    best: AxisValue | None = None
    for reading in sorted(readings, key=lambda r: r.ts):
        if not timedelta(0) <= end - reading.ts <= PEAK_WINDOW:  # (end - PEAK_WINDOW overflows in year 1)
            continue
        for axis, amps in sorted(reading.currents.items()):
            if amps is not None and not math.isnan(amps) and (best is None or amps > best.amps):
                best = AxisValue(axis, reading.ts, amps)
    return best


def peak_of(peaks: Iterable[AxisValue]) -> AxisValue | None:
    """The highest of readings' own peaks (``one_minute_peak`` of each): what ``one_minute_peak`` of the
    readings themselves says, ties to the earlier reading, then to the lower axis."""
    return min(peaks, key=lambda p: (-p.amps, p.ts, p.axis), default=None)
