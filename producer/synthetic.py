"""A synthetic robot fleet that looks like the real export, seeded so a run repeats exactly.

Each robot alternates work cycles (14-18 ticks, like the export's ~16-row runs) and pauses (mostly
7-13 ticks, some 20-60, a few 100-300), which makes it idle about 60 % of the time. While it works,
each loaded axis follows one of the robot's three "programs" (a per-tick current profile), varied per
cycle, with sensor noise: axes 2 and 3 are the heavy ones (up to ~50 A), the others stay under 10 A.
Idle rows read exactly 0 A on axes 1-8, as the real controller does; axes 9-14 are always None.

With ``faults=True`` every robot gets one fault of each kind per :data:`FAULT_PERIOD_S` of feed time
(:func:`producer.faults.default_faults`); a robot starts a work cycle when a fault window opens, so
every fault begins on working time. ``labels(until)`` says where.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from math import ceil

import numpy as np

from common.settings import DEFAULT_AXES, TICK_SECONDS
from common.wire.schemas import Reading, utc
from producer.faults import FaultLabel, FaultSpec, default_faults, inject_faults, labels_for
from producer.wear import RobotWear, WearPlan

FAULT_PERIOD_S = 7200.0
# axis: (typical working current A, spread of the program's lognormal profile, ceiling A)
PROFILES: dict[int, tuple[float, float, float]] = {
    1: (1.6, 0.8, 9.8),
    2: (9.0, 0.7, 50.0),
    3: (6.5, 0.7, 42.0),
    4: (1.4, 0.8, 9.8),
    5: (2.2, 0.8, 9.8),
    6: (1.4, 0.8, 9.8),
    7: (2.0, 0.9, 9.8),
    8: (0.25, 0.9, 6.0),
}
PAUSES = ((0.75, 7, 13), (0.20, 20, 60), (0.05, 100, 300))  # (share, min ticks, max ticks)
PROGRAMS = 3


def robot_ids(robots: int) -> list[str]:
    return [f"robot-{i:03d}" for i in range(1, robots + 1)]


class SyntheticFleet:
    """Readings of ``robots`` synthetic robots, interleaved tick by tick (robot-001, robot-002, ...)."""

    def __init__(
        self,
        robots: int,
        *,
        seed: int,
        tick_seconds: float,
        start: datetime,
        axes: Sequence[int],
        faults: bool = False,
        fault_period_s: float = FAULT_PERIOD_S,
        wear: WearPlan | None = None,
        spread: bool = False,
    ) -> None:
        if robots < 1:
            raise ValueError("a fleet needs at least one robot")
        self.robots = [
            SyntheticRobot(
                rid,
                seed=seed,
                tick_seconds=tick_seconds,
                start=start,
                axes=axes,
                faults=faults,
                fault_period_s=fault_period_s,
                wear=wear.for_robot(rid) if wear else None,
                phase_s=index * tick_seconds / robots if spread else 0.0,
            )
            for index, rid in enumerate(robot_ids(robots))
        ]
        self._iter = (reading for tick in zip(*self.robots, strict=False) for reading in tick)

    def __iter__(self) -> SyntheticFleet:
        return self

    def __next__(self) -> Reading:
        return next(self._iter)

    def labels(self, until: datetime) -> list[FaultLabel]:
        """Every robot's fault labels for the fault periods that start before ``until``."""
        return sorted((lab for r in self.robots for lab in r.labels(until)), key=lambda lab: (lab.start, lab.robot_id))


def synthetic_fleet(
    robots: int,
    *,
    seed: int,
    tick_seconds: float = TICK_SECONDS,
    start: datetime,
    axes: Sequence[int] = DEFAULT_AXES,
    faults: bool = False,
    fault_period_s: float = FAULT_PERIOD_S,
    wear: WearPlan | None = None,
    spread: bool = False,
) -> SyntheticFleet:
    """The fleet as an iterator of readings; deterministic for ``seed``. Keep the returned object to
    ask it for ``labels(until)``. ``spread``: robot i of N reads i/N of a tick after robot 1 (real controllers
    are not in step), instead of every robot at the tick's start; the currents are the same either way."""
    return SyntheticFleet(
        robots,
        seed=seed,
        tick_seconds=tick_seconds,
        start=start,
        axes=axes,
        faults=faults,
        fault_period_s=fault_period_s,
        wear=wear,
        spread=spread,
    )


class SyntheticRobot:
    """An endless iterator of one robot's readings, one per tick."""

    def __init__(
        self,
        robot_id: str,
        *,
        seed: int,
        tick_seconds: float,
        start: datetime,
        axes: Sequence[int],
        faults: bool = False,
        fault_period_s: float = FAULT_PERIOD_S,
        wear: RobotWear | None = None,
        phase_s: float = 0.0,
    ) -> None:
        self.robot_id, self.seed, self.tick_s, self.start = robot_id, seed, tick_seconds, utc(start)
        self.phase = timedelta(seconds=phase_s)  # when in each tick this robot reads
        self.axes, self.faults, self.period_s, self.wear = list(axes), faults, fault_period_s, wear
        self.loaded = [a for a in self.axes if a in PROFILES]
        self._rng = np.random.default_rng([seed, zlib.crc32(robot_id.encode())])
        self._random = random.Random(f"{seed}:{robot_id}")  # scalar draws: much cheaper than numpy's
        profile = np.array([PROFILES[a] for a in self.loaded], dtype=float).reshape(-1, 3)
        self._scale, self._spread, self._cap = profile[:, 0], profile[:, 1], profile[:, 2]
        self._programs = self._draw_programs(self._rng)
        self._later_programs: dict[int, list[np.ndarray]] = {}  # after the wear plan's program changes
        self._idle = {a: (0.0 if a in PROFILES else None) for a in self.axes}
        self._specs: dict[int, list[FaultSpec]] = {}
        self._cycle_left: list[list[float]] = []
        self._opening_ticks: dict[int, set[int]] = {}
        self._pause_left = self._pause()
        self._iter = self._readings()

    def __iter__(self) -> SyntheticRobot:
        return self

    def __next__(self) -> Reading:
        return next(self._iter)

    def fault_specs(self, period: int) -> list[FaultSpec]:
        """The faults of period ``period`` (0-based) of this robot; none when faults are off."""
        if not self.faults or not self.loaded:
            return []
        if period not in self._specs:
            begin = self.start + timedelta(seconds=period * self.period_s)
            seed = zlib.crc32(f"{self.seed}:{self.robot_id}:{period}".encode())
            self._specs[period] = default_faults(begin, self.period_s, self.loaded, seed, robot_id=self.robot_id)
        return self._specs[period]

    def labels(self, until: datetime) -> list[FaultLabel]:
        """Labels of every fault period that starts before ``until``."""
        periods = int(max((utc(until) - self.start).total_seconds(), 0) // self.period_s) + 1
        return labels_for(s for p in range(periods) for s in self.fault_specs(p))

    def _readings(self) -> Iterator[Reading]:
        ticks_per_period = self.period_s / self.tick_s
        tick, period = 0, 0
        while True:
            end = int(np.ceil((period + 1) * ticks_per_period))
            specs = self.fault_specs(period)
            chunk = (self._reading(k, self._tick_values(k, specs)) for k in range(tick, end))
            yield from inject_faults(chunk, specs) if specs else chunk
            tick, period = end, period + 1

    def _reading(self, k: int, values: list[float] | None) -> Reading:
        jitter_ms = self._random.randint(0, int(50 * self.tick_s))  # up to 5 % of a tick
        ts = self.start + self.phase + timedelta(seconds=k * self.tick_s, milliseconds=jitter_ms)
        currents = dict(self._idle)
        if values is not None:
            currents.update(zip(self.loaded, values, strict=True))
        return Reading(robot_id=self.robot_id, ts=ts, row=None, currents=currents)

    def _tick_values(self, k: int, specs: list[FaultSpec]) -> list[float] | None:
        """Tick ``k``'s loaded-axis currents, or None while the robot pauses."""
        if not self._cycle_left and (self._pause_left <= 0 or self._window_opens(k, specs)):
            self._cycle_left = self._cycle(self._programs_at(k))[::-1]
        if self._cycle_left:
            values = self._cycle_left.pop()
            if not self._cycle_left:
                self._pause_left = self._pause()
            return values if self.wear is None else self.wear.apply(k * self.tick_s, self.loaded, values)
        self._pause_left -= 1
        return None

    def _draw_programs(self, rng: np.random.Generator) -> list[np.ndarray]:
        size = len(self.loaded)
        return [
            self._scale * rng.lognormal(0.0, self._spread, size=(int(rng.integers(14, 19)), size))
            for _ in range(PROGRAMS)
        ]

    def _programs_at(self, k: int) -> list[np.ndarray]:
        epoch = self.wear.epoch(k * self.tick_s) if self.wear is not None else 0
        if epoch == 0:
            return self._programs
        if epoch not in self._later_programs:
            rng = np.random.default_rng([self.seed, zlib.crc32(self.robot_id.encode()), epoch])
            self._later_programs = {epoch: self._draw_programs(rng)}
        return self._later_programs[epoch]

    def _cycle(self, programs: list[np.ndarray]) -> list[list[float]]:
        rng = self._rng
        template = programs[self._random.randrange(PROGRAMS)]
        values = template * rng.lognormal(0.0, 0.12, size=template.shape) * rng.normal(1.0, 0.05)
        values = np.abs(values + rng.normal(0.0, 0.02 + 0.02 * template))
        values = np.minimum(values, self._cap) * (rng.random(template.shape) > 0.03)
        return np.round(values, 5).tolist()

    def _pause(self) -> int:
        _, low, high = self._random.choices(PAUSES, weights=[share for share, _, _ in PAUSES])[0]
        return self._random.randint(low, high)

    def _window_opens(self, k: int, specs: list[FaultSpec]) -> bool:
        if not specs:
            return False
        key = id(specs)
        if key not in self._opening_ticks:  # the first tick at or after each window's start
            self._opening_ticks = {key: {ceil((s.start - self.start).total_seconds() / self.tick_s) for s in specs}}
        return k in self._opening_ticks[key]
