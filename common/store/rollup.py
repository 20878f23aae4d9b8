"""The rollup (per minute: ``readings_minute``, ``reading_stamps_minute``, ``fleet_minute``; per hour:
``readings_hour``, ``reading_stamps_hour``): the queries that compute it from readings_fact, and its
readers for a time range. consumer_db keeps it up to date (``consumer_db.rollup_writer``), folding each
robot's minutes once they have passed, and its hours: a whole one once its last minute is folded, the
running one every ``RUNNING_HOUR_STEP`` (the minutes folded since are read from the minute rows).

A reader takes the whole minutes (``minute_stats``) or hours (``span_stats``) of its range from the rollup
and the rest from readings_fact, so its answers are those of the raw rows; the dashboard's history reads
the rollup alone (``folded``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Float,
    Integer,
    Select,
    SmallInteger,
    and_,
    case,
    cast,
    column,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import BIT, array

from common.store.sqlparts import (
    axes_mask,
    hour_start,
    mask_bit,
    mean_of,
    minute_start,
    next_hour,
    next_minute,
    seconds_between,
    where,
)
from common.store.tables import (
    UtcDateTime,
    axis_stats_columns,
    fleet_minute,
    reading_stamps_hour,
    reading_stamps_minute,
    readings,
    readings_fact,
    readings_hour,
    readings_minute,
    rollup_progress,
)

R, M, H, S, SH, F, P = (
    readings_fact,
    readings_minute,
    readings_hour,
    reading_stamps_minute,
    reading_stamps_hour,
    fleet_minute,
    rollup_progress,
)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
STATS = tuple(column.name for column in axis_stats_columns())  # what a minute and an hour row both hold


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


def minute_rollup_of(filters: Iterable, *, arrays: bool) -> Select:
    """``readings_minute``'s rows as the writers store them: ``minute_stats_of`` the readings_fact rows of
    ``filters`` (whole minutes) and ``peak_ts``, the first reading time at the minute's ``max_amps`` (window
    peaks answer from it, with no look-up in the raw rows, and after retention has dropped them).

    ``arrays`` (PostgreSQL): in the same aggregate, the greatest ``[amps, -epoch of ts]`` (arrays compare
    element by element: the peak, then its earliest time), so the fold stays one hashed pass. The epoch as a
    double is within 0.2 µs of the time (spacing 2.4e-7 s in this century) and ``to_timestamp`` rounds it to
    the microsecond: the time comes back exact, and two readings a microsecond apart keep their order.
    (``date_part('microseconds')``, exact, converts each time to calendar fields first: 7 % more of the fold.)
    Otherwise a look-up per row of the first raw row at its peak: SQLite's form, and the reference the tests
    hold the arrays to."""
    stats = minute_stats_of(filters)
    if arrays:
        return stats.add_columns(_first_at_peak(R.c.amps, -func.date_part("epoch", R.c.ts)).label("peak_ts"))
    rows = stats.subquery()
    first_at_peak = (
        select(func.min(R.c.ts))
        .where(
            R.c.robot_id == rows.c.robot_id,
            R.c.axis_id == rows.c.axis_id,
            R.c.ts >= rows.c.minute,
            R.c.ts < next_minute(rows.c.minute),
            R.c.amps == rows.c.max_amps,
        )
        .scalar_subquery()
    )
    return select(rows, first_at_peak.label("peak_ts"))


def readings_minute_rollup_of(filters: Iterable, stored=readings) -> Select:
    """PostgreSQL: ``minute_rollup_of(arrays=True)``'s rows from ``readings``' rows of ``filters`` (the writers'
    fold), each reading's array unnested here with the bit test of ``readings_minute_stats_of``. ``stored``:
    where they are read, ``readings`` or rows of it (the writer's ranges, ``rollup_writer._each_span``).

    A reading's minute and the epoch of its time are computed once per reading, in a subquery the planner keeps
    as it is (``OFFSET 0``), then carried to its ~14 elements: through the view each was computed per element
    and grouped on, ~20 % of the fold (docs/benchmarks.md, section 1)."""
    reading = (
        select(
            stored.c.robot_id,
            minute_start(stored.c.ts).label("minute"),
            (-func.date_part("epoch", stored.c.ts)).label("neg_epoch"),
            stored.c.axes,
            stored.c.amps,
        )
        .where(*filters)
        .offset(0)
        .subquery("reading")
    )
    element, has_axis = _elements(reading)
    aggregates = _element_aggregates(element.c.amps)
    return (
        select(
            reading.c.robot_id,
            reading.c.minute,
            cast(element.c.axis_id, SmallInteger).label("axis_id"),
            *(aggregates[name].label(name) for name in STATS),
            _first_at_peak(element.c.amps, reading.c.neg_epoch).label("peak_ts"),
        )
        .select_from(reading.join(element, true()))
        .where(has_axis)
        .group_by(reading.c.robot_id, reading.c.minute, element.c.axis_id)
    )


def _first_at_peak(amps, neg_epoch):
    """Aggregate (PostgreSQL): the time of the group's first reading at its highest ``amps``, from the greatest
    ``[amps, -epoch of ts]`` (``neg_epoch``): see ``minute_rollup_of``."""
    key = func.max(case((amps.is_not(None), array([amps, neg_epoch], type_=Float))))
    return func.to_timestamp(-key[2], type_=UtcDateTime)


def stored_readings(conn: Connection):
    """The table a reader's raw conditions name (``robot_id``, ``ts``): on PostgreSQL ``readings``, one row per
    reading, aggregated by ``raw_minute_stats`` / ``raw_stamp_stats`` without the readings_fact view; on SQLite
    the long table itself."""
    return readings if conn.dialect.name == "postgresql" else R


def stored_rows(conn: Connection):
    """readings_fact's rows (``robot_id``, ``axis_id``, ``ts``, ``amps``); on PostgreSQL unnested from
    ``readings`` here, with the bit test the planner estimates (see ``readings_minute_stats_of``)."""
    if conn.dialect.name != "postgresql":
        return R
    element, has_axis = _elements()
    return (
        select(
            readings.c.robot_id, cast(element.c.axis_id, SmallInteger).label("axis_id"), readings.c.ts, element.c.amps
        )
        .select_from(readings.join(element, true()))
        .where(has_axis)
        .subquery("stored_rows")
    )


@functools.cache  # built once: SQLAlchemy takes ~6 ms to make the construct, a fifth of a small query
def _elements(source=readings):
    """``_elements_of(source)``, made once per ``source``: for ``readings`` and the writers' statements, built once;
    a reader's subquery made per call takes ``_elements_of`` (the cache would keep every one)."""
    return _elements_of(source)


def _elements_of(source):
    """PostgreSQL: each reading's ``amps`` unnested (``amps``, ``axis_id``: the ordinality), and the condition
    that the reading has a row of that axis (its bit in ``axes``), written ``<> 0``: see
    ``readings_minute_stats_of``. ``source``: ``readings`` or a subquery with its ``amps`` and ``axes``."""
    element = (
        func.unnest(source.c.amps)
        .table_valued(column("amps", Float), with_ordinality="axis_id")
        .render_derived(name="element")
    )
    return element, mask_bit(source.c.axes, element.c.axis_id) != 0


def raw_minute_stats(conn: Connection, filters: Iterable, stats: Iterable[str] = STATS) -> Select:
    """``minute_stats_of`` the raw rows of ``filters`` (on ``stored_readings``' columns); on PostgreSQL only the
    ``stats`` columns computed, the others NULL."""
    return readings_minute_stats_of(filters, stats) if conn.dialect.name == "postgresql" else minute_stats_of(filters)


def readings_minute_stats_of(filters: Iterable, stats: Iterable[str] = STATS) -> Select:
    """PostgreSQL: ``minute_stats_of`` from ``readings``' rows of ``filters``, each reading's array unnested here,
    its minute computed once, only the ``stats`` columns computed (``readings_span_stats_of`` per minute): the
    1-minute resample reads 3 of the 8, and each costs every current of the fleet's unfolded tail.

    The same rows as through the view: an element where the reading has its axis (its bit in ``axes``).
    The view asks ``bit = 1``, which the planner, with no statistics on it, takes to keep 1 element in 200:
    it expected 136 rows of the fleet's unfolded tail where 43,540 came, grouped them by a sort and spilled
    it to disk. ``bit <> 0`` says the same of a bit, and the planner's guess for it is 199 in 200."""
    spans = readings_span_stats_of(filters, stats, per="minute")
    return spans.with_only_columns(
        *(c for c in spans.selected_columns if c.key in ("robot_id", "minute", "axis_id", *STATS))
    )


def _element_aggregates(amps) -> dict:
    """The rollup's columns (``STATS``) as aggregates of the unnested currents ``amps``."""
    return {
        "n_rows": func.count(),
        "n_values": func.count(amps),
        "n_zero": func.sum(case((amps == 0, 1), else_=0)),
        "sum_amps": func.sum(amps),
        "sum_sq_amps": func.sum(amps * amps),
        "min_amps": func.min(amps),
        "max_amps": func.max(amps),
        "max_active_amps": func.max(case((amps != 0, amps))),
    }


def _as_stored(aggregates: dict) -> dict:
    """A reader's raw aggregates in the rollup columns' types: PostgreSQL counts (and sums of integers) in
    bigints, the rollup in integers. A UNION ALL of parts whose column types differ is not flattened (each
    part below an Append of its own, cast in a projection above it); of the same types, the rollup and raw
    parts are one Append the planner can order and split among workers."""
    return {
        name: cast(agg, M.c[name].type) if isinstance(M.c[name].type, Integer) else agg
        for name, agg in aggregates.items()
    }


def readings_span_stats_of(filters: Iterable, stats: Iterable[str], *, per: str | None) -> Select:
    """PostgreSQL: the raw rows of ``filters`` as ``span_stats`` rows, per robot and axis (and UTC ``per``:
    "hour" or "minute"), only the ``stats`` columns computed (the others NULL): every unnested current costs
    each aggregate and the group key, and the fleet's unfolded tail is ~43,500 of them. ``minute`` and
    ``peak_minute``: the group's hour or minute, ``peak_until`` the next, where ``window_peaks`` looks for
    the time of its peak, as in a rollup row's; without ``per``, NULL (the group may span an hour: the range's
    partial first minute and the robot's unfolded tail).

    A reading's hour or minute is computed once, in a subquery the planner keeps as it is (``OFFSET 0``), and
    carried to its ~14 currents, as the writers' fold does (``readings_minute_rollup_of``): grouped on the
    hour of each current, the fleet's tail took 22-29 ms of server CPU, 17-21 this way (docs/benchmarks.md,
    section 3)."""
    stats = set(stats)
    if per is not None:
        reading = (
            select(
                readings.c.robot_id, _PERIOD[per][0](readings.c.ts).label("period"), readings.c.axes, readings.c.amps
            )
            .where(*filters)
            .offset(0)
            .subquery("reading")
        )
        element, has_axis = _elements_of(reading)
        source, keys, conditions = reading, [reading.c.robot_id, reading.c.period, element.c.axis_id], []
        start, until = reading.c.period, _PERIOD[per][1](reading.c.period)
    else:
        element, has_axis = _elements()
        source, keys, conditions = readings, [readings.c.robot_id, element.c.axis_id], list(filters)
        start = until = cast(null(), UtcDateTime)
    amps = element.c.amps
    aggregates = _as_stored(_element_aggregates(amps))
    # Asked only for maxima, the elements without a value go early (6 of the fleet's 14 axes); a count keeps
    # them: a robot's hour and axis with rows and no value is an answer row too (0 values).
    values_only = [] if stats & {"n_rows", "n_values"} else [amps.is_not(None)]
    return (
        select(
            source.c.robot_id,
            start.label("minute"),
            cast(element.c.axis_id, SmallInteger).label("axis_id"),
            *((aggregates[name] if name in stats else cast(null(), M.c[name].type)).label(name) for name in STATS),
            start.label("peak_minute"),
            until.label("peak_until"),
        )
        .select_from(source.join(element, true()))
        .where(*conditions, has_axis, *values_only)
        .group_by(*keys)
    )


_PERIOD = {"hour": (hour_start, next_hour), "minute": (minute_start, next_minute)}  # its start, the next's


def raw_stamp_stats(conn: Connection, filters: Iterable) -> Select:
    """``stamp_stats_of`` the raw rows of ``filters`` (on ``stored_readings``' columns); on PostgreSQL the times
    and the axes both from ``readings`` (``readings_minute_axes_of``), without the view."""
    if conn.dialect.name != "postgresql":
        return stamp_stats_of(filters)
    filters = list(filters)
    return stamp_stats_of(filters, axes=readings_minute_axes_of(filters), stored=readings)


def readings_minute_axes_of(filters: Iterable) -> Select:
    """PostgreSQL: per robot and minute of ``readings``' rows of ``filters``, ``minute_axes_of``' columns (the
    rows, the masks of axes stored and with a value) from each reading's ``axes`` and the places of the NULLs
    in its array, nothing unnested: a minute's readings have a few patterns of those (one, as a rule), and the
    per-axis work is done once per pattern. The same rows as the view's: element N of the array (N from 1,
    whatever its lower bound) where the reading has bit N."""
    amps = readings.c.amps
    minute = minute_start(readings.c.ts)
    nulls = func.array_positions(amps, cast(null(), Float), type_=ARRAY(Integer))
    lower = func.coalesce(func.array_lower(amps, 1), 1)
    length = func.coalesce(func.cardinality(amps), 0)
    patterns = (
        select(
            readings.c.robot_id,
            minute.label("minute"),
            readings.c.axes,
            nulls.label("nulls"),
            lower.label("lower"),
            length.label("length"),
            func.count().label("readings"),
        )
        .where(*filters)
        .group_by(readings.c.robot_id, minute, readings.c.axes, nulls, lower, length)
        .subquery()
    )
    one = cast(literal(1), BigInteger)
    # bits 1..length: the elements there are; length <= MAX_AXIS (62), so this stays in a bigint
    elements = _shifted(_shifted(one, patterns.c.length) - 1, literal(1))
    stored = patterns.c.axes.op("&", return_type=BigInteger)(elements)
    place = func.unnest(patterns.c.nulls).column_valued("place")
    # distinct powers of two: their sum is their OR (a sum of bigints is a numeric)
    null_bits = select(cast(func.coalesce(func.sum(_shifted(one, place - patterns.c.lower + 1)), 0), BigInteger))
    null_bits = null_bits.scalar_subquery()
    with_values = stored.op("&", return_type=BigInteger)(null_bits.op("#", return_type=BigInteger)(-1))
    rows = patterns.c.readings * func.bit_count(cast(stored, BIT(64)), type_=BigInteger)
    return select(
        patterns.c.robot_id,
        patterns.c.minute,
        cast(func.sum(rows), BigInteger).label("n_rows"),  # a sum of bigints is a numeric
        func.bit_or(stored, type_=BigInteger).label("axes_stored"),
        func.bit_or(with_values, type_=BigInteger).label("axes_with_values"),
    ).group_by(patterns.c.robot_id, patterns.c.minute)


def _shifted(value, places):
    return value.op("<<", return_type=BigInteger)(cast(places, Integer))


def stamp_stats_of(filters: Iterable, axes: Select | None = None, stored=R) -> Select:
    """Per robot and minute, the distinct reading times of the readings_fact rows of ``filters``, and the
    rows and axes they came with; those from ``axes`` if given (``minute_axes_of`` the same minutes, which a
    writer has just folded: 14 rows a minute instead of ~420). ``stored``: where the times are read, with
    ``filters`` on its columns: readings_fact, or on PostgreSQL ``readings`` (one row per reading, no
    axes to unfold and gather again; then ``axes`` must be given)."""
    filters = list(filters)
    stamps = select(stored.c.robot_id, stored.c.ts).where(*filters)
    if stored is R:
        stamps = stamps.group_by(R.c.robot_id, R.c.ts)
    stamps = stamps.subquery()
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
    # Computed once, not once per minute: on rows just written (no statistics yet) the planner expects one
    # minute and would run the axes' aggregate in a nested loop, once per minute (200 ms for a 5,000-reading write).
    axes = axes.cte().prefix_with("MATERIALIZED", dialect="postgresql")
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


RUNNING_HOUR_STEP = timedelta(minutes=10)  # how often the writer refolds a robot's running hour (see _running)


def hour_folded_until(robot_id, hour):
    """An hour row's ``folded_until``: the hour's end, or the robot's ``folded_until`` inside it (its running
    hour). The writer moves the robot's progress before it folds its hours."""
    robot_folded_until = select(P.c.folded_until).where(P.c.robot_id == robot_id).scalar_subquery()
    end = next_hour(hour)
    return case((end <= robot_folded_until, end), else_=robot_folded_until)


def stamp_hours_of(stamp_filters: Iterable, minute_filters: Iterable) -> Select:
    """Per robot and hour, ``reading_stamps_hour``'s columns from the reading_stamps_minute rows of
    ``stamp_filters`` and (the masks of axes) the readings_minute rows of ``minute_filters``: the folded
    minutes of each hour (its ``folded_until`` from ``rollup_progress``)."""
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
        select(
            times,
            axes.c.axes_stored,
            axes.c.axes_with_values,
            hour_folded_until(times.c.robot_id, times.c.hour).label("folded_until"),
        )
        .select_from(times.join(axes, and_(axes.c.robot_id == times.c.robot_id, axes.c.hour == times.c.hour)))
        .where(true())  # SQLite's INSERT ... SELECT ... ON CONFLICT needs a WHERE to parse
    )


def hour_stats_of(filters: Iterable) -> Select:
    """Per robot, hour and axis, ``readings_hour``'s columns from the readings_minute rows of ``filters``
    (the folded minutes of each hour): ``peak_minute`` the first of them whose ``max_amps`` is the hour's."""
    hour = hour_start(M.c.minute)
    minutes = select(
        M, hour.label("hour"), func.max(M.c.max_amps).over(partition_by=(M.c.robot_id, hour, M.c.axis_id)).label("top")
    )
    minutes = minutes.where(*filters).subquery()
    return (
        select(
            minutes.c.robot_id,
            minutes.c.hour,
            minutes.c.axis_id,
            *(func.sum(minutes.c[n]).label(n) for n in ("n_rows", "n_values", "n_zero", "sum_amps", "sum_sq_amps")),
            func.min(minutes.c.min_amps).label("min_amps"),
            func.max(minutes.c.max_amps).label("max_amps"),
            func.max(minutes.c.max_active_amps).label("max_active_amps"),
            func.min(case((minutes.c.max_amps == minutes.c.top, minutes.c.minute))).label("peak_minute"),
            # a minute without its peak_ts (its raw rows dropped before migration 0015) stands for its minute
            func.min(
                case((minutes.c.max_amps == minutes.c.top, func.coalesce(minutes.c.peak_ts, minutes.c.minute)))
            ).label("peak_ts"),
            hour_folded_until(minutes.c.robot_id, minutes.c.hour).label("folded_until"),
        )
        .group_by(minutes.c.robot_id, minutes.c.hour, minutes.c.axis_id)
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


def spanning(table, time: str, robot_id: str | None, low: datetime | None, high: datetime | None) -> list:
    """Conditions: one robot's (None = all) rows of ``table`` with ``low <= time < high`` (either end open)."""
    column, conds = table.c[time], [] if robot_id is None else [table.c.robot_id == robot_id]
    return conds + ([] if low is None else [column >= low]) + ([] if high is None else [column < high])


def minute_stats(
    conn: Connection,
    *,
    robot_id: str | None,
    start: datetime | None,
    end: datetime | None,
    folded_only: bool = False,
    stats: Iterable[str] = STATS,
):
    """Subquery: ``readings_minute``'s columns for the rows of ``start <= ts <= end`` (either end open).
    ``folded_only``: for the whole minutes of the range that are folded (see ``folded``). ``stats``: the
    columns the caller reads; the raw parts compute only those (``raw_minute_stats``)."""
    if folded_only:
        return folded(M, robot_id=robot_id, start=start, end=end)
    of_raw = functools.partial(raw_minute_stats, stats=tuple(stats))
    return _whole_and_edges(conn, M, of_raw, robot_id=robot_id, start=start, end=end)


def span_stats(
    conn: Connection,
    *,
    robot_id: str | None,
    start: datetime | None,
    end: datetime | None,
    stats: Iterable[str] = STATS,
    per: str | None = "hour",
    peaks: bool = False,
):
    """Subquery: ``minute_stats``' rows for ``start <= ts <= end``, each robot's whole hours folded so far one
    row of readings_hour each (``minute`` the hour's start), and where ``window_peaks`` looks for the time of
    a row's peak: ``peak_ts`` (a rollup row's first reading time at its ``max_amps``; NULL for the raw parts)
    or, without it, from ``peak_minute`` (the first minute of a row whose ``max_amps`` is the row's) to
    ``peak_until``. For sums and maxima over long ranges (window peaks, the per-axis summary, the hourly
    resample): the fleet's day is 24 rows per robot and axis, not 1,440. The same rows as ``minute_stats``,
    grouped coarser where they can be; the other whole folded minutes from the minute rollup, the rest raw
    (``_layers``). On PostgreSQL the raw rows are grouped per robot and axis (and hour or minute, ``per``),
    only the ``stats`` columns computed (``readings_span_stats_of``): those are all a caller may read.

    Across hours, each part carries only the keys, the ``stats`` and, with ``peaks``, the peak's columns: the
    hourly resample's parts had 14 columns for the 6 it reads, each compiled (~2 ms of a query command's
    CPU), projected row by row, and kept PostgreSQL from merging the parts into one Append
    (docs/benchmarks.md section 3)."""
    stats = tuple(stats)
    layers = _layers(conn, H, M, robot_id=robot_id, start=start, end=end)
    if layers is None:  # the range lies inside one hour
        m = _whole_and_edges(conn, M, _raw_stats_without_peak_ts, robot_id=robot_id, start=start, end=end)
        return select(m, m.c.minute.label("peak_minute"), next_minute(m.c.minute).label("peak_until")).subquery()
    hours, minutes, raw, fallbacks = layers
    if conn.dialect.name == "postgresql":
        raw_part = readings_span_stats_of([raw], stats, per=per).add_columns(_NO_PEAK_TS)
    else:
        raw_minutes = raw_minute_stats(conn, [raw]).subquery()
        raw_part = select(
            raw_minutes,
            raw_minutes.c.minute.label("peak_minute"),
            next_minute(raw_minutes.c.minute).label("peak_until"),
            _NO_PEAK_TS,
        )
    of_minutes = select(
        M.c.robot_id,
        M.c.minute,
        M.c.axis_id,
        *(M.c[n] for n in STATS),
        M.c.minute.label("peak_minute"),
        next_minute(M.c.minute).label("peak_until"),
        M.c.peak_ts,
    )
    of_hours = select(
        H.c.robot_id,
        H.c.hour.label("minute"),
        H.c.axis_id,
        *(H.c[n] for n in STATS),
        H.c.peak_minute,
        next_minute(H.c.peak_minute).label("peak_until"),
        H.c.peak_ts,
    )
    parts = [
        of_hours.where(hours),
        of_minutes.where(minutes),
        *(of_minutes.select_from(joined).where(fallback) for joined, fallback in fallbacks),
        raw_part,
    ]
    read = {"robot_id", "minute", "axis_id", *stats, *(_PEAK_COLUMNS if peaks else ())}
    return union_all(*(_only(part, read) for part in parts)).subquery()


_PEAK_COLUMNS = ("peak_minute", "peak_until", "peak_ts")  # where window_peaks looks for a peak's time


def _only(part: Select, names: set[str]) -> Select:
    """``part`` with only its columns of ``names``, in their order (every part of a union has the same)."""
    return part.with_only_columns(*(c for c in part.selected_columns if c.key in names))


# The raw parts' rows carry no peak_ts: ``window_peaks`` looks their peak's time up in the raw rows, in the rare
# case that the peak is theirs (computing it costs every unnested current an array).
_NO_PEAK_TS = cast(null(), UtcDateTime).label("peak_ts")


def _raw_stats_without_peak_ts(conn: Connection, filters: Iterable) -> Select:
    return raw_minute_stats(conn, filters).add_columns(_NO_PEAK_TS)


def _inside_one_hour(first_hour: datetime | None, last_hour: datetime | None) -> bool:
    """Whether a range's whole minutes (``_whole_minutes``) lie inside one clock hour, after its start
    (``first_hour``: the first hour starting at or after them; ``last_hour``: the hour of the last): no hour
    row can stand for any of them. A range across an hour's start holds no whole hour, but it can hold that
    hour's running row: "the last hour" at 10:58 is 09:58-10:58, and each robot's row of 10:00 holds its
    minutes up to the row's ``folded_until``: one row per robot and axis and the few minutes folded since,
    instead of up to 59 minute rows each (the fleet's last hour at 10 M rows: ~11,800 rows, not ~81,000;
    docs/benchmarks.md, section 3)."""
    return first_hour is not None and last_hour is not None and first_hour > last_hour


def _layers(conn: Connection, hour_table, minute_table, *, robot_id: str | None, start, end):
    """The conditions of ``span_stats``' three parts, on ``hour_table`` (``hour``), ``minute_table``
    (``minute``) and ``stored_readings`` (``ts``); None when the range lies inside one hour
    (``_inside_one_hour``).

    Per robot, with ``folded_until`` read beforehand (as ``_whole_and_edges`` does) and robots grouped by it
    (``_hour_cuts``): hours ``[first_hour, hour_cut)``, minutes ``[first, first_hour)``, the running hour's
    ``[hour_cut, minute_cut)`` (``_running``), raw rows ``[start, first)`` and ``[minute_cut, end]``
    (PostgreSQL prunes the partitions outside each of them)."""
    first, last = _whole_minutes(start, end)
    first_hour = None if first is None else floor_hour(first - MINUTE) + HOUR
    last_hour = None if last is None else floor_hour(last)
    if _inside_one_hour(first_hour, last_hour):
        return None
    h, m, t = hour_table, minute_table, stored_readings(conn)
    hours, minutes, raw, fallbacks = [], [], [], []
    for (hour_cut, minute_cut, held), robots in _hour_cuts(conn, h, robot_id, first, last).items():
        if first_hour is None or hour_cut > first_hour:
            hours.append(and_(h.c.robot_id.in_(robots), *spanning(h, "hour", None, first_hour, hour_cut)))
        if first is not None and first < min(first_hour, minute_cut):
            minutes.append(
                and_(m.c.robot_id.in_(robots), *spanning(m, "minute", None, first, min(first_hour, minute_cut)))
            )
        if hour_cut < minute_cut:
            running, rest, fallback = _running(h, m, robots, hour_cut, held, minute_cut)
            hours += running
            minutes += rest
            fallbacks += fallback
        raw.append(and_(t.c.robot_id.in_(robots), t.c.ts >= minute_cut, *([] if end is None else [t.c.ts <= end])))
        if start is not None and start < first:
            # The partial minute at the range's start, robot by robot too: with the robots as a subquery
            # (``where``) inside this OR, PostgreSQL read the whole (robot_id, ts) index for it.
            raw.append(and_(t.c.robot_id.in_(robots), t.c.ts >= start, t.c.ts < first))
    return or_(false(), *hours), or_(false(), *minutes), or_(false(), *raw), fallbacks


def _hour_cuts(
    conn: Connection, hour_table, robot_id: str | None, first: datetime | None, last: datetime | None
) -> dict[tuple[datetime, datetime, datetime | None], list[str]]:
    """Per robot, where its hour rows (``hour_cut``: the hour of its ``folded_until``) and its minute rows
    (``minute_cut``: ``folded_until``) end, kept inside the range's whole hours and minutes, and ``held``:
    its running hour's row in ``hour_table`` holds the minutes before it (None: no such row inside the
    range); robots grouped by them (as ``_cuts``)."""
    first_hour = None if first is None else floor_hour(first - MINUTE) + HOUR
    last_hour = None if last is None else floor_hour(last)
    h = hour_table
    running = (
        select(h.c.folded_until)
        .where(h.c.robot_id == P.c.robot_id, h.c.hour == hour_start(P.c.folded_until))
        .limit(1)
        .scalar_subquery()
    )
    query = select(P.c.robot_id, P.c.folded_until, running).order_by(P.c.robot_id)
    if robot_id is not None:
        query = query.where(P.c.robot_id == robot_id)
    groups: dict[tuple[datetime, datetime, datetime | None], list[str]] = {}
    for robot, folded_until, held in conn.execute(query):
        hour_cut, minute_cut = floor_hour(folded_until), folded_until
        if last is not None:
            hour_cut, minute_cut = min(hour_cut, last_hour), min(minute_cut, last)
        if first is not None:
            hour_cut, minute_cut = max(hour_cut, first_hour), max(minute_cut, first)
        if held is not None and not (hour_cut == floor_hour(folded_until) and hour_cut < held <= minute_cut):
            held = None
        groups.setdefault((hour_cut, minute_cut, held), []).append(robot)
    return groups


def _running(hour_table, minute_table, robots: list[str], hour_cut: datetime, held: datetime | None, until):
    """The minutes ``[hour_cut, until)`` of ``robots`` (``until`` None: open), their running hour's row read
    beforehand holding those before ``held``: conditions on ``hour_table`` (that row) and on
    ``minute_table`` (the minutes from ``held``), and ``(from clause, condition)`` fallbacks on
    ``minute_table``.

    The row is taken only if its ``folded_until`` is still ``held`` in the query's own snapshot: a write
    that refolds it in between (the writer does every ``RUNNING_HOUR_STEP``) moves that past ``held``, and
    the fallback reads that robot's minutes ``[hour_cut, held)`` instead. Usually every robot has its row
    and the fallback, driven from the robots (an anti-join, then the minute key; an IN inside the OR of the
    parts was checked on every minute row of the hour), reads nothing: 1 row per robot and axis plus the
    minutes since the row, not up to 59 minute rows."""
    h, m = hour_table, minute_table
    if held is None:
        return [], [and_(m.c.robot_id.in_(robots), *spanning(m, "minute", None, hour_cut, until))], []
    running = h.alias("running")
    has_row = select(running.c.robot_id).where(
        running.c.robot_id == P.c.robot_id, running.c.hour == hour_cut, running.c.folded_until == held
    )
    fallback = and_(P.c.robot_id.in_(robots), ~has_row.exists(), *spanning(m, "minute", None, hour_cut, held))
    return (
        [and_(h.c.robot_id.in_(robots), h.c.hour == hour_cut, h.c.folded_until == held)],
        [and_(m.c.robot_id.in_(robots), *spanning(m, "minute", None, held, until))],
        [(m.join(P, P.c.robot_id == m.c.robot_id), fallback)],
    )


def stamp_stats(
    conn: Connection, *, robot_id: str | None, start: datetime | None, end: datetime | None, folded_only: bool = False
):
    """Subquery: ``reading_stamps_minute``'s columns for the rows of ``start <= ts <= end``, and ``seconds``,
    the length of the stretch of time a row sums up: 60, or up to 3600 for a robot's hour folded so far, one
    row of reading_stamps_hour (its start in ``minute``; the parts as ``span_stats``' ones). ``folded_only``:
    of the whole minutes folded, whole hours likewise."""
    if folded_only:
        return _folded_stamps(conn, robot_id=robot_id, start=start, end=end)
    layers = _layers(conn, SH, S, robot_id=robot_id, start=start, end=end)
    if layers is None:  # the range lies inside one hour
        minutes = _whole_and_edges(conn, S, raw_stamp_stats, robot_id=robot_id, start=start, end=end)
        return select(minutes, literal(60).label("seconds")).subquery()
    hours, minutes, raw, fallbacks = layers
    raw_stamps = raw_stamp_stats(conn, [raw]).subquery()
    of_minutes = select(S.c.robot_id, S.c.minute, *(S.c[n] for n in STAMPS), literal(60).label("seconds"))
    return union_all(
        select(
            SH.c.robot_id, SH.c.hour.label("minute"), *(SH.c[n] for n in STAMPS), _hour_seconds().label("seconds")
        ).where(hours),
        of_minutes.where(minutes),
        *(of_minutes.select_from(joined).where(fallback) for joined, fallback in fallbacks),
        select(raw_stamps.c.robot_id, raw_stamps.c.minute, *(raw_stamps.c[n] for n in STAMPS), literal(60)),
    ).subquery()


STAMPS = ("readings", "first_ts", "last_ts", "longest_step_s", "n_rows", "axes_stored", "axes_with_values")


def _folded_stamps(conn: Connection, *, robot_id: str | None, start: datetime | None, end: datetime | None):
    """The whole hours of the range from reading_stamps_hour, as far as each robot has them (up to the hour
    of its ``folded_until``, read beforehand as in ``_whole_and_edges``), its running hour's row where it
    holds the rest of the range's folded minutes (``_running``), every other folded minute of the range
    from reading_stamps_minute."""
    first, last = _whole_minutes(start, end)
    first_hour = None if first is None else floor_hour(first - MINUTE) + HOUR  # the first whole hour
    last_hour = None if last is None else floor_hour(last)
    if _inside_one_hour(first_hour, last_hour):
        return _stamps_between(S, "minute", 60, [robot_id], first, last).subquery()
    parts = (
        []
        if first is None or first == first_hour
        else [_stamps_between(S, "minute", 60, [robot_id], first, first_hour)]
    )
    for (hour_cut, minute_cut, held), robots in _hour_cuts(conn, SH, robot_id, first, last).items():
        if first_hour is None or hour_cut > first_hour:
            parts.append(_stamps_between(SH, "hour", 3600, robots, first_hour, hour_cut))
        if hour_cut < minute_cut:  # the running hour as far as its row holds it, every folded minute after
            running, rest, fallback = _running(SH, S, robots, hour_cut, held, last)
            every = _stamps_between(S, "minute", 60, [None], None, None)
            parts += [_stamps_between(SH, "hour", 3600, [None], None, None).where(c) for c in running]
            parts += [every.where(c) for c in rest] + [every.select_from(j).where(c) for j, c in fallback]
        else:
            parts.append(_stamps_between(S, "minute", 60, robots, hour_cut, last))
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
    conds = spanning(table, time, None, low, high) + ([] if robots == [None] else [table.c.robot_id.in_(robots)])
    return select(
        table.c.robot_id,
        table.c[time].label("minute"),
        *(table.c[n] for n in STAMPS),
        (_hour_seconds() if table is SH else literal(seconds)).label("seconds"),
    ).where(*conds)


def _hour_seconds():
    """The stretch of time a reading_stamps_hour row sums up: 3600 s, or its running hour's minutes so far
    (the minutes after them are other rows of a reader's)."""
    return seconds_between(SH.c.folded_until, SH.c.hour)


def folded(table, *, robot_id: str | None = None, start: datetime | None, end: datetime | None):
    """Subquery: the rows of a rollup table (``fleet_minute`` too) for the whole minutes inside ``[start,
    end]``, as far as they are folded: each robot's newest minute or two are not (the history view's
    answers, which read nothing but the rollup). One statement: it sees one state of the rollup."""
    return select(table).where(*spanning(table, "minute", robot_id, *_whole_minutes(start, end))).subquery()


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
    t = stored_readings(conn)
    if first is not None and last is not None and first >= last:
        return of_raw(conn, where(t, robot_id=robot_id, start=start, end=end)).subquery()
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
        tail.append(and_(t.c.robot_id.in_(robots), t.c.ts >= cut, *([t.c.ts <= end] if end is not None else [])))
    raw_tail = of_raw(conn, [or_(false(), *tail)])
    # the rollup's columns that its raw part computes (readings_minute's peak_ts only if asked)
    rollup_part = select(*(table.c[name] for name in raw_tail.selected_columns.keys())).where(or_(false(), *whole))
    parts = [rollup_part, raw_tail]
    if start is not None and start < first:
        parts.append(of_raw(conn, [*where(t, robot_id=robot_id, start=start, end=None), t.c.ts < first]))
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
