"""Pacing a feed in real time on a monotonic clock, without drift.

Every due time is computed from one origin (``origin + ticks * tick_seconds``, or ``origin + feed time
/ speed``), never by adding sleeps up, so sleep overshoot does not accumulate over a long run. When the
producer falls behind (a slow broker, a stopped laptop), the late row goes out at once and the origin
moves by the lateness: the rows after it keep their normal spacing instead of bursting to make up the
lost time - unless ``catch_up=True`` asks for exactly that.

A tick is one row per robot: a single-robot export advances one tick per row, a fleet of N robots one
tick per N rows (a new tick starts when a robot already seen in the current one comes again).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from common.settings import TICK_SECONDS


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``, or less when ``stop`` is set meanwhile."""


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass


class ManualClock:
    """A clock for tests: ``sleep`` moves time forward at once and records what was asked."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    async def sleep(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        self.sleeps.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)  # still let other tasks run, as a real sleep would


class Ticks:
    """Counts ticks: a new one starts when a robot already seen in the current one comes again."""

    def __init__(self) -> None:
        self.count = 0
        self._robots: set[str] | None = None  # those of the current tick; None before the first row

    def advance(self, robot_id: str) -> bool:
        """Count ``robot_id``'s row; whether it opens a tick (the first row does)."""
        if self._robots is None:
            self._robots = {robot_id}
            return True
        if robot_id in self._robots:
            self.count += 1
            self._robots = {robot_id}
            return True
        self._robots.add(robot_id)
        return False


@dataclass(frozen=True)
class PacingOptions:
    tick_seconds: float = TICK_SECONDS
    speed: float | None = None
    """Replay the feed's own time stamps this many times faster (None: one tick every tick_seconds)."""
    max_speed: bool = False
    catch_up: bool = False
    slice_s: float = 0.0
    """With ``speed``: rows whose feed time falls in the same slice of this many seconds go out together, at the
    slice's start (0: each row at its own time)."""

    def describe(self) -> str:
        if self.max_speed:
            return "max speed (no pacing)"
        if self.speed is not None:
            return f"the feed's own time x{self.speed:g}"
        return f"one tick every {self.tick_seconds:g} s"


class Pacer:
    """``delay(robot_id, ts)`` says how long to wait before sending that row; ``late_ticks`` counts
    rows that were already overdue."""

    def __init__(self, options: PacingOptions, clock: Clock) -> None:
        if options.speed is not None and options.speed <= 0:
            raise ValueError("speed must be positive")
        self.options, self.clock = options, clock
        self.late_ticks = 0
        self.lost_s = 0.0
        self._origin: float | None = None
        self._first_ts: datetime | None = None
        self._ticks = Ticks()

    def delay(self, robot_id: str, ts: datetime) -> float:
        if self.options.max_speed:
            return 0.0
        now = self.clock.now()
        new_tick = self._ticks.advance(robot_id)
        if self._origin is None:
            self._origin, self._first_ts = now, ts
            return 0.0
        if self.options.speed is not None:
            elapsed = (ts - self._first_ts).total_seconds()
            if self.options.slice_s > 0:
                elapsed = math.floor(elapsed / self.options.slice_s + 1e-9) * self.options.slice_s
            due = self._origin + elapsed / self.options.speed
        else:
            due = self._origin + self._ticks.count * self.options.tick_seconds
        wait = due - now
        if wait < 0 and new_tick:
            self.late_ticks += 1
            if not self.options.catch_up:
                self._origin -= wait  # absorb the lateness: later rows keep their spacing
                self.lost_s -= wait
            return 0.0
        return max(wait, 0.0)
