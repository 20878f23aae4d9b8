"""Conflicts: readings whose robot and time are stored already with other values.

The sink (``consumer_db.sink``) and the bulk ingest (``consumer_db.ingest``) write readings with
``ON CONFLICT DO NOTHING``, so a reading repeated with the same values is harmless, and one with other
values would be silently dropped. Both ask ``find_conflicts`` about the readings a write skipped, and keep each
one it yields as a rejected record with both values: one rule, one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import Connection, select, tuple_

from common.store.tables import readings_fact

T = TypeVar("T")
STATEMENT_KEYS = 1000  # (robot_id, ts) pairs per statement: bounded, whatever the batch size


class AReading(Protocol):
    robot_id: str
    ts: datetime
    currents: dict[int, float | None]


def find_conflicts(
    conn: Connection, suspects: Sequence[T], reading: Callable[[T], AReading]
) -> Iterator[tuple[T, str]]:
    """Each of ``suspects`` (the caller's items: a parsed row, a reading with its message) whose reading
    (``reading(item)``) is stored with other values, with the reason to keep it by. A suspect stored alike
    (a redelivery) or not stored at all is not yielded."""
    stored = stored_currents(conn, ((r.robot_id, r.ts) for r in map(reading, suspects)))
    for item in suspects:
        got = reading(item)
        reason = conflict_reason(stored.get((got.robot_id, got.ts), {}), got.currents)
        if reason:
            yield item, reason


def stored_currents(conn: Connection, keys: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], dict]:
    """What readings_fact holds for each ``(robot_id, ts)``: ``{axis: amps}``."""
    out: dict[tuple[str, datetime], dict] = {}
    keys = sorted(set(keys))
    fact = readings_fact.c
    for start in range(0, len(keys), STATEMENT_KEYS):
        query = select(fact.robot_id, fact.ts, fact.axis_id, fact.amps)
        query = query.where(tuple_(fact.robot_id, fact.ts).in_(keys[start : start + STATEMENT_KEYS]))
        for robot, ts, axis, amps in conn.execute(query):
            out.setdefault((robot, ts), {})[axis] = amps
    return out


def conflict_reason(stored: dict[int, float | None], currents: dict[int, float | None]) -> str | None:
    """Why a reading differs from the one stored under its robot and time, or None when it is the same
    (a redelivery). Only the axes stored are compared: those are the rows the reading would have made."""
    differ = [(axis, amps, currents.get(axis)) for axis, amps in sorted(stored.items()) if currents.get(axis) != amps]
    if not differ:
        return None
    shown = "; ".join(f"axis {axis}: stored {old!r}, this one {new!r}" for axis, old, new in differ[:6])
    more = f" (and {len(differ) - 6} more axes)" if len(differ) > 6 else ""
    return f"conflict: a reading of this robot at this time is stored with other values: {shown}{more}"
