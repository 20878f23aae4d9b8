"""A broader fault generator, not tuned to the detectors: sizes from subtle to gross, in both directions.

:mod:`producer.faults` makes the five faults the detectors were designed around, at fixed sizes. This one
draws its sizes from wide ranges relative to each axis's own normal level (the median of its working
current in data it is given), and adds what those do not cover:

- ``level``: the axis draws ``1 + size`` times its current while the robot works; ``size < 0`` is a drop
  (lost load, a broken belt or gear: the joint still moves, it draws less). A joint that reads 0 A while
  others work (it does not move) still reads 0: a change of load scales a current, it does not make one;
- ``ramp``: the same, growing linearly from 0 to ``size`` over the window (wear, or a slow leak of load);
- ``spike``: a short surge (seconds) of ``size`` times the normal level added while the robot works;
- ``clamp``: the axis reads a constant ``size`` times its normal level while the robot works (e.g. 13x, a
  gross overload the sensor reports as a flat value); idle rows still read 0 A unless ``through_idle``
  (then it is a sensor stuck high, an ALERT whatever its size: see the convention below);
- ``stuck``: the sensor freezes at the last non-zero value it read before the window; idle rows read 0 A
  in between unless ``through_idle`` (then the frozen value shows while idle too);
- ``multi``: ``level`` on several axes at once, same size;
- ``program``: NOT a fault - from ``start`` on, for good, each axis draws its own new share of load (a new
  program); detectors should not raise a storm of fault events for it.

Placement says when the fault starts: ``working`` (inside a working period), ``warmup`` (at the first
working reading a freshly started detector sees), ``after_stoppage`` (at the first working reading after an
idle gap of at least ``stoppage_s``). Faulty values are snapped to the axis's digital step, as the sensor
would report them. Each fault carries its true window, axes, size and expected severity: its label.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.wire.schemas import Reading, utc


class BroadKind(enum.StrEnum):
    LEVEL = "level"
    RAMP = "ramp"
    SPIKE = "spike"
    CLAMP = "clamp"
    STUCK = "stuck"
    MULTI = "multi"
    PROGRAM = "program"


# The severity a fault deserves, by convention: an ERROR for a gross change (the load at least doubled, a
# surge of twice the normal level or more, a flat reading at twice the normal level or more, a drop of
# 80 % or more: the joint has lost its load), an ALERT for the rest, nothing for a program change. A flat
# value read through the robot's rests is a sensor fault whatever its level (no load draws current while
# every other axis rests, so what the joint draws is unknown): an ALERT, as the stuck sensor of
# producer.faults, whose constant is as high; the same value that reads 0 A at rest is a load, by its size.
GROSS_RISE, GROSS_DROP = 1.0, -0.8


@dataclass(frozen=True)
class AxisProfile:
    """What the generator knows of an axis: its normal working level and its digital step, amps."""

    normal: float
    step: float


@dataclass(frozen=True)
class BroadFault:
    kind: BroadKind
    axes: tuple[int, ...]
    start: datetime
    duration_s: float
    size: float
    placement: str = "working"
    through_idle: bool = False
    robot_id: str | None = None
    shares: dict[int, float] = field(default_factory=dict, compare=False)  # program: each axis's new factor

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)

    @property
    def direction(self) -> str:
        if self.kind is BroadKind.CLAMP:
            return "up" if self.size >= 1 else "down"
        if self.kind in (BroadKind.STUCK, BroadKind.PROGRAM):
            return "flat" if self.kind is BroadKind.STUCK else "change"
        return "up" if self.size > 0 else "down"

    @property
    def deviation(self) -> float:
        """How far from normal, as a share of the axis's normal level (the "fault size" of the report)."""
        if self.kind is BroadKind.CLAMP:
            return abs(self.size - 1)
        if self.kind in (BroadKind.STUCK, BroadKind.PROGRAM):
            return 0.0
        return abs(self.size)

    @property
    def expected_severity(self) -> str | None:
        k, s = self.kind, self.size
        if k is BroadKind.PROGRAM:
            return None
        if k is BroadKind.STUCK or (k is BroadKind.CLAMP and self.through_idle):
            return "ALERT"
        if k is BroadKind.SPIKE:
            return "ERROR" if s >= 2 else "ALERT"
        if k is BroadKind.CLAMP:
            return "ERROR" if s >= 1 + GROSS_RISE else "ALERT"
        return "ERROR" if s >= GROSS_RISE or s <= GROSS_DROP else "ALERT"

    def label(self) -> dict:
        return {
            "kind": self.kind.value,
            "axes": ",".join(map(str, self.axes)),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "size": round(self.size, 4),
            "deviation": round(self.deviation, 4),
            "direction": self.direction,
            "placement": self.placement,
            "through_idle": self.through_idle,
            "expected_severity": self.expected_severity or "none",
        }


def profiles(readings: Iterable[Reading]) -> dict[int, AxisProfile]:
    """Per axis with working current: the median of its non-zero readings, and its smallest one (the step)."""
    values: dict[int, list[float]] = {}
    for r in readings:
        for axis, v in r.currents.items():
            if v:
                values.setdefault(axis, []).append(abs(v))
    out = {}
    for axis, vs in values.items():
        vs.sort()
        out[axis] = AxisProfile(normal=vs[len(vs) // 2], step=vs[0])
    return out


def inject(
    readings: Iterable[Reading], faults: Sequence[BroadFault], axes: dict[int, AxisProfile]
) -> Iterator[Reading]:
    """The readings with every fault applied inside its window (a program change: from its start on)."""
    last_nonzero: dict[int, float] = {}
    frozen: dict[tuple[int, int], float] = {}
    faults = sorted(faults, key=lambda f: f.start)
    for reading in readings:
        ts = reading.ts
        active = [
            (i, f)
            for i, f in enumerate(faults)
            if f.start <= ts and (ts < f.end or f.kind is BroadKind.PROGRAM) and f.robot_id in (None, reading.robot_id)
        ]
        if not active:
            _remember(last_nonzero, reading)
            yield reading
            continue
        working = not reading.is_idle  # judged on the reading as it came
        currents = dict(reading.currents)
        for index, fault in active:
            for axis in fault.axes:
                value = currents.get(axis)
                if axis not in currents or value is None or axis not in axes:
                    continue
                key = (index, axis)
                if fault.kind is BroadKind.STUCK and key not in frozen:
                    frozen[key] = last_nonzero.get(axis, axes[axis].normal)
                currents[axis] = _faulty(fault, axis, value, ts, working, axes[axis], frozen.get(key))
        _remember(last_nonzero, reading)
        yield reading.model_copy(update={"currents": currents})


def _remember(last_nonzero: dict[int, float], reading: Reading) -> None:
    for axis, v in reading.currents.items():
        if v:
            last_nonzero[axis] = v


def _faulty(
    fault: BroadFault, axis: int, value: float, ts: datetime, working: bool, profile: AxisProfile, held: float | None
) -> float:
    kind, size = fault.kind, fault.size
    if kind in (BroadKind.CLAMP, BroadKind.STUCK):
        if not working and not fault.through_idle:
            return value
        return _snap(held if kind is BroadKind.STUCK else size * profile.normal, profile.step)
    if not working:
        return value
    if kind is BroadKind.SPIKE:
        return _snap(value + size * profile.normal, profile.step)
    if value == 0:
        return value  # a joint at rest while others work draws no current, whatever its load: 0 times any factor
    if kind is BroadKind.PROGRAM:
        return _snap(value * fault.shares.get(axis, 1.0), profile.step)
    if kind is BroadKind.RAMP:
        size *= (ts - fault.start).total_seconds() / fault.duration_s
    # level, multi, ramp: a drop keeps a little current (friction), so a moving joint never reads exactly 0
    return _snap(value * max(1 + size, 0.03), profile.step)


def _snap(amps: float, step: float) -> float:
    snapped = round(amps / step) * step if step > 0 else amps
    return round(max(snapped, step), 5)


# -- placing a catalogue of faults over a recording ------------------------------------------------------------

# What one seed draws: (kind, count, size range, log-uniform?, duration range s). Drops down to -95 %.
CATALOGUE = (
    (BroadKind.LEVEL, 3, (0.05, 3.0), True, (300, 1200)),
    (BroadKind.LEVEL, 3, (-0.95, -0.05), False, (300, 1200)),
    (BroadKind.RAMP, 1, (0.1, 2.0), True, (600, 1200)),
    (BroadKind.RAMP, 1, (-0.9, -0.1), False, (600, 1200)),
    (BroadKind.SPIKE, 2, (0.3, 10.0), True, (4, 30)),
    (BroadKind.CLAMP, 2, (0.2, 15.0), True, (120, 900)),
    (BroadKind.STUCK, 2, (0.0, 0.0), False, (120, 900)),
    (BroadKind.MULTI, 1, (-0.8, 2.0), False, (300, 1200)),
)
TUNING_SEEDS = range(1, 11)
REPORT_SEEDS = range(101, 121)
# A second held-out set, first run in the twenty-fifth session: earlier sessions read the report seeds' faults
# one by one, so those no longer count as unseen.
HOLDOUT_SEEDS = range(201, 221)


@dataclass(frozen=True)
class Recording:
    """Where faults can go in a recording: its working periods, and the starts of stoppages' ends."""

    start: datetime
    end: datetime
    periods: list[tuple[datetime, datetime]]
    first_working: datetime
    after_stoppages: list[datetime]


def survey(readings: Sequence[Reading], periods: list[tuple[datetime, datetime]], *, stoppage_s: float) -> Recording:
    """Slots of a recording: its first working reading, and the start of each working period (of the
    ``periods``, e.g. :func:`producer.fault_plan.busy_periods`) that follows an idle gap of ``stoppage_s``
    or more. A blip of work inside a long stoppage is not a period, so no fault lands on a few readings."""
    working = [r.ts for r in readings if not r.is_idle]
    after = [b[0] for a, b in zip(periods, periods[1:], strict=False) if (b[0] - a[1]).total_seconds() >= stoppage_s]
    return Recording(readings[0].ts, readings[-1].ts, list(periods), working[0], after)


def catalogue(seed: int, axes: Sequence[int]) -> list[tuple[BroadKind, tuple[int, ...], float, float, bool]]:
    """The faults one seed draws: (kind, axes, size, duration, through_idle), deterministic for ``seed``."""
    rng = random.Random(f"axiswatch-broad:{seed}")
    out = []
    for kind, count, (low, high), log, (d_low, d_high) in CATALOGUE:
        for n in range(count):
            size = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
            if kind is BroadKind.MULTI:
                size = size if abs(size) >= 0.1 else 0.1
                chosen = tuple(sorted(rng.sample(list(axes), min(rng.choice((2, 3)), len(axes)))))
            else:
                chosen = (rng.choice(list(axes)),)
            through_idle = kind in (BroadKind.CLAMP, BroadKind.STUCK) and n % 2 == 1
            out.append((kind, chosen, size, round(rng.uniform(d_low, d_high), 1), through_idle))
    rng.shuffle(out)
    return out


def plan_runs(
    seed: int, recording: Recording, axes: Sequence[int], *, gap_s: float = 1200.0, robot_id: str | None = None
) -> list[list[BroadFault]]:
    """The seed's catalogue split into runs over the recording, windows at least ``gap_s`` apart (so that
    one fault's events cannot be taken for another's). Each run offers one ``warmup`` slot and one slot after
    each stoppage, then places the rest inside working periods; a last run holds the program change alone."""
    rng = random.Random(f"axiswatch-broad-plan:{seed}")
    pending = catalogue(seed, axes)
    runs: list[list[BroadFault]] = []
    while pending:
        taken: list[BroadFault] = []
        slots = [("warmup", recording.first_working)] + [("after_stoppage", t) for t in recording.after_stoppages]
        for placement, at in slots:
            if not pending:
                break
            kind, fault_axes, size, duration, idle = pending[0]
            start = at + timedelta(seconds=rng.uniform(0, 30))
            if _fits(taken, start, duration, gap_s) and start + timedelta(seconds=duration) <= recording.end:
                pending.pop(0)
                taken.append(BroadFault(kind, fault_axes, start, duration, size, placement, idle, robot_id))
        for _ in range(len(pending)):
            kind, fault_axes, size, duration, idle = pending[0]
            start = _working_start(recording.periods, taken, duration, gap_s, rng)
            if start is None:
                break
            pending.pop(0)
            taken.append(BroadFault(kind, fault_axes, start, duration, size, "working", idle, robot_id))
        if not taken:
            raise ValueError("the recording has no room for a fault window")
        runs.append(sorted(taken, key=lambda f: f.start))
    start = _working_start(recording.periods, [], 60.0, 0.0, rng) or recording.first_working
    shares = {a: round(math.exp(rng.uniform(math.log(0.6), math.log(1.6))), 3) for a in axes}
    span = (recording.end - start).total_seconds() + 1
    runs.append(
        [BroadFault(BroadKind.PROGRAM, tuple(axes), start, span, 0.0, "working", robot_id=robot_id, shares=shares)]
    )
    return runs


def _fits(taken: list[BroadFault], start: datetime, duration: float, gap_s: float) -> bool:
    end = start + timedelta(seconds=duration)
    pad = timedelta(seconds=gap_s)
    return all(end + pad <= f.start or f.end + pad <= start for f in taken)


def _working_start(
    periods: list[tuple[datetime, datetime]], taken: list[BroadFault], duration: float, gap_s: float, rng: random.Random
) -> datetime | None:
    """A random start inside a working period long enough for the window, clear of the ``taken`` ones."""
    candidates = []
    for a, b in periods:
        room = (b - a).total_seconds() - min(duration, 600.0)  # a long fault may run on past its period's end
        for _ in range(8 if room > 0 else 0):
            start = utc(a) + timedelta(seconds=int(rng.uniform(0, room)))
            if _fits(taken, start, duration, gap_s):
                candidates.append(start)
    return rng.choice(candidates) if candidates else None
