"""What the maintenance log's tests share: a robot whose axis 2 jumps to a fault-sized level (a worn part) and
the maintenance entry a replaced part makes."""

import random
from datetime import UTC, datetime, timedelta

from common.wire.schemas import MaintenanceAction, MaintenanceEntry, Reading
from consumer_alerts.engine import EngineConfig

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NORMAL_AMPS, FAULT_AMPS = 5.0, 12.0  # axis 2: 2.4 times its normal load, beyond the load detector's gross ratio
NORMAL, FAULT, AFTER = range(0, 2000), range(2000, 2300), range(2300, 6000)  # tick numbers, 2 s apart
# The load detector only, and one that never takes a lasting change for a new program by itself: what it
# learns of a new level comes from the restart alone.
CONFIG = EngineConfig(detectors=("load",), load_absorb=1_000_000)


def readings(
    robot_id: str, ticks: range, axis2_amps: float, *, axis1_amps: float = 5.0, seed: int = 5
) -> list[Reading]:
    rng = random.Random(seed + ticks.start)
    return [
        Reading(
            robot_id=robot_id,
            ts=tick_time(i),
            currents={
                1: round(rng.gauss(axis1_amps, 0.3), 3),
                2: round(rng.gauss(axis2_amps, 0.3), 3),
                3: round(rng.gauss(7.0, 0.3), 3),
            },
        )
        for i in ticks
    ]


def tick_time(i: int) -> datetime:
    return T0 + timedelta(seconds=2 * i)


def part_replaced(robot_id: str, axis: int, at: datetime) -> MaintenanceEntry:
    return MaintenanceEntry.new(robot_id, axis, MaintenanceAction.PART_REPLACED, "otto", at, "new gearbox")
