"""The per-minute rollup (``readings_minute``, ``reading_stamps_minute``, ``fleet_minute``): computed from
readings_fact, kept up to date by the writers, read back for a time range.

A robot's minutes are folded once they have passed (``rollup_progress.folded_until``: every minute before
it is in the rollup), by the writer that stored the rows (``add``), in the same transaction: a crash rolls
back rows, rollup and progress together, and a rollup row is written about once a minute instead of at
every reading. Late rows have their minutes recomputed. The robot's progress row is locked first, in robot
order, so two writers take turns without deadlock and nothing is folded without a row the other had stored.

A reader takes the whole minutes of its range from the rollup and the rest from readings_fact, so its
answers are those of the raw rows; the dashboard's history reads the rollup alone (``folded``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)

from common.sqlparts import axes_mask, hour_start, mean_of, minute_start, seconds_between, where
from common.tables import (
    UtcDateTime,
    dialect_insert,
    fleet_minute,
    insert_ignoring_duplicates,
    reading_stamps_hour,
    reading_stamps_minute,
    readings_fact,
    readings_minute,
    rollup_progress,
)

R, M, S, SH, F, P = (
    readings_fact,
    readings_minute,
    reading_stamps_minute,
    reading_stamps_hour,
    fleet_minute,
    rollup_progress,
)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
FLEET_LOCK = zlib.crc32(b"axiswatch fleet_minute")  # pg_advisory_xact_lock's key for refolding fleet_minute


def floor_minute(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def minute_stats_of(filters: Iterable) -> Select:
    """Per robot, minute and axis, the rollup's columns computed from the readings_fact rows of ``filters``."""
    minute = minute_start(R.c.ts).label("minute")
    return (
        select(
            R.c.robot_id,
            minute,
            R.c.axis_id,
            func.count().label("n_rows"),
            func.count(R.c.amps).label("n_values"),
            func.sum(case((R.c.amps == 0, 1), else_=0)).label("n_zero"),
            func.sum(R.c.amps).label("sum_amps"),
            func.sum(R.c.amps * R.c.amps).label("sum_sq_amps"),
            func.min(R.c.amps).label("min_amps"),
            func.max(R.c.amps).label("max_amps"),
            func.max(case((R.c.amps != 0, R.c.amps))).label("max_active_amps"),
        )
        .where(*filters)
        .group_by(R.c.robot_id, minute, R.c.axis_id)
    )


def stamp_stats_of(filters: Iterable, axes: Select | None = None) -> Select:
    """Per robot and minute, the distinct reading times of the readings_fact rows of ``filters``, and the
    rows and axes they came with; those from ``axes`` if given (``minute_axes_of`` the same minutes, which a
    writer has just folded: 14 rows a minute instead of ~420)."""
    filters = list(filters)
    stamps = select(R.c.robot_id, R.c.ts).where(*filters).group_by(R.c.robot_id, R.c.ts).subquery()
    minute = minute_start(stamps.c.ts)
    prev = func.lag(stamps.c.ts, type_=UtcDateTime).over(partition_by=(stamps.c.robot_id, minute), order_by=stamps.c.ts)
    steps = select(
        stamps.c.robot_id, minute.label("minute"), stamps.c.ts, seconds_between(stamps.c.ts, prev).label("step")
    ).subquery()
    times = (
        select(
            steps.c.robot_id,
            steps.c.minute,
            func.count().label("readings"),
            func.min(steps.c.ts).label("first_ts"),
            func.max(steps.c.ts).label("last_ts"),
            func.coalesce(func.max(steps.c.step), 0.0).label("longest_step_s"),
        )
        .group_by(steps.c.robot_id, steps.c.minute)
        .subquery()
    )
    if axes is None:
        minute = minute_start(R.c.ts)
        axes = (
            select(
                R.c.robot_id,
                minute.label("minute"),
                func.count().label("n_rows"),
                axes_mask(R.c.axis_id).label("axes_stored"),
                axes_mask(case((R.c.amps.is_not(None), R.c.axis_id))).label("axes_with_values"),
            )
            .where(*filters)
            .group_by(R.c.robot_id, minute)
        )
    axes = axes.subquery()
    return (
        select(times, axes.c.n_rows, axes.c.axes_stored, axes.c.axes_with_values)
        .select_from(times.join(axes, and_(axes.c.robot_id == times.c.robot_id, axes.c.minute == times.c.minute)))
        .where(true())  # SQLite's INSERT ... SELECT ... ON CONFLICT needs a WHERE to parse
    )


def minute_axes_of(filters: Iterable, *, at=M.c.minute, name: str = "minute") -> Select:
    """Per robot and minute (or ``at`` = its hour), the rows and the masks of axes of the readings_minute rows
    of ``filters``: ``reading_stamps_minute``'s (or ``_hour``'s) ``n_rows``, ``axes_stored``, ``axes_with_values``."""
    return (
        select(
            M.c.robot_id,
            at.label(name),
            func.sum(M.c.n_rows).label("n_rows"),
            axes_mask(M.c.axis_id).label("axes_stored"),
            axes_mask(case((M.c.n_values > 0, M.c.axis_id))).label("axes_with_values"),
        )
        .where(*filters)
        .group_by(M.c.robot_id, at)
    )


def stamp_hours_of(stamp_filters: Iterable, minute_filters: Iterable) -> Select:
    """Per robot and hour, ``reading_stamps_hour``'s columns from the reading_stamps_minute rows of
    ``stamp_filters`` and (the masks of axes) the readings_minute rows of ``minute_filters``: whole hours."""
    hour = hour_start(S.c.minute)
    prev_last = func.lag(S.c.last_ts, type_=UtcDateTime).over(partition_by=(S.c.robot_id, hour), order_by=S.c.minute)
    minutes = (
        select(S, hour.label("hour"), seconds_between(S.c.first_ts, prev_last).label("step_in"))
        .where(*stamp_filters)
        .subquery()
    )
    longest = case((minutes.c.step_in > minutes.c.longest_step_s, minutes.c.step_in), else_=minutes.c.longest_step_s)
    times = (
        select(
            minutes.c.robot_id,
            minutes.c.hour,
            func.sum(minutes.c.readings).label("readings"),
            func.min(minutes.c.first_ts).label("first_ts"),
            func.max(minutes.c.last_ts).label("last_ts"),
            func.max(longest).label("longest_step_s"),
            func.sum(minutes.c.n_rows).label("n_rows"),
        )
        .group_by(minutes.c.robot_id, minutes.c.hour)
        .subquery()
    )
    axes = minute_axes_of(minute_filters, at=hour_start(M.c.minute), name="hour").subquery()
    return (
        select(times, axes.c.axes_stored, axes.c.axes_with_values)
        .select_from(times.join(axes, and_(axes.c.robot_id == times.c.robot_id, axes.c.hour == times.c.hour)))
        .where(true())  # SQLite's INSERT ... SELECT ... ON CONFLICT needs a WHERE to parse
    )


def fleet_stats_of(filters: Iterable) -> Select:
    """Per minute and axis, ``fleet_minute``'s columns from the readings_minute rows of ``filters``."""
    mean = mean_of(M.c.sum_amps, M.c.n_values)
    return (
        select(
            M.c.minute,
            M.c.axis_id,
            func.sum(M.c.n_rows).label("n_rows"),
            func.sum(M.c.n_values).label("n_values"),
            func.sum(M.c.n_zero).label("n_zero"),
            func.sum(M.c.sum_amps).label("sum_amps"),
            func.max(M.c.max_amps).label("max_amps"),
            func.max(M.c.max_active_amps).label("max_active_amps"),
            func.count(mean).label("n_robot_means"),
            func.sum(mean).label("sum_robot_means"),
        )
        .where(*filters)
        .group_by(M.c.minute, M.c.axis_id)
    )


# --- writing ------------------------------------------------------------------------------------------


@dataclass
class NewRows:
    """Rows just stored, ``(robot_id, axis_id, ts, amps)``: per robot the minutes they fall in and their
    earliest and latest ts; and how many there are."""

    minutes: dict[str, set[datetime]] = field(default_factory=dict)
    spans: dict[str, list[datetime]] = field(default_factory=dict)
    count: int = 0

    @classmethod
    def of(cls, rows: Iterable[tuple]) -> NewRows:
        new = cls()
        last_robot = last_ts = None
        for robot, _, ts, _ in rows:
            new.count += 1
            if ts == last_ts and robot == last_robot:  # the rows of one reading share robot and ts
                continue
            last_robot, last_ts = robot, ts
            span = new.spans.get(robot)
            if span is None:
                new.spans[robot] = [ts, ts]
                new.minutes[robot] = set()
            elif ts < span[0]:
                span[0] = ts
            elif ts > span[1]:
                span[1] = ts
            new.minutes[robot].add(floor_minute(ts))
        return new


def add(conn: Connection, new: NewRows) -> None:
    """Bring the rollup up to date with rows this transaction stored in readings_fact (none of them
    there before): refold the minutes they came late to, fold the robots' minutes that have passed."""
    if not new.count:
        return
    folded = _lock_progress(conn, new.minutes)
    late = [
        (robot, minute, minute + MINUTE)
        for robot, minutes in new.minutes.items()
        for minute in minutes
        if minute < folded[robot]
    ]
    passed = {robot: floor_minute(span[1] - fold_delay(robot)) for robot, span in new.spans.items()}
    passed = {robot: until for robot, until in passed.items() if until > folded[robot]}
    todo = late + [(robot, folded[robot], until) for robot, until in passed.items()]
    if todo:
        rows_of = _within(R, "ts", todo)
        _upsert(conn, M, minute_stats_of([rows_of]))
        _upsert(conn, S, stamp_stats_of([rows_of], axes=minute_axes_of([_within(M, "minute", todo)])))
        _refold_hours(conn, todo, {robot: passed.get(robot, until) for robot, until in folded.items()})
        _refold_fleet(conn, [(low, high) for _, low, high in todo])
    if passed:
        conn.execute(
            update(P).where(P.c.robot_id == bindparam("robot")).values(folded_until=bindparam("until")),
            [{"robot": robot, "until": until} for robot, until in sorted(passed.items())],
        )


def fold_delay(robot_id: str) -> timedelta:
    """How long after a minute's end a robot's minute is folded: between 0 and 60 s, fixed per robot. A
    fleet whose clocks tick together would otherwise have every robot's minute folded by the same
    write, once a minute, a stall of the stream; spread, each write folds ~1/30 of them."""
    return timedelta(milliseconds=zlib.crc32(robot_id.encode()) % 60_000)


def _lock_progress(conn: Connection, minutes: dict[str, set[datetime]]) -> dict[str, datetime]:
    """Each robot's ``folded_until``, its row locked until the transaction ends; a robot new to the
    rollup starts at its first minute here (nothing of it is stored before that)."""
    robots = sorted(minutes)
    insert_ignoring_duplicates(conn, P, [{"robot_id": r, "folded_until": min(minutes[r])} for r in robots])
    locked = select(P.c.robot_id, P.c.folded_until).where(P.c.robot_id.in_(robots)).order_by(P.c.robot_id)
    return dict(conn.execute(locked.with_for_update()).all())


def _within(table, time, ranges: Iterable[tuple[str, datetime, datetime]]):
    """The rows of ``table`` in these ``(robot, from, until)`` ranges of its column ``time``."""
    return or_(*(and_(*_spanning(table, time, robot, low, high)) for robot, low, high in _joined(ranges)))


def _joined(ranges: Iterable[tuple]) -> list[list]:
    """``(key..., from, until)`` ranges, those of one key that overlap or touch joined into one."""
    joined: list[list] = []
    for *key, low, high in sorted(ranges):
        if joined and joined[-1][:-2] == key and joined[-1][-1] >= low:
            joined[-1][-1] = max(joined[-1][-1], high)
        else:
            joined.append([*key, low, high])
    return joined


def _spanning(table, time: str, robot_id: str | None, low: datetime | None, high: datetime | None) -> list:
    """Conditions: one robot's (None = all) rows of ``table`` with ``low <= time < high`` (either end open)."""
    column, conds = table.c[time], [] if robot_id is None else [table.c.robot_id == robot_id]
    return conds + ([] if low is None else [column >= low]) + ([] if high is None else [column < high])


def _refold_hours(
    conn: Connection, todo: list[tuple[str, datetime, datetime]], folded_until: dict[str, datetime]
) -> None:
    """Recompute the whole hours (before the hour of the robot's ``folded_until``) that ``todo``'s minutes
    are in: about once an hour per robot, when its folding crosses into the next hour, and for late rows."""
    hours = []
    for robot, low, high in todo:
        high = min(floor_hour(high - MINUTE) + HOUR, floor_hour(folded_until[robot]))
        if floor_hour(low) < high:
            hours.append((robot, floor_hour(low), high))
    if hours:
        _upsert_hours(conn, hours)


def _upsert_hours(conn: Connection, hours: list[tuple[str, datetime, datetime]]) -> None:
    """reading_stamps_hour's rows of these ``(robot, from, until)`` ranges of whole hours, afresh."""
    _upsert(conn, SH, stamp_hours_of([_within(S, "minute", hours)], [_within(M, "minute", hours)]))


def _refold_fleet(conn: Connection, ranges: list[tuple[datetime, datetime]]) -> None:
    """Recompute the fleet's rows of the minutes in ``ranges`` from every robot's rows of them.

    Another writer may be folding other robots' rows of the same minutes: each computes from what is
    committed, so the last to commit would drop the other's robots. A lock taken here, held to the commit,
    makes them take turns: the second one's statement below starts after the first one's commit and sees
    its rows (READ COMMITTED). It is taken after the progress rows' locks, by every writer in that order,
    so no two writers wait for each other. SQLite has one writer at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(FLEET_LOCK)))
    minutes = or_(*(and_(*_spanning(M, "minute", None, low, high)) for low, high in _joined(ranges)))
    _upsert(conn, F, fleet_stats_of([minutes]))


def _keys(table) -> list[str]:
    return [c.name for c in table.primary_key]


def _upsert(conn: Connection, table, query: Select) -> None:
    """The rollup rows of ``query`` replace the stored ones."""
    statement = dialect_insert(conn.dialect.name, table).from_select([c.name for c in query.selected_columns], query)
    keys = _keys(table)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=keys, set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
        )
    )


def rebuild(conn: Connection) -> None:
    """Recompute the whole rollup from readings_fact (after a bulk load that bypassed the writers): every
    robot folded up to the minute after its newest reading."""
    _upsert(conn, M, minute_stats_of([true()]))
    _upsert(conn, S, stamp_stats_of([true()]))
    _upsert(conn, F, fleet_stats_of([true()]))
    newest = conn.execute(select(S.c.robot_id, func.max(S.c.minute)).group_by(S.c.robot_id)).tuples()
    statement = dialect_insert(conn.dialect.name, P)
    rows = [{"robot_id": robot, "folded_until": minute + MINUTE} for robot, minute in newest]
    if rows:
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["robot_id"], set_={"folded_until": statement.excluded.folded_until}
            ),
            rows,
        )
        _upsert_hours(
            conn,
            [(r["robot_id"], datetime.min.replace(tzinfo=UTC), floor_hour(r["folded_until"])) for r in rows],
        )


# --- reading ------------------------------------------------------------------------------------------


def minute_stats(
    conn: Connection, *, robot_id: str | None, start: datetime | None, end: datetime | None, folded_only: bool = False
):
    """Subquery: ``readings_minute``'s columns for the rows of ``start <= ts <= end`` (either end open).
    ``folded_only``: for the whole minutes of the range that are folded (see ``folded``)."""
    if folded_only:
        return folded(M, robot_id=robot_id, start=start, end=end)
    return _whole_and_edges(conn, M, minute_stats_of, robot_id=robot_id, start=start, end=end)


def stamp_stats(
    conn: Connection, *, robot_id: str | None, start: datetime | None, end: datetime | None, folded_only: bool = False
):
    """Subquery: ``reading_stamps_minute``'s columns for the rows of ``start <= ts <= end``, and ``seconds``,
    the length of the stretch of time a row sums up (60). ``folded_only``: of the whole minutes folded; a
    whole hour's as one row of reading_stamps_hour (``seconds`` 3600), its start in ``minute``."""
    if folded_only:
        return _folded_stamps(conn, robot_id=robot_id, start=start, end=end)
    minutes = _whole_and_edges(conn, S, stamp_stats_of, robot_id=robot_id, start=start, end=end)
    return select(minutes, literal(60).label("seconds")).subquery()


def _folded_stamps(conn: Connection, *, robot_id: str | None, start: datetime | None, end: datetime | None):
    """The whole hours of the range from reading_stamps_hour, as far as each robot has them (up to the hour
    of its ``folded_until``, read beforehand as in ``_whole_and_edges``), every other folded minute of
    the range from reading_stamps_minute."""
    first, last = _whole_minutes(start, end)
    first_hour = None if first is None else floor_hour(first - MINUTE) + HOUR  # the first whole hour
    last_hour = None if last is None else floor_hour(last)
    if first_hour is not None and last_hour is not None and first_hour >= last_hour:
        return _stamps_between(S, "minute", 60, [robot_id], first, last).subquery()
    parts = (
        []
        if first is None or first == first_hour
        else [_stamps_between(S, "minute", 60, [robot_id], first, first_hour)]
    )
    for cut, robots in _cuts(conn, robot_id, first_hour, last_hour, floor=floor_hour).items():
        if first_hour is None or cut > first_hour:
            parts.append(_stamps_between(SH, "hour", 3600, robots, first_hour, cut))
        parts.append(_stamps_between(S, "minute", 60, robots, cut, last))
    return union_all(*parts).subquery()


def folded_minute_stamps(*, robot_id: str, start: datetime, until: datetime):
    """``stamp_stats(folded_only=True)`` of one robot, minute by minute: its whole minutes from ``start``
    (an hour's, when data health looks into it) up to ``until``."""
    return _stamps_between(S, "minute", 60, [robot_id], _whole_minutes(start, None)[0], until).subquery()


def _stamps_between(
    table, time: str, seconds: int, robots: list[str | None], low: datetime | None, high: datetime | None
):
    """The rows of a stamps table of ``robots`` (``[None]``: all) in ``[low, high)``, with the columns of
    ``stamp_stats``."""
    names = ("readings", "first_ts", "last_ts", "longest_step_s", "n_rows", "axes_stored", "axes_with_values")
    conds = _spanning(table, time, None, low, high) + ([] if robots == [None] else [table.c.robot_id.in_(robots)])
    return select(
        table.c.robot_id, table.c[time].label("minute"), *(table.c[n] for n in names), literal(seconds).label("seconds")
    ).where(*conds)


def folded(table, *, robot_id: str | None = None, start: datetime | None, end: datetime | None):
    """Subquery: the rows of a rollup table (``fleet_minute`` too) for the whole minutes inside ``[start,
    end]``, as far as they are folded: each robot's newest minute or two are not (the history view's
    answers, which read nothing but the rollup). One statement: it sees one state of the rollup."""
    return select(table).where(*_spanning(table, "minute", robot_id, *_whole_minutes(start, end))).subquery()


def _whole_minutes(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """The first whole minute at or after ``start`` and the minute ``end`` falls in (whole minutes end before it)."""
    first = None if start is None else floor_minute(start) + (MINUTE if start != floor_minute(start) else timedelta())
    return first, None if end is None else floor_minute(end)


def _whole_and_edges(conn: Connection, table, of_raw, *, robot_id, start, end):
    """The rollup's rows of the minutes wholly inside the range; aggregated the same way, the raw rows of
    the partial minute at its start and, per robot, those from its first minute not folded (or the
    partial minute at the end, if that comes first). Each part is one index range per robot, and no row
    is in two parts.

    Each robot's parts are cut at the ``folded_until`` read here, beforehand, not joined in the query:
    PostgreSQL's planner cannot tell how few rows ``ts >= folded_until`` leaves and scans the whole table.
    A write that folds more minutes meanwhile changes nothing: the minutes it adds to the rollup are past
    the cut, and read raw."""
    first, last = _whole_minutes(start, end)
    if first is not None and last is not None and first >= last:
        return of_raw(where(R, robot_id=robot_id, start=start, end=end)).subquery()
    whole, tail = [], []
    for cut, robots in _cuts(conn, robot_id, first, last).items():
        if first is None or cut > first:
            whole.append(
                and_(
                    table.c.robot_id.in_(robots),
                    table.c.minute < cut,
                    *([table.c.minute >= first] if first is not None else []),
                )
            )
        tail.append(and_(R.c.robot_id.in_(robots), R.c.ts >= cut, *([R.c.ts <= end] if end is not None else [])))
    parts = [select(table).where(or_(false(), *whole)), of_raw([or_(false(), *tail)])]
    if start is not None and start < first:
        parts.append(of_raw([*where(R, robot_id=robot_id, start=start, end=None), R.c.ts < first]))
    return union_all(*parts).subquery()


def _cuts(
    conn: Connection,
    robot_id: str | None,
    first: datetime | None,
    last: datetime | None,
    floor=lambda folded_until: folded_until,
) -> dict[datetime, list[str]]:
    """Per robot, where its whole minutes end and its raw rows start: ``folded_until`` (its ``floor``: for
    whole hours, its hour) kept inside ``[first, last]``. Grouped by that time: a fleet has a few (its
    robots' current minutes), so each part is a few conditions, not one per robot (a hundred ORs cost more
    per rollup row than the row)."""
    query = select(P.c.robot_id, P.c.folded_until).order_by(P.c.robot_id)
    if robot_id is not None:
        query = query.where(P.c.robot_id == robot_id)
    cuts: dict[datetime, list[str]] = {}
    for robot, folded_until in conn.execute(query):
        cut = floor(folded_until) if last is None else min(floor(folded_until), last)
        cuts.setdefault(cut if first is None else max(cut, first), []).append(robot)
    return cuts
