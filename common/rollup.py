"""The per-minute rollup (``readings_minute``, ``reading_stamps_minute``): how it is computed from
readings_fact, kept up to date by the writers, and read back for a time range.

Exactness: the writers (consumer_db.store) recompute every rollup row of a (robot, minute) they stored a
reading in, from readings_fact, in the same transaction; a replayed batch stores nothing and changes
nothing. A reader takes whole minutes from the rollup and the partial minutes at the ends of its range
from readings_fact, so its answers are those of the raw rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Select, and_, case, func, or_, select, text, true, union_all
from sqlalchemy.dialects import postgresql, sqlite

from common.sqlparts import epoch_seconds, minute_start
from common.tables import UtcDateTime, axes_dim, reading_stamps_minute, readings_fact, readings_minute

R, M, S = readings_fact, readings_minute, reading_stamps_minute
MINUTE = timedelta(minutes=1)
# Key space of the per-robot advisory locks (the two-number form: apart from consumer_db.migrate's lock).
ROLLUP_LOCK_SPACE = 0x726F6C6C  # "roll"
LOCK_ROBOTS = text(
    "SELECT pg_advisory_xact_lock(:space, k) FROM "
    "(SELECT DISTINCT hashtext(r) AS k FROM unnest(CAST(:robots AS text[])) AS r ORDER BY 1) AS keys"
)


def floor_minute(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(second=0, microsecond=0)


def minute_stats_of(filters: Iterable) -> Select:
    """Per robot, minute and axis, the rollup's columns computed from the readings_fact rows of ``filters``."""
    minute = minute_start(R.c.ts).label("minute")
    return (
        select(R.c.robot_id, minute, R.c.axis_id, func.count().label("n_rows"), func.count(R.c.amps).label("n_values"),
               func.sum(case((R.c.amps == 0, 1), else_=0)).label("n_zero"), func.sum(R.c.amps).label("sum_amps"),
               func.sum(R.c.amps * R.c.amps).label("sum_sq_amps"), func.min(R.c.amps).label("min_amps"),
               func.max(R.c.amps).label("max_amps"), func.max(case((R.c.amps != 0, R.c.amps))).label("max_active_amps"))
        .where(*filters)
        .group_by(R.c.robot_id, minute, R.c.axis_id)
    )


def stamp_stats_of(filters: Iterable) -> Select:
    """Per robot and minute, the distinct reading times of the readings_fact rows of ``filters``."""
    stamps = select(R.c.robot_id, R.c.ts).where(*filters).group_by(R.c.robot_id, R.c.ts).subquery()
    minute = minute_start(stamps.c.ts)
    prev = func.lag(stamps.c.ts, type_=UtcDateTime).over(partition_by=(stamps.c.robot_id, minute), order_by=stamps.c.ts)
    steps = select(stamps.c.robot_id, minute.label("minute"), stamps.c.ts,
                   (epoch_seconds(stamps.c.ts) - epoch_seconds(prev)).label("step")).subquery()
    return (
        select(steps.c.robot_id, steps.c.minute, func.count().label("readings"), func.min(steps.c.ts).label("first_ts"),
               func.max(steps.c.ts).label("last_ts"), func.coalesce(func.max(steps.c.step), 0.0).label("longest_step_s"))
        .where(true())  # SQLite's INSERT ... SELECT ... ON CONFLICT needs a WHERE to parse
        .group_by(steps.c.robot_id, steps.c.minute)
    )


# --- writing ------------------------------------------------------------------------------------------

def refresh(conn: Connection, spans: dict[str, list[datetime]]) -> None:
    """Recompute the rollup of every (robot, minute) from each robot's first to last stored time in
    ``spans`` (``robot_spans`` of the rows just written). On PostgreSQL a transaction-scoped lock per robot
    comes first, so that of two writers of one robot the later one reads after the earlier committed
    (READ COMMITTED takes a fresh snapshot per statement) and its rollup includes both."""
    if not spans:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(LOCK_ROBOTS, {"space": ROLLUP_LOCK_SPACE, "robots": sorted(spans)})
    touched = or_(*(and_(R.c.robot_id == robot, R.c.ts >= floor_minute(low), R.c.ts < floor_minute(high) + MINUTE)
                    for robot, (low, high) in spans.items()))
    _upsert(conn, M, minute_stats_of([touched]))
    _upsert(conn, S, stamp_stats_of([touched]))


def robot_spans(rows: Iterable[tuple]) -> dict[str, list[datetime]]:
    """Per robot, the earliest and the latest ts among ``(robot_id, axis_id, ts, amps)`` rows."""
    spans: dict[str, list[datetime]] = {}
    for robot, _, ts, _ in rows:
        span = spans.setdefault(robot, [ts, ts])
        if ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
    return spans


def _upsert(conn: Connection, table, query: Select) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).from_select([c.name for c in query.selected_columns], query)
    keys = [c.name for c in table.primary_key]
    conn.execute(statement.on_conflict_do_update(
        index_elements=keys, set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}))


def rebuild(conn: Connection) -> None:
    """Recompute the whole rollup from readings_fact (after a bulk load that bypassed the writers)."""
    _upsert(conn, M, minute_stats_of([true()]))
    _upsert(conn, S, stamp_stats_of([true()]))


# --- reading ------------------------------------------------------------------------------------------

def minute_stats(*, robot_id: str | None, start: datetime | None, end: datetime | None):
    """Subquery: ``readings_minute``'s columns for the rows of ``start <= ts <= end`` (either end open)."""
    return _whole_and_edges(M, minute_stats_of, robot_id=robot_id, start=start, end=end)


def stamp_stats(*, robot_id: str | None, start: datetime | None, end: datetime | None):
    """Subquery: ``reading_stamps_minute``'s columns for the rows of ``start <= ts <= end``."""
    return _whole_and_edges(S, stamp_stats_of, robot_id=robot_id, start=start, end=end)


def _whole_and_edges(table, of_raw, *, robot_id, start, end):
    """The rollup's rows of the minutes wholly inside the range, and the raw rows of the partial minutes at
    its ends aggregated the same way (each part one index range). No minute is in two parts."""
    first = None if start is None else floor_minute(start) + (MINUTE if start != floor_minute(start) else timedelta())
    last = None if end is None else floor_minute(end)  # whole minutes end before this one
    robots = _robots(R, robot_id, bounded=start is not None or end is not None)
    if first is not None and last is not None and first >= last:
        return of_raw([*robots, R.c.ts >= start, R.c.ts <= end]).subquery()
    whole = select(table).where(*_robots(table, robot_id, bounded=start is not None or end is not None))
    if first is not None:
        whole = whole.where(table.c.minute >= first)
    if last is not None:
        whole = whole.where(table.c.minute < last)
    parts = [whole]
    if start is not None and start < first:
        parts.append(of_raw([*robots, R.c.ts >= start, R.c.ts < first]))
    if end is not None:
        parts.append(of_raw([*robots, R.c.ts >= last, R.c.ts <= end]))
    return union_all(*parts).subquery() if len(parts) > 1 else whole.subquery()


def _robots(table, robot_id: str | None, *, bounded: bool) -> list:
    # As common.sqlparts.where: for the fleet and a time range, name the robots so the index serves the
    # range robot by robot.
    if robot_id is not None:
        return [table.c.robot_id == robot_id]
    return [table.c.robot_id.in_(select(axes_dim.c.robot_id).distinct())] if bounded else []
