"""The questions asked of the stored readings, shared by consumer_db's phrase queries and the dashboard.

Each function takes a SQLAlchemy ``Connection`` and keyword-only filters, runs parameterised SQL that
works on PostgreSQL and SQLite, and returns plain dicts (timestamps aware UTC). Common filters:
``robot_id`` (None = every robot) and a time range ``start <= ts <= end`` (either end open when None).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Interval,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import array

from common.store.health import data_health
from common.store.rollup import MINUTE, floor_minute, folded, minute_stats, span_stats, stored_rows
from common.store.sqlparts import Row, axes_mask, hour_start, mask_bit, mean_of
from common.store.sqlparts import dicts as _dicts
from common.store.sqlparts import where as _where
from common.store.tables import (
    UtcDateTime,
    alerts,
    axes_dim,
    axes_of,
    axis_label,
    fleet_minute,
    readings,
    readings_fact,
)

__all__ = [
    "alert_history",
    "axes_of",
    "axis_summary",
    "data_health",
    "fleet_axis_summary",
    "fleet_minute_means",
    "latest_per_axis",
    "latest_rows",
    "newest_ts",
    "one_minute_peak",
    "resample_1min",
    "resample_hourly",
    "resample_newest_minutes",
    "window_peaks",
    "wide_readings",
]
R = readings_fact


def _in_range(table, start: datetime | None, end: datetime | None) -> list:
    """``start <= ts <= end`` as bare conditions, for a query that names its robot itself (correlated to
    axes_dim): ``sqlparts.where`` adds the fleet's robots as an IN list for a range, and beside a correlated
    robot that list made PostgreSQL read the whole range instead of stepping down each robot's index (the
    dashboard's newest reading of the fleet: 6 s at 10 M rows, latest per axis over the fleet's hour: 1.5 s)."""
    return ([] if start is None else [table.c.ts >= start]) + ([] if end is None else [table.c.ts <= end])


def _stamps(conn: Connection):
    """Where each reading's ``robot_id`` and ``ts`` are read: on PostgreSQL ``readings``, one row per reading
    (its primary key is (robot_id, ts)); readings_fact is a view there, which unnests every axis of every
    reading it passes on the way down. SQLite: the long table itself (GROUP BY its ts for one row a reading)."""
    return readings if conn.dialect.name == "postgresql" else R


def _serial(conn: Connection) -> None:
    """PostgreSQL: the rest of the caller's transaction planned without parallel workers. The rollup readers'
    statements (``span_stats``) run for tens of milliseconds; a worker's start (a process, the plan sent
    over) costs more CPU than it takes off them: window peaks of the fleet over everything took 46-52 ms of
    server CPU with its two workers, 23-25 without (10 M rows, load 23-26 on 2 cores, where a worker only
    competes with the pipeline for a core; docs/benchmarks.md section 3). Transaction-local: ended by the
    commit or rollback, as this module's queries run in a read's own transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")


def newest_ts(conn: Connection, *, robot_id: str | None = None, end: datetime | None = None) -> datetime | None:
    """The newest reading's timestamp (at or before ``end``). Asked robot by robot (the robots named by
    axes_dim): each is one step down the (robot_id, ts) index instead of a scan of the whole table."""
    robots = select(axes_dim.c.robot_id).distinct()
    if robot_id is not None:
        robots = robots.where(axes_dim.c.robot_id == robot_id)
    robots = robots.subquery()
    t = _stamps(conn)
    per_robot = (
        select(func.max(t.c.ts)).where(t.c.robot_id == robots.c.robot_id, *_in_range(t, None, end)).scalar_subquery()
    )
    newest = select(per_robot.label("newest")).select_from(robots).subquery()
    return conn.execute(select(func.max(newest.c.newest))).scalar()


def latest_per_axis(
    conn: Connection, *, robot_id: str | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[Row]:
    """One row per robot and axis: the newest stored row (``ts``) and its ``amps`` (None = OK null); each
    axis's newest time is one step down the primary key (robot, axis, ts) from ``end``."""
    if conn.dialect.name == "postgresql":
        return _latest_per_axis_of_readings(conn, robot_id=robot_id, start=start, end=end)
    inner = R.alias("newer")
    newest = (
        select(func.max(inner.c.ts))
        .where(
            inner.c.robot_id == axes_dim.c.robot_id,
            inner.c.axis_id == axes_dim.c.axis_id,
            *_in_range(inner, start, end),
        )
        .scalar_subquery()
    )
    on = and_(R.c.robot_id == axes_dim.c.robot_id, R.c.axis_id == axes_dim.c.axis_id, R.c.ts == newest)
    query = (
        select(axes_dim.c.robot_id, axes_dim.c.axis_id, axes_dim.c.label, R.c.ts, R.c.amps)
        .select_from(axes_dim.join(R, on))
        .order_by(axes_dim.c.robot_id, axes_dim.c.axis_id)
    )
    if robot_id is not None:
        query = query.where(axes_dim.c.robot_id == robot_id)
    return _dicts(conn.execute(query))


def _has_axis(axis_id):
    """On ``readings``: the reading has a row of axis ``axis_id`` (its bit in ``axes``)."""
    return _axis_bit(axis_id) == 1


def _axis_bit(axis_id):
    """On ``readings``: the bit of axis ``axis_id`` in ``axes``."""
    return mask_bit(readings.c.axes, axis_id)


def _latest_per_axis_of_readings(conn: Connection, *, robot_id, start, end) -> list[Row]:
    """``latest_per_axis`` on PostgreSQL's one row per reading: per robot and axis, the newest reading with a
    row of that axis (its bit in ``axes``), down the (robot_id, ts) key from ``end``: the first reading
    has it, but for an axis a robot stopped storing (then its readings back to the last row of it are read).
    Through the view, max(ts) per axis unnested every reading of the robot (minutes at 10 M rows)."""
    newest = (
        select(readings.c.ts, readings.c.amps[axes_dim.c.axis_id].label("amps"))
        .where(
            readings.c.robot_id == axes_dim.c.robot_id, _has_axis(axes_dim.c.axis_id), *_in_range(readings, start, end)
        )
        .order_by(readings.c.ts.desc())
        .limit(1)
        .lateral("newest")
    )
    query = (
        select(axes_dim.c.robot_id, axes_dim.c.axis_id, axes_dim.c.label, newest.c.ts, newest.c.amps)
        .select_from(axes_dim.join(newest, true()))
        .order_by(axes_dim.c.robot_id, axes_dim.c.axis_id)
    )
    if robot_id is not None:
        query = query.where(axes_dim.c.robot_id == robot_id)
    return _dicts(conn.execute(query))


def window_peaks(
    conn: Connection, *, robot_id: str | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[Row]:
    """Per robot and axis, the highest current in the range and when it first happened; highest first.

    The peak, and the first row that reached it, from the rollup (``span_stats``: whole hours, each with
    the first time it reached its ``max_amps``, other whole minutes likewise, the range's partial minutes and
    unfolded tail from the raw rows, per robot and axis, only their peak). A rollup row's ``peak_ts`` is the
    answer's time (migration 0015); only where a raw part holds the peak (or a minute folded before 0015) is
    it looked up in the raw rows of that stretch: the first with the peak's value, one short range of the
    primary key (or the minute itself, where retention dropped the raw rows). The raw parts come per minute
    (``per="minute"``), so that range is one minute at most: per robot and axis, a range starting inside a
    minute ran from that minute to the robot's newest reading, and the fleet's last hour walked ~1,800
    readings for each of ~150 peaks (a third of the statement, docs/benchmarks.md section 3). A window of a
    minute or two (the 1-minute peak) has no whole minute to take from the rollup: its rows are ranked directly."""
    if start is not None and end is not None and end - start <= SHORT_WINDOW:
        return _ranked_peaks(conn, robot_id=robot_id, start=start, end=end)
    _serial(conn)
    spans = span_stats(conn, robot_id=robot_id, start=start, end=end, stats=("max_amps",), per="minute", peaks=True)
    first_minutes = (
        _first_minutes_at_peak_pg(spans) if conn.dialect.name == "postgresql" else _first_minutes_at_peak(spans)
    )
    t = _stamps(conn)
    # On PostgreSQL ``>=``, which in the range is ``=`` (nothing there is above the peak): the planner guesses
    # it keeps a third of the rows, not 1 in 200, and takes the index scan that stops at the first (800
    # look-ups: 55-70 ms against 110-280 ms for a bitmap scan of each whole minute and a sort, at load 15).
    value = (
        R.c.amps == first_minutes.c.peak_amps
        if t is R
        else and_(
            _axis_bit(first_minutes.c.axis_id) != 0,
            t.c.amps[first_minutes.c.axis_id] >= first_minutes.c.peak_amps,
        )
    )
    first_ts = (  # the first in key order: an index scan that stops at it, not every row of the minute
        select(t.c.ts)
        .where(
            t.c.robot_id == first_minutes.c.robot_id,
            *([R.c.axis_id == first_minutes.c.axis_id] if t is R else []),
            # Bounded: the planner reads ~30 rows, not the rest. A millisecond either side of the row's bounds
            # takes in no earlier reading at the peak: that one would be in a row with the same peak and an
            # earlier start, chosen instead.
            *_peak_bounds(t, first_minutes),
            value,
            *_in_range(t, start, end),
        )
        .order_by(t.c.ts)
        .limit(1)
        .scalar_subquery()
    )
    on = and_(axes_dim.c.robot_id == first_minutes.c.robot_id, axes_dim.c.axis_id == first_minutes.c.axis_id)
    query = (
        select(
            first_minutes.c.robot_id,
            first_minutes.c.axis_id,
            axes_dim.c.label,
            first_minutes.c.peak_amps,
            # COALESCE runs the look-up only for a row without peak_ts; past RAW_RETENTION_DAYS (before 0015)
            # the raw rows are gone and the minute is all there is.
            func.coalesce(first_minutes.c.peak_ts, first_ts, first_minutes.c.minute).label("ts"),
        )
        .select_from(first_minutes.join(axes_dim, on))
        .order_by(first_minutes.c.peak_amps.desc(), first_minutes.c.robot_id, first_minutes.c.axis_id)
    )
    return _dicts(conn.execute(query))


def _first_minutes_at_peak(spans):
    """Per robot and axis of ``spans``: ``peak_amps``, its highest ``max_amps``; ``minute``, the first
    ``peak_minute`` of a row that reached it, and ``until``, that row's ``peak_until``. The rows are read twice
    (their peak, then the rows at it)."""
    # materialized: only the columns used (all of them spilled the fleet's 87,000 rows to disk)
    m = select(
        spans.c.robot_id, spans.c.axis_id, spans.c.max_amps, spans.c.peak_minute, spans.c.peak_until, spans.c.peak_ts
    )
    m = m.cte("minutes")
    peaks = (
        select(m.c.robot_id, m.c.axis_id, func.max(m.c.max_amps).label("peak_amps"))
        .group_by(m.c.robot_id, m.c.axis_id)
        .subquery()
    )
    reached = and_(m.c.robot_id == peaks.c.robot_id, m.c.axis_id == peaks.c.axis_id, m.c.max_amps == peaks.c.peak_amps)
    first = (
        select(peaks.c.robot_id, peaks.c.axis_id, peaks.c.peak_amps, func.min(m.c.peak_minute).label("minute"))
        .select_from(peaks.join(m, reached))
        .group_by(peaks.c.robot_id, peaks.c.axis_id, peaks.c.peak_amps)
        .subquery()
    )
    # rows of one robot and axis never share a peak_minute (each is its own stretch of time)
    at_first = and_(m.c.robot_id == first.c.robot_id, m.c.axis_id == first.c.axis_id, m.c.peak_minute == first.c.minute)
    until = select(func.max(m.c.peak_until)).where(at_first).scalar_subquery()
    peak_ts = select(func.max(m.c.peak_ts)).where(at_first).scalar_subquery()
    return select(first, until.label("until"), peak_ts.label("peak_ts")).subquery()


def _first_minutes_at_peak_pg(spans):
    """``_first_minutes_at_peak`` in one pass, on PostgreSQL: the greatest array ``[max_amps, -epoch of
    peak_minute, epoch of peak_until, microseconds from peak_minute to peak_ts]`` per robot and axis is the
    peak and, among the rows at it, the first (arrays compare element by element; no two rows of a robot and
    axis share a peak_minute). Read once, the fleet's 87,000 rows are neither materialized (spilled to disk at
    the default work_mem) nor joined back to their peaks. Minutes are whole seconds, exact as doubles, and so
    is an offset in microseconds inside an hour; a raw row's bounds are its readings' times, within a
    microsecond (the look-up allows for it), and it has no peak_ts (-1 here)."""
    epoch = func.date_part("epoch", spans.c.peak_minute)
    offset = func.coalesce(func.date_part("epoch", spans.c.peak_ts - spans.c.peak_minute) * 1e6, -1)
    until = func.date_part("epoch", spans.c.peak_until)
    key = func.max(array([spans.c.max_amps, -epoch, until, func.round(offset)], type_=Float))
    keys = (
        select(spans.c.robot_id, spans.c.axis_id, key.label("key"))
        .where(spans.c.max_amps.is_not(None))  # a NULL sorts above every number in an array
        .group_by(spans.c.robot_id, spans.c.axis_id)
        .subquery()
    )
    minute = func.to_timestamp(-keys.c.key[2], type_=UtcDateTime)
    return select(
        keys.c.robot_id,
        keys.c.axis_id,
        keys.c.key[1].label("peak_amps"),
        minute.label("minute"),
        func.to_timestamp(keys.c.key[3], type_=UtcDateTime).label("until"),
        type_coerce(case((keys.c.key[4] >= 0, minute + _MICROSECOND * keys.c.key[4])), UtcDateTime).label("peak_ts"),
    ).subquery()


_MICROSECOND = literal(timedelta(microseconds=1), type_=Interval())


def _peak_bounds(t, first_minutes) -> list:
    """``t``'s rows from ``minute`` to ``until`` of ``first_minutes``; on PostgreSQL a millisecond either side,
    as those came through doubles."""
    if t is R:
        return [t.c.ts >= first_minutes.c.minute, t.c.ts < first_minutes.c.until]
    slack = literal(timedelta(milliseconds=1), type_=Interval())
    return [t.c.ts >= first_minutes.c.minute - slack, t.c.ts <= first_minutes.c.until + slack]


SHORT_WINDOW = timedelta(minutes=2)


def _ranked_peaks(conn: Connection, *, robot_id: str | None, start: datetime, end: datetime) -> list[Row]:
    """``window_peaks`` from the raw rows alone, each robot and axis's ranked by value, then time."""
    ranked = (
        select(
            R.c.robot_id,
            R.c.axis_id,
            R.c.amps.label("peak_amps"),
            R.c.ts,
            func.row_number()
            .over(partition_by=(R.c.robot_id, R.c.axis_id), order_by=(R.c.amps.desc(), R.c.ts))
            .label("rank"),
        )
        .where(R.c.amps.is_not(None), *_where(R, robot_id=robot_id, start=start, end=end))
        .subquery()
    )
    on = and_(axes_dim.c.robot_id == ranked.c.robot_id, axes_dim.c.axis_id == ranked.c.axis_id)
    query = (
        select(ranked.c.robot_id, ranked.c.axis_id, axes_dim.c.label, ranked.c.peak_amps, ranked.c.ts)
        .select_from(ranked.join(axes_dim, on))
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.peak_amps.desc(), ranked.c.robot_id, ranked.c.axis_id)
    )
    return _dicts(conn.execute(query))


def one_minute_peak(
    conn: Connection, *, robot_id: str | None = None, at: datetime | None = None, window_s: float = 60.0
) -> Row | None:
    """The axis with the highest current in the ``window_s`` seconds up to ``at`` (default: the newest
    reading), both ends included; ties go to the earlier time, then the lower robot id and axis."""
    at = at if at is not None else newest_ts(conn, robot_id=robot_id)
    if at is None:
        return None
    window_start = at - timedelta(seconds=window_s)
    # The first row in the order of the tie rule: what the best of window_peaks' per-axis firsts would be
    # (each axis's first is its own least in that order), without ranking every axis's rows (a sort of the
    # fleet's 24,000 rows per window) to keep one. Only the robots and axes of axes_dim count: each robot's
    # axes there as one mask, joined per reading (the fleet's 3,000), not axes_dim per current (24,000
    # hash probes, a third of the statement); the label is looked up for the one row chosen.
    e = stored_rows(conn)
    known = select(axes_dim.c.robot_id, axes_mask(axes_dim.c.axis_id).label("axes")).group_by(axes_dim.c.robot_id)
    if robot_id is not None:
        known = known.where(axes_dim.c.robot_id == robot_id)
    known = known.subquery()
    best = (
        select(e.c.robot_id, e.c.axis_id, e.c.amps.label("peak_amps"), e.c.ts)
        .select_from(e.join(known, known.c.robot_id == e.c.robot_id))
        .where(
            e.c.amps.is_not(None),
            mask_bit(known.c.axes, e.c.axis_id) != 0,
            *_in_range(e, window_start, at),
        )
        .order_by(e.c.amps.desc(), e.c.ts, _codepoints(conn, e.c.robot_id), e.c.axis_id)
        .limit(1)
        .subquery()
    )
    on = and_(axes_dim.c.robot_id == best.c.robot_id, axes_dim.c.axis_id == best.c.axis_id)
    row = conn.execute(
        select(best.c.robot_id, best.c.axis_id, axes_dim.c.label, best.c.peak_amps, best.c.ts).select_from(
            best.join(axes_dim, on)
        )
    ).first()
    return None if row is None else {**row._asdict(), "window_start": window_start, "window_end": at}


def _codepoints(conn: Connection, text_column):
    """``text_column`` ordered as Python orders strings (by code point): PostgreSQL's "C" collation; SQLite's
    default already is."""
    return text_column.collate("C") if conn.dialect.name == "postgresql" else text_column


def latest_rows(
    conn: Connection,
    *,
    n: int = 20,
    robot_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Row]:
    """The newest ``n`` readings, wide: ``robot_id``, ``ts`` and one ``Axis #N`` column per axis; newest first."""
    if robot_id is None:
        start = max(filter(None, (start, _nth_newest_bound(conn, n=n, start=start, end=end))), default=None)
    t = _stamps(conn)
    keys = (
        select(t.c.robot_id, t.c.ts)
        .where(*_where(t, robot_id=robot_id, start=start, end=end))
        .group_by(t.c.robot_id, t.c.ts)
        .order_by(t.c.ts.desc(), t.c.robot_id)
        .limit(n)
        .subquery()
    )
    return wide_readings(conn, keys)


def _nth_newest_bound(conn: Connection, *, n: int, start: datetime | None, end: datetime | None) -> datetime | None:
    """A time the fleet's ``n`` newest readings are all at or after: some robot has ``n`` readings from
    it on, so nothing older can be among them. Each robot's ``n``-th newest time is a short walk down the
    (robot_id, ts) index; with it, the fleet-wide question reads a few rows instead of the whole table."""
    robots = select(axes_dim.c.robot_id).distinct().subquery()
    t = _stamps(conn)
    nth = (
        select(t.c.ts)
        .where(t.c.robot_id == robots.c.robot_id, *_in_range(t, start, end))
        .group_by(t.c.ts)
        .order_by(t.c.ts.desc())
        .limit(1)
        .offset(n - 1)
        .scalar_subquery()
        # GROUP BY, not DISTINCT: SQLite 3.40 gives a wrong row for DISTINCT ... OFFSET in a subquery here
    )
    per_robot = select(nth.label("nth")).select_from(robots).subquery()
    return conn.execute(select(func.max(per_robot.c.nth))).scalar()


def wide_readings(conn: Connection, keys, *, newest_first: bool = True) -> list[Row]:
    """The readings named by ``keys`` (a subquery with ``robot_id`` and ``ts`` columns), one wide row
    each, with a column per axis seen among them (None where a reading has no row for that axis)."""
    order = (R.c.ts.desc(), R.c.robot_id) if newest_first else (R.c.robot_id, R.c.ts)
    rows = conn.execute(
        select(R.c.robot_id, R.c.ts, R.c.axis_id, R.c.amps)
        .select_from(R.join(keys, and_(R.c.robot_id == keys.c.robot_id, R.c.ts == keys.c.ts)))
        .order_by(*order, R.c.axis_id)
    ).all()
    axes = sorted({axis for _, _, axis, _ in rows})
    wide: dict[tuple[str, datetime], Row] = {}
    for robot, ts, axis, amps in rows:
        row = wide.setdefault((robot, ts), {"robot_id": robot, "ts": ts, **{axis_label(a): None for a in axes}})
        row[axis_label(axis)] = amps
    return list(wide.values())


def resample_1min(
    conn: Connection,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    robot_id: str | None = None,
    folded_only: bool = False,
) -> list[Row]:
    """Per robot, UTC minute and axis: mean (the smoothed curve), max and count of the non-null values.
    From the per-minute rollup (common.store.rollup), the partial minutes at the range's ends from the raw rows;
    ``folded_only``: the whole minutes folded into the rollup, nothing else (``common.store.rollup.folded``)."""
    m = minute_stats(
        conn,
        robot_id=robot_id,
        start=start,
        end=end,
        folded_only=folded_only,
        stats=("n_values", "sum_amps", "max_amps"),
    )
    query = select(
        m.c.robot_id,
        m.c.minute,
        m.c.axis_id,
        mean_of(m.c.sum_amps, m.c.n_values).label("mean_amps"),
        m.c.max_amps,
        m.c.n_values.label("values"),
    ).order_by(m.c.robot_id, m.c.minute, m.c.axis_id)
    return _dicts(conn.execute(query))


def resample_newest_minutes(
    conn: Connection,
    *,
    max_rows: int,
    start: datetime | None = None,
    end: datetime | None = None,
    robot_id: str | None = None,
) -> tuple[list[Row], datetime | None]:
    """``resample_1min`` of the range's newest minutes, as many as keep the answer within ``max_rows`` rows
    (the newest minute at least): a minute has at most one row per robot and axis of axes_dim, so the answer
    starts ``max_rows // those`` minutes back from the newest reading, or at ``start`` if that is later.
    Returns the rows and, when the range holds readings before them that were left out, the minute the rows
    start at (else None). Each bound is one step down the (robot_id, ts) index per robot (``newest_ts``), and
    the rows read are those answered: the fleet's whole 1-minute curve over everything, 334,600 rows at 10 M
    readings, took 1.8 s to compute and send (docs/consumer_db.md)."""
    newest = newest_ts(conn, robot_id=robot_id, end=end)
    if newest is None:
        return [], None
    pairs = select(func.count()).select_from(axes_dim)
    if robot_id is not None:
        pairs = pairs.where(axes_dim.c.robot_id == robot_id)
    pairs = conn.execute(pairs).scalar() or 1
    first = floor_minute(newest) - MINUTE * (max(1, max_rows // pairs) - 1)
    if start is not None and start >= first:
        return resample_1min(conn, robot_id=robot_id, start=start, end=end), None
    rows = resample_1min(conn, robot_id=robot_id, start=first, end=end)
    earlier = newest_ts(conn, robot_id=robot_id, end=first - _MICROSECOND_DELTA)
    left_out = earlier is not None and (start is None or earlier >= start)
    return rows, first if left_out else None


_MICROSECOND_DELTA = timedelta(microseconds=1)


def resample_hourly(
    conn: Connection, *, start: datetime | None = None, end: datetime | None = None, robot_id: str | None = None
) -> list[Row]:
    """``resample_1min`` per UTC hour: per robot, hour and axis, mean, max and count of the non-null values
    of the range's rows (an hour at an end of the range: its rows inside the range). From the hour rollup
    (``span_stats``): a fleet's day is 24 rows per robot and axis, where the 1-minute curve is 1,440."""
    _serial(conn)
    m = span_stats(conn, robot_id=robot_id, start=start, end=end, stats=("n_values", "sum_amps", "max_amps"))
    hour = hour_start(m.c.minute).label("hour")
    n_values = cast(func.sum(m.c.n_values), Integer)  # PostgreSQL's sum of integers is a numeric
    query = (
        select(
            m.c.robot_id,
            hour,
            m.c.axis_id,
            mean_of(func.sum(m.c.sum_amps), n_values).label("mean_amps"),
            func.max(m.c.max_amps).label("max_amps"),
            n_values.label("values"),
        )
        .group_by(m.c.robot_id, hour, m.c.axis_id)
        .order_by(m.c.robot_id, hour, m.c.axis_id)
    )
    return _dicts(conn.execute(query))


def fleet_minute_means(conn: Connection, *, start: datetime | None = None, end: datetime | None = None) -> list[Row]:
    """Per UTC minute and axis, the mean over robots of each robot's minute mean: the fleet's smoothed curve,
    one row per minute and axis instead of one per robot too (100 robots: 100x fewer rows to carry). From
    the fleet's rollup: the whole minutes of the range, of the robots that have folded them."""
    f = folded(fleet_minute, start=start, end=end)
    mean = mean_of(f.c.sum_robot_means, f.c.n_robot_means)
    query = select(f.c.minute, f.c.axis_id, mean.label("mean_amps"), f.c.max_amps, f.c.n_values.label("values"))
    return _dicts(conn.execute(query.order_by(f.c.minute, f.c.axis_id)))


def axis_summary(
    conn: Connection,
    *,
    robot_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    folded_only: bool = False,
) -> list[Row]:
    """Per robot and axis: rows, non-null values, the OK-null share of rows, the idle share (values at
    exactly 0 A among the non-null ones), and mean/max while active (over the non-zero values). From whole
    hours where it can (``span_stats``); ``folded_only``: the whole minutes folded, as the history view reads."""
    if folded_only:
        m = minute_stats(conn, robot_id=robot_id, start=start, end=end, folded_only=True)
    else:
        _serial(conn)
        m = span_stats(conn, robot_id=robot_id, start=start, end=end, stats=SUMMED, per=None)
    stats = _summed(m, m.c.robot_id, m.c.axis_id).subquery()
    on = and_(axes_dim.c.robot_id == stats.c.robot_id, axes_dim.c.axis_id == stats.c.axis_id)
    query = (
        select(stats, axes_dim.c.label)
        .select_from(stats.join(axes_dim, on))
        .order_by(stats.c.robot_id, stats.c.axis_id)
    )
    return [_summary_row(row) for row in _dicts(conn.execute(query))]


def fleet_axis_summary(conn: Connection, *, start: datetime | None = None, end: datetime | None = None) -> list[Row]:
    """``axis_summary`` per axis over every robot (``robot_id`` None), from the fleet's rollup: the whole
    minutes of the range, of the robots that have folded them."""
    f = folded(fleet_minute, start=start, end=end)
    query = _summed(f, f.c.axis_id).order_by(f.c.axis_id)
    return [
        _summary_row({**row, "robot_id": None, "label": axis_label(row["axis_id"])})
        for row in _dicts(conn.execute(query))
    ]


SUMMED = ("n_rows", "n_values", "n_zero", "sum_amps", "max_active_amps")  # the columns _summed reads


def _summed(m, *keys):
    return select(
        *keys,
        func.sum(m.c.n_rows).label("rows"),
        func.sum(m.c.n_values).label("non_null"),
        func.sum(m.c.n_zero).label("idle"),
        func.sum(m.c.sum_amps).label("active_sum"),
        func.max(m.c.max_active_amps).label("max_active_amps"),
    ).group_by(*keys)


def _summary_row(row: Row) -> Row:
    rows, non_null, idle = int(row["rows"]), int(row["non_null"]), int(row["idle"] or 0)
    active = non_null - idle  # zeros add nothing to the sum: it is the sum of the active values
    return {
        "robot_id": row["robot_id"],
        "axis_id": row["axis_id"],
        "label": row["label"],
        "rows": rows,
        "non_null": non_null,
        "ok_null_share": (rows - non_null) / rows,
        "idle_share": idle / non_null if non_null else None,
        "mean_active_amps": row["active_sum"] / active if active else None,
        "max_active_amps": row["max_active_amps"],
    }


def alert_history(
    conn: Connection,
    *,
    robot_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Alert events that were open at some moment of the range, newest first."""
    conds = []
    if robot_id is not None:
        conds.append(alerts.c.robot_id == robot_id)
    if end is not None:
        conds.append(alerts.c.opened_at <= end)
    if start is not None:
        conds.append((alerts.c.closed_at.is_(None)) | (alerts.c.closed_at >= start))
    query = select(alerts).where(*conds).order_by(alerts.c.opened_at.desc(), alerts.c.event_id).limit(limit)
    return _dicts(conn.execute(query))


def open_alerts(conn: Connection, *, limit: int | None = None) -> list[Row]:
    """Alert events still open, newest first (what a live view starts from after a restart)."""
    query = select(alerts).where(alerts.c.state == "open").order_by(alerts.c.opened_at.desc(), alerts.c.event_id)
    return _dicts(conn.execute(query.limit(limit)))
