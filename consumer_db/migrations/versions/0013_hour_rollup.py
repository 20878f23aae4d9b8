"""readings_hour: readings_minute per robot, hour and axis, so that the fleet's long ranges (window peaks,
the per-axis summary, the hourly resample) read 1 row per robot, axis and hour instead of 60. It holds each
robot's whole hours before the hour of its folded_until, as reading_stamps_hour does
(consumer_db.rollup_writer); backfilled so.

Written out, like 0006: frozen at the schema of its day.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

HOUR = {
    "postgresql": "date_trunc('hour', {})",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {})",
}
BACKFILL = """
INSERT INTO readings_hour (robot_id, hour, axis_id, n_rows, n_values, n_zero, sum_amps, sum_sq_amps, min_amps,
                           max_amps, max_active_amps, peak_minute)
SELECT robot_id, hour, axis_id, sum(n_rows), sum(n_values), sum(n_zero), sum(sum_amps), sum(sum_sq_amps),
       min(min_amps), max(max_amps), max(max_active_amps), min(CASE WHEN max_amps = hour_max THEN minute END)
FROM (SELECT s.*, {hour_of_minute} AS hour,
             max(max_amps) OVER (PARTITION BY robot_id, {hour_of_minute}, axis_id) AS hour_max
      FROM readings_minute s WHERE {whole_hours}) m
GROUP BY robot_id, hour, axis_id
"""


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    double = sa.Float(precision=53)
    op.create_table(
        "readings_hour",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("hour", ts, nullable=False, comment="start of the UTC hour"),
        sa.Column("axis_id", sa.SmallInteger, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_values", sa.Integer, nullable=False, comment="rows with a value (not NULL)"),
        sa.Column("n_zero", sa.Integer, nullable=False, comment="values of exactly 0 A (idle)"),
        sa.Column("sum_amps", double),
        sa.Column("sum_sq_amps", double),
        sa.Column("min_amps", double),
        sa.Column("max_amps", double),
        sa.Column("max_active_amps", double, comment="largest non-zero value"),
        sa.Column("peak_minute", ts, comment="first minute of the hour whose max_amps is the hour's"),
        sa.PrimaryKeyConstraint("robot_id", "hour", "axis_id", name="pk_readings_hour"),
    )
    dialect = op.get_bind().dialect.name
    folded_until = "(SELECT p.folded_until FROM rollup_progress p WHERE p.robot_id = s.robot_id)"
    op.execute(
        BACKFILL.format(
            hour_of_minute=HOUR[dialect].format("minute"),
            whole_hours=f"s.minute < {HOUR[dialect].format(folded_until)}",
        )
    )


def downgrade() -> None:
    op.drop_table("readings_hour")
