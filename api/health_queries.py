"""What the API reads of the joint-health tables (migration 0008): one robot's health per axis, and the
fleet's forecasts in order of urgency.

A forecast's ``days_left`` counts from the moment it was made (``updated_at``, feed time), and axes are
forecast at different moments (a robot that stopped reporting keeps its last one), so urgency is the
forecast crossing instant, ``updated_at + days_left``, not ``days_left``. That sum is computed here, in
Python: the forecast table holds one row per robot and axis (2,800 for 200 robots of 14 axes), so reading
the rows a filter leaves and sorting them costs less than SQL date arithmetic that reads differently on
PostgreSQL and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, exists, func, or_, select

from api.queries import CURSOR_HELP, BadCursor, pack_cursor, unpack_cursor
from common.store.sqlparts import Row, dicts
from common.store.tables import axes_dim, health_cycles, health_forecast, health_rollup

F, C, R = health_forecast, health_cycles, health_rollup
CYCLE_FIELDS = ("cycle_start", "cycle_end", "duration_s", "rms_amps", "peak_amps", "energy_as", "energy_a2s")
CYCLE_FIELDS += ("covered_s", "deviation", "cold", "cut")
DAY_FIELDS = ("bucket_start", "cycles", "judged", "deviation_median", "deviation_max", "rms_amps", "peak_amps")


def forecast_of(row: Row) -> Row:
    """A stored forecast as the API shows it: the interval as days and as instants."""
    made = row["updated_at"]

    def at(days: float | None) -> datetime | None:
        return None if days is None else made + timedelta(days=days)

    return {
        "made_at": made,
        "level": row["level"],
        "slope_per_day": row["slope_per_day"],
        "limit": row["limit_level"],
        "days_left": row["days_left"],
        "low_days": row["low_days"],
        "high_days": row["high_days"],
        "due_at": at(row["days_left"]),
        "due_low_at": at(row["low_days"]),
        "due_high_at": at(row["high_days"]),
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
    newest = (
        select(C.c.axis, func.max(C.c.cycle_start).label("cycle_start"))
        .where(C.c.robot_id == robot_id)
        .group_by(C.c.axis)
        .subquery()
    )
    on = and_(C.c.robot_id == robot_id, C.c.axis == newest.c.axis, C.c.cycle_start == newest.c.cycle_start)
    for row in dicts(conn.execute(select(C).select_from(C.join(newest, on)))):
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


SORTABLE = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, UTC: sorts as text the way the instants do


def _urgency(row: Row) -> tuple:
    """Sort key: the earliest forecast crossing first, axes forecast not to cross (within the horizon) last."""
    due = row["forecast"]["due_at"]
    return (due is None, due.astimezone(UTC).strftime(SORTABLE) if due else "", row["robot_id"], row["axis"])


def forecast_page(
    conn: Connection, where: ForecastFilter, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """One page of forecasts, most urgent first, and the cursor of the next page (None: this is the last)."""
    conds = []
    if where.robot is not None:
        conds.append(F.c.robot_id == where.robot)
    if where.axis is not None:
        conds.append(F.c.axis == where.axis)
    if where.max_days_left is not None:
        conds.append(F.c.days_left <= where.max_days_left)
    if where.due_before is not None:
        conds.append(F.c.days_left.is_not(None))
    found = [
        {"robot_id": row["robot_id"], "axis": row["axis"], "forecast": forecast_of(row)}
        for row in dicts(conn.execute(select(F).where(*conds)))
    ]
    if where.due_before is not None:
        found = [f for f in found if f["forecast"]["due_at"] <= where.due_before]
    found.sort(key=_urgency)
    if cursor is not None:
        after = _after(cursor)
        found = [f for f in found if _urgency(f) > after]
    page = found[:limit]
    return page, (pack_cursor(list(_urgency(page[-1]))) if len(found) > limit else None)


def _after(cursor: str) -> tuple:
    values = unpack_cursor(cursor)
    shapes = (bool, str, str, int)
    if len(values) != len(shapes) or not all(type(v) is t for v, t in zip(values, shapes, strict=True)):
        raise BadCursor(CURSOR_HELP)
    return tuple(values)
