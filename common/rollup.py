"""The per-minute rollup (``readings_minute``, ``reading_stamps_minute``): how it is computed from
readings_fact, kept up to date by the writers, and read back for a time range.

Upkeep: a writer (consumer_db.store) hands ``add`` the rows its ``INSERT``/``COPY`` actually stored, in the
same transaction. Each readings_fact row is stored by exactly one transaction (its primary key), so it is
added exactly once; a replay stores nothing and adds nothing; a crash rolls back rows and rollup together.

- readings_minute: the new rows' aggregates are merged into the stored row (counts and sums added, min and
  max kept). Merges of one key commute, and PostgreSQL applies a conflicting upsert to the newest
  committed version of the row, so concurrent writers need no lock.
- reading_stamps_minute (distinct times, first/last, longest step): the new distinct times of a (robot,
  minute) are appended when they all come after the stored ``last_ts``, the usual case. The guard
  ``excluded.first_ts > last_ts`` refuses anything else: late or out-of-order data, or a time already
  counted (a new axis of a stored reading). Those keys alone are recomputed from readings_fact.

No advisory lock, also not for that recompute. PostgreSQL's ``ON CONFLICT DO UPDATE`` first waits for any
open transaction that wrote the conflicting row, then locks the row even when the guard refuses the
update. So when a guard fails, every earlier writer of that key has committed, and the recompute, a later
statement, reads them all (READ COMMITTED takes a fresh snapshot per statement). A writer whose readings
rows are not committed yet is not in it; it has yet to upsert that key, waits for this transaction on the
row lock, then appends to the recomputed row, or recomputes again. Keys are upserted in sorted order, so
two writers of overlapping minutes lock them in the same order and do not deadlock. SQLite has one writer
at a time.

Reading: a reader takes whole minutes from the rollup and the partial minutes at the ends of its range
from readings_fact, so its answers are those of the raw rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache

from sqlalchemy import Connection, Select, and_, case, func, or_, select, true, union_all

from common.sqlparts import epoch_seconds, greatest, least, minute_start
from common.tables import UtcDateTime, axes_dim, dialect_insert, reading_stamps_minute, readings_fact, readings_minute

R, M, S = readings_fact, readings_minute, reading_stamps_minute
MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


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

@dataclass
class NewRows:
    """``(robot_id, axis_id, ts, amps)`` rows just stored; per (robot, minute) their distinct times and
    each axis's values."""

    # (robot, minute) -> (distinct times, axis -> values)
    minutes: dict[tuple[str, datetime], tuple[set[datetime], dict[int, list]]] = field(default_factory=dict)
    count: int = 0

    @classmethod
    def of(cls, rows: Iterable[tuple]) -> NewRows:
        minutes: dict = {}
        last_robot = last_ts = None
        for robot, axis, ts, value in rows:
            if ts is not last_ts or robot is not last_robot:  # the rows of one reading share robot and ts
                last_robot, last_ts = robot, ts
                key = (robot, floor_minute(ts))
                minute = minutes.get(key)
                if minute is None:
                    minute = minutes[key] = (set(), {})
                times, axes = minute
                times.add(ts)
            values = axes.get(axis)
            if values is None:
                values = axes[axis] = []
            values.append(value)
        return cls(minutes, sum(len(values) for _, axes in minutes.values() for values in axes.values()))

    def spans(self) -> dict[str, list[datetime]]:
        """Per robot, the earliest and the latest ts."""
        spans: dict[str, list[datetime]] = {}
        for (robot, _), (times, _) in self.minutes.items():
            low, high = min(times), max(times)
            span = spans.setdefault(robot, [low, high])
            span[0], span[1] = min(span[0], low), max(span[1], high)
        return spans


def add(conn: Connection, new: NewRows) -> None:
    """Fold rows this transaction stored in readings_fact (none of them there before) into the rollup."""
    if not new.count:
        return
    _merge_minutes(conn, _minute_rows(new.minutes))
    late = _append_stamps(conn, _stamp_rows(new.minutes, _seconds_between(conn.dialect.name)))
    if late:
        _upsert(conn, S, stamp_stats_of([_minutes_of(late)]))


def _minute_rows(minutes) -> list[dict]:
    rows = []
    for (robot, minute), (_, axes) in sorted(minutes.items()):
        for axis, all_amps in sorted(axes.items()):
            values = [a for a in all_amps if a is not None]
            active = [a for a in values if a != 0]
            rows.append({"robot_id": robot, "minute": minute, "axis_id": axis, "n_rows": len(all_amps),
                         "n_values": len(values), "n_zero": len(values) - len(active),
                         "sum_amps": sum(values) if values else None,
                         "sum_sq_amps": sum(a * a for a in values) if values else None,
                         "min_amps": min(values, default=None), "max_amps": max(values, default=None),
                         "max_active_amps": max(active, default=None)})
    return rows


def _merge_minutes(conn: Connection, rows: list[dict]) -> None:
    # RETURNING (unused) because with it SQLAlchemy sends many rows per statement (insertmanyvalues); an
    # ON CONFLICT DO UPDATE without it goes one statement per row (sqlalchemy#13130): 0.7 s per 2,500 rows.
    conn.execute(_merge_statement(conn.dialect.name), rows)


@cache  # the dialects' INSERT is not in SQLAlchemy's statement cache: build it once at least
def _merge_statement(dialect: str):
    statement = dialect_insert(dialect, M)
    old, new = M.c, statement.excluded

    def either(combined, column):  # NULL (no value yet) on one side: the other side's
        return func.coalesce(combined(old[column], new[column]), old[column], new[column])

    merged = {
        **{c: old[c] + new[c] for c in ("n_rows", "n_values", "n_zero")},
        **{c: either(lambda a, b: a + b, c) for c in ("sum_amps", "sum_sq_amps")},
        "min_amps": either(least, "min_amps"),
        **{c: either(greatest, c) for c in ("max_amps", "max_active_amps")},
    }
    return statement.on_conflict_do_update(index_elements=_keys(M), set_=merged).returning(M.c.axis_id)


def _stamp_rows(minutes, seconds_between) -> list[dict]:
    rows = []
    for (robot, minute), (times, _) in sorted(minutes.items()):
        ordered = sorted(times)
        longest = max((seconds_between(a, b) for a, b in zip(ordered, ordered[1:])), default=0.0)
        rows.append({"robot_id": robot, "minute": minute, "readings": len(ordered), "first_ts": ordered[0],
                     "last_ts": ordered[-1], "longest_step_s": longest})
    return rows


def _append_stamps(conn: Connection, rows: list[dict]) -> set[tuple[str, datetime]]:
    """Upsert the rows whose times all come after the stored minute's; returns the keys refused."""
    done = set(conn.execute(_append_statement(conn.dialect.name), rows).tuples())
    return {(r["robot_id"], r["minute"]) for r in rows} - done


@cache
def _append_statement(dialect: str):
    statement = dialect_insert(dialect, S)
    old, new = S.c, statement.excluded
    appended = {
        "readings": old.readings + new.readings,
        "last_ts": new.last_ts,
        "longest_step_s": greatest(old.longest_step_s, new.longest_step_s,
                                   epoch_seconds(new.first_ts) - epoch_seconds(old.last_ts)),
    }
    upsert = statement.on_conflict_do_update(index_elements=_keys(S), set_=appended, where=new.first_ts > old.last_ts)
    return upsert.returning(S.c.robot_id, S.c.minute)


def _minutes_of(keys: Iterable[tuple[str, datetime]]):
    """The readings_fact rows of these (robot, minute) keys; a robot's consecutive minutes as one range."""
    ranges: list[list] = []
    for robot, minute in sorted(keys):
        if ranges and ranges[-1][0] == robot and ranges[-1][2] == minute:
            ranges[-1][2] = minute + MINUTE
        else:
            ranges.append([robot, minute, minute + MINUTE])
    return or_(*(and_(R.c.robot_id == robot, R.c.ts >= low, R.c.ts < high) for robot, low, high in ranges))


def _seconds_between(dialect: str):
    """``b - a`` in seconds, as the same step recomputed in SQL (``epoch_seconds`` differences) comes out,
    to the last bit: exact on PostgreSQL; on SQLite the difference of two epoch doubles."""
    if dialect == "sqlite":
        return lambda a, b: _sqlite_epoch(b) - _sqlite_epoch(a)
    return lambda a, b: (b - a).total_seconds()


def _sqlite_epoch(ts: datetime) -> float:
    return (ts - EPOCH) // SECOND + ts.microsecond / 1e6


def _keys(table) -> list[str]:
    return [c.name for c in table.primary_key]


def _upsert(conn: Connection, table, query: Select) -> None:
    """The rollup rows of ``query`` replace the stored ones."""
    statement = dialect_insert(conn.dialect.name, table).from_select([c.name for c in query.selected_columns], query)
    keys = _keys(table)
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
