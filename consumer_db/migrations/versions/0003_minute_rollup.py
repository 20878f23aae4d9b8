"""The per-minute rollup: readings_minute (per robot, minute and axis) and reading_stamps_minute (per
robot and minute), backfilled from the readings already stored.

Written out, like 0001: frozen at the schema of its day. The writers keep the tables up to date from here
on (consumer_db.store); the backfill reads all of readings_fact once (about a minute for 10 M rows).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)
DOUBLE = sa.Float(precision=53)
MINUTE = {
    "postgresql": "date_trunc('minute', {})",
    "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', {})",
}
EPOCH = {
    "postgresql": "extract(epoch from {})",
    "sqlite": "(CAST(strftime('%s', {0}) AS INTEGER) + CAST(substr({0}, 20) AS REAL))",
}

BACKFILL_MINUTES = """
INSERT INTO readings_minute (robot_id, minute, axis_id, n_rows, n_values, n_zero, sum_amps, sum_sq_amps,
                             min_amps, max_amps, max_active_amps)
SELECT robot_id, {minute}, axis_id, count(*), count(amps), sum(CASE WHEN amps = 0 THEN 1 ELSE 0 END),
       sum(amps), sum(amps * amps), min(amps), max(amps), max(CASE WHEN amps <> 0 THEN amps END)
FROM readings_fact WHERE {where} GROUP BY robot_id, {minute}, axis_id
"""

BACKFILL_STAMPS = """
INSERT INTO reading_stamps_minute (robot_id, minute, readings, first_ts, last_ts, longest_step_s)
SELECT robot_id, minute, count(*), min(ts), max(ts), coalesce(max(step), 0) FROM (
  SELECT robot_id, ts, {minute} AS minute, {step} AS step
  FROM (SELECT DISTINCT robot_id, ts FROM readings_fact WHERE {where}) stamps
) steps GROUP BY robot_id, minute
"""


def upgrade() -> None:
    op.create_table(
        "readings_minute",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("minute", UTC_TS, nullable=False, comment="start of the UTC minute"),
        sa.Column("axis_id", sa.SmallInteger, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_values", sa.Integer, nullable=False, comment="rows with a value (not NULL)"),
        sa.Column("n_zero", sa.Integer, nullable=False, comment="values of exactly 0 A (idle)"),
        sa.Column("sum_amps", DOUBLE),
        sa.Column("sum_sq_amps", DOUBLE),
        sa.Column("min_amps", DOUBLE),
        sa.Column("max_amps", DOUBLE),
        sa.Column("max_active_amps", DOUBLE, comment="largest non-zero value"),
        sa.PrimaryKeyConstraint("robot_id", "minute", "axis_id", name="pk_readings_minute"),
    )
    op.create_table(
        "reading_stamps_minute",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("minute", UTC_TS, nullable=False, comment="start of the UTC minute"),
        sa.Column("readings", sa.Integer, nullable=False, comment="distinct reading times"),
        sa.Column("first_ts", UTC_TS, nullable=False),
        sa.Column("last_ts", UTC_TS, nullable=False),
        sa.Column("longest_step_s", DOUBLE, nullable=False, comment="largest step between two readings of the minute"),
        sa.PrimaryKeyConstraint("robot_id", "minute", name="pk_reading_stamps_minute"),
    )
    backfill()


def backfill(where: str = "1 = 1") -> None:
    """The rollup rows of the readings_fact rows ``where`` selects (whole minutes of a robot; 0004's
    downgrade fills the minutes it had not folded with it)."""
    dialect = op.get_bind().dialect.name
    minute, epoch = MINUTE[dialect].format, EPOCH[dialect].format
    prev = f"lag(ts) OVER (PARTITION BY robot_id, {minute('ts')} ORDER BY ts)"
    op.execute(BACKFILL_MINUTES.format(minute=minute("ts"), where=where))
    op.execute(BACKFILL_STAMPS.format(minute=minute("ts"), step=f"{epoch('ts')} - {epoch(prev)}", where=where))


def downgrade() -> None:
    op.drop_table("reading_stamps_minute")
    op.drop_table("readings_minute")
