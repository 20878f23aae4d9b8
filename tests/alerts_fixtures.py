"""Small hand-made feeds for consumer_alerts' tests: a robot that works in cycles and idles between them."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.wire.schemas import Reading, iso_utc

T0 = datetime(2022, 10, 17, 12, 0, 0, tzinfo=UTC)
LEVELS = {1: 2.0, 2: 10.0}  # typical working current per axis, amps


def cycle_readings(
    n: int,
    *,
    seed: int = 0,
    robot_id: str = "r1",
    start: datetime = T0,
    tick: float = 2.0,
    work: int = 16,
    pause: int = 10,
    fault: Callable[[int, int, float], float] | None = None,
) -> list[Reading]:
    """``n`` readings: ``work`` busy rows (noisy current on axes 1-2, axis 9 OK null) then ``pause`` idle
    rows, over and over. ``fault(index, axis, amps)`` may change a busy row's value."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        busy = i % (work + pause) < work
        currents: dict[int, float | None] = {9: None}
        for axis, level in LEVELS.items():
            amps = round(level * rng.lognormvariate(0, 0.5), 4) if busy else 0.0
            currents[axis] = round(fault(i, axis, amps), 4) if busy and fault else amps
        out.append(Reading(robot_id=robot_id, ts=start + timedelta(seconds=i * tick), row=i + 2, currents=currents))
    return out


def write_export(readings: Iterable[Reading], path: Path, axes: Iterable[int] = range(1, 15)) -> Path:
    """The controller export format: "Trait","Axis #1",...,"Time", empty cells for OK null."""
    axes = list(axes)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["Trait", *(f"Axis #{a}" for a in axes), "Time"])
        for r in readings:
            cells = ["" if r.currents.get(a) is None else r.currents[a] for a in axes]
            writer.writerow(["current", *cells, iso_utc(r.ts)])
    return path
