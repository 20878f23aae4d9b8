"""Injected faults: change a stream of readings where a fault is, and say where (the labels).

Used by the synthetic feed and by consumer_alerts' quality benchmark on the real export. Kinds:

- ``overload``: the axis draws ``magnitude`` (default 0.35 = +35 %) more current while the robot works;
- ``spike``: a short severe surge while the robot works: ``+max(magnitude * value, 15 A, 1.5 x peak)``
  (default magnitude 1.5; peak: the axis's working peak, :data:`WORKING_PEAK`). "Severe" is
  relative to the joint: +15 A from a low point of axis 2's cycle reads ~19 A, a current that axis draws
  every minute, and no detector can tell one such 2-second sample from normal work;
- ``drift``: the current grows linearly from +0 to ``+magnitude`` (default 0.40) over the window;
- ``stuck``: the sensor reads a constant ``magnitude`` amps (default the axis's 95th percentile of
  working current x 1.3, :data:`WORKING_P95`) even while the robot is idle;
- ``dropout``: the axis reads ``None`` ("OK null") for the window.

A window is ``start <= ts < start + duration_s``. "The robot works" means the reading is not idle (some
axis reads more than 0 A) - judged on the reading as it came, before any fault changed it. Only the
fault's axis of the fault's robot (every robot when ``robot_id`` is None) changes; everything else passes
through untouched, lazily. Where :func:`default_faults` puts windows so that they meet working time:
see :mod:`producer.fault_plan`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from common.wire.schemas import Reading, iso_utc, utc
from producer.fault_plan import busy_periods, default_faults
from producer.fault_types import (
    DEFAULT_MAGNITUDE,
    EXPECTED_SEVERITY,
    OTHER_AXIS_PEAK,
    SPIKE_MIN_AMPS,
    SPIKE_OVER_PEAK,
    STUCK_FACTOR,
    WORKING_P95,
    WORKING_PEAK,
    FaultKind,
    FaultLabel,
    FaultSpec,
)

__all__ = [
    "DEFAULT_MAGNITUDE",
    "EXPECTED_SEVERITY",
    "SPIKE_MIN_AMPS",
    "SPIKE_OVER_PEAK",
    "STUCK_FACTOR",
    "WORKING_P95",
    "WORKING_PEAK",
    "FaultKind",
    "FaultLabel",
    "FaultSpec",
    "busy_periods",
    "default_faults",
    "faulty_value",
    "inject_faults",
    "labels_for",
    "read_labels",
    "write_labels",
]


def faulty_value(spec: FaultSpec, value: float | None, ts: datetime, working: bool) -> float | None:
    """The axis's reading under ``spec`` at ``ts``; ``working`` = the robot is not idle."""
    kind, amount = spec.kind, spec.amount()
    if kind is FaultKind.DROPOUT:
        return None
    if kind is FaultKind.STUCK:
        return amount
    if value is None:
        return None  # an axis without a channel stays "OK null"
    if kind is FaultKind.DRIFT:
        progress = (ts - spec.start).total_seconds() / spec.duration_s
        return round(value * (1 + amount * progress), 5)
    if not working:
        return value
    if kind is FaultKind.OVERLOAD:
        return round(value * (1 + amount), 5)
    # spike: added to the value, so that a surge over several readings still varies like a real one (a
    # constant would be a repeat, which the detectors leave to the stuck-sensor rule)
    peak = WORKING_PEAK.get(spec.axis, OTHER_AXIS_PEAK)
    return round(value + max(value * amount, SPIKE_MIN_AMPS, SPIKE_OVER_PEAK * peak), 5)


def inject_faults(readings: Iterable[Reading], specs: list[FaultSpec]) -> Iterator[Reading]:
    """The readings, with each fault applied inside its window; lazy, order kept."""
    # (start, end, robot, spec) computed once: this runs for every reading of a feed.
    windows = [(utc(s.start), utc(s.end), s.robot_id, s) for s in sorted(specs, key=lambda s: s.start)]
    for reading in readings:
        ts, robot = reading.ts, reading.robot_id
        active = [s for start, end, rid, s in windows if start <= ts < end and (rid is None or rid == robot)]
        if not active:
            yield reading
            continue
        working = not reading.is_idle
        currents = dict(reading.currents)
        for spec in active:
            if spec.axis in currents:  # the schema lock: a fault never adds an axis
                currents[spec.axis] = faulty_value(spec, currents.get(spec.axis), reading.ts, working)
        yield reading.model_copy(update={"currents": currents})


def labels_for(specs: Iterable[FaultSpec], *, robots: Iterable[str] | None = None) -> list[FaultLabel]:
    """One label per fault and robot. A spec for every robot (``robot_id`` None) gets one label per
    robot of ``robots`` when given, else one with ``robot_id="*"``."""
    robots = list(robots) if robots is not None else None
    labels = []
    for spec in specs:
        for robot in [spec.robot_id] if spec.robot_id is not None else (robots or ["*"]):
            labels.append(
                FaultLabel(robot, spec.axis, spec.kind, utc(spec.start), utc(spec.end), EXPECTED_SEVERITY[spec.kind])
            )
    return sorted(labels, key=lambda lab: (lab.start, lab.robot_id, lab.axis))


LABEL_COLUMNS = ("robot_id", "axis", "kind", "start", "end", "expected_severity")


def write_labels(labels: Iterable[FaultLabel], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LABEL_COLUMNS)
        for lab in labels:
            writer.writerow(
                [
                    lab.robot_id,
                    lab.axis,
                    lab.kind.value,
                    iso_utc(lab.start),
                    iso_utc(lab.end),
                    lab.expected_severity or "",
                ]
            )


def read_labels(path: Path) -> list[FaultLabel]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            FaultLabel(
                robot_id=row["robot_id"],
                axis=int(row["axis"]),
                kind=FaultKind(row["kind"]),
                start=utc(datetime.fromisoformat(row["start"])),
                end=utc(datetime.fromisoformat(row["end"])),
                expected_severity=row["expected_severity"] or None,
            )
            for row in csv.DictReader(f)
        ]
