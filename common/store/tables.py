"""The database schema, shared by every service: SQLAlchemy Core tables on one ``MetaData``.

Migrations (``consumer_db/migrations``) create and change these tables; this module is what the code
reads and writes through. Timestamps are always timezone-aware UTC, on PostgreSQL and on SQLite.

Schema lock: ``axes_dim`` lists the axes of every robot. A reading for an axis that is not there is
rejected (``rejected_readings``). A robot seen for the first time gets the configured axes
(``settings.axes``) seeded on first sight; after that its axis list only changes through ``axes_dim``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from common.defaults import MAX_AXIS

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator):
    """``timestamptz`` on PostgreSQL; on SQLite (which has no time zones) UTC text. Either way an aware
    UTC datetime comes back, and a naive one is refused on the way in, so no local time can slip in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: axiswatch stores UTC instants only")
        value = value.astimezone(UTC)
        # SQLite keeps the text; comparing text only works if every value is written in UTC, naive.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Amps = Float(precision=53)  # double precision: the export has more digits than a float4 keeps
AMPS_BOUND = 1e6  # readings_fact's CHECK (migration 0007): READING_MAX_ABS_AMPS may not go beyond

axes_dim = Table(
    "axes_dim",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("axis_id", SmallInteger, primary_key=True),
    Column("label", String(32), nullable=False),
    Column("unit", String(8), nullable=False, server_default="A"),
    Column("active", Boolean, nullable=False, server_default=true()),
)

readings_fact = Table(
    "readings_fact",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("axis_id", SmallInteger, primary_key=True),
    Column("ts", UtcDateTime, primary_key=True),
    Column("amps", Amps, nullable=True, comment="NULL = OK null: the axis has no load channel"),
    Column("ingested_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    # No absurd value can poison the rollup's fold (migration 0007; the reading policy refuses them first).
    CheckConstraint(f"amps BETWEEN {-AMPS_BOUND} AND {AMPS_BOUND}", name="ck_readings_fact_amps_physical"),
    # The primary key (robot, axis, ts) serves per-axis look-ups (latest, peaks in a window); this one
    # "everything of a robot in a time range" and a robot's newest timestamp. On PostgreSQL it carries
    # axis and amps too, so those range queries never touch the table. Fleet-wide time ranges go robot
    # by robot through it (common.store.sqlparts.where). No index on ts alone: every new row would extend it,
    # at a cost to the bulk ingest (figures: docs/benchmarks.md, "Measurements behind the code").
    Index(None, "robot_id", "ts", postgresql_include=["axis_id", "amps"]),
)

# PostgreSQL's stored form of the readings (migration 0012): one row per reading, partitioned by UTC day
# (``readings_pYYYYMMDD``, made and dropped by consumer_db.partitions). There ``readings_fact`` above is a view
# of it giving back the long rows: ``amps[N]`` is axis N's current, NULL = OK null; ``axes`` has bit N set
# where the reading has a row of axis N. Its only index is the primary key. SQLite keeps the long table.
# On its own MetaData: it exists on PostgreSQL only (``schema_object``).
postgres_only = MetaData(naming_convention=NAMING)
readings = Table(
    "readings",
    postgres_only,
    Column("robot_id", String(64), primary_key=True),
    Column("ts", UtcDateTime, primary_key=True),
    Column("axes", BigInteger, nullable=False, comment="bit N set: the reading has a row of axis N"),
    Column("ingested_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("amps", postgresql.ARRAY(Amps), nullable=False, comment="amps[N] = axis N; NULL = OK null"),
)
READINGS_PARTITION = re.compile(r"readings_p\d{8}")

# Each robot's minutes not folded yet (from its rollup_progress.folded_until on), one row per robot and minute,
# kept by the writer that stores the readings, in the same transaction (consumer_db.open_minutes), and deleted by
# the fold that moves the minute into readings_minute: in any snapshot each minute of a robot is in exactly one of
# the two, so a fleet-wide reader takes its open minutes as ~2 rows per robot instead of its raw readings
# (docs/benchmarks.md, section 3). The stamps' columns as reading_stamps_minute's; each per-axis statistic of
# readings_minute as an array, element N for axis N (``axis_n_rows`` 0: no rows of that axis).
open_minute = Table(
    "open_minute",
    postgres_only,
    Column("robot_id", String(64), primary_key=True),
    Column("minute", UtcDateTime, primary_key=True, comment="start of the UTC minute"),
    Column("readings", Integer, nullable=False, comment="distinct reading times"),
    Column("first_ts", UtcDateTime, nullable=False),
    Column("last_ts", UtcDateTime, nullable=False),
    Column("longest_step_s", Float(precision=53), nullable=False),
    Column("n_rows", Integer, nullable=False, comment="rows of the minute, every axis"),
    Column("axes_stored", BigInteger, nullable=False, comment="bit N set: rows of axis N"),
    Column("axes_with_values", BigInteger, nullable=False, comment="bit N set: a value (not NULL) on axis N"),
    Column("axis_n_rows", postgresql.ARRAY(Integer), nullable=False),
    Column("axis_n_values", postgresql.ARRAY(Integer), nullable=False),
    Column("axis_n_zero", postgresql.ARRAY(Integer), nullable=False),
    Column("axis_sum_amps", postgresql.ARRAY(Amps), nullable=False),
    Column("axis_sum_sq_amps", postgresql.ARRAY(Amps), nullable=False),
    Column("axis_min_amps", postgresql.ARRAY(Amps), nullable=False),
    Column("axis_max_amps", postgresql.ARRAY(Amps), nullable=False),
    Column("axis_max_active_amps", postgresql.ARRAY(Amps), nullable=False),
    Column(
        "axis_peak_ts",
        postgresql.ARRAY(UtcDateTime),
        nullable=False,
        comment="element N: the first reading time at element N of axis_max_amps",
    ),
)


def schema_object(dialect: str):
    """Alembic's ``include_object`` for comparing ``metadata`` with a database of ``dialect``: on PostgreSQL
    readings_fact is a view (not reflected) and readings with its partitions are not in ``metadata``."""

    def include(obj, name, type_, reflected, compare_to) -> bool:
        if type_ != "table" or dialect != "postgresql":
            return True
        if reflected:
            return name not in postgres_only.tables and not READINGS_PARTITION.fullmatch(name or "")
        return name != "readings_fact"

    return include


def axis_stats_columns() -> list[Column]:
    """One axis's figures over a stretch of time, the same in every rollup level (minute, hour)."""
    return [
        Column("n_rows", Integer, nullable=False),
        Column("n_values", Integer, nullable=False, comment="rows with a value (not NULL)"),
        Column("n_zero", Integer, nullable=False, comment="values of exactly 0 A (idle)"),
        Column("sum_amps", Amps),
        Column("sum_sq_amps", Amps),
        Column("min_amps", Amps),
        Column("max_amps", Amps),
        Column("max_active_amps", Amps, comment="largest non-zero value"),
    ]


# Window peaks answer from the rollup alone with it (no look-up of the time in the raw rows), also for days whose
# raw rows retention has dropped; NULL for a minute without a value, or folded before migration 0015 from raw
# rows already dropped.
PEAK_TS = "first reading time at max_amps"

# The per-minute rollup of readings_fact (consumer_db.store keeps it exact, common.store.rollup reads it): history
# queries read one row per robot, axis and minute for whole minutes instead of ~30 raw rows each.
# ``sum_amps`` is also the sum of the non-zero values (zeros add nothing); max of the non-zero ones apart,
# because with negative currents it is not ``max_amps``.
readings_minute = Table(
    "readings_minute",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    # minute before axis: a robot's time range is one stretch of the primary key
    Column("minute", UtcDateTime, primary_key=True, comment="start of the UTC minute"),
    Column("axis_id", SmallInteger, primary_key=True),
    *axis_stats_columns(),
    Column("peak_ts", UtcDateTime, comment=PEAK_TS),
    Index(None, "minute"),  # the fleet's minute is refolded from all robots' rows of it
)

# Per robot and minute, the distinct reading times (whatever the axis): what data health counts and where
# it looks for gaps. A gap inside a minute shows as ``longest_step_s``; only such minutes are read raw.
reading_stamps_minute = Table(
    "reading_stamps_minute",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("minute", UtcDateTime, primary_key=True, comment="start of the UTC minute"),
    Column("readings", Integer, nullable=False, comment="distinct reading times"),
    Column("first_ts", UtcDateTime, nullable=False),
    Column("last_ts", UtcDateTime, nullable=False),
    Column(
        "longest_step_s", Float(precision=53), nullable=False, comment="largest step between two readings of the minute"
    ),
    # What data health asks per robot, so that it need not read a row per axis: the rows of the minute and
    # which axes they were of / carried a value on (bit N = axis N; axes go up to MAX_AXIS).
    # (the defaults only for the rows migration 0005 found, before it filled them in)
    Column("n_rows", Integer, nullable=False, server_default="0", comment="rows of the minute, every axis"),
    Column("axes_stored", BigInteger, nullable=False, server_default="0", comment="bit N set: rows of axis N"),
    Column(
        "axes_with_values",
        BigInteger,
        nullable=False,
        server_default="0",
        comment="bit N set: a value (not NULL) on axis N",
    ),
)

# reading_stamps_minute per hour: each robot's hours up to its ``folded_until``, the last one running (refolded
# every ``rollup.RUNNING_HOUR_STEP`` of folding; written again for late rows). Data health over a day of a fleet
# reads 24 rows per robot instead of 1,440. ``longest_step_s`` takes in the steps between the hour's minutes.
# A reader takes an hour's row for the minutes [hour, folded_until) only: a whole hour's, or the running hour's
# as far as it holds them, checked in the query's snapshot (common.store.rollup._running).
HOUR_FOLDED_UNTIL = "the row holds the minutes before it: the hour's end, or the robot's folded_until (running)"
reading_stamps_hour = Table(
    "reading_stamps_hour",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("hour", UtcDateTime, primary_key=True, comment="start of the UTC hour"),
    Column("readings", Integer, nullable=False, comment="distinct reading times"),
    Column("first_ts", UtcDateTime, nullable=False),
    Column("last_ts", UtcDateTime, nullable=False),
    Column(
        "longest_step_s", Float(precision=53), nullable=False, comment="largest step between two readings of the hour"
    ),
    Column("n_rows", Integer, nullable=False, comment="rows of the hour, every axis"),
    Column("axes_stored", BigInteger, nullable=False, comment="bit N set: rows of axis N"),
    Column("axes_with_values", BigInteger, nullable=False, comment="bit N set: a value (not NULL) on axis N"),
    Column("folded_until", UtcDateTime, comment=HOUR_FOLDED_UNTIL),
)

# readings_minute per hour: each robot's hours up to its ``folded_until``, as reading_stamps_hour's and written
# with it (consumer_db.rollup_writer). Long ranges of a fleet (window peaks, the per-axis summary,
# the hourly resample) read one row per robot, axis and hour instead of 60. ``peak_minute``: the first minute
# of the hour that reached ``max_amps``, where window peaks look for the raw time.
readings_hour = Table(
    "readings_hour",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("hour", UtcDateTime, primary_key=True, comment="start of the UTC hour"),
    Column("axis_id", SmallInteger, primary_key=True),
    *axis_stats_columns(),
    Column("peak_minute", UtcDateTime, comment="first minute of the hour whose max_amps is the hour's"),
    Column("peak_ts", UtcDateTime, comment=PEAK_TS),
    Column("folded_until", UtcDateTime, comment=HOUR_FOLDED_UNTIL),
)

# The fleet's per-minute rollup: readings_minute summed over robots, per minute and axis, for the fleet-wide
# history (100 robots: 100x fewer rows). Kept by the writers with readings_minute (consumer_db.rollup_writer):
# a minute's row covers the robots that have folded that minute.
fleet_minute = Table(
    "fleet_minute",
    metadata,
    Column("minute", UtcDateTime, primary_key=True, comment="start of the UTC minute"),
    Column("axis_id", SmallInteger, primary_key=True),
    Column("n_rows", Integer, nullable=False),
    Column("n_values", Integer, nullable=False),
    Column("n_zero", Integer, nullable=False),
    Column("sum_amps", Amps),
    Column("max_amps", Amps),
    Column("max_active_amps", Amps),
    Column("n_robot_means", Integer, nullable=False, comment="robots with a value in the minute"),
    Column("sum_robot_means", Amps, comment="sum of their minute means"),
)

# How far each robot's readings are folded into the rollup: every minute before ``folded_until`` is in
# readings_minute and reading_stamps_minute, exactly; none from it on (readers take those from the raw rows).
# Writers lock a robot's row while they store its readings (consumer_db.rollup_writer).
rollup_progress = Table(
    "rollup_progress",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("folded_until", UtcDateTime, nullable=False, comment="start of the robot's first minute not folded"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("robot_id", String(64), nullable=False),
    Column("axis", SmallInteger, nullable=False),
    Column("detector", String(100), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime),
    Column("peak_amps", Amps),
    Column("threshold", Amps),
    Column("score", Amps),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UtcDateTime),
    Column("ack_outcome", String(32), comment="real_fault, false_alarm, inspected_ok, part_replaced (API)"),
    Column("ack_note", Text),
    Column("updated_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    Index(None, "robot_id", "opened_at"),
    Index(None, "opened_at"),
)

rejected_readings = Table(
    "rejected_readings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(300), nullable=False, comment="file name or topic"),
    Column("line", BigInteger, comment="line in the file, or offset in the topic"),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("robot_id", String(64)),
    Column("received_at", UtcDateTime, nullable=False),
    Column("stored_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    # Where the record came from ("topic/partition/offset", "csv:robot:file:line"): a redelivered or
    # re-ingested record hits this unique key and is not stored twice. NULL for ad-hoc inserts.
    Column("origin", String(400), unique=True),
    Index(None, "received_at"),
)


# The notifier (docs/notifier.md). Its own view of each event (the alerts topic merged as Alert.merged_with
# does, written in the same transaction as the deliveries the message makes), so that a change is recognised
# once whatever is read again after a restart.
notification_events = Table(
    "notification_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("acknowledged_at", UtcDateTime),
    Column("alert", Text, nullable=False, comment="the merged event as wire JSON"),
    Column("updated_at", UtcDateTime, nullable=False),
)

DELIVERY_STATUSES = ("pending", "sending", "retrying", "sent", "failed")
# One row per (event, change, channel): the unique key is what makes a change notified once per channel,
# across restarts and instances. Claimed (status sending, claimed_until) before each attempt, marked after.
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False),
    Column("change", String(32), nullable=False, comment="open, escalate, maintenance_due, close, reminder-N"),
    Column("channel", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("alert", Text, nullable=False, comment="the event as it was at the change, wire JSON"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime, nullable=False, comment="now, or the end of the channel's quiet hours"),
    Column("claimed_until", UtcDateTime, comment="an attempt under way; past: its sender is gone"),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("sent_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("event_id", "change", "channel"),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in DELIVERY_STATUSES)})", name="status_known"),
    Index(None, "status", "due_at"),
)

# Every attempt of a delivery, with its outcome: sent, retried (failed, another attempt follows), failed.
notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        BigInteger,
        ForeignKey(
            "notification_deliveries.id",
            ondelete="CASCADE",
            name="fk_notification_attempts_delivery_id_notification_deliveries",
        ),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
    UniqueConstraint("delivery_id", "attempt"),
)


# --- joint health (issue 22; migration 0008): written by consumer_db from the health topic, and by backfill-health
health_cycles = Table(
    "health_cycles",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("axis", SmallInteger, primary_key=True),
    Column("cycle_start", UtcDateTime, primary_key=True),
    Column("cycle_end", UtcDateTime, nullable=False),
    Column("duration_s", Amps, nullable=False),
    Column("energy_as", Amps, nullable=False, comment="∫A dt over the cycle"),
    Column("energy_a2s", Amps, nullable=False, comment="∫A² dt over the cycle"),
    Column("peak_amps", Amps, nullable=False),
    Column("rms_amps", Amps, nullable=False),
    Column("covered_s", Amps, nullable=False, comment="seconds of the cycle the axis reported a number"),
    Column("deviation", Amps, comment="rms / learned normal - 1; NULL while learning, or cold or cut"),
    Column("cold", Boolean, nullable=False),
    Column("cut", Boolean, nullable=False),
)

health_rollup = Table(
    "health_rollup",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("axis", SmallInteger, primary_key=True),
    Column("period", String(8), primary_key=True, comment="hour or day"),
    Column("bucket_start", UtcDateTime, primary_key=True),
    Column("cycles", Integer, nullable=False),
    Column("judged", Integer, nullable=False, comment="cycles with a deviation"),
    Column("duration_s", Amps, nullable=False),
    Column("energy_as", Amps, nullable=False),
    Column("energy_a2s", Amps, nullable=False),
    Column("covered_s", Amps, nullable=False),
    Column("peak_amps", Amps, nullable=False),
    Column("rms_amps", Amps, nullable=False),
    Column("deviation_median", Amps, comment="of the cycles (hour), of the hours' medians (day)"),
    Column("deviation_max", Amps),
    CheckConstraint("period IN ('hour', 'day')", name="ck_health_rollup_period"),
)

health_forecast = Table(
    "health_forecast",
    metadata,
    Column("robot_id", String(64), primary_key=True),
    Column("axis", SmallInteger, primary_key=True),
    Column("level", Amps, nullable=False),
    Column("slope_per_day", Amps, nullable=False),
    Column("limit_level", Amps, nullable=False),
    Column("days_left", Amps, comment="NULL: no crossing within the horizon"),
    Column("low_days", Amps, comment="80 % interval of days_left"),
    Column("high_days", Amps),
    Column("updated_at", UtcDateTime, nullable=False, comment="feed time of the forecast"),
)
# --- end joint health


def axis_label(axis_id: int) -> str:
    return f"Axis #{axis_id}"


def seed_axes(conn: Connection, *, robot_ids: Iterable[str], axes: Iterable[int], unit: str = "A") -> int:
    """Give each robot that has no row in ``axes_dim`` yet the given axes; robots already there are left
    as they are (their axis list is the lock). Returns the number of rows added."""
    axes = sorted(set(axes))
    if axes and (axes[0] < 1 or axes[-1] > MAX_AXIS):
        raise ValueError(f"axes must be integers from 1 to {MAX_AXIS}, got {axes}")
    wanted = sorted(set(robot_ids))
    if not wanted or not axes:
        return 0
    known = set(conn.execute(select(axes_dim.c.robot_id).where(axes_dim.c.robot_id.in_(wanted)).distinct()).scalars())
    rows = [
        {"robot_id": r, "axis_id": a, "label": axis_label(a), "unit": unit, "active": True}
        for r in wanted
        if r not in known
        for a in axes
    ]
    # Another sink instance may seed the same new robot at the same moment: first one wins.
    return insert_ignoring_duplicates(conn, axes_dim, rows)


def dialect_insert(dialect: str, table: Table):
    """The PostgreSQL or SQLite ``INSERT`` of ``table`` (the ones that know ``ON CONFLICT``)."""
    from sqlalchemy.dialects import sqlite

    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def insert_new_rows(conn: Connection, table: Table, rows: list[dict], columns: Sequence[str]) -> list[tuple]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING columns`` on PostgreSQL and SQLite: the rows it stored.
    With RETURNING, SQLAlchemy also sends many rows per statement; without it an ON CONFLICT executemany
    goes one statement per row (sqlalchemy#13130)."""
    if not rows:
        return []
    insert = dialect_insert(conn.dialect.name, table)
    statement = insert.on_conflict_do_nothing().returning(*(table.c[c] for c in columns))
    return conn.execute(statement, rows).all()


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: list[dict]) -> int:
    """``INSERT ... ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite; returns how many rows were new."""
    return len(insert_new_rows(conn, table, rows, [c.name for c in table.primary_key]))


def axes_of(conn: Connection, *, robot_id: str | None = None, active_only: bool = False) -> dict[str, list[int]]:
    """The locked axis list of each robot (or of one robot) from ``axes_dim``. Every listed axis is
    accepted; ``active=false`` marks a retired axis, left out of expected-row counts (``active_only``)."""
    query = select(axes_dim.c.robot_id, axes_dim.c.axis_id).order_by(axes_dim.c.robot_id, axes_dim.c.axis_id)
    if robot_id is not None:
        query = query.where(axes_dim.c.robot_id == robot_id)
    if active_only:
        query = query.where(axes_dim.c.active == true())
    out: dict[str, list[int]] = {}
    for robot, axis in conn.execute(query):
        out.setdefault(robot, []).append(axis)
    return out


# The API's users and tokens (docs/api.md). Only a hash of a password (argon2) or of a token (SHA-256: a token
# is 32 random bytes, nothing to guess) is kept.
API_ROLES = ("viewer", "operator", "admin")
api_users = Table(
    "api_users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(f"role IN ({', '.join(repr(r) for r in API_ROLES)})", name="role_known"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True, comment="SHA-256 of the token, hex"),
    Column(
        "user_id",
        BigInteger,
        ForeignKey("api_users.id", ondelete="CASCADE", name="fk_api_tokens_user_id_api_users"),
        nullable=False,
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

# One row per acknowledgement made through the API: who, when, which event, what they found.
api_audit = Table(
    "api_audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("user_name", String(200), nullable=False),
    Column("action", String(32), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("outcome", String(32)),
    Column("note", Text),
    Index(None, "at"),
)

# The maintenance log (docs/maintenance.md): one row per entry, keyed by the id its author chose, so a message
# delivered twice is stored once. Appended to, never changed (the services' role may not UPDATE or DELETE it).
MAINTENANCE_ACTIONS = ("part_replaced", "inspected_ok", "lubricated", "other")
maintenance_log = Table(
    "maintenance_log",
    metadata,
    Column("entry_id", String(300), primary_key=True),
    Column("robot_id", String(64), nullable=False),
    Column("axis", SmallInteger, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("action", String(32), nullable=False),
    Column("note", Text),
    Column("user_name", String(200), nullable=False),
    Column("event_id", String(200), comment="the alert whose acknowledgement logged it, if any"),
    Column("stored_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    CheckConstraint(f"action IN ({', '.join(repr(a) for a in MAINTENANCE_ACTIONS)})", name="action_known"),
    Index(None, "robot_id", "axis", "at"),
)
