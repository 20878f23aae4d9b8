"""What the API reads of the joint-health tables (migration 0008): one robot's health per axis, and the
fleet's forecasts in order of urgency.

A forecast's ``days_left`` counts from the moment it was made (``updated_at``, feed time), and axes are
forecast at different moments (a robot that stopped reporting keeps its last one), so urgency is the
forecast crossing instant, ``updated_at + days_left``: ``DUE_S`` below, in seconds since the epoch, so that
the database orders, filters and cuts the pages and only a page's rows come to Python (ordering the whole
table in Python took ~110 ms for 2,800 forecasts; bench/api_health.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, exists, func, literal, or_, select

from api.queries import CURSOR_HELP, BadCursor, pack_cursor, unpack_cursor
from common.store.fleet_health import days_after
from common.store.sqlparts import Row, dicts, seconds_between
from common.store.tables import UtcDateTime, axes_dim, health_cycles, health_forecast, health_rollup

F, C, R = health_forecast, health_cycles, health_rollup
CYCLE_FIELDS = ("cycle_start", "cycle_end", "duration_s", "rms_amps", "peak_amps", "energy_as", "energy_a2s")
CYCLE_FIELDS += ("covered_s", "deviation", "cold", "cut")
DAY_FIELDS = ("bucket_start", "cycles", "judged", "deviation_median", "deviation_max", "rms_amps", "peak_amps")


def forecast_of(row: Row) -> Row:
    """A stored forecast as the API shows it: the interval as days and as instants."""
    made = row["updated_at"]
    return {
        "made_at": made,
        "level": row["level"],
        "slope_per_day": row["slope_per_day"],
        "limit": row["limit_level"],
        "days_left": row["days_left"],
        "low_days": row["low_days"],
        "high_days": row["high_days"],
        "due_at": days_after(made, row["days_left"]),
        "due_low_at": days_after(made, row["low_days"]),
        "due_high_at": days_after(made, row["high_days"]),
    }


def robot_known(conn: Connection, robot_id: str) -> bool:
    """The robot has axes or health rows (a robot known only from its forecasts is still a robot)."""
    found = [exists().where(t.c.robot_id == robot_id) for t in (axes_dim, F, C)]
    return bool(conn.execute(select(or_(*found))).scalar())


def robot_health(conn: Connection, robot_id: str, days: int) -> list[Row]:
    """Per axis with any health row, by axis: ``forecast`` (``forecast_of``, or None), ``latest_cycle`` (the
    newest cycle's indicators, or None) and ``daily`` (the day rows of the ``days`` days up to the newest
    day row of the robot, oldest first)."""
    axes: dict[int, Row] = {}

    def axis(n: int) -> Row:
        return axes.setdefault(n, {"axis": n, "forecast": None, "latest_cycle": None, "daily": []})

    for row in dicts(conn.execute(select(F).where(F.c.robot_id == robot_id))):
        axis(row["axis"])["forecast"] = forecast_of(row)
    # The newest cycle per axis by one backward step of the primary key each, not a scan of the robot's
    # cycles (tens of thousands a month); the axes with cycles are those of its day rows (a few hundred).
    with_cycles = select(R.c.axis).where(R.c.robot_id == robot_id, R.c.period == "day").distinct().subquery()
    newer = C.alias("newer")
    newest = (
        select(func.max(newer.c.cycle_start))
        .where(newer.c.robot_id == robot_id, newer.c.axis == with_cycles.c.axis)
        .scalar_subquery()
    )
    latest = select(with_cycles.c.axis, newest.label("cycle_start")).subquery()
    on = and_(C.c.robot_id == robot_id, C.c.axis == latest.c.axis, C.c.cycle_start == latest.c.cycle_start)
    for row in dicts(conn.execute(select(C).select_from(C.join(latest, on)))):
        axis(row["axis"])["latest_cycle"] = {k: row[k] for k in CYCLE_FIELDS}
    is_day = and_(R.c.robot_id == robot_id, R.c.period == "day")
    last_day = conn.execute(select(func.max(R.c.bucket_start)).where(is_day)).scalar()
    if last_day is not None:
        since = last_day - timedelta(days=days - 1)
        query = select(R.c.axis, *(R.c[k] for k in DAY_FIELDS)).where(is_day, R.c.bucket_start >= since)
        for row in dicts(conn.execute(query.order_by(R.c.axis, R.c.bucket_start))):
            axis(row["axis"])["daily"].append({k: row[k] for k in DAY_FIELDS})
    return [axes[n] for n in sorted(axes)]


@dataclass(frozen=True)
class ForecastFilter:
    robot: str | None = None
    axis: int | None = None
    max_days_left: float | None = None  # forecast crossing at most this many days after the forecast
    due_before: datetime | None = None  # forecast crossing at or before this instant


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_S = 86_400.0
# The crossing instant in epoch seconds; NULL when no crossing is forecast.
DUE_S = seconds_between(F.c.updated_at, literal(EPOCH, UtcDateTime)) + F.c.days_left * DAY_S


def forecast_page(
    conn: Connection, where: ForecastFilter, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """One page of forecasts, the earliest crossing first, axes forecast not to cross (within the horizon)
    last, then by robot and axis; and the cursor of the next page (None: this is the last)."""
    conds = []
    if where.robot is not None:
        conds.append(F.c.robot_id == where.robot)
    if where.axis is not None:
        conds.append(F.c.axis == where.axis)
    if where.max_days_left is not None:
        conds.append(F.c.days_left <= where.max_days_left)
    if where.due_before is not None:
        conds.append(DUE_S <= (where.due_before - EPOCH).total_seconds())
    if cursor is not None:
        conds.append(_after(cursor))
    never = F.c.days_left.is_(None)
    query = (
        select(F, DUE_S.label("due_s")).where(*conds).order_by(never, DUE_S, F.c.robot_id, F.c.axis).limit(limit + 1)
    )
    rows = dicts(conn.execute(query))
    page = [{"robot_id": r["robot_id"], "axis": r["axis"], "forecast": forecast_of(r)} for r in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    last = rows[limit - 1]
    return page, pack_cursor([last["due_s"], last["robot_id"], last["axis"]])


def _after(cursor: str):
    """The rows after the cursor's (due_s or None, robot, axis) in the page order."""
    values = unpack_cursor(cursor)
    shapes = ((float, int, type(None)), str, int)
    if len(values) != len(shapes) or not all(
        isinstance(v, t) and type(v) is not bool for v, t in zip(values, shapes, strict=True)
    ):
        raise BadCursor(CURSOR_HELP)
    due, robot, axis = values
    later_key = or_(F.c.robot_id > robot, and_(F.c.robot_id == robot, F.c.axis > axis))
    never = F.c.days_left.is_(None)
    if due is None:
        return and_(never, later_key)
    return or_(never, DUE_S > due, and_(DUE_S == due, later_key))
