"""peak_ts: readings_minute and readings_hour hold the first reading time at their max_amps, so window peaks
answer from the rollup alone (no look-up of the time in the raw rows, 800 of them for the fleet) and keep
the second of a peak after retention has dropped its raw rows. Backfilled from the raw rows there are; a
minute whose raw rows are gone keeps NULL (readers then give its minute, as before).

Written out, like 0013 and 0014: frozen at the schema of its day.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COMMENT = "first reading time at max_amps"
# PostgreSQL: one pass over the readings, each minute's greatest [amps, -epoch of ts] (the writer's form,
# common.store.rollup.minute_rollup_of: to_timestamp gives the time back exact), joined to the minute rows it
# agrees with.
MINUTES_POSTGRESQL = """
UPDATE readings_minute m SET peak_ts = to_timestamp(-p.key[2])
FROM (SELECT r.robot_id, date_trunc('minute', r.ts) AS minute, CAST(e.axis_id AS smallint) AS axis_id,
             max(ARRAY[e.amps, -date_part('epoch', r.ts)]) AS key
      FROM readings r CROSS JOIN LATERAL unnest(r.amps) WITH ORDINALITY AS e(amps, axis_id)
      WHERE (r.axes >> CAST(e.axis_id AS integer)) & 1 = 1 AND e.amps IS NOT NULL
      GROUP BY 1, 2, 3) p
WHERE m.robot_id = p.robot_id AND m.minute = p.minute AND m.axis_id = p.axis_id AND m.max_amps = p.key[1]
"""
MINUTES_SQLITE = """
UPDATE readings_minute SET peak_ts = (
  SELECT min(r.ts) FROM readings_fact r
  WHERE r.robot_id = readings_minute.robot_id AND r.axis_id = readings_minute.axis_id
    AND r.ts >= readings_minute.minute
    AND r.ts < strftime('%Y-%m-%d %H:%M:00.000000', readings_minute.minute, '+1 minute')
    AND r.amps = readings_minute.max_amps)
"""
# An hour's is its peak_minute's (the first minute at the hour's max_amps); that minute's start if its raw
# rows were gone, as readers answered before.
HOURS = """
UPDATE readings_hour SET peak_ts = (
  SELECT coalesce(m.peak_ts, m.minute) FROM readings_minute m
  WHERE m.robot_id = readings_hour.robot_id AND m.axis_id = readings_hour.axis_id
    AND m.minute = readings_hour.peak_minute)
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("readings_minute", "readings_hour"):
        op.add_column(table, sa.Column("peak_ts", sa.DateTime(timezone=True), comment=COMMENT))
    op.execute(MINUTES_POSTGRESQL if dialect == "postgresql" else MINUTES_SQLITE)
    op.execute(HOURS)


def downgrade() -> None:
    for table in ("readings_minute", "readings_hour"):
        op.drop_column(table, "peak_ts")
