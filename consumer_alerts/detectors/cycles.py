"""The cycle detector: an axis whose work cycles draw more (or less) than its program's cycles normally do.

A joint's current swings from near 0 to its peak within every work cycle, so a slow drift of 10-20 % stays
inside the range one reading, or a window of readings, draws anyway. Whole cycles of one program look alike:
on the demo's robots an axis's level per cycle varies by ~5 % around its program's normal (a reading by ~80 %).
So this robot-level detector judges cycle by cycle (docs/consumer_alerts.md, "Work cycle by work cycle"):

- **Cycles**, as the health pipeline splits them (docs/health.md): motion between idle spells. The engine
  hands a robot detector its active readings (idle ones only while one of its events is open), so a cycle
  ends at :data:`MIN_IDLE` idle readings, or where the time to the next active reading is :data:`IDLE_GAP`
  sampling intervals or more; a cycle longer than :data:`MAX_CYCLE_READINGS` or cut by a stoppage is not
  judged (a feed that never rests has no cycles).
- **The level** of an axis in a cycle: the mean log current of its non-zero readings (a dropped sample or one
  high peak moves it less than the RMS).
- **Programs**: a cycle of about a program's length whose axes sit, most of them, near the program's learned
  levels (:data:`MATCH_DISTANCE`); before those are learned, or with fewer than :data:`COMMON_AXES` axes, the
  health baseline's rule of shapes (``consumer_alerts.health.baseline``: the summed current's shape).
- **The learned normal** per program and axis: mean and spread of the level (a plain mean for the first
  cycles, then exponentially weighted, :data:`HALFLIFE_CYCLES`, so a change over hours is followed), frozen
  while the axis is off (a fault does not become normal). Nothing is judged before :data:`WARMUP_CYCLES`.
- **The score**, apart from the learning: the deviation less the median deviation of the robot's axes that
  cycle (a cycle run a little heavier loads every axis alike), in units of the spread (:data:`MIN_SPREAD` at
  least), clipped at :data:`Z_CLIP` (one odd cycle proves nothing), summed by a CUSUM per axis and direction
  (allowance :data:`ALLOWANCE`); a cycle on the other side of normal resets it.
- **The threshold**: the sum at :data:`LIMIT` and the last cycle :data:`STILL_OFF` raise ``cycle_high`` /
  ``cycle_low`` filed under that axis (``normalized`` 0.5 at the limit). One event per robot and kind: another
  axis's finding waits until the first axis's event has closed (the engine's hold-off).
- **A program change is not a fault**: half of the robot's axes off together (:data:`PROGRAM_SHARE`, two at
  least; a fault is one axis or a few) drop every normal, learned again from the next cycles, quietly. A change
  of one axis that lasts :data:`ABSORB_CYCLES` cycles becomes its normal.

Severity is the one rule of :mod:`consumer_alerts.detectors.severity` on the cycle's level over its normal,
never an ERROR on an axis that read one flat value all cycle (a stuck sensor reads the same).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from common.wire.schemas import Severity
from consumer_alerts.detectors import Finding, squash
from consumer_alerts.detectors.scoring import SamplingInterval
from consumer_alerts.detectors.severity import GrossChange
from consumer_alerts.health.baseline import PROFILE_POINTS, cycle_shape

MIN_IDLE = 2  # idle readings in a row that end a cycle (the health pipeline's ``min_idle_samples``)
IDLE_GAP = MIN_IDLE + 0.5  # sampling intervals between two active readings that end a cycle (idle ones between)
MAX_CYCLE_READINGS = 450  # the health pipeline's longest cycle (900 s) at a reading every 2 s
MIN_COSINE, LENGTH_TOLERANCE, MAX_PROGRAMS = 0.8, 0.1, 16  # the health baseline's rule for a program
MATCH_DISTANCE = 0.1  # log: the median distance of a cycle's axes from a learned program's levels to be one of its
SHAPE_CYCLES = 100  # a program's shape is the mean of its first cycles'

WARMUP_CYCLES = 10
HALFLIFE_CYCLES = 100.0
MIN_SPREAD = 0.03  # log: ~3 %, the least spread a program's cycles are judged against
Z_CLIP = 4.0
ALLOWANCE, LIMIT = 0.75, 6.0  # CUSUM k and h, in spreads (a sum is reset by a cycle on the other side of normal)
STILL_OFF = 1.5  # spreads: a cycle nearer normal ends the finding (the fault is over: its event closes soon)
LEARN_GATE = 3.0  # a cycle this many spreads off, or an axis whose sum is past half the limit, teaches nothing
ABSORB_CYCLES = 60
PROGRAM_SHARE = 0.5
COMMON_AXES = 4  # judged axes needed to take out what a cycle does to all of them alike
MIN_READINGS = 3  # non-zero readings of an axis in a cycle for its level to be judged


class CycleDriftDetector:
    """A robot detector (``update(ts, currents, idle=...)``); see the module's docstring."""

    name = "cycle"
    kinds = ("cycle_high", "cycle_low")

    def __init__(self, *, gross: GrossChange, stoppage_s: float, holdoff_s: float, holdoff_readings: int) -> None:
        self.gross, self.stoppage_s = gross, stoppage_s
        self.holdoff_s, self.holdoff_readings = holdoff_s, holdoff_readings  # the engine's, to tell an event closed
        self.interval = SamplingInterval()
        self.observed, self.normalized = False, 0.0
        self.last_ts: float | None = None
        # the cycle in progress, per axis over its non-zero readings: [sum of log current, readings, first value,
        # 1.0 once a value differed from the first (else the axis read one flat value)]
        self._axes: dict[int, list[float]] = {}
        self._profile: list[float] = []  # its summed current per reading
        self._programs: list[list[Any]] = []  # [length, shape, last seen (cycle number), cycles]
        self._normals: dict[tuple[int, int], list[float]] = {}  # (program, axis): [cycles, mean, var] of its level
        self._sums: dict[int, list[float]] = {}  # axis: [high sum, low sum, cycles off]
        self._cycles = 0
        self._idle = 0  # idle readings in a row seen
        # axes off after the last cycle: (sum, ratio, direction, 1.0 if the axis read one flat value all cycle)
        self._off: dict[int, tuple[float, float, int, float]] = {}
        self._episode: list[float] | None = None  # the axis raised last, its direction, its first quiet ts (-1: none)

    @classmethod
    def from_config(cls, c) -> CycleDriftDetector:
        """Made from the engine's config (``EngineConfig``): the severity rule's and the lifecycle's settings."""
        return cls(
            gross=GrossChange(c.gross_high, c.gross_low),
            stoppage_s=c.stoppage_s,
            holdoff_s=c.holdoff_s,
            holdoff_readings=c.holdoff_readings,
        )

    def update(self, ts: float, currents: Mapping[int, float | None], *, idle: bool = False) -> Finding | None:
        self.observed = not idle
        if idle:  # seen only while an event is open: the cycle ends here rather than at the next active reading
            self._idle += 1
            if self._idle >= MIN_IDLE and self._profile:
                self._close()
            return None
        self._idle = 0
        last = self.last_ts
        if last is not None:
            gap = ts - last
            self.interval.push(gap)
            if gap > self.stoppage_s:
                self._reset_cycle()  # its end is not known: not judged
                self._episode = None  # the engine closes the robot's events at a stoppage
            elif gap >= IDLE_GAP * self.interval.seconds and self._profile:
                self._close()
        self.last_ts = ts
        total, axes, log = 0.0, self._axes, math.log  # every active reading of every robot: locals, one lookup
        for axis, value in currents.items():
            if not value:  # None, or an axis at rest (or a dropped sample) within the cycle
                continue
            total += value
            entry = axes.get(axis)
            if entry is None:
                axes[axis] = [log(value), 1, value, 0.0]
                continue
            entry[0] += log(value)
            entry[1] += 1
            if value != entry[2]:
                entry[3] = 1.0
        self._profile.append(total)
        if len(self._profile) > MAX_CYCLE_READINGS:
            self._reset_cycle()
        verdict = self._verdict(ts)
        if verdict is None:
            self.normalized = 0.0
            if self._episode is not None and self._episode[2] < 0:
                self._episode[2] = ts  # the first quiet reading: its event closes a hold-off later
            return None
        axis, total_sum, ratio, direction, flat = verdict
        self._episode = [axis, direction, -1.0]
        self.normalized = squash(total_sum, LIMIT)
        # a flat value proves no load (a stuck sensor reads the same): sized only when the axis's values varied
        severity = Severity.ALERT if flat else self.gross.severity(ratio)
        value = currents.get(axis) or 0.0
        threshold = (self.gross.high if ratio > 1 else self.gross.low) if severity is Severity.ERROR else LIMIT
        return Finding(severity, value, total_sum, threshold, self.kinds[0 if direction > 0 else 1], axis)

    def _verdict(self, ts: float) -> tuple[int, float, float, int, float] | None:
        """The axis to raise now: the one of the event still open if it is still off, else the farthest off
        once that event has closed. The robot has one event per kind at a time: without this, a fault on
        another axis right after the first kept the first's event open (and the second unreported)."""
        off, episode = self._off, self._episode
        if not off:
            return None
        if episode is not None:
            axis, direction = int(episode[0]), int(episode[1])
            if axis in off and off[axis][2] == direction:
                return (axis, *off[axis])
            quiet = episode[2]
            holdoff = max(self.holdoff_s, self.holdoff_readings * self.interval.seconds)
            if quiet >= 0 and ts - quiet >= holdoff:
                self._episode = None  # this quiet reading closes its event; the next one raises the new axis
            return None  # its event is still open: the next one waits
        axis = max(off, key=lambda a: off[a][0])
        return (axis, *off[axis])

    def _reset_cycle(self) -> None:
        self._axes, self._profile = {}, []

    def _close(self) -> None:
        """A cycle has ended: judge it against its program's normal, then learn from it."""
        profile, axes = self._profile, self._axes
        self._reset_cycle()
        if len(profile) < 2:
            return
        self._cycles += 1
        logs = {a: entry[0] / entry[1] for a, entry in axes.items() if entry[1] >= MIN_READINGS}
        program = self._program_of(profile, logs)
        d: dict[int, float] = {}  # log level over the program's normal, per warm axis
        for axis, log_level in logs.items():
            normal = self._normals.get((program, axis))
            if normal is not None and normal[0] >= WARMUP_CYCLES:
                d[axis] = log_level - normal[1]
        common = _median(list(d.values())) if len(d) >= COMMON_AXES else 0.0
        residual = {axis: v - common for axis, v in d.items()}
        z = {axis: r / max(math.sqrt(self._normals[(program, axis)][2]), MIN_SPREAD) for axis, r in residual.items()}
        verdict: dict[int, tuple[float, float, int]] = {}
        off = 0
        for axis, raw in z.items():
            score = max(min(raw, Z_CLIP), -Z_CLIP)
            sums = self._sums.setdefault(axis, [0.0, 0.0, 0.0])
            sums[0] = 0.0 if score <= 0 else min(sums[0] + score - ALLOWANCE, 1.5 * LIMIT)
            sums[1] = 0.0 if score >= 0 else min(sums[1] - score - ALLOWANCE, 1.5 * LIMIT)
            sums[0], sums[1] = max(sums[0], 0.0), max(sums[1], 0.0)
            if max(sums[0], sums[1]) >= LIMIT / 2:
                off += 1
            if max(sums[0], sums[1]) >= LIMIT and abs(score) >= STILL_OFF:  # summed, and this cycle is off too
                sums[2] += 1
                ratio = math.exp(logs[axis] - self._normals[(program, axis)][1])
                flat = 1.0 - axes[axis][3]
                verdict[axis] = (max(sums[0], sums[1]), ratio, 1 if sums[0] >= sums[1] else -1, flat)
            else:
                sums[2] = 0.0
        if off >= max(2, PROGRAM_SHARE * len(z)) and len(z) >= 2:
            self._new_program()  # half of the axes off together: the robot's program, not a fault
            return
        self._off = verdict
        for axis, log_level in logs.items():
            self._learn(program, axis, log_level, z.get(axis), residual.get(axis))

    def _learn(self, program: int, axis: int, log_level: float, z: float | None, residual: float | None) -> None:
        key = (program, axis)
        normal = self._normals.get(key)
        sums = self._sums.get(axis)
        if normal is None:
            self._normals[key] = [1.0, log_level, 0.0]
            return
        if sums is not None and sums[2] >= ABSORB_CYCLES:  # a lasting change of this axis: its new normal
            for k in [k for k in self._normals if k[1] == axis]:
                del self._normals[k]
            del self._sums[axis]
            return
        if z is not None and (abs(z) >= LEARN_GATE or (sums is not None and max(sums[0], sums[1]) >= LIMIT / 2)):
            return
        count = normal[0] + 1
        rate = max(1.0 / count, 1.0 / HALFLIFE_CYCLES)
        d = log_level - normal[1]
        normal[0], normal[1] = count, normal[1] + rate * d
        r = d if residual is None else residual  # the spread is the residual's, once the axis is judged
        if count > 1:
            normal[2] += rate * (min(r * r, (Z_CLIP * max(math.sqrt(normal[2]), MIN_SPREAD)) ** 2) - normal[2])

    def _new_program(self) -> None:
        self._normals.clear()
        self._sums.clear()
        self._programs.clear()
        self._off = {}

    def _program_of(self, profile: list[float], logs: dict[int, float]) -> int:
        """The index of the program this cycle belongs to (a new one when none matches). Among the programs of
        about its length, the one whose learned levels the cycle's axes match best, most of them (the median
        distance: one faulty axis does not move it), else the health baseline's rule of shapes (a stuck heavy
        axis changes the summed current's shape: a fault must not make its cycle another program's)."""
        length = len(profile)
        shape = None  # by the shape only when the levels cannot tell (it costs more than the rest of the cycle)
        best, best_cos, best_distance = -1, MIN_COSINE, MATCH_DISTANCE
        for i, (plen, pshape, _, _) in enumerate(self._programs):
            if abs(plen - length) > LENGTH_TOLERANCE * plen:
                continue
            d = [
                level - normal[1]
                for a, level in logs.items()
                if (normal := self._normals.get((i, a))) is not None and normal[0] >= WARMUP_CYCLES
            ]
            if len(d) >= COMMON_AXES:
                d.sort()
                middle = d[len(d) // 2]
                distance = sorted(abs(x - middle) for x in d)[len(d) // 2]
                if distance < best_distance:
                    best, best_distance = i, distance
                continue
            if shape is None:
                shape = cycle_shape(np.asarray(profile, float))
            cos = float(np.dot(pshape, shape))
            if best_distance == MATCH_DISTANCE and cos >= best_cos:
                best, best_cos = i, cos
        if shape is None and (best < 0 or self._programs[best][3] < SHAPE_CYCLES):
            shape = cycle_shape(np.asarray(profile, float))
        if best < 0:
            if len(self._programs) >= MAX_PROGRAMS:  # the least recently seen goes, with its normals
                best = min(range(len(self._programs)), key=lambda i: self._programs[i][2])
                for k in [k for k in self._normals if k[0] == best]:
                    del self._normals[k]
                self._programs[best] = [length, shape, self._cycles, 0]
            else:
                self._programs.append([length, shape, self._cycles, 0])
                best = len(self._programs) - 1
        program = self._programs[best]
        program[2] = self._cycles
        program[3] += 1
        if program[3] <= SHAPE_CYCLES:  # the mean shape settles while the program is young, then holds
            mixed = program[1] + (shape - program[1]) / program[3]
            program[1] = mixed / (np.linalg.norm(mixed) or 1.0)
        return best

    def state(self) -> dict[str, Any]:
        # flat lists of floats and scalars: the engine's snapshot packs every list as float64
        return {
            **self.interval.state(),
            "last_ts": self.last_ts,
            "cycle": [v for a, entry in self._axes.items() for v in (a, *entry)],
            "profile": list(self._profile),
            "programs": [v for plen, shape, seen, count in self._programs for v in (plen, seen, count, *shape)],
            "normals": [v for (p, a), normal in self._normals.items() for v in (p, a, *normal)],
            "sums": [v for a, sums in self._sums.items() for v in (a, *sums)],
            "cycles": self._cycles,
            "idle": self._idle,
            "off": [v for a, found in self._off.items() for v in (a, *found)],
            "episode": list(self._episode) if self._episode is not None else [],
        }

    def load(self, state: dict[str, Any]) -> None:
        self.interval = SamplingInterval.from_state(state)
        self.last_ts = state["last_ts"]
        cycle = state["cycle"]
        self._axes = {
            int(cycle[i]): [cycle[i + 1], int(cycle[i + 2]), cycle[i + 3], cycle[i + 4]]
            for i in range(0, len(cycle), 5)
        }
        self._profile = list(state["profile"])
        raw, step = state["programs"], 3 + PROFILE_POINTS
        self._programs = [
            [int(raw[i]), np.asarray(raw[i + 3 : i + step], float), int(raw[i + 1]), int(raw[i + 2])]
            for i in range(0, len(raw), step)
        ]
        raw = state["normals"]
        self._normals = {(int(raw[i]), int(raw[i + 1])): list(raw[i + 2 : i + 5]) for i in range(0, len(raw), 5)}
        raw = state["sums"]
        self._sums = {int(raw[i]): list(raw[i + 1 : i + 4]) for i in range(0, len(raw), 4)}
        self._cycles, self._idle = int(state["cycles"]), int(state["idle"])
        raw = state["off"]
        self._off = {int(raw[i]): (raw[i + 1], raw[i + 2], int(raw[i + 3]), raw[i + 4]) for i in range(0, len(raw), 5)}
        self._episode = list(state["episode"]) or None


def _median(values: list[float]) -> float:
    """The median of a few values (numpy's call costs more than sorting a robot's axes)."""
    values.sort()
    half = len(values) // 2
    return values[half] if len(values) % 2 else 0.5 * (values[half - 1] + values[half])
