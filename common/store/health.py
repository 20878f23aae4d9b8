"""Data health and coverage of the stored readings: what is there, what should be, where it is missing."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from itertools import pairwise

from sqlalchemy import Connection, func, select

from common.settings import GAP_THRESHOLD_S, TICK_SECONDS
from common.store.rollup import MINUTE, folded_minute_stamps, minute_stats, stamp_stats
from common.store.sqlparts import Row, axes_of_mask, dicts
from common.store.tables import UtcDateTime, axes_of, readings_fact

R = readings_fact


def data_health(
    conn: Connection,
    *,
    robot_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    gap_threshold_s: float = GAP_THRESHOLD_S,
    tick_seconds: float = TICK_SECONDS,
    folded_only: bool = False,
) -> list[Row]:
    """One row per robot of ``axes_dim``: first/last reading and the span between; readings (distinct
    times) present vs expected at the nominal rate (``span / tick_seconds + 1``) and their ratio
    ``coverage``; rows of the active axes present vs expected (expected readings x active axes); ``gaps``,
    the steps between consecutive readings longer than ``gap_threshold_s`` (``start`` = the reading before,
    ``end`` = the one after, ``length_s``); and ``axes_never_seen``, the active axes that carried no value
    (only NULL, or no row) in the range. Read from the per-minute rollup (common.store.rollup); ``folded_only``:
    of the whole minutes of the range folded into it."""
    locked = axes_of(conn, robot_id=robot_id, active_only=True)
    stamps = stamp_stats(conn, robot_id=robot_id, start=start, end=end, folded_only=folded_only)
    # As ever, "rows" counts the rows of the axes active for any robot (a retired axis's rows do not count).
    locked_axes = {a for axes in locked.values() for a in axes}
    # Read once: a few rows per robot (its hours, the tail's minutes), whose unfolded tail costs more to
    # compute than everything done with them here.
    stamp_rows = _in_order(conn, stamps)
    spans, rows, seen = _spans_rows_and_axes_seen(
        conn, stamp_rows, locked_axes, robot_id=robot_id, start=start, end=end, folded_only=folded_only
    )
    gaps = _gaps(conn, stamp_rows, start=start, end=end, threshold_s=gap_threshold_s)
    return [
        _robot_health(
            robot,
            axes,
            spans.get(robot),
            rows.get(robot, 0),
            [g for g in gaps if g["robot_id"] == robot],
            [a for a in axes if a not in seen.get(robot, set())],
            tick_seconds,
        )
        for robot, axes in sorted(locked.items())
    ]


def _in_order(conn: Connection, stamps) -> list[Row]:
    """The rows of ``stamps`` (``stamp_stats``' columns) per robot in time order."""
    return dicts(conn.execute(select(stamps).order_by(stamps.c.robot_id, stamps.c.minute)))


def _spans_rows_and_axes_seen(
    conn: Connection, stamps: list[Row], locked_axes: set[int], *, robot_id, start, end, folded_only: bool
) -> tuple[dict[str, Row], dict[str, int], dict[str, set[int]]]:
    """Per robot: first and last reading and the readings in the range; rows of ``locked_axes``; the axes
    that carried a value. From the minutes' (and hours') masks of axes, not a row per axis and minute.
    Rows of other axes (retired ones; rare) are taken off with the per-axis rollup."""
    spans: dict[str, Row] = {}
    rows: dict[str, int] = {}
    seen_masks: dict[str, int] = {}
    others: set[str] = set()
    locked_mask = sum(1 << axis for axis in locked_axes)
    for stamp in stamps:  # masks OR-ed as ints, turned into axes once per robot (a fleet has ~1,300 stamp rows)
        robot = stamp["robot_id"]
        span = spans.get(robot)
        if span is None:
            spans[robot] = {"first_ts": stamp["first_ts"], "last_ts": stamp["last_ts"], "readings": 0}
            span = spans[robot]
        span["first_ts"] = min(span["first_ts"], stamp["first_ts"])
        span["last_ts"] = max(span["last_ts"], stamp["last_ts"])
        span["readings"] += int(stamp["readings"])
        rows[robot] = rows.get(robot, 0) + int(stamp["n_rows"])
        seen_masks[robot] = seen_masks.get(robot, 0) | int(stamp["axes_with_values"])
        if int(stamp["axes_stored"]) & ~locked_mask:
            others.add(robot)
    seen = {robot: axes_of_mask(mask) for robot, mask in seen_masks.items()}
    if others:
        m = minute_stats(conn, robot_id=robot_id, start=start, end=end, folded_only=folded_only)
        query = (
            select(m.c.robot_id, func.sum(m.c.n_rows))
            .where(m.c.robot_id.in_(sorted(others)), m.c.axis_id.not_in(locked_axes))
            .group_by(m.c.robot_id)
        )
        for robot, n_rows in conn.execute(query):
            rows[robot] -= int(n_rows)
    return spans, rows, seen


def _robot_health(
    robot: str, axes: list[int], span: Row | None, rows: int, gaps: list[Row], unseen: list[int], tick_seconds: float
) -> Row:
    first, last = (span["first_ts"], span["last_ts"]) if span else (None, None)
    span_s = (last - first).total_seconds() if span else 0.0
    expected = math.floor(span_s / tick_seconds + 1e-9) + 1 if span else 0
    readings = int(span["readings"]) if span else 0
    return {
        "robot_id": robot,
        "first_ts": first,
        "last_ts": last,
        "span_s": span_s,
        "readings": readings,
        "expected_readings": expected,
        "coverage": readings / expected if expected else None,
        "rows": rows,
        "expected_rows": expected * len(axes),
        "axes": len(axes),
        "gaps": [{k: g[k] for k in ("start", "end", "length_s")} for g in gaps],
        "gap_count": len(gaps),
        "gap_total_s": sum(g["length_s"] for g in gaps),
        "axes_never_seen": unseen,
    }


def _gaps(
    conn: Connection, stamps: list[Row], *, start: datetime | None, end: datetime | None, threshold_s: float
) -> list[Row]:
    gaps = [
        {**g, "length_s": (g["end"] - g["start"]).total_seconds()}
        for g in _steps_over(conn, stamps, start=start, end=end, threshold_s=threshold_s)
    ]
    return sorted((g for g in gaps if g["length_s"] > threshold_s), key=lambda g: (g["robot_id"], g["start"]))


def _steps_over(
    conn: Connection, stamps: list[Row], *, start: datetime | None, end: datetime | None, threshold_s: float
) -> list[Row]:
    """The steps between readings longer than ``threshold_s``. Between the rollup's rows (minutes or hours,
    each robot's in time order): from one row's last reading to the next one's first. Inside a row whose
    longest step is long: an hour's from its minutes, a minute's from its raw rows."""
    gaps = []
    for before, step in pairwise([None, *stamps]):
        robot, low = step["robot_id"], max(filter(None, (start, step["minute"])))
        if before is not None and before["robot_id"] == robot:
            if (step["first_ts"] - before["last_ts"]).total_seconds() > threshold_s:
                gaps.append({"robot_id": robot, "start": before["last_ts"], "end": step["first_ts"]})
        if step["longest_step_s"] <= threshold_s - MARGIN_S:  # a float of the rollup's: exact below
            continue
        high = step["minute"] + timedelta(seconds=step["seconds"])
        if step["seconds"] > MINUTE.total_seconds():
            minutes = folded_minute_stamps(robot_id=robot, start=low, until=high)
            gaps += _steps_over(conn, _in_order(conn, minutes), start=start, end=end, threshold_s=threshold_s)
        else:
            gaps += _raw_gaps(
                conn,
                [R.c.robot_id == robot, R.c.ts >= low, R.c.ts < high, *([R.c.ts <= end] if end is not None else [])],
            )
    return gaps


# The rollup's longest_step_s is a float of epoch arithmetic: it only preselects, with this margin.
MARGIN_S = 1e-3


def _raw_gaps(conn: Connection, filters: list) -> list[Row]:
    stamps = select(R.c.robot_id, R.c.ts).where(*filters).group_by(R.c.robot_id, R.c.ts).subquery()
    prev = func.lag(stamps.c.ts, type_=UtcDateTime).over(partition_by=stamps.c.robot_id, order_by=stamps.c.ts)
    steps = select(stamps.c.robot_id, prev.label("start"), stamps.c.ts.label("end")).subquery()
    return dicts(conn.execute(select(steps).where(steps.c.start.is_not(None))))
