"""Each axis's learned normal, per program, and a cycle's deviation from it.

Cycles of one program look alike, cycles of different programs do not: a cycle joins the program
(cluster) whose duration is within ``duration_tolerance`` and whose shape (the summed-current profile,
resampled to :data:`PROFILE_POINTS` and scaled to unit length) has a cosine of at least ``min_cosine`` with
the program's mean shape; otherwise it starts a new program. Shape, not level, decides: wear raises the
level of one axis and must not make its cycles look like another program.

The normal of (program, axis) is the median RMS current of the program's first ``learn_cycles`` warm,
uncut cycles; from then on it is frozen, so that slow wear shows as a growing deviation instead of being
learned away. A program first seen late (a program change after days of wear) would otherwise take the
worn state as its normal: its normal is divided by ``1 + the axis's deviation`` on the programs already
known, carried forward to the time the new program was learned along the axis's recent growth (a program
change often comes with a stoppage, whose days of wear must not be lost), so the new program continues the
axis's health line instead of restarting it at 0.

The deviation of a cycle's axis is ``rms / normal - 1`` (0.30 = 30 % more current than when learned).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from consumer_alerts.health.cycles import Cycle

PROFILE_POINTS = 16


@dataclass(eq=False)
class _Program:
    duration: float
    shape: np.ndarray
    count: int = 0
    last_seen: float = 0.0  # start of its latest cycle (a state saved before this field reads 0: oldest)
    learning: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # (ts, rms / (1 + level))
    normal: dict[int, float] = field(default_factory=dict)


@dataclass
class AxisBaseline:
    """One robot's programs and normals; ``deviations(cycle)`` gives each learned axis's deviation."""

    learn_cycles: int = 100
    min_cosine: float = 0.8
    duration_tolerance: float = 0.1
    max_programs: int = 64
    recent_cycles: int = 200  # the axis's current deviation (for new programs): median of its last cycles
    trend_hours: int = 48  # hourly medians kept per axis for the growth carried across a stoppage
    programs: list[_Program] = field(default_factory=list)
    recent: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)
    hourly: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)
    _hour: dict[int, tuple[int, list[float]]] = field(default_factory=dict)
    carried_over: set[int] = field(default_factory=set)  # axes whose last new normal was carried over
    _growth: dict[int, tuple[float, float]] = field(default_factory=dict)  # axis: (last hour's time, growth)

    def deviations(self, cycle: Cycle) -> dict[int, float]:
        """Deviation per axis with a learned normal in this cycle's program. ``carried_over`` then holds
        the axes for which this cycle completed a new program's normal from the axis's current level: its
        error (a few %) is a step in the health line, which the trend should take as such (not as wear)."""
        self.carried_over = set()
        program = self._program_of(cycle)
        if cycle.cold or cycle.cut:
            return {}  # neither learned from nor judged: a cold joint and a partial cycle are not its normal
        out = {}
        for axis, ind in cycle.axes.items():
            normal = program.normal.get(axis)
            if normal is None:
                self._learn(program, axis, cycle.start, ind.rms)
                continue
            if normal <= 0:
                continue  # an axis that does not move in this program says nothing about its health
            deviation = ind.rms / normal - 1
            out[axis] = deviation
            self._remember(axis, cycle.start, deviation)
        return out

    def axis_level(self, axis: int, at: float | None = None) -> float:
        """The axis's deviation on the programs already learned (0 before any), carried forward to ``at``
        along its growth of the last ``trend_hours`` hourly medians. A median, like the hourly values: a mean
        would sit below them (dropped samples pull single cycles down) and every program change would lose the
        difference. Carried forward: a program change often comes with a stoppage, and the wear of the days
        stopped must not be lost with the old programs."""
        recent = self.recent.get(axis)
        if not recent:
            return 0.0
        times, values = zip(*recent, strict=True)
        level = float(np.median(values))
        if at is None:
            return level
        return level + self._growth_per_s(axis) * max(at - float(np.median(times)), 0.0)

    def _growth_per_s(self, axis: int) -> float:
        """Theil-Sen slope of the axis's hourly medians (0 while there are fewer than 12); kept until the next
        hourly median, as every learning cycle asks for it."""
        points = self.hourly.get(axis)
        if not points or len(points) < 12:
            return 0.0
        last = points[-1][0]
        memo = self.__dict__.setdefault("_growth", {})  # a state saved before this field has none
        cached = memo.get(axis)
        if cached is not None and cached[0] == last:
            return cached[1]
        t, v = np.array(points).T
        i, j = np.triu_indices(len(t), 1)
        growth = float(np.median((v[j] - v[i]) / (t[j] - t[i])))
        memo[axis] = (last, growth)
        return growth

    def _remember(self, axis: int, ts: float, deviation: float) -> None:
        self.recent.setdefault(axis, deque(maxlen=self.recent_cycles)).append((ts, deviation))
        hour = int(ts // 3600)
        current = self._hour.get(axis)
        if current is None or current[0] != hour:
            if current is not None and len(current[1]) >= 10:
                self.hourly.setdefault(axis, deque(maxlen=self.trend_hours)).append(
                    (current[0] * 3600 + 1800.0, float(np.median(current[1])))
                )
            current = self._hour[axis] = (hour, [])
        current[1].append(deviation)

    def restart(self, axis: int) -> None:
        """Forget the axis's normals (a part was replaced): it learns again from the next cycles."""
        for program in self.programs:
            program.normal.pop(axis, None)
            program.learning.pop(axis, None)
        self.recent.pop(axis, None)
        self.hourly.pop(axis, None)
        self.__dict__.get("_growth", {}).pop(axis, None)
        self._hour.pop(axis, None)

    def _learn(self, program: _Program, axis: int, ts: float, rms: float) -> None:
        # Each learning cycle is divided by the axis's level at its own time: a rare program's cycles can
        # spread over days of wear, and one level for all of them (the latest) made its normal too low.
        seen = program.learning.setdefault(axis, [])
        seen.append((ts, rms / (1 + self.axis_level(axis, at=ts))))
        if len(seen) >= self.learn_cycles:
            program.normal[axis] = float(np.median([healthy for _, healthy in seen]))
            del program.learning[axis]
            if axis in self.recent:
                self.carried_over.add(axis)

    def _program_of(self, cycle: Cycle) -> _Program:
        shape = cycle_shape(cycle.profile)
        best, best_cos = None, self.min_cosine
        for program in self.programs:
            if abs(program.duration - cycle.duration) > self.duration_tolerance * program.duration:
                continue
            cos = float(np.dot(program.shape, shape))
            if cos >= best_cos:
                best, best_cos = program, cos
        if best is None:
            best = _Program(cycle.duration, shape)
            self.programs.append(best)
            if len(self.programs) > self.max_programs:
                # The least recently seen goes (old products, odd cycles long past), not the least used: once
                # the list was full of learned programs, the least used were the new ones still learning,
                # each pushed out before its 100th cycle, and the robot's health line stopped for good.
                self.programs.remove(min(self.programs[:-1], key=lambda p: p.last_seen))
        best.count += 1
        best.last_seen = cycle.start
        if best.count <= self.learn_cycles:  # the mean shape settles while the program is learned, then holds
            mixed = best.shape + (shape - best.shape) / best.count
            best.shape = mixed / (np.linalg.norm(mixed) or 1.0)
        return best


def cycle_shape(profile: np.ndarray) -> np.ndarray:
    at, positions = _grid(len(profile))
    points = np.interp(at, positions, profile)
    points = points - points.mean()  # centred: two positive profiles always look alike, their wiggles do not
    norm = np.linalg.norm(points)
    return points / norm if norm > 0 else points


@lru_cache(maxsize=1024)
def _grid(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Where a profile of ``length`` readings is resampled, and its readings' positions: the same for every
    cycle of that length, so made once (making them cost more than the resampling, on every cycle the
    alert engine's cycle detector closes)."""
    at, positions = np.linspace(0, length - 1, PROFILE_POINTS), np.arange(length)
    at.flags.writeable = positions.flags.writeable = False  # shared by every call: nobody may change them
    return at, positions
