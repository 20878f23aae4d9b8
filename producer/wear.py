"""Synthetic wear: joints that draw a little more current every day, until they need a visit.

A :class:`WearPlan` turns the synthetic fleet into a long run (days, weeks) with what a long run has:

- **wear** on chosen robots and axes: the working current of the axis is multiplied by ``1 + level(t)``,
  where ``level`` grows from 0 at ``onset`` to the axis's ``limit`` at ``crossing`` (the label's true
  crossing time) along one of :data:`SHAPES`, plus a small per-day wobble (the wear itself is noisy);
- **stoppages** on every robot: hours to days without motion (weekends, breakdowns elsewhere), and a
  warm-up after each (cold grease draws more current for the first half hour);
- **program changes** on every robot: every few days the robot runs a new set of programs (new cycle
  shapes and levels), as a cell does when the product changes;
- an ambient (temperature) day cycle of about ±1 % on every axis.

The limit is in the health indicator's unit: the relative excess of the axis's working RMS current over its
learned normal (0.30 = 30 % more current than when it was healthy). Everything is a pure function of the
seed, so the same plan gives the same feed; ``labels()`` says where the wear is and when it crosses.
"""

from __future__ import annotations

import bisect
import csv
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from common.wire.schemas import iso_utc

DAY_S = 86400.0
DEFAULT_LIMIT = 0.30
# Shapes of level(u), u = (t - onset) / (crossing - onset): level(0) = 0 (or the step), level(1) = limit.
TUNING_SHAPES = ("linear", "exponential")
HELD_OUT_SHAPES = ("step_linear", "knee", "decelerating")  # never looked at while tuning the forecast
SHAPES = TUNING_SHAPES + HELD_OUT_SHAPES
DAILY_WOBBLE = 0.02  # per-day noise of the wear, as a share of the limit
AMBIENT = 0.01  # amplitude of the day cycle of every axis
WARM_UP = (0.08, 1200.0)  # after a stoppage: +8 % decaying with this time constant (s)
STOPPAGE_EVERY_DAYS = 4.0  # mean days between two stoppages of a robot
STOPPAGE_HOURS = (4.0, 60.0)
PROGRAM_DAYS = (3.0, 9.0)  # days between two program changes


@dataclass(frozen=True)
class WearSpec:
    """Wear on one axis of one robot; times are seconds after the feed's start."""

    robot_id: str
    axis: int
    shape: str
    onset_s: float
    crossing_s: float
    limit: float = DEFAULT_LIMIT
    param: float = 0.0  # exponential: curvature; step_linear: share of the limit at once; knee: where it bends

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown wear shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if not 0 <= self.onset_s < self.crossing_s:
            raise ValueError("wear needs 0 <= onset < crossing")

    def level(self, t_s: float) -> float:
        """The wear at feed time ``t_s`` without its daily wobble: 0 before onset, ``limit`` at crossing."""
        if t_s < self.onset_s:
            return 0.0
        u = (t_s - self.onset_s) / (self.crossing_s - self.onset_s)
        return self.limit * _unit_shape(self.shape, self.param, u)


def _unit_shape(shape: str, p: float, u: float) -> float:
    if shape == "linear":
        return u
    if shape == "exponential":  # accelerating: slow at first, steep near the crossing
        return math.expm1(p * u) / math.expm1(p)
    if shape == "step_linear":  # a sudden partial damage, then linear
        return p + (1 - p) * u
    if shape == "knee":  # a slow linear part until u = p, then four times steeper, meeting 1 at u = 1
        low = 0.2 * u / p
        return low if u <= p else 0.2 + 0.8 * (u - p) / (1 - p)
    return math.sqrt(u) if u >= 0 else 0.0  # decelerating: fast at first, then slower


@dataclass
class RobotWear:
    """One robot's long run: its wear specs (maybe none), stoppages and program changes."""

    robot_id: str
    seed: int
    specs: list[WearSpec] = field(default_factory=list)
    stoppages: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s), sorted
    program_changes: list[float] = field(default_factory=list)  # feed seconds, sorted
    ambient_phase: float = 0.0
    _wobble: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)
    _factors: dict[tuple[int, tuple[int, ...]], list[float]] = field(default_factory=dict, repr=False)

    def stopped(self, t_s: float) -> bool:
        i = bisect.bisect_right(self.stoppages, (t_s, math.inf)) - 1
        return i >= 0 and t_s < self.stoppages[i][1]

    def epoch(self, t_s: float) -> int:
        """How many program changes happened by ``t_s`` (0: the robot's first programs)."""
        return bisect.bisect_right(self.program_changes, t_s)

    def wear_level(self, axis: int, t_s: float) -> float:
        """Wear of ``axis`` at ``t_s`` with its daily wobble (0 for an axis without wear)."""
        level = 0.0
        for spec in self.specs:
            if spec.axis == axis and t_s >= spec.onset_s:
                level += spec.level(t_s) + spec.limit * DAILY_WOBBLE * self._day_noise(axis, int(t_s // DAY_S))
        return level

    def factors(self, t_s: float, axes: Sequence[int]) -> list[float]:
        """Multipliers of the working current of ``axes`` at ``t_s``: wear, ambient, warm-up. Held for a
        minute (cached), far finer than anything they model."""
        minute = int(t_s // 60)
        key = (minute, tuple(axes))
        cached = self._factors.get(key)
        if cached is None:
            t = minute * 60.0
            common = 1 + AMBIENT * math.sin(2 * math.pi * t / DAY_S + self.ambient_phase)
            since = self._since_stoppage(t)
            if since is not None:
                common += WARM_UP[0] * math.exp(-since / WARM_UP[1])
            cached = [common * (1 + self.wear_level(a, t)) for a in axes]
            if len(self._factors) > 4096:
                self._factors.clear()
            self._factors[key] = cached
        return cached

    def apply(self, t_s: float, axes: Sequence[int], values: list[float]) -> list[float] | None:
        """A working tick's currents of ``axes`` as the long run changes them; None while stopped."""
        if self.stoppages and self.stopped(t_s):
            return None
        return [round(v * f, 5) for v, f in zip(values, self.factors(t_s, axes), strict=True)]

    def _since_stoppage(self, t_s: float) -> float | None:
        i = bisect.bisect_right(self.stoppages, (t_s, math.inf)) - 1
        if i < 0 or t_s < self.stoppages[i][1]:
            return None
        return t_s - self.stoppages[i][1]

    def _day_noise(self, axis: int, day: int) -> float:
        key = (axis, day)
        if key not in self._wobble:
            rng = np.random.default_rng([self.seed, zlib.crc32(self.robot_id.encode()), axis, day])
            self._wobble[key] = float(rng.standard_normal())
        return self._wobble[key]


@dataclass
class WearPlan:
    robots: dict[str, RobotWear]

    def for_robot(self, robot_id: str) -> RobotWear | None:
        return self.robots.get(robot_id)

    def labels(self) -> list[WearSpec]:
        return sorted((s for r in self.robots.values() for s in r.specs), key=lambda s: (s.crossing_s, s.robot_id))


def wear_plan(
    robot_ids: Sequence[str],
    *,
    seed: int,
    worn: int,
    axes: Sequence[int],
    days: tuple[float, float] = (12.0, 30.0),
    shapes: Sequence[str] = SHAPES,
    limit: float = DEFAULT_LIMIT,
    horizon_days: float = 60.0,
    axes_per_robot: int = 1,
) -> WearPlan:
    """Stoppages and program changes for every robot, and wear on ``axes_per_robot`` distinct axes of ``worn``
    robots (chosen by the seed): each with its own onset after 1-3 days, crossing after ``days`` (uniform) and
    shape, taken in turn from ``shapes``. ``axes``: the axes wear may hit (the working ones). More than one
    worn axis a robot gives a benchmark more crossings for the same simulated robot-days."""
    if worn > len(robot_ids):
        raise ValueError(f"{worn} worn robots asked of a fleet of {len(robot_ids)}")
    if not 1 <= axes_per_robot <= len(axes):
        raise ValueError(f"{axes_per_robot} worn axes a robot asked of {len(axes)} axes")
    rng = np.random.default_rng([seed, 0x57EA])
    chosen = set(rng.choice(len(robot_ids), size=worn, replace=False).tolist()) if worn else set()
    robots, shape_turn = {}, int(rng.integers(len(shapes))) if shapes else 0
    for i, rid in enumerate(robot_ids):
        r = np.random.default_rng([seed, zlib.crc32(rid.encode()), 0x57EA])
        specs = []
        # the first axis is drawn as it always was, so a plan of one axis a robot is the plan it was
        taken = list(axes)
        for _ in range(axes_per_robot if i in chosen else 0):
            shape = shapes[shape_turn % len(shapes)]
            shape_turn += 1
            onset = r.uniform(1.0, 3.0) * DAY_S
            crossing = max(r.uniform(*days) * DAY_S, onset + 5 * DAY_S)
            axis = int(r.choice(taken))
            taken.remove(axis)
            specs.append(WearSpec(rid, axis, shape, onset, crossing, limit, _shape_param(shape, r)))
        robots[rid] = RobotWear(
            rid,
            seed,
            specs,
            _stoppages(r, horizon_days),
            _program_changes(r, horizon_days),
            ambient_phase=float(r.uniform(0, 2 * math.pi)),
        )
    return WearPlan(robots)


def _shape_param(shape: str, r: np.random.Generator) -> float:
    if shape == "exponential":
        return float(r.uniform(1.5, 3.5))
    if shape == "step_linear":
        return float(r.uniform(0.2, 0.4))
    if shape == "knee":
        return float(r.uniform(0.4, 0.7))
    return 0.0


def _stoppages(r: np.random.Generator, horizon_days: float) -> list[tuple[float, float]]:
    out, t = [], 0.0
    while True:
        t += r.exponential(STOPPAGE_EVERY_DAYS) * DAY_S
        if t >= horizon_days * DAY_S:
            return out
        length = math.exp(r.uniform(math.log(STOPPAGE_HOURS[0]), math.log(STOPPAGE_HOURS[1]))) * 3600
        out.append((t, t + length))
        t += length


def _program_changes(r: np.random.Generator, horizon_days: float) -> list[float]:
    out, t = [], 0.0
    while True:
        t += r.uniform(*PROGRAM_DAYS) * DAY_S
        if t >= horizon_days * DAY_S:
            return out
        out.append(t)


LABEL_COLUMNS = ["robot_id", "axis", "shape", "onset", "crossing", "limit"]


def write_wear_labels(specs: Iterable[WearSpec], path: Path, *, start: datetime) -> None:
    """One row per worn axis: times ISO-8601 UTC (``start`` + feed seconds), the limit in the indicator's unit."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LABEL_COLUMNS)
        for s in specs:
            onset, crossing = (iso_utc(start + timedelta(seconds=x)) for x in (s.onset_s, s.crossing_s))
            writer.writerow([s.robot_id, s.axis, s.shape, onset, crossing, s.limit])
