"""The writer of the per-minute rollup (``common.store.rollup`` reads it): ``add`` folds the rows a
transaction stored into ``readings_minute``/``_hour``, ``reading_stamps_minute``/``_hour`` and ``fleet_minute``, in
the same transaction; ``rebuild`` recomputes it all after a bulk load.

A robot's minutes are folded once they have passed (``rollup_progress.folded_until``: every minute before
it is in the rollup), by the writer that stored the rows, in the same transaction: a crash rolls back
rows, rollup and progress together, and a rollup row is written about once a minute instead of at every
reading. Late rows have their minutes recomputed. The robot's progress row is locked first, in robot
order, so two writers take turns without deadlock and nothing is folded without a row the other had stored.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ARRAY,
    TIMESTAMP,
    Column,
    Connection,
    MetaData,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)

from common.store.rollup import (
    HOUR,
    MINUTE,
    RUNNING_HOUR_STEP,
    SH,
    F,
    H,
    M,
    P,
    R,
    S,
    fleet_stats_of,
    floor_hour,
    floor_minute,
    hour_stats_of,
    minute_axes_of,
    minute_rollup_of,
    readings_minute_rollup_of,
    spanning,
    stamp_hours_of,
    stamp_stats_of,
)
from common.store.tables import dialect_insert, insert_ignoring_duplicates, readings

FLEET_LOCK = zlib.crc32(b"axiswatch fleet_minute")  # pg_advisory_xact_lock's key for refolding fleet_minute
# The minutes a writer of one robot's stretch of time computes before its turn at the progress row (``add``,
# ``minutes_first``): a table of the transaction's own, shaped as readings_minute, emptied at each commit.
AHEAD = Table(
    "readings_minute_ahead",
    MetaData(),
    *(Column(c.name, c.type) for c in M.columns),
    prefixes=["TEMPORARY"],
)
# No key: it holds one computation's rows, inserted as they come (with a primary key and ON CONFLICT the ingest's
# server CPU was ~25 % above folding under the turn, without them ~6 %).
CREATE_AHEAD = f"CREATE TEMP TABLE IF NOT EXISTS {AHEAD.name} (LIKE {M.name}) ON COMMIT DELETE ROWS"
# What a stretch of a robot's readings holds, in two numbers that only grow: readings are added, or given more axes
# (``store.MERGE_STAGE``, readings_fact's trigger: bits of ``axes`` set), never deleted while their day is kept.
STORED_IN = text(
    "SELECT count(*), coalesce(sum(axes), 0) FROM readings WHERE robot_id = :robot AND ts >= :low AND ts < :high"
)
MOVE_PROGRESS = text(
    "UPDATE rollup_progress p SET folded_until = v.until "
    "FROM unnest(CAST(:robots AS text[]), CAST(:untils AS timestamptz[])) AS v(robot_id, until) "
    "WHERE p.robot_id = v.robot_id"
)


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
            new._note(robot, ts)
        return new

    @classmethod
    def of_wide(cls, stored: Iterable[tuple]) -> NewRows:
        """The same of ``(robot_id, ts, axes, amps)`` rows, one per reading (``consumer_db.store.wide_rows``):
        ``count`` is still the long rows, one per bit of ``axes``."""
        new = cls()
        for robot, ts, axes, _ in stored:
            new.count += axes.bit_count()
            new._note(robot, ts)
        return new

    def _note(self, robot: str, ts: datetime) -> None:
        """One reading of ``robot`` at ``ts``: its span and its minute."""
        span = self.spans.get(robot)
        if span is None:
            self.spans[robot] = [ts, ts]
            self.minutes[robot] = set()
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
        self.minutes[robot].add(floor_minute(ts))


def add(conn: Connection, new: NewRows, *, minutes_first: bool = False) -> None:
    """Bring the rollup up to date with rows this transaction stored in readings_fact (none of them
    there before): refold the minutes they came late to, fold the robots' minutes that have passed.

    ``minutes_first`` (the bulk ingest: each transaction one robot's stretch of time, the next stretch in
    the other writer's): the stretch's inner minutes are computed before the turn at the progress row, so
    that two writers compute theirs at once (``_minutes_ahead``); only the turn's own work waits."""
    if not new.count:
        return
    ahead = _minutes_ahead(conn, new) if minutes_first else None
    folded = _lock_progress(conn, new.minutes)
    late = [
        (robot, minute, minute + MINUTE)
        for robot, minutes in new.minutes.items()
        for minute in minutes
        if minute < folded[robot]
    ]
    passed = {robot: floor_minute(span[1] - fold_delay(robot)) for robot, span in new.spans.items()}
    passed = {robot: until for robot, until in passed.items() if until > folded[robot]}
    _fold(conn, late, folded, passed, ahead if ahead and _still_whole(conn, ahead, folded, passed) else None)


@dataclass(frozen=True)
class _Ahead:
    """Minutes ``low`` to ``high`` of ``robot``, computed into ``AHEAD`` from the readings the transaction saw in
    them: ``stored`` says what they held (``STORED_IN``)."""

    robot: str
    low: datetime
    high: datetime
    stored: tuple[int, int]


def _minutes_ahead(conn: Connection, new: NewRows) -> _Ahead | None:
    """PostgreSQL, one robot: its minutes after the first of ``new``'s span and before its fold's end, computed
    into ``AHEAD`` before the turn at the progress row (a stretch's first minute may hold rows of the stretch
    before it, not committed yet). Under the turn they are taken as they are only if their readings did not
    change meanwhile (``_still_whole``); otherwise the fold computes them again, as without this."""
    if conn.dialect.name != "postgresql" or len(new.spans) != 1:
        return None
    [(robot, (first, last))] = new.spans.items()
    low, high = floor_minute(first) + MINUTE, floor_minute(last - fold_delay(robot))
    if high <= low:
        return None
    # Taken before the minutes are computed and again under the turn: the same both times means that no reading
    # came into them and none was given another axis in between (a count alone misses that), so the computation saw
    # them as the turn would.
    stored = tuple(conn.execute(STORED_IN, {"robot": robot, "low": low, "high": high}).one())
    conn.exec_driver_sql(CREATE_AHEAD)
    _execute_cached(conn, "minutes ahead", _span_params([(robot, low, high)]))
    return _Ahead(robot, low, high, stored)


def _still_whole(conn: Connection, ahead: _Ahead, folded: dict[str, datetime], passed: dict[str, datetime]) -> bool:
    """Under the turn: ``ahead``'s minutes are the ones this fold moves through, and hold the readings they
    were computed from, as they were."""
    if not folded[ahead.robot] <= ahead.low < ahead.high == passed.get(ahead.robot):
        return False
    params = {"robot": ahead.robot, "low": ahead.low, "high": ahead.high}
    return tuple(conn.execute(STORED_IN, params).one()) == ahead.stored


def fold_through(conn: Connection, until: datetime) -> int:
    """Fold every robot's minutes before ``until`` not folded yet, whether newer readings came or not (a
    robot that went quiet keeps its last minutes unfolded): done before raw days are dropped
    (``consumer_db.partitions``). Returns the robots folded further."""
    lagging = sorted(conn.execute(select(P.c.robot_id).where(P.c.folded_until < until)).scalars())
    if not lagging:
        return 0
    folded = _lock_progress(conn, dict.fromkeys(lagging, {until}))
    passed = {robot: until for robot in lagging if folded[robot] < until}
    _fold(conn, [], folded, passed)
    return len(passed)


def _fold(
    conn: Connection,
    late: list[tuple[str, datetime, datetime]],
    folded: dict[str, datetime],
    passed: dict[str, datetime],
    ahead: _Ahead | None = None,
) -> None:
    """Refold the ``late`` ``(robot, from, until)`` minutes, fold each robot of ``passed`` from its
    ``folded`` to its new ``folded_until``; ``ahead``'s minutes, computed already, are copied in."""
    todo = late + [(robot, folded[robot], until) for robot, until in passed.items()]
    if todo and conn.dialect.name == "postgresql":
        spans = _span_params(todo)
        # One robot (the ingest's chunk): its range joined, which the planner reads as one bitmap scan of the
        # primary key; several (a sink batch's ~100): each range on its own (``_each_span``).
        each = len({robot for robot, _, _ in todo}) > 1
        if ahead is None:
            _execute_cached(conn, "minutes of each range" if each else "minutes", spans)
        else:  # the minutes before ahead's, then ahead's own
            rest = late + [(ahead.robot, folded[ahead.robot], ahead.low)]
            if folded[ahead.robot] < ahead.low or late:
                _execute_cached(conn, "minutes", _span_params(rest))
            _execute_cached(conn, "minutes from ahead", _span_params([(ahead.robot, ahead.low, ahead.high)]))
        _execute_cached(conn, "stamps of each range" if each else "stamps", spans)
    elif todo:
        _upsert(conn, M, minute_rollup_of([_within(R, "ts", todo)], arrays=False), hashed=True)
        _upsert(conn, S, stamp_stats_of([_within(R, "ts", todo)], axes=minute_axes_of([_within(M, "minute", todo)])))
    if passed:  # before the hours: a running hour's row takes its folded_until from the progress
        _move_progress(conn, passed)
    if todo:
        moved = [(robot, folded[robot], until) for robot, until in passed.items()]
        _refold_hours(conn, late, moved, {robot: passed.get(robot, until) for robot, until in folded.items()})
        _refold_fleet(conn, [(low, high) for _, low, high in todo])


def _move_progress(conn: Connection, passed: dict[str, datetime]) -> None:
    """Each robot's ``folded_until`` to its new one: on PostgreSQL in one statement (executemany sends one
    UPDATE per robot, a round trip each: 100 robots, ~30 ms of every batch at max speed on a busy machine)."""
    robots = sorted(passed)
    if conn.dialect.name == "postgresql":
        conn.execute(MOVE_PROGRESS, {"robots": robots, "untils": [passed[robot] for robot in robots]})
        return
    conn.execute(
        update(P).where(P.c.robot_id == bindparam("robot")).values(folded_until=bindparam("until")),
        [{"robot": robot, "until": passed[robot]} for robot in robots],
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
    return or_(*(and_(*spanning(table, time, robot, low, high)) for robot, low, high in _joined(ranges)))


def _joined(ranges: Iterable[tuple]) -> list[list]:
    """``(key..., from, until)`` ranges, those of one key that overlap or touch joined into one."""
    joined: list[list] = []
    for *key, low, high in sorted(ranges):
        if joined and joined[-1][:-2] == key and joined[-1][-1] >= low:
            joined[-1][-1] = max(joined[-1][-1], high)
        else:
            joined.append([*key, low, high])
    return joined


def _refold_hours(
    conn: Connection,
    late: list[tuple[str, datetime, datetime]],
    moved: list[tuple[str, datetime, datetime]],
    folded_until: dict[str, datetime],
) -> None:
    """Recompute the hours that the ``late`` minutes are in, up to the robot's ``folded_until`` (its running
    hour too), and those its folding ``moved`` through: a whole hour once, when the folding leaves it, the
    running hour each time the folding passes a multiple of ``RUNNING_HOUR_STEP`` (from its ~60 minute rows;
    at every fold that cost the sink ~45 ms a 200-robot tick, docs/benchmarks.md section 3; readers take the
    minutes folded since from readings_minute)."""
    hours = []
    for robot, low, high in late:
        high = min(floor_hour(high - MINUTE), floor_hour(folded_until[robot] - MINUTE)) + HOUR
        if floor_hour(low) < high:
            hours.append((robot, floor_hour(low), high))
    for robot, low, high in moved:
        high = floor_hour(high - MINUTE) + HOUR if _step_of(high) > _step_of(low) else floor_hour(high)
        if floor_hour(low) < high:
            hours.append((robot, floor_hour(low), high))
    if hours:
        _upsert_hours(conn, hours)


def _step_of(ts: datetime) -> datetime:
    """The start of the ``RUNNING_HOUR_STEP`` that ``ts`` falls in (steps start at every hour's start)."""
    hour = floor_hour(ts)
    return hour + (ts - hour) // RUNNING_HOUR_STEP * RUNNING_HOUR_STEP


def _upsert_hours(conn: Connection, hours: list[tuple[str, datetime, datetime]]) -> None:
    """reading_stamps_hour's and readings_hour's rows of these ``(robot, from, until)`` ranges of hours, afresh
    (``until``: an hour's end)."""
    if conn.dialect.name == "postgresql":
        spans = _span_params(hours)
        _execute_cached(conn, "stamp_hours", spans)
        _execute_cached(conn, "hours", spans)
        return
    _upsert(conn, SH, stamp_hours_of([_within(S, "minute", hours)], [_within(M, "minute", hours)]))
    _upsert(conn, H, hour_stats_of([_within(M, "minute", hours)]))


def _refold_fleet(conn: Connection, ranges: list[tuple[datetime, datetime]]) -> None:
    """Recompute the fleet's rows of the minutes in ``ranges`` from every robot's rows of them.

    Another writer may be folding other robots' rows of the same minutes: each computes from what is
    committed, so the last to commit would drop the other's robots. A lock taken here, held to the commit,
    makes them take turns: the second one's statement below starts after the first one's commit and sees
    its rows (READ COMMITTED). It is taken after the progress rows' locks, by every writer in that order,
    so no two writers wait for each other. SQLite has one writer at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(FLEET_LOCK)))
    minutes = or_(*(and_(*spanning(M, "minute", None, low, high)) for low, high in _joined(ranges)))
    _upsert(conn, F, fleet_stats_of([minutes]))


def _keys(table) -> list[str]:
    return [c.name for c in table.primary_key]


# PostgreSQL: the ``(robot_id, low, high)`` ranges a fold reads, as three arrays bound to one statement: the
# statement's text is then the same at every fold, built and compiled once (``_execute_cached``), where
# one condition per robot made SQLAlchemy compile a new statement of ~100 ORs each time (a third of a
# 5,000-reading batch's fold, all of it the sink's CPU). The planner sizes an unnest of bound arrays
# exactly and reads each range through the primary key, one partition each.
SPANS = (
    func.unnest(
        cast(bindparam("robots"), ARRAY(Text)),
        cast(bindparam("lows"), ARRAY(TIMESTAMP(timezone=True))),
        cast(bindparam("highs"), ARRAY(TIMESTAMP(timezone=True))),
    )
    .table_valued("robot_id", "low", "high")
    .render_derived(name="span")
)


def _in_spans(table, time: str):
    """The rows of ``table`` inside one of the ``SPANS`` ranges of its column ``time``."""
    return and_(table.c.robot_id == SPANS.c.robot_id, table.c[time] >= SPANS.c.low, table.c[time] < SPANS.c.high)


def _each_span(table, time: str):
    """The rows of ``table`` inside the ``SPANS`` ranges of its column ``time``, each range read on its own: a
    LATERAL subquery, run once per range (``OFFSET 0``: not flattened into a join), one stretch of the primary
    key each. Joined to the ranges instead, the planner weighs ~100 index look-ups against one scan of the
    day's partition and, while the partition is small (its first ~100,000 readings), scans it whole: a
    5,000-reading batch of 100 robots read 35,000 readings to keep 4,830 (docs/consumer_db.md). A single range
    is read faster joined (a bitmap scan, not an index scan row by row: the ingest's fold 10-40 % slower)."""
    inside = select(table).where(_in_spans(table, time)).offset(0).lateral(f"{table.name}_in_span")
    return select(*inside.c).select_from(SPANS.join(inside, true())).subquery(f"{table.name}_spanned")


def _span_params(ranges: Iterable[tuple[str, datetime, datetime]]) -> dict[str, list]:
    """``SPANS``' parameters: the ranges joined first, so that no row is read twice."""
    joined = _joined(ranges)
    return {"robots": [r[0] for r in joined], "lows": [r[1] for r in joined], "highs": [r[2] for r in joined]}


def _span_folds() -> dict[str, tuple]:
    """PostgreSQL's folds of the ``SPANS`` ranges, as ``_upsert`` builds them: ``(table, query, hashed)``. The
    minutes from ``readings``' arrays (``readings_minute_rollup_of``: the rows of readings_fact, each reading's
    minute and time computed once), their stamps from ``readings`` (one row per reading) and, for the masks of
    axes, the minute rows the first statement has just written (both also ``of each range``, ``_each_span``:
    for a fold of several robots); the hours (``_upsert_hours``) from the minute rows."""
    return {
        "minutes": (M, readings_minute_rollup_of([_in_spans(readings, "ts")]), True),
        # add's minutes_first: the same rows into AHEAD before the turn, copied into readings_minute under it
        "minutes ahead": (AHEAD, readings_minute_rollup_of([_in_spans(readings, "ts")]), True),
        "minutes from ahead": (M, select(AHEAD).where(_in_spans(AHEAD, "minute")), False),
        "stamps": (
            S,
            stamp_stats_of([_in_spans(readings, "ts")], axes=minute_axes_of([_in_spans(M, "minute")]), stored=readings),
            False,
        ),
        "minutes of each range": (M, readings_minute_rollup_of([], stored=_each_span(readings, "ts")), True),
        "stamps of each range": (
            S,
            stamp_stats_of([], axes=minute_axes_of([_in_spans(M, "minute")]), stored=_each_span(readings, "ts")),
            False,
        ),
        "stamp_hours": (SH, stamp_hours_of([_in_spans(S, "minute")], [_in_spans(M, "minute")]), False),
        "hours": (H, hour_stats_of([_in_spans(M, "minute")]), False),
    }


_COMPILED: dict[tuple, tuple[str, dict, bool]] = {}


def span_fold_sql(dialect, name: str) -> tuple[str, dict, bool]:
    """The ``_span_folds`` statement ``name`` for ``dialect`` (PostgreSQL's, with its driver): its text, its
    constant parameters (``SPANS``' are the caller's) and whether it runs with sorts off (``_sorts_off``).
    Compiled once per process and driver (SQLAlchemy compiles an ``ON CONFLICT`` statement anew at every
    call); ``bench.ingest``'s floor runs the same text."""
    key = (dialect.name, dialect.driver, name)
    if key not in _COMPILED:
        table, query, hashed = _span_folds()[name]
        if table is AHEAD:  # a table of the transaction's own, empty: the rows inserted as they come
            statement = insert(AHEAD).from_select([c.name for c in query.selected_columns], _hashed(query))
        else:
            statement = _upsert_statement(dialect.name, table, query, hashed=hashed)
        compiled = statement.compile(dialect=dialect)
        _COMPILED[key] = compiled.string, dict(compiled.params), hashed
    return _COMPILED[key]


def _execute_cached(conn: Connection, name: str, params: dict) -> None:
    """Run the ``_span_folds`` statement ``name`` with ``params``, its text sent as it is (``span_fold_sql``)."""
    sql, constants, hashed = span_fold_sql(conn.dialect, name)
    with _sorts_off(conn, hashed):
        conn.exec_driver_sql(sql, constants | params)


def _upsert(conn: Connection, table, query: Select, *, hashed: bool = False) -> None:
    """The rollup rows of ``query`` replace the stored ones. ``hashed``: PostgreSQL groups ``query``'s rows
    by hashing them, not sorting (see ``_hashed``)."""
    postgres = conn.dialect.name == "postgresql"
    with _sorts_off(conn, hashed and postgres):
        conn.execute(_upsert_statement(conn.dialect.name, table, query, hashed=hashed))


def _upsert_statement(dialect: str, table, query: Select, *, hashed: bool):
    keys = _keys(table)
    if hashed and dialect == "postgresql":
        query = _hashed(query)
    # In key order: the rows then go into the primary key's index in order, its pages filled as a sort
    # left them; the fold's groups, hashed (consumer_db.ingest), come out in any order (the index ~10 % larger).
    query = query.order_by(*(query.selected_columns[key] for key in keys))
    statement = dialect_insert(dialect, table).from_select([c.name for c in query.selected_columns], query)
    return statement.on_conflict_do_update(
        index_elements=keys, set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    )


@contextmanager
def _sorts_off(conn: Connection, off: bool) -> Iterator[None]:
    """With ``off``, sorts off for the statement inside (PostgreSQL; see ``_hashed``). Not in a ``finally``:
    a statement that fails aborts the transaction, which undoes the SET with it, and a SET on the aborted
    transaction would raise in its place (a content error taken for an outage)."""
    if not off:
        yield
        return
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    yield
    conn.exec_driver_sql("SET LOCAL enable_sort TO DEFAULT")


def _hashed(query: Select) -> Select:
    """``query`` computed on its own (a MATERIALIZED CTE), so that with sorts off for the statement its
    groups are hashed, and only its result sorted into key order. The planner cannot know that a reading
    unnests into ~14 long rows (readings_fact is a view over arrays) and takes a batch's ~70,000 for ~100:
    it sorts them to group them, spilling to disk, where hashing its ~2,500 groups takes half the time
    of the sink's largest statement. Nested loops stay on: the fold reads its rows through one index range
    per robot (``SPANS``), which needs them."""
    computed = query.cte().prefix_with("MATERIALIZED", dialect="postgresql")
    return select(computed)


def rebuild(conn: Connection) -> None:
    """Recompute the whole rollup from readings_fact (after a bulk load that bypassed the writers): every
    robot folded up to the minute after its newest reading."""
    _upsert(conn, M, minute_rollup_of([true()], arrays=conn.dialect.name == "postgresql"))
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
            [
                (r["robot_id"], datetime.min.replace(tzinfo=UTC), floor_hour(r["folded_until"] - MINUTE) + HOUR)
                for r in rows
            ],
        )
