"""reading_stamps_hour: reading_stamps_minute per robot and hour, so that data health over a day of a fleet
reads 24 rows per robot instead of 1,440. It holds each robot's whole hours before the hour of its
folded_until (consumer_db.rollup_writer); backfilled so.

Written out, like 0003: frozen at the schema of its day.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

HOUR = {
    "postgresql": "date_trunc('hour', {})",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {})",
}
SECONDS_BETWEEN = {
    "postgresql": "date_part('epoch', {0} - {1})",
    "sqlite": "((CAST(strftime('%s', {0}) AS INTEGER) + CAST(substr({0}, 20) AS REAL))"
    " - (CAST(strftime('%s', {1}) AS INTEGER) + CAST(substr({1}, 20) AS REAL)))",
}
BACKFILL = """
INSERT INTO reading_stamps_hour (robot_id, hour, readings, first_ts, last_ts, longest_step_s, n_rows, axes_stored,
                                 axes_with_values)
SELECT t.robot_id, t.hour, t.readings, t.first_ts, t.last_ts, t.longest_step_s, t.n_rows,
       a.axes_stored, a.axes_with_values
FROM (
  SELECT robot_id, hour, sum(readings) AS readings, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
         max(CASE WHEN {step_in} > longest_step_s THEN {step_in} ELSE longest_step_s END) AS longest_step_s,
         sum(n_rows) AS n_rows
  FROM (SELECT robot_id, {hour_of_minute} AS hour, readings, first_ts, last_ts, longest_step_s, n_rows,
               lag(last_ts) OVER (PARTITION BY robot_id, {hour_of_minute} ORDER BY minute) AS prev_last
        FROM reading_stamps_minute s WHERE {whole_hours}) m
  GROUP BY robot_id, hour
) t JOIN (
  SELECT robot_id, {hour_of_minute} AS hour, sum(DISTINCT CAST(1 AS BIGINT) << axis_id) AS axes_stored,
         coalesce(sum(DISTINCT CASE WHEN n_values > 0 THEN CAST(1 AS BIGINT) << axis_id END), 0) AS axes_with_values
  FROM readings_minute s WHERE {whole_hours} GROUP BY robot_id, {hour_of_minute}
) a ON a.robot_id = t.robot_id AND a.hour = t.hour
"""


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "reading_stamps_hour",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("hour", ts, nullable=False, comment="start of the UTC hour"),
        sa.Column("readings", sa.Integer, nullable=False, comment="distinct reading times"),
        sa.Column("first_ts", ts, nullable=False),
        sa.Column("last_ts", ts, nullable=False),
        sa.Column(
            "longest_step_s",
            sa.Float(precision=53),
            nullable=False,
            comment="largest step between two readings of the hour",
        ),
        sa.Column("n_rows", sa.Integer, nullable=False, comment="rows of the hour, every axis"),
        sa.Column("axes_stored", sa.BigInteger, nullable=False, comment="bit N set: rows of axis N"),
        sa.Column("axes_with_values", sa.BigInteger, nullable=False, comment="bit N set: a value (not NULL) on axis N"),
        sa.PrimaryKeyConstraint("robot_id", "hour", name="pk_reading_stamps_hour"),
    )
    dialect = op.get_bind().dialect.name
    folded_until = "(SELECT p.folded_until FROM rollup_progress p WHERE p.robot_id = s.robot_id)"
    op.execute(
        BACKFILL.format(
            hour_of_minute=HOUR[dialect].format("minute"),
            step_in=SECONDS_BETWEEN[dialect].format("first_ts", "prev_last"),
            whole_hours=f"s.minute < {HOUR[dialect].format(folded_until)}",
        )
    )


def downgrade() -> None:
    op.drop_table("reading_stamps_hour")
