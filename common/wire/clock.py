"""A robot's clock as its readings tell it: the one rule for a reading older than the robot's newest, shared by
consumer_alerts' engine, its health pipeline's cycle splitter and the dashboard's feed.

Readings are judged in time order, so one no later than the robot's newest is skipped: a redelivery after a
restart, or one too late to judge. But the reading policy lets a reading through up to ``READING_MAX_FUTURE_S``
(a day) ahead, and a controller's clock can jump ahead for a while and be corrected: every later reading of the
robot was then "older" and skipped until the clock caught up, up to a day with no event, no health cycle and a
frozen dashboard. So a **leap** (a reading more than ``bound`` after the one before it: a stoppage, or a clock
that jumped) is remembered as the span it skipped; readings inside that span and more than ``bound`` older than
the newest are the clock coming back (``comes_back``), and are followed back. A redelivery never falls inside the
span (no reading was taken there), so it is still skipped; a clock that jumps back by less than ``bound`` waits at
most that long.

A clock coming back, or **set back to stay** (days back, outside any leap), is told by a run: ``SET_BACK_RUN``
readings in a row, each more than ``bound`` behind the newest and later than the one before (``far_behind_run``).
One reading never says it: late readings stamped inside a past outage, sent between live ones, each took the
clock back. Where a reading may be a redelivery (consumer_alerts after a restart) only one new on Kafka, inside a
leap or before the robot's first reading counts; the dashboard reads each message once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

NO_LEAP = (math.inf, -math.inf)  # (start, end): a span nothing falls inside
# this many readings in a row far behind the newest, each later than the one before: the clock came back or was set
# back. One stray reading stamped in the past, or old readings sent between live ones, never make such a run.
SET_BACK_RUN = 10


class Leap(NamedTuple):
    """The span a robot's time leapt over: from its newest reading before the leap to the first after."""

    start: float
    end: float


def next_leap(leap: Leap | tuple[float, float], newest: float | None, ts: float, bound: float) -> tuple[float, float]:
    """The span to keep once a reading at ``ts``, newer than ``newest``, is taken: its own if it leaps more than
    ``bound`` seconds ahead, else ``leap`` as it was. A robot's first reading (``newest`` None) leaps from the
    beginning of time: it may itself come from ahead, with nothing taken before it."""
    if newest is None:
        return (-math.inf, ts)
    return (newest, ts) if ts - newest > bound else leap


def comes_back(leap: Leap | tuple[float, float], newest: float, ts: float, bound: float) -> bool:
    """Whether a reading at ``ts``, no later than ``newest``, is where the robot's clock coming back from a leap ahead
    falls (followed after a run): inside the span the leap skipped, and more than ``bound`` seconds older than the
    newest. Not a first reading's span (``before_first``): nothing says that reading came from ahead, and taking
    every older reading for the clock coming back let one stray reading stamped days back close every open event of
    a robot that had not stopped since it was first seen. A clock that comes back there is followed as set back."""
    return -math.inf < leap[0] < ts < leap[1] and newest - ts > bound


def before_first(leap: Leap | tuple[float, float], ts: float) -> bool:
    """Whether ``ts`` is before the robot's first reading, its span still the first reading's: no reading judged
    there, so no redelivery either (a clock set back is told there by a run alone, without Kafka offsets)."""
    return leap[0] == -math.inf and ts < leap[1]


def longer(run: tuple[int, float] | None, ts: float) -> tuple[int, float]:
    """A run of readings, each later than the one before, as (how many, the last one's time), with one at ``ts``
    added: a reading not later than the last starts the run again."""
    count, last = run or (0, -math.inf)
    return (count + 1, ts) if ts > last else (1, ts)


def far_behind_run(
    run: tuple[int, float] | None, newest: float, ts: float, bound: float
) -> tuple[tuple[int, float] | None, bool]:
    """The run of readings far behind the newest, with one at ``ts`` (no later than ``newest``) counted if it lies
    more than ``bound`` behind (``longer``; a reading less far behind leaves the run as it was), and whether the run
    now says the clock was set back: its ``SET_BACK_RUN``-th reading."""
    if newest - ts <= bound:
        return run, False
    run = longer(run, ts)
    return run, run[0] >= SET_BACK_RUN
