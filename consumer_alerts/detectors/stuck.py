"""The stuck-sensor detector: the same non-zero value, to the last digit, reading after reading (idle
zeros in between neither end nor extend the run).

A live current sensor never repeats itself for long (the longest run of identical non-zero readings in
the real export is 13 rows, on the nearly unloaded axis 8). A sensor stuck high does, idle or not, and
the statistical detectors cannot see it because the engine keeps repeated values out of their
baselines (a repeat carries no news about the current). So this rule watches the repeats themselves.
A stuck sensor is a maintenance ALERT, never an ERROR: the reading is not the joint's current.
"""

from __future__ import annotations

from typing import Any

from common.wire.schemas import Severity
from consumer_alerts.detectors import Finding, squash


class StuckDetector:
    name = "stuck"
    kinds = ("stuck",)
    takes_repeats = True  # the repeats are its evidence

    def __init__(self, *, readings: int = 30) -> None:
        if readings < 2:
            raise ValueError(f"a stuck run needs at least 2 readings, got {readings}")
        self.readings = readings
        self.last: float | None = None
        self.run = 0
        self.observed, self.normalized = False, 0.0

    def update(self, ts: float, value: float | None, *, idle: bool = False) -> Finding | None:
        # A sensor stuck high makes the row look busy, or is the only non-zero axis of an idle row; either
        # way the repeats are the evidence. A zero ends a run only while the robot moves: the idle zeros of
        # a pause say nothing about a sensor that reads the same value again once the robot moves.
        self.observed = value is not None
        if value is None or (idle and value == 0):
            return None  # a dropout or an idle zero neither ends nor extends a run (an idle zero is quiet)
        if value == 0:
            self.last, self.run, self.normalized = None, 0, 0.0
            return None
        self.run = self.run + 1 if value == self.last else 1
        self.last = value
        self.normalized = squash(self.run - 1, self.readings - 1)
        if self.run >= self.readings:
            return Finding(Severity.ALERT, value, float(self.run), float(self.readings))
        return None

    def state(self) -> dict[str, Any]:
        return {"last": self.last, "run": self.run}

    def load(self, state: dict[str, Any]) -> None:
        self.last, self.run = state["last"], state["run"]
