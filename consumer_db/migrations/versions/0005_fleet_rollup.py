"""The fleet's per-minute rollup (fleet_minute) and, per robot and minute, the rows and axes data health
asks for (reading_stamps_minute.n_rows, axes_stored, axes_with_values): the fleet-wide history reads ~100x
fewer rows. Backfilled from readings_minute, the minutes folded so far.

Written out, like 0003: frozen at the schema of its day.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DOUBLE = sa.Float(precision=53)
MINUTE_AXES = """
UPDATE reading_stamps_minute SET
  n_rows = (SELECT sum(m.n_rows) FROM readings_minute m {same}),
  axes_stored = (SELECT sum(CAST(1 AS BIGINT) << m.axis_id) FROM readings_minute m {same}),
  axes_with_values = (SELECT coalesce(sum(CAST(1 AS BIGINT) << m.axis_id), 0)
                      FROM readings_minute m {same} AND m.n_values > 0)
""".format(same="WHERE m.robot_id = reading_stamps_minute.robot_id AND m.minute = reading_stamps_minute.minute")
FLEET = """
INSERT INTO fleet_minute (minute, axis_id, n_rows, n_values, n_zero, sum_amps, max_amps, max_active_amps,
                          n_robot_means, sum_robot_means)
SELECT minute, axis_id, sum(n_rows), sum(n_values), sum(n_zero), sum(sum_amps), max(max_amps), max(max_active_amps),
       count(CASE WHEN n_values > 0 THEN 1 END), sum(CASE WHEN n_values > 0 THEN sum_amps / n_values END)
FROM readings_minute GROUP BY minute, axis_id
"""


def upgrade() -> None:
    op.add_column(
        "reading_stamps_minute",
        sa.Column("n_rows", sa.Integer, nullable=False, server_default="0", comment="rows of the minute, every axis"),
    )
    op.add_column(
        "reading_stamps_minute",
        sa.Column(
            "axes_stored", sa.BigInteger, nullable=False, server_default="0", comment="bit N set: rows of axis N"
        ),
    )
    op.add_column(
        "reading_stamps_minute",
        sa.Column(
            "axes_with_values",
            sa.BigInteger,
            nullable=False,
            server_default="0",
            comment="bit N set: a value (not NULL) on axis N",
        ),
    )
    op.execute(MINUTE_AXES)
    op.create_index("ix_readings_minute_minute", "readings_minute", ["minute"])
    op.create_table(
        "fleet_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False, comment="start of the UTC minute"),
        sa.Column("axis_id", sa.SmallInteger, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_values", sa.Integer, nullable=False),
        sa.Column("n_zero", sa.Integer, nullable=False),
        sa.Column("sum_amps", DOUBLE),
        sa.Column("max_amps", DOUBLE),
        sa.Column("max_active_amps", DOUBLE),
        sa.Column("n_robot_means", sa.Integer, nullable=False, comment="robots with a value in the minute"),
        sa.Column("sum_robot_means", DOUBLE, comment="sum of their minute means"),
        sa.PrimaryKeyConstraint("minute", "axis_id", name="pk_fleet_minute"),
    )
    op.execute(FLEET)


def downgrade() -> None:
    op.drop_table("fleet_minute")
    op.drop_index("ix_readings_minute_minute", table_name="readings_minute")
    for column in ("axes_with_values", "axes_stored", "n_rows"):
        op.drop_column("reading_stamps_minute", column)
