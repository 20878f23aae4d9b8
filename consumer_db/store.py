"""Idempotent writes of readings (COPY into ``readings``, one row per reading, on PostgreSQL) and dead
letters; alert events: ``alert_store``.

Every write can be repeated without changing the result: a reading already stored, or a dead letter
with the same origin, is skipped (``ON CONFLICT DO NOTHING``). That is what makes redelivery after a
crash or a rebalance harmless. The rows a write actually stored (all of a straight COPY; those the
``INSERT`` returns otherwise) bring the per-minute rollup up to date in the same transaction
(``consumer_db.rollup_writer.add``: the robots' passed minutes folded, late ones refolded).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import repeat
from typing import TypeVar

from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, Text, bindparam, cast, insert
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError

from common.store.tables import (
    Amps,
    UtcDateTime,
    insert_ignoring_duplicates,
    insert_new_rows,
    readings,
    readings_fact,
    rejected_readings,
)
from consumer_db.rollup_writer import NewRows, add

T = TypeVar("T")
READING_COLUMNS = ("robot_id", "axis_id", "ts", "amps")
WIDE_COLUMNS = ("robot_id", "ts", "axes", "amps")
STAGE = "readings_stage"
stage = Table(
    STAGE,
    MetaData(),
    Column("robot_id", Text),
    Column("ts", UtcDateTime),
    Column("axes", BigInteger),
    Column("amps", postgresql.ARRAY(Amps)),
)
# Session-local and emptied at commit; created once per pooled connection, not once per batch.
CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (robot_id text, ts timestamptz, axes bigint, "
    "amps double precision[]) ON COMMIT DELETE ROWS"
)
# One probe of the primary key per robot of the batch. Not ``WHERE (robot = a AND ts BETWEEN ..) OR ...
# LIMIT 1``: on a big table the planner answers that by walking the whole key in ts order hoping to meet
# a row early, and new data has none (seconds per batch at a million readings, growing).
ANYTHING_STORED = sql_text(
    "SELECT 1 FROM unnest(CAST(:robots AS text[]), CAST(:lows AS timestamptz[]), CAST(:highs AS timestamptz[])) "
    "AS span(robot_id, low, high) WHERE EXISTS (SELECT 1 FROM readings r WHERE r.robot_id = span.robot_id "
    "AND r.ts BETWEEN span.low AND span.high) LIMIT 1"
)
ENSURE_PARTITIONS = sql_text(
    "SELECT ensure_readings_partitions(day, day) FROM unnest(CAST(:days AS timestamptz[])) day"
)
MOVE_STAGE = (
    f"INSERT INTO readings (robot_id, ts, axes, amps) SELECT robot_id, ts, axes, amps FROM {STAGE} "
    "ON CONFLICT DO NOTHING RETURNING robot_id, ts, axes, amps"
)
# Readings stored already that the staged ones add axes to (a reading's rows written in parts: the long form
# took them as rows of their own). Returns only the axes added.
MERGE_STAGE = (
    "UPDATE readings r SET axes = r.axes | s.axes, amps = ARRAY("
    "SELECT CASE WHEN (s.old >> i) & 1 = 0 AND (s.axes >> i) & 1 = 1 THEN s.amps[i] ELSE r.amps[i] END "
    "FROM generate_series(1, greatest(cardinality(r.amps), cardinality(s.amps))) i ORDER BY i) "
    f"FROM (SELECT DISTINCT ON (g.robot_id, g.ts) g.*, o.axes AS old FROM {STAGE} g "
    "JOIN readings o ON o.robot_id = g.robot_id AND o.ts = g.ts WHERE g.axes & ~o.axes <> 0) s "
    "WHERE r.robot_id = s.robot_id AND r.ts = s.ts RETURNING r.robot_id, r.ts, s.axes & ~s.old, r.amps"
)
# Staged readings whose stored reading is not the very same row: the only ones that can contradict it. A
# re-run's readings, all stored alike already, are settled by this one join instead of fetched one by one.
# Bounded by the batch's time span: the planner may hash the join, and must then read only the batch's days.
STAGED_NOT_STORED_ALIKE = (
    f"SELECT g.robot_id, g.ts FROM {STAGE} g JOIN readings r ON r.robot_id = g.robot_id AND r.ts = g.ts "
    f"WHERE r.ts BETWEEN (SELECT min(ts) FROM {STAGE}) AND (SELECT max(ts) FROM {STAGE}) "
    "AND (r.axes <> g.axes OR r.amps IS DISTINCT FROM g.amps)"
)


def uses_copy(dialect: str, rows: int, copy_min_rows: int) -> bool:
    """``rows``: long rows (one per axis stored), as ``copy_min_rows`` counts them."""
    return dialect == "postgresql" and rows >= copy_min_rows


def insert_readings(conn: Connection, rows: list[tuple], *, copy_min_rows: int = 1000) -> int:
    """Store ``(robot_id, axis_id, ts, amps)`` rows, skipping those already there, and bring the rollup of
    their robots up to date; returns how many were new."""
    new = write_readings(conn, rows, copy_min_rows=copy_min_rows)
    add(conn, new)
    return new.count


def write_readings(
    conn: Connection, rows: list[tuple], *, copy_min_rows: int = 1000, text: str | None = None
) -> NewRows:
    """The first half of ``insert_readings``: the rows stored, the rollup not yet brought up to date (the
    caller hands the result to ``consumer_db.rollup_writer.add`` in the same transaction). ``text``: the rows'
    ``copy_text``, if made already (the sink makes it beside the previous batch's transaction).

    PostgreSQL stores one row per reading in ``readings`` (the rows of one robot and time gathered, see
    ``wide_rows``); SQLite the long rows in the table readings_fact."""
    if not rows:
        return NewRows()
    if conn.dialect.name != "postgresql":
        values = [dict(zip(READING_COLUMNS, r, strict=True)) for r in rows]
        return NewRows.of(insert_new_rows(conn, readings_fact, values, READING_COLUMNS))
    return write_wide_readings(conn, list(wide_rows(rows)), copy_min_rows=copy_min_rows, text=text)


def write_wide_readings(
    conn: Connection,
    wide: list[tuple],
    *,
    copy_min_rows: int = 1000,
    text: str | None = None,
    batch: NewRows | None = None,
    partitions_made: bool = False,
) -> NewRows:
    """``write_readings`` of ``(robot_id, ts, axes, amps)`` rows, one per reading; ``partitions_made``: the
    caller has made their day partitions already (``ensure_partitions``)."""
    if not wide:
        return NewRows()
    if conn.dialect.name != "postgresql":
        return write_readings(conn, list(long_rows(wide)), copy_min_rows=copy_min_rows)
    batch = NewRows.of_wide(wide) if batch is None else batch
    if not partitions_made:
        ensure_partitions(conn, batch.minutes)
    if batch.count >= copy_min_rows:
        return copy_readings(conn, wide, batch, wide_copy_text(wide) if text is None else text)
    return copy_readings(conn, wide, batch, None)


def ensure_partitions(conn: Connection, minutes: dict[str, set[datetime]]) -> None:
    """The day partitions the rows fall in (made ahead of time for new data; older data makes its own).
    Only the days with rows: a robot whose clock is years off must not make every day in between."""
    days = sorted({minute.replace(hour=0, minute=0) for robot_minutes in minutes.values() for minute in robot_minutes})
    conn.execute(ENSURE_PARTITIONS, {"days": days})


def copy_readings(conn: Connection, wide: list[tuple], batch: NewRows, text: str | None) -> NewRows:
    """PostgreSQL; returns the rows stored. New data (nothing stored yet for any of the rows' robots
    within their time span, the usual case) is COPied straight into readings, inside a savepoint.
    Otherwise, or if that meets a duplicate after all (a concurrent writer, a time repeated in the input),
    the rows go through the staging table: COPY, then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING
    RETURNING``, about twice the work; a reading stored in part gets the axes it lacked (``MERGE_STAGE``).
    ``wide``: the ``wide_rows``, ``batch`` their ``NewRows``, ``text`` their ``wide_copy_text``, or None for
    a multi-row INSERT instead of COPY (a small batch)."""
    if not _anything_stored(conn, batch.spans):
        try:
            with conn.begin_nested():
                _load(conn, readings, wide, text)
            return replace(batch, wide=wide)
        except IntegrityError:
            pass
    conn.exec_driver_sql(CREATE_STAGE)
    # Emptied first, not after: a second call in the same transaction starts empty, and the batch stays
    # staged until the commit for ``staged_not_stored_alike``.
    conn.exec_driver_sql(f"TRUNCATE {STAGE}")
    _load(conn, stage, wide, text)
    return NewRows.of_wide(conn.exec_driver_sql(MOVE_STAGE).all() + conn.exec_driver_sql(MERGE_STAGE).all())


def staged_not_stored_alike(conn: Connection) -> set[tuple[str, datetime]]:
    """PostgreSQL, after a ``write_wide_readings`` in this transaction that stored fewer rows than it was
    given (the batch went through the staging table): the ``(robot_id, ts)`` of its readings stored with
    other axes or currents than the batch's. Any other reading of the batch is stored exactly as given."""
    return {(robot, ts) for robot, ts in conn.exec_driver_sql(STAGED_NOT_STORED_ALIKE)}


def may_conflict(
    conn: Connection, readings: list[T], key: Callable[[T], tuple[str, datetime]], wide: list[tuple]
) -> list[T]:
    """Of ``readings``, after a ``write_wide_readings`` of their rows ``wide`` in this transaction that stored
    fewer rows than given, those that may contradict the stored ones (to compare with ``common.store.conflicts``):
    on PostgreSQL those the database finds stored otherwise, in one statement (a redelivered batch, stored
    alike, has none: fetching every reading back to compare it made a re-run 4x the first write), and any
    with no row in ``wide`` (no axis to store, refused); elsewhere all of them. On PostgreSQL such a write
    always went through the staging table (COPY or INSERT alike), which holds ``wide`` until the commit."""
    if conn.dialect.name != "postgresql":
        return readings
    differ = staged_not_stored_alike(conn)
    staged = {(robot, ts) for robot, ts, _, _ in wide}
    return [reading for reading in readings if (k := key(reading)) in differ or k not in staged]


def _load(conn: Connection, table: Table, wide: list[tuple], text: str | None) -> None:
    if text is None:
        # The currents go as the text of an array, which PostgreSQL reads as COPY does: psycopg2 writes a
        # float as a numeric literal, and a numeric has no -0, so a -0.0 COPY keeps was stored as 0.0 here.
        from msgspec.json import Encoder

        encode = Encoder().encode
        values = [
            {"robot_id": robot, "ts": ts, "axes": axes, "amps_text": "{" + _copy_array(amps, encode).decode() + "}"}
            for robot, ts, axes, amps in wide
        ]
        conn.execute(insert(table).values(amps=cast(bindparam("amps_text", type_=Text), table.c.amps.type)), values)
    else:
        copy_from(conn, f"COPY {table.name} ({', '.join(WIDE_COLUMNS)}) FROM STDIN", text)


def wide_rows(rows: Iterable[tuple]) -> Iterator[tuple[str, datetime, int, list]]:
    """``(robot_id, ts, axes, amps)``: the long rows of each reading gathered into one, in the order readings
    first appear; ``amps[N - 1]`` is axis N, bit N of ``axes`` set for each axis given. Gathered by key, not
    by neighbours: a caller's rows of two readings may interleave, and two rows of one key would be a
    duplicate the staging table's merge keeps only one of. An axis given twice keeps its first value, as
    ``ON CONFLICT DO NOTHING`` kept the first row."""
    gathered: dict[tuple[str, datetime], tuple[int, list]] = {}
    for robot, axis, ts, value in rows:
        axes, amps = gathered.get((robot, ts), (0, []))
        bit = 1 << axis
        if axes & bit:
            continue
        if len(amps) < axis:
            amps.extend([None] * (axis - len(amps)))
        amps[axis - 1] = value
        gathered[robot, ts] = (axes | bit, amps)
    for (robot, ts), (axes, amps) in gathered.items():
        yield robot, ts, axes, amps


def long_rows(wide: Iterable[tuple]) -> Iterator[tuple]:
    """``(robot_id, axis_id, ts, amps)`` rows of ``(robot_id, ts, axes, amps)`` ones: one per bit of ``axes``."""
    for robot, ts, axes, amps in wide:
        for axis in range(1, len(amps) + 1):
            if axes >> axis & 1:
                yield robot, axis, ts, amps[axis - 1]


def _anything_stored(conn: Connection, spans: dict[str, list[datetime]]) -> bool:
    params = {"robots": list(spans), "lows": [s[0] for s in spans.values()], "highs": [s[1] for s in spans.values()]}
    return conn.execute(ANYTHING_STORED, params).first() is not None


def copy_from(conn: Connection, sql: str, data: str) -> None:
    """psycopg2's ``copy_expert`` on the connection's own transaction. Its errors are turned into
    SQLAlchemy's (OperationalError, DataError, ...) like every other statement's, and a lost connection
    is invalidated, so callers handle one kind of error."""
    dbapi_connection = conn.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.copy_expert(sql, io.StringIO(data), size=1 << 18)
    except conn.dialect.dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, conn.dialect.dbapi.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from exc
    finally:
        if not cursor.closed:
            cursor.close()


def copy_text(rows: Iterable[tuple]) -> str:
    """COPY's text format of the long rows' ``wide_rows``."""
    return wide_copy_text(wide_rows(rows))


def wide_copy_text(wide: Iterable[tuple]) -> str:
    """COPY's text format of ``(robot_id, ts, axes, amps)`` rows: the currents as an array.

    The times and the arrays are written by msgspec's JSON encoder, several times faster than ``isoformat`` and
    ``repr`` (which were most of the sink's cost of a COPY line), in forms PostgreSQL reads to the very values
    given: a UTC time as ``2024-01-01T00:00:00.044Z``, and the currents as a JSON list, ``[1.25,null]``, whose
    inside is the inside of an array literal (``null`` reads as NULL). Each float is the shortest decimal that
    reads back as the same double, as ``repr``'s; PostgreSQL rounds a decimal to the nearest double, as Python
    does."""
    # Imported at the first call, not with the module: `ingest` imports it too, and writes its blocks' COPY text
    # without msgspec (``wide_block_text``).
    from msgspec.json import Encoder

    encode = Encoder().encode
    out: list[bytes] = []
    last_robot, prefix_robot = None, b""
    for robot, ts, axes, amps in wide:
        if robot is not last_robot:
            last_robot, prefix_robot = robot, _escape(robot).encode()
        out.append(b"%s\t%s\t%d\t{%s}\n" % (prefix_robot, _copy_time(ts, encode), axes, _copy_array(amps, encode)))
    return b"".join(out).decode()


def _copy_time(ts: datetime, encode: Callable[[object], bytes]) -> bytes:
    if type(ts) is datetime and ts.tzinfo is UTC:
        return encode(ts)[1:-1]  # the JSON string without its quotes
    # Any other time as ``isoformat`` writes it: msgspec rounds an offset to whole minutes (another instant).
    return _timestamp(ts).encode()


def _copy_array(amps: list, encode: Callable[[object], bytes]) -> bytes:
    array = encode(amps)
    if array.count(b"null") != amps.count(None):
        # msgspec writes NaN and infinity as null, which would store NULL; ``repr`` writes them as PostgreSQL
        # reads them, so the table's CHECK refuses them as it always did.
        return ",".join(_amps_cells(amps)).encode()
    return array[1:-1]  # the JSON list without its brackets


def wide_block_text(
    robot_id: str,
    ts: list[datetime],
    axes: int,
    amps: list[list | None],
    numbers: list[Sequence[str] | None] | None = None,
) -> str:
    """``wide_copy_text`` of readings of one robot that share ``axes``, given as columns: ``amps[N - 1]``
    the currents of axis N (``None``: no value in any reading). Made column by column, in C. ``numbers``:
    beside ``amps``, the text each column was read from by ``float`` (``None``: none), used as it is when
    ``_plain_decimals`` (formatting the floats again was most of the work)."""
    if not ts:
        return ""
    texts = numbers or [None] * len(amps)
    cells = [
        repeat("NULL", len(ts)) if column is None else text if _plain_decimals(text) else _amps_cells(column)
        for column, text in zip(amps, texts, strict=True)
    ]
    arrays = map("{%s}".__mod__, map(",".join, zip(*cells, strict=True)))
    lines = zip(repeat(_escape(robot_id)), map(_timestamp, ts), repeat(str(axes)), arrays)
    return "\n".join(map("\t".join, lines)) + "\n"


def _plain_decimals(cells: Sequence[str] | None) -> bool:
    """Cells that ``float`` read, fit for COPY as they are: digits, a point and a minus sign only (no spaces,
    underscores or exponents, which ``float`` takes and PostgreSQL does not, or not alike), 1 to 25 characters
    each (no value beyond float8's range). PostgreSQL reads them to the very double ``float`` did: both round
    a decimal correctly."""
    if not cells:
        return False
    joined = ",".join(cells)
    sizes = list(map(len, cells))
    return (
        joined.isascii()
        and not joined.encode().translate(None, b"0123456789.-,")
        and 0 < min(sizes) <= max(sizes) <= 25
    )


def _amps_cells(column: list[float | None]) -> list[str]:
    if None in column:
        return ["NULL" if v is None else repr(v) for v in column]
    return list(map(repr, column))


def _timestamp(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: axiswatch stores UTC instants only")
    return ts.isoformat()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def insert_rejected(conn: Connection, rows: list[dict]) -> int:
    """Dead letters; one with an ``origin`` already stored (a redelivery) is skipped."""
    return insert_ignoring_duplicates(conn, rejected_readings, [_clean_text(r) for r in rows])


LIMITS = {"source": 300, "robot_id": 64, "origin": 400}


def _clean_text(row: dict) -> dict:
    # A dead letter must be storable whatever garbage it carries: PostgreSQL text cannot hold NUL, and
    # the short columns are cut to their width.
    clean = {k: v.replace("\x00", "\\x00") if isinstance(v, str) else v for k, v in row.items()}
    for column, width in LIMITS.items():
        if isinstance(clean.get(column), str):
            clean[column] = clean[column][:width]
    return clean
