"""The synthetic robot's work cycles as arrays, without building a ``Reading`` per tick.

The same robot, programs, pauses and wear plan as the live feed (``SyntheticRobot`` drives it tick by tick),
but each work cycle comes out as one array: 30 days of a robot take ~2 s instead of ~15 s, which is what
the forecast benchmark needs to run many seeds. No faults, no time-stamp jitter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from common.settings import DEFAULT_AXES
from producer.synthetic import SyntheticRobot
from producer.wear import DAY_S, RobotWear


@dataclass(frozen=True)
class CycleArrays:
    """One work cycle: the moving ticks' times (feed seconds), their currents (ticks x ``axes``) and the
    time of the first idle tick after it."""

    times: np.ndarray
    currents: np.ndarray
    end: float
    axes: tuple[int, ...]


def offline_cycles(
    robot_id: str,
    *,
    seed: int,
    days: float,
    wear: RobotWear | None,
    tick_seconds: float = 2.0,
    axes: Sequence[int] = DEFAULT_AXES,
) -> Iterator[CycleArrays]:
    robot = SyntheticRobot(
        robot_id, seed=seed, tick_seconds=tick_seconds, start=datetime(2026, 1, 1, tzinfo=UTC), axes=axes, wear=wear
    )
    loaded = tuple(robot.loaded)
    tick_values = robot._tick_values  # the robot's own per-tick draws, without the Reading
    jitter, jitter_ms = robot._random.randint, int(50 * tick_seconds)  # the live feed draws it per tick: keep step
    moving: list[list[float]] = []
    first = 0
    for k in range(int(days * DAY_S / tick_seconds)):
        values = tick_values(k, [])
        jitter(0, jitter_ms)
        if values is not None and any(values):
            if not moving:
                first = k
            moving.append(values)
        elif moving:
            times = (np.arange(len(moving)) + first) * tick_seconds
            yield CycleArrays(times, np.asarray(moving, dtype=float), k * tick_seconds, loaded)
            moving = []
