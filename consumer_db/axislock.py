"""The schema lock as the sink sees it: each robot's axes from ``axes_dim``, cached, seeded on first sight."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy import Connection, Engine, select

from common.store.tables import axes_dim, health_forecast, seed_axes

logger = logging.getLogger(__name__)


class Rejected(ValueError):
    """A record the schema lock (or plain sense) refuses; the message is the reason stored with it."""


@dataclass(frozen=True)
class RobotAxes:
    """``known``: every axis of the robot in axes_dim (the lock); ``active``: the ones a reading always
    gets a row for (NULL when it does not report them). A retired (inactive) axis is stored only when a
    reading carries a value for it."""

    known: frozenset[int]
    active: tuple[int, ...]

    @cached_property
    def retired(self) -> frozenset[int]:
        return self.known.difference(self.active)

    def rows(self, robot_id: str, ts: datetime, currents: dict[int, float | None]) -> list[tuple]:
        """The ``(robot_id, axis_id, ts, amps)`` rows of one reading, or :class:`Rejected`."""
        known, isfinite = self.known, math.isfinite
        for axis, value in currents.items():
            if value is not None and (axis not in known or not isfinite(value)):
                raise Rejected(self._reason(robot_id, currents))
        get = currents.get
        rows = [(robot_id, a, ts, get(a)) for a in self.active]
        if self.retired:
            rows += [
                (robot_id, a, ts, currents[a])
                for a in sorted(self.retired & currents.keys())
                if currents[a] is not None
            ]
        return rows

    @cached_property
    def _active_mask(self) -> int:
        return sum(1 << a for a in self.active)

    @cached_property
    def _positions(self) -> range:
        return range(1, max(self.active, default=0) + 1)

    def wide(self, robot_id: str, ts: datetime, currents: dict[int, float | None]) -> tuple:
        """The same reading as one ``(robot_id, ts, axes, amps)`` row, the stored form on PostgreSQL
        (``consumer_db.store.wide_rows`` of :meth:`rows`, without making the long rows first)."""
        known, isfinite = self.known, math.isfinite
        for axis, value in currents.items():
            if value is not None and (axis not in known or not isfinite(value)):
                raise Rejected(self._reason(robot_id, currents))
        get = currents.get
        axes, amps = self._active_mask, [get(a) for a in self._positions]
        if self.retired:
            for axis in sorted(self.retired & currents.keys()):
                if currents[axis] is not None:
                    axes |= 1 << axis
                    amps.extend([None] * (axis - len(amps)))
                    amps[axis - 1] = currents[axis]
        return robot_id, ts, axes, amps

    def wide_columns(self, currents: dict[int, list | None]) -> tuple[int, list[list | None]] | None:
        """:meth:`wide` of many readings at once, given as a column of currents per axis (``None``: no value
        in any reading): the ``axes`` they all share and the ``amps`` columns (``amps[N - 1]`` axis N). None
        when the readings need :meth:`wide` one by one: an axis outside the lock or a retired one with a
        value (then the readings' ``axes`` differ, or one is rejected)."""
        for axis, column in currents.items():
            if axis not in self.active and column is not None and any(v is not None for v in column):
                return None
        get = currents.get
        return self._active_mask, [get(a) for a in self._positions]

    def _reason(self, robot_id: str, currents: dict[int, float | None]) -> str:
        unknown = sorted(a for a, v in currents.items() if v is not None and a not in self.known)
        if unknown:
            return (
                f"axis {', '.join(map(str, unknown))} not in axes_dim for robot {robot_id} "
                f"(schema lock: {', '.join(map(str, sorted(self.known)))})"
            )
        bad = sorted(a for a, v in currents.items() if v is not None and not math.isfinite(v))
        return f"axis {', '.join(map(str, bad))}: current is not a finite number"


def load_axes(conn: Connection, robot_ids: Iterable[str]) -> dict[str, RobotAxes]:
    query = select(axes_dim.c.robot_id, axes_dim.c.axis_id, axes_dim.c.active).where(
        axes_dim.c.robot_id.in_(sorted(set(robot_ids)))
    )
    known: dict[str, set[int]] = {}
    active: dict[str, list[int]] = {}
    for robot, axis, is_active in conn.execute(query):
        known.setdefault(robot, set()).add(axis)
        if is_active:
            active.setdefault(robot, []).append(axis)
    return {r: RobotAxes(frozenset(axes), tuple(sorted(active.get(r, [])))) for r, axes in known.items()}


def known_robots(engine: Engine) -> set[str]:
    """The robots the sink has taken on so far: every robot axes_dim (readings) or health_forecast holds. A
    robot known only from health events counts too, or each restart would take on MAX_ROBOTS more of them
    (health_forecast is one row a robot and axis; the cycles' tables, far longer, are not read)."""
    with engine.connect() as conn:
        query = select(axes_dim.c.robot_id).union(select(health_forecast.c.robot_id))
        return set(conn.execute(query).scalars())


class AxisLock:
    """Shared by the thread preparing the next batch and the one storing the previous (whose one-by-one
    fallback prepares again), hence the lock."""

    def __init__(
        self,
        engine: Engine,
        default_axes: list[int],
        *,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.default_axes = list(default_axes)
        self.refresh_s = refresh_s
        self.clock = clock
        self._cache: dict[str, RobotAxes] = {}
        self._loaded_at = clock()
        self._guard = threading.Lock()

    def for_robots(self, robot_ids: Iterable[str]) -> dict[str, RobotAxes]:
        """The lock of each robot. A robot not in axes_dim gets ``default_axes`` first, in a transaction of
        its own: committed before any of its readings, and harmless to repeat."""
        with self._guard:
            return self._for_robots(robot_ids)

    def _for_robots(self, robot_ids: Iterable[str]) -> dict[str, RobotAxes]:
        if self.clock() - self._loaded_at > self.refresh_s:
            self._cache.clear()  # pick up edits of axes_dim made while the sink runs
            self._loaded_at = self.clock()
        missing = set(robot_ids) - self._cache.keys()
        if missing:
            with self.engine.begin() as conn:
                added = seed_axes(conn, robot_ids=missing, axes=self.default_axes)
                self._cache.update(load_axes(conn, missing))
            if added:
                logger.info(
                    "axes_dim: %d rows seeded for robots seen first (looked up: %s)",
                    added,
                    ", ".join(map(repr, sorted(missing))),
                )
        return {r: self._cache[r] for r in robot_ids}
