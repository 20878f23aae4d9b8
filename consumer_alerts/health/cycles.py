"""Work cycles of one robot's feed and their health indicators, computed in the stream.

A work cycle is motion between idle spells: it starts at the first reading with some axis above 0 A and
ends at the first reading of an idle spell (every axis that reports reads 0 A) at least
``min_idle_samples`` long; shorter idle runs inside a cycle belong to it (as 0 A). A gap in the time stamps
longer than ``max_gap_s`` (a stoppage of the feed, lost data) ends the cycle at its last reading plus one
sample spacing, and so do a cycle longer than ``max_cycle_s`` (a robot that never rests) and the robot's
clock going back, from a leap ahead or set back to stay, where the detectors followed it
(``push(clock_went_back=True)``, ``common.wire.clock``); all are marked ``cut``.
Any other reading no later than the robot's newest is skipped. Cycles that start within ``warm_up_s`` after
``long_stop_s`` without motion are marked ``cold``: a cold joint draws more current, which is not wear.

Indicators per axis hold each reading until the next one (zero-order hold: the controller samples a current
and says nothing about it between samples): ``energy_as`` = ∫A dt, ``energy_a2s`` = ∫A² dt over the cycle,
``peak``, ``rms`` = sqrt(∫A² dt / the time the axis reported a number) and ``covered_s``. An "OK null"
reading (``None``, axes 9-14) counts neither as 0 A nor as time: an axis that is ``None`` all cycle long
has no indicators, and a row where every axis is ``None`` is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_TICK_S = 2.0


@dataclass(frozen=True)
class AxisIndicators:
    energy_as: float
    energy_a2s: float
    peak: float
    rms: float
    covered_s: float


@dataclass(frozen=True)
class Cycle:
    robot_id: str
    start: float  # epoch seconds of the first moving reading
    end: float  # epoch seconds of the first idle reading after it (or as told above when cut)
    axes: dict[int, AxisIndicators]
    profile: np.ndarray  # summed current of all axes per reading: the cycle's shape, for telling programs apart
    cold: bool = False
    cut: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start


def cycle_indicators(
    times: Sequence[float], currents: Mapping[int, Sequence[float | None]], end: float
) -> dict[int, AxisIndicators]:
    """Indicators of one cycle: ``times`` of its readings, each axis's values at those times (``None``:
    no number), ``end`` the moment the last reading stops holding."""
    axes = list(currents)
    columns = [c if isinstance(c, np.ndarray) else [np.nan if x is None else x for x in c] for c in currents.values()]
    return matrix_indicators(np.asarray(times, float), np.array(columns, float).T.reshape(len(times), -1), axes, end)


def matrix_indicators(
    times: np.ndarray, values: np.ndarray, axes: Sequence[int], end: float
) -> dict[int, AxisIndicators]:
    """The same for ``values`` = readings x ``axes`` (NaN: no number), all axes at once."""
    hold = np.diff(np.append(times, end))[:, None]
    known = ~np.isnan(values)
    a = np.where(known, values, 0.0)
    covered = (hold * known).sum(0)
    energy = (a * hold).sum(0)
    energy2 = (a * a * hold).sum(0)
    peak = np.where(known, values, -np.inf).max(0)
    rms = np.sqrt(np.divide(energy2, covered, out=np.zeros_like(energy2), where=covered > 0))
    return {
        axis: AxisIndicators(float(energy[i]), float(energy2[i]), float(peak[i]), float(rms[i]), float(covered[i]))
        for i, axis in enumerate(axes)
        if known[:, i].any()
    }


@dataclass
class CycleSplitter:
    """One robot's readings in, its finished work cycles out (``push`` returns 0, 1 or 2 of them)."""

    robot_id: str
    min_idle_samples: int = 2
    max_gap_s: float = 30.0
    max_cycle_s: float = 900.0
    long_stop_s: float = 3600.0
    warm_up_s: float = 1800.0
    _times: list[float] = field(default_factory=list)
    _rows: list[Mapping[int, float | None]] = field(default_factory=list)
    _idle_times: list[float] = field(default_factory=list)
    _last_ts: float | None = None
    _last_motion: float | None = None
    _warm_from: float | None = None

    def push(self, ts: float, currents: Mapping[int, float | None], *, clock_went_back: bool = False) -> list[Cycle]:
        """The cycles the reading ends. ``clock_went_back``: the detectors followed the robot's clock back at it
        (from a leap ahead, or set back to stay: ``common.wire.clock``, told from a redelivery by the reading's
        Kafka offset and from late readings by a run of them, neither of which the splitter is given); any other
        reading no later than the newest is skipped."""
        values = currents.values()
        if None in values:
            values = [v for v in values if v is not None]
        if not values:
            return []  # nothing to say (every axis "OK null")
        last = self._last_ts
        back = last is not None and ts <= last
        if back:
            if not clock_went_back:
                return []  # a reading out of order, or a redelivery after a restart
            self._back_from_ahead(ts)
        done = []
        if last is not None and (back or ts - last > self.max_gap_s) and self._times:
            end = self._idle_times[0] if self._idle_times else last + self._spacing()
            done.append(self._close(end, cut=not self._idle_times))
        self._last_ts = ts
        if not any(values):
            if self._times:
                self._idle_times.append(ts)
                if len(self._idle_times) >= self.min_idle_samples:
                    done.append(self._close(self._idle_times[0], cut=False))
            return done
        if self._times and ts - self._times[0] > self.max_cycle_s:
            done.append(self._close(ts, cut=True))
        if not self._times:
            self._starting(ts)
        for idle_ts in self._idle_times:  # a short idle run inside the cycle: part of it, at 0 A
            self._times.append(idle_ts)
            self._rows.append({a: (None if v is None else 0.0) for a, v in currents.items()})
        self._idle_times.clear()
        self._times.append(ts)
        self._rows.append(currents)
        self._last_motion = ts
        return done

    def whole_cycle(self, times: np.ndarray, currents: np.ndarray, axes: Sequence[int], end: float) -> Cycle:
        """A cycle already split elsewhere (an offline generator: ``currents`` is readings x ``axes``),
        with the same cold rule as the stream."""
        self._starting(float(times[0]))
        self._last_motion = self._last_ts = float(times[-1])
        cold = self._warm_from is not None and times[0] - self._warm_from < self.warm_up_s
        indicators = matrix_indicators(times, currents, axes, end)
        return Cycle(self.robot_id, float(times[0]), end, indicators, np.nansum(currents, 1), cold)

    def flush(self) -> list[Cycle]:
        """The cycle in progress, cut at its last reading (end of a replay, a robot leaving)."""
        if not self._times:
            return []
        return [self._close(self._times[-1] + self._spacing(), cut=True)]

    def _back_from_ahead(self, ts: float) -> None:
        """The robot's clock went back: the cycle in progress ends as at a gap (by the caller), and the times from
        ahead no longer count for the next cycle's cold rule."""
        if self._last_motion is not None and self._last_motion > ts:
            self._last_motion = self._warm_from = None

    def _starting(self, ts: float) -> None:
        if self._last_motion is None or ts - self._last_motion >= self.long_stop_s:
            self._warm_from = ts if self._last_motion is not None else None

    def _spacing(self) -> float:
        return float(np.median(np.diff(self._times))) if len(self._times) > 1 else DEFAULT_TICK_S

    def _close(self, end: float, *, cut: bool) -> Cycle:
        times, rows = self._times, self._rows
        first = rows[0].keys()
        if all(row.keys() == first for row in rows):  # the usual case: numpy reads None as NaN itself
            axes = list(first)
            matrix = np.array([list(row.values()) for row in rows], dtype=float)
        else:
            axes = list(dict.fromkeys(a for row in rows for a in row))
            nan = math.nan
            matrix = np.array([[nan if (v := row.get(a)) is None else v for a in axes] for row in rows], dtype=float)
        cold = self._warm_from is not None and times[0] - self._warm_from < self.warm_up_s
        indicators = matrix_indicators(np.asarray(times), matrix, axes, end)
        cycle = Cycle(self.robot_id, times[0], end, indicators, np.nansum(matrix, 1), cold, cut)
        self._times, self._rows, self._idle_times = [], [], []
        return cycle
