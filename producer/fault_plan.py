"""Where faults go: one of each kind, spread over the WORKING time of a span.

A real robot is idle about 64 % of the time, and overload and spike only show while it works, so a
window placed blindly can fall into a stoppage and inject nothing. :func:`default_faults` therefore
lays the working periods (``busy``; by default the whole span) end to end as one "working time line",
cuts it into one slot per kind, and puts each window inside a single working period of its slot (one
long enough for the whole window when there is one, else at the start of the longest). Windows never
overlap. For a real export, compute ``busy`` with :func:`busy_periods`; the synthetic robot needs none,
because it starts a work cycle when a fault window opens and takes no long pause inside one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from common.wire.schemas import Reading, utc
from producer.fault_types import WORKING_P95, FaultKind, FaultSpec

# Window lengths (seconds) drawn per kind; the issue's ~10-20 min overload and ~10-30 s spike.
DURATION_S: dict[FaultKind, tuple[float, float]] = {
    FaultKind.OVERLOAD: (600, 1200),
    FaultKind.SPIKE: (10, 30),
    FaultKind.DRIFT: (900, 1200),
    FaultKind.STUCK: (300, 900),
    FaultKind.DROPOUT: (120, 600),
}
Period = tuple[datetime, datetime]


def default_faults(
    start: datetime,
    span_s: float,
    axes: list[int],
    seed: int,
    *,
    busy: Sequence[Period] | None = None,
    robot_id: str | None = None,
) -> list[FaultSpec]:
    """One fault of each :class:`FaultKind` in ``[start, start + span_s)``, deterministic for ``seed``."""
    rng = random.Random(f"axiswatch-faults:{seed}")
    start, end = utc(start), utc(start) + timedelta(seconds=span_s)
    periods = _clip(busy, start, end) if busy is not None else [(start, end)]
    if not periods:
        raise ValueError(f"no working period between {start.isoformat()} and {end.isoformat()}")
    kinds = list(FaultKind)
    rng.shuffle(kinds)
    fault_axes = _axes_for(kinds, axes, rng)
    slot = sum(_length(p) for p in periods) / len(kinds)
    specs = []
    for index, kind in enumerate(kinds):
        low, high = DURATION_S[kind]
        duration = round(min(rng.uniform(low, high), 0.8 * slot), 1)
        pieces = _slice(periods, index * slot, (index + 1) * slot)
        window_start = _place(pieces, duration, rng)
        specs.append(FaultSpec(kind, fault_axes[index], window_start, duration, robot_id=robot_id))
    return sorted(specs, key=lambda s: s.start)


def busy_periods(readings: Iterable[Reading], *, max_gap_s: float = 120.0, min_length_s: float = 60.0) -> list[Period]:
    """Working periods of one robot's readings: working rows no more than ``max_gap_s`` apart, merged;
    periods shorter than ``min_length_s`` are left out. The end is the last working row's time."""
    periods: list[Period] = []
    first = last = None
    for reading in readings:
        if reading.is_idle:
            continue
        if last is not None and (reading.ts - last).total_seconds() > max_gap_s:
            periods.append((first, last))
            first = None
        first = first or reading.ts
        last = reading.ts
    if first is not None:
        periods.append((first, last))
    return [p for p in periods if _length(p) >= min_length_s]


def _axes_for(kinds: list[FaultKind], axes: list[int], rng: random.Random) -> list[int]:
    """A different working axis per fault while there are enough (axes with a load channel)."""
    working = [a for a in axes if a in WORKING_P95] or list(axes)
    chosen: list[int] = []
    for _ in kinds:
        pool = [a for a in working if a not in chosen] or working
        chosen.append(rng.choice(pool))
    return chosen


def _clip(busy: Sequence[Period], start: datetime, end: datetime) -> list[Period]:
    clipped = [(max(utc(a), start), min(utc(b), end)) for a, b in sorted(busy)]
    return [(a, b) for a, b in clipped if b > a]


def _length(period: Period) -> float:
    return (period[1] - period[0]).total_seconds()


def _slice(periods: list[Period], low_s: float, high_s: float) -> list[Period]:
    """The parts of the working time line between working-time positions ``low_s`` and ``high_s``."""
    pieces, position = [], 0.0
    for a, b in periods:
        length = _length((a, b))
        lo, hi = max(low_s - position, 0.0), min(high_s - position, length)
        if hi > lo:
            pieces.append((a + timedelta(seconds=lo), a + timedelta(seconds=hi)))
        position += length
    return pieces


def _place(pieces: list[Period], duration: float, rng: random.Random) -> datetime:
    roomy = [p for p in pieces if _length(p) >= duration]
    if not roomy:
        return max(pieces, key=_length)[0]
    piece = rng.choices(roomy, weights=[_length(p) for p in roomy])[0]
    offset = int(rng.uniform(0, _length(piece) - duration))  # whole seconds, still inside the piece
    return piece[0] + timedelta(seconds=offset)
