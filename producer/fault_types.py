"""The fault generator's vocabulary: kinds, specs (what to inject) and labels (where it was injected)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

SPIKE_MIN_AMPS = 15.0
# A severe spike goes past anything the joint draws in normal work: it adds at least this times its working peak.
SPIKE_OVER_PEAK = 1.5
DEFAULT_MAGNITUDE = {"overload": 0.35, "spike": 1.5, "drift": 0.40}
STUCK_FACTOR = 1.3
# 95th percentile of each axis's current over the working (non-idle) rows of the real export RMBR4-2.
WORKING_P95 = {1: 8.60, 2: 26.35, 3: 21.19, 4: 6.35, 5: 7.90, 6: 7.41, 7: 8.08, 8: 1.31}
OTHER_AXIS_P95 = 8.0
# Highest current of each axis over the working rows of the same export.
WORKING_PEAK = {1: 23.61, 2: 51.71, 3: 41.86, 4: 15.67, 5: 20.75, 6: 20.93, 7: 8.11, 8: 5.91}
OTHER_AXIS_PEAK = 24.0


class FaultKind(enum.StrEnum):
    OVERLOAD = "overload"
    SPIKE = "spike"
    DRIFT = "drift"
    STUCK = "stuck"
    DROPOUT = "dropout"


EXPECTED_SEVERITY: dict[FaultKind, str | None] = {
    FaultKind.OVERLOAD: "ALERT",
    FaultKind.SPIKE: "ERROR",
    FaultKind.DRIFT: "ALERT",
    FaultKind.STUCK: "ALERT",
    FaultKind.DROPOUT: None,
}


@dataclass(frozen=True)
class FaultSpec:
    kind: FaultKind
    axis: int
    start: datetime
    duration_s: float
    magnitude: float | None = None
    robot_id: str | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)

    def amount(self) -> float:
        """The magnitude in force: the given one, or the kind's default (amps for ``stuck``)."""
        if self.magnitude is not None:
            return self.magnitude
        if self.kind is FaultKind.STUCK:
            return round(WORKING_P95.get(self.axis, OTHER_AXIS_P95) * STUCK_FACTOR, 3)
        return DEFAULT_MAGNITUDE.get(self.kind, 0.0)


@dataclass(frozen=True)
class FaultLabel:
    robot_id: str
    axis: int
    kind: FaultKind
    start: datetime
    end: datetime
    expected_severity: str | None
