"""The questions the dashboard's Fleet tab asks of the health tables (migration 0008) and the alerts.

Like ``common.store.queries``: a SQLAlchemy ``Connection`` in, parameterised SQL that reads the same on
PostgreSQL and SQLite, plain dicts out. The grid is one statement; an axis's detail four lookups by the
tables' key prefix (forecast, rollup, alerts, maintenance log), each a few hundred rows at most.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, or_, select, union

from common.store import maintenance as log
from common.store.sqlparts import Row, dicts
from common.store.tables import alerts, axes_dim, health_forecast, health_rollup

FLEET_AXES = tuple(range(1, 9))  # axes 9-14 are always "OK null" in this fleet: nothing to judge
HOURS_SHOWN_DAYS = 30  # hourly values before the newest forecast; the daily line covers everything
ALERTS_SHOWN = 200
LOG_SHOWN = 200  # maintenance log entries of an axis, newest first

F = health_forecast


def days_after(made: datetime, days: float | None) -> datetime | None:
    """The instant ``days`` after a forecast was ``made``, or None: no such days, or past year 9999 (a
    forecast made late in 9999 by an outside client is valid; its crossing has no instant to show)."""
    try:
        return None if days is None else made + timedelta(days=days)
    except OverflowError:
        return None


def fleet_forecasts(conn: Connection) -> list[Row]:
    """One row per robot and axis 1-8: every axis ``axes_dim`` knows, and every axis with a forecast, with
    the axis's latest forecast (``level``, ``slope_per_day``, ``limit_level``, ``days_left``, ``low_days``,
    ``high_days``, ``updated_at``; all None while its trend has none yet)."""
    keys = union(
        select(axes_dim.c.robot_id, axes_dim.c.axis_id.label("axis")).where(
            axes_dim.c.active, axes_dim.c.axis_id.in_(FLEET_AXES)
        ),
        select(F.c.robot_id, F.c.axis).where(F.c.axis.in_(FLEET_AXES)),
    ).subquery()
    query = (
        select(keys.c.robot_id, keys.c.axis, *(c for c in F.columns if not c.primary_key))
        .select_from(keys.outerjoin(F, and_(F.c.robot_id == keys.c.robot_id, F.c.axis == keys.c.axis)))
        .order_by(keys.c.robot_id, keys.c.axis)
    )
    return dicts(conn.execute(query))


def axis_detail(conn: Connection, *, robot_id: str, axis: int) -> Row:
    """What the Fleet tab shows of one axis: ``forecast`` (its row, or None), ``trend`` (the hour rows of
    the 30 days before the newest forecast, every day row; oldest first), ``alerts`` (newest first) and
    ``maintenance`` (``maintenance_history``)."""
    forecast = dicts(conn.execute(select(F).where(F.c.robot_id == robot_id, F.c.axis == axis)))
    forecast_row = forecast[0] if forecast else None
    axis_alerts = dicts(
        conn.execute(
            select(alerts)
            .where(alerts.c.robot_id == robot_id, alerts.c.axis == axis)
            .order_by(alerts.c.opened_at.desc(), alerts.c.event_id)
            .limit(ALERTS_SHOWN)
        )
    )
    return {
        "forecast": forecast_row,
        "trend": axis_trend(
            conn,
            robot_id=robot_id,
            axis=axis,
            # A forecast made in year 1's first month has no instant 30 days before: every hour row then.
            hours_from=days_after(forecast_row["updated_at"], -HOURS_SHOWN_DAYS) if forecast else None,
        ),
        "alerts": axis_alerts,
        "maintenance": maintenance_history(conn, robot_id=robot_id, axis=axis, axis_alerts=axis_alerts),
    }


def axis_trend(conn: Connection, *, robot_id: str, axis: int, hours_from: datetime | None = None) -> list[Row]:
    """The axis's health rollup: every day row, and the hour rows from ``hours_from`` on (all when None)."""
    R = health_rollup
    hours = R.c.period == "hour"
    if hours_from is not None:
        hours = and_(hours, R.c.bucket_start >= hours_from)
    query = (
        select(R.c.period, R.c.bucket_start, R.c.cycles, R.c.judged, R.c.deviation_median, R.c.deviation_max)
        .where(R.c.robot_id == robot_id, R.c.axis == axis, or_(R.c.period == "day", hours))
        .order_by(R.c.period, R.c.bucket_start)
    )
    return dicts(conn.execute(query))


def maintenance_history(conn: Connection, *, robot_id: str, axis: int, axis_alerts: list[Row]) -> list[Row]:
    """The axis's maintenance history, newest first: ``at``, ``what``, ``action``, ``outcome``, ``note``,
    ``by``. Its acknowledged alerts (``axis_alerts``, already read: what people found when they went to look)
    merged with its maintenance log entries (what was done). An acknowledgement "part replaced" is both an
    acknowledged alert and a log entry naming that alert at that moment: it is shown once, as the alert with
    the entry's action."""
    acknowledged = {(a["event_id"], a["acknowledged_at"]): a for a in axis_alerts if a["acknowledged_at"]}
    logged = log.maintenance_history(conn, robot_id=robot_id, axis=axis, limit=LOG_SHOWN)
    actions = {(e["event_id"], e["at"]): e["action"] for e in logged if (e["event_id"], e["at"]) in acknowledged}
    rows = [
        {
            "at": a["acknowledged_at"],
            "what": f"{a['detector']} alert ({a['severity']}) acknowledged",
            "action": actions.get(key),
            "outcome": a["ack_outcome"],
            "note": a["ack_note"],
            "by": a["acknowledged_by"],
        }
        for key, a in acknowledged.items()
    ] + [
        {
            "at": e["at"],
            "what": "maintenance logged",
            "action": e["action"],
            "outcome": None,
            "note": e["note"],
            "by": e["user_name"],
        }
        for e in logged
        if (e["event_id"], e["at"]) not in actions
    ]
    return sorted(rows, key=lambda r: r["at"], reverse=True)
