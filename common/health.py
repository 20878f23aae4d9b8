"""Data health and coverage of the stored readings: what is there, what should be, where it is missing."""
from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import Connection, exists, func, literal, select

from common.sqlparts import Row, dicts, epoch_seconds, where
from common.tables import UtcDateTime, axes_dim, axes_of, readings_fact

R = readings_fact


def data_health(conn: Connection, *, robot_id: str | None = None, start: datetime | None = None,
                end: datetime | None = None, gap_threshold_s: float = 10.0, tick_seconds: float = 2.0) -> list[Row]:
    """One row per robot of ``axes_dim``: first/last reading and the span between; readings present vs
    expected at the nominal rate (``span / tick_seconds + 1``) and their ratio ``coverage``; rows present
    vs expected (expected readings x active axes); ``gaps``, the steps between consecutive readings longer
    than ``gap_threshold_s`` (``start`` = the reading before, ``end`` = the one after, ``length_s``); and
    ``axes_never_seen``, the active axes that carried no value (only NULL, or no row) in the range."""
    locked = axes_of(conn, robot_id=robot_id, active_only=True)
    filters = where(R, robot_id=robot_id, start=start, end=end)
    spans = {
        s["robot_id"]: s
        for s in dicts(conn.execute(
            select(R.c.robot_id, func.min(R.c.ts).label("first_ts"), func.max(R.c.ts).label("last_ts"),
                   func.count(func.distinct(R.c.ts)).label("readings"), func.count().label("rows"))
            .where(*filters, R.c.axis_id.in_(sorted({a for axes in locked.values() for a in axes})))
            .group_by(R.c.robot_id)
        ))
    }
    gaps = _gaps(conn, filters, gap_threshold_s)
    unseen = _axes_never_seen(conn, robot_id=robot_id, start=start, end=end)
    return [
        _robot_health(robot, axes, spans.get(robot), [g for g in gaps if g["robot_id"] == robot],
                      unseen.get(robot, []), tick_seconds)
        for robot, axes in sorted(locked.items())
    ]


def _robot_health(robot: str, axes: list[int], span: Row | None, gaps: list[Row], unseen: list[int],
                  tick_seconds: float) -> Row:
    first, last = (span["first_ts"], span["last_ts"]) if span else (None, None)
    span_s = (last - first).total_seconds() if span else 0.0
    expected = math.floor(span_s / tick_seconds + 1e-9) + 1 if span else 0
    readings = span["readings"] if span else 0
    return {
        "robot_id": robot, "first_ts": first, "last_ts": last, "span_s": span_s,
        "readings": readings, "expected_readings": expected,
        "coverage": readings / expected if expected else None,
        "rows": span["rows"] if span else 0, "expected_rows": expected * len(axes), "axes": len(axes),
        "gaps": [{k: g[k] for k in ("start", "end", "length_s")} for g in gaps],
        "gap_count": len(gaps), "gap_total_s": sum(g["length_s"] for g in gaps),
        "axes_never_seen": unseen,
    }


def _gaps(conn: Connection, filters: list, threshold_s: float) -> list[Row]:
    stamps = select(R.c.robot_id, R.c.ts).where(*filters).group_by(R.c.robot_id, R.c.ts).subquery()
    prev = func.lag(stamps.c.ts, type_=UtcDateTime).over(partition_by=stamps.c.robot_id, order_by=stamps.c.ts)
    steps = select(stamps.c.robot_id, prev.label("start"), stamps.c.ts.label("end")).subquery()
    length = (epoch_seconds(steps.c.end) - epoch_seconds(steps.c.start)).label("length_s")
    query = (
        select(steps.c.robot_id, steps.c.start, steps.c.end, length)
        .where(steps.c.start.is_not(None), length > literal(threshold_s))
        .order_by(steps.c.robot_id, steps.c.start)
    )
    # The length is taken again from the two datetimes: exact, whatever the dialect's float arithmetic.
    return [{**g, "length_s": (g["end"] - g["start"]).total_seconds()} for g in dicts(conn.execute(query))]


def _axes_never_seen(conn: Connection, *, robot_id: str | None, start: datetime | None,
                     end: datetime | None) -> dict[str, list[int]]:
    # EXISTS per axis of axes_dim walks the primary key (robot, axis, ts) and stops at the first value.
    has_value = exists().where(
        R.c.robot_id == axes_dim.c.robot_id, R.c.axis_id == axes_dim.c.axis_id, R.c.amps.is_not(None),
        *where(R, robot_id=None, start=start, end=end),
    )
    query = select(axes_dim.c.robot_id, axes_dim.c.axis_id).where(axes_dim.c.active, ~has_value)
    if robot_id is not None:
        query = query.where(axes_dim.c.robot_id == robot_id)
    out: dict[str, list[int]] = {}
    for robot, axis in conn.execute(query.order_by(axes_dim.c.robot_id, axes_dim.c.axis_id)):
        out.setdefault(robot, []).append(axis)
    return out
