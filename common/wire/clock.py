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

A **silence** is told from a clock leaping ahead by the readings' Kafka records, when their times are known (the
producer's or gateway's CreateTime, or the broker's LogAppendTime): over an outage or a stoppage the robot was
silent over, a record's time leaps with its reading's; when a robot's clock leaps ahead, its readings' times leap
and its records' do not (``next_silence``). Readings later stamped inside a silence are late ones, a gateway's
buffer sent after an outage, even a burst of ``SET_BACK_RUN`` or more with no live reading between them: never its
clock coming back nor set back (``late``). It is the change of the gap between a reading's time and its record's
that tells, never its size: a replay at full speed has its records' times far from its readings'.
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


def next_silence(
    silence: Leap | tuple[float, float],
    newest: float | None,
    newest_record: float | None,
    ts: float,
    record: float | None,
    bound: float,
) -> tuple[float, float]:
    """The span to keep once a reading at ``ts``, its Kafka record's time ``record``, is taken after the newest at
    ``newest`` (its record's time ``newest_record``): its own if it leaps more than ``bound`` ahead and its record's
    time leapt as far, less ``bound`` (the robot was silent; its clock did not leap), else ``silence`` as it was.
    Record times not known (offline): ``silence`` as it was."""
    if newest is None or newest_record is None or record is None or ts - newest <= bound:
        return silence
    return (newest, ts) if record - newest_record >= ts - newest - bound else silence


def late(silence: Leap | tuple[float, float], newest: float, ts: float, bound: float) -> bool:
    """Whether a reading at ``ts``, no later than ``newest``, is a late one: inside the robot's last silence
    (``next_silence``) and more than ``bound`` behind the newest. Never its clock coming back nor set back."""
    return silence[0] < ts < silence[1] and newest - ts > bound
