"""The running hour: readings_hour and reading_stamps_hour also hold each robot's hour of its folded_until,
(refolded every 10 minutes of folding, consumer_db.rollup_writer), and ``folded_until`` on each row says
which minutes it holds: those before it (the hour's end for a whole hour). A reader over everything stored
then takes the fleet's current hour as 1 row per robot and axis and the minutes since, not up to 59 minute
rows (common.store.rollup). Backfilled as of each robot's folded_until.

Written out, like 0006 and 0013: frozen at the schema of its day.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COMMENT = "the row holds the minutes before it: the hour's end, or the robot's folded_until (running)"
HOUR = {
    "postgresql": "date_trunc('hour', {})",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {})",
}
NEXT_HOUR = {
    "postgresql": "({} + interval '1 hour')",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {}, '+1 hour')",
}
SECONDS_BETWEEN = {
    "postgresql": "date_part('epoch', {0} - {1})",
    "sqlite": "((CAST(strftime('%s', {0}) AS INTEGER) + CAST(substr({0}, 20) AS REAL))"
    " - (CAST(strftime('%s', {1}) AS INTEGER) + CAST(substr({1}, 20) AS REAL)))",
}
# The minutes of each robot's running hour: from the hour of its folded_until (when that is not an hour's
# start: then nothing of the hour is folded) up to it.
FOLDED_UNTIL = "(SELECT p.folded_until FROM rollup_progress p WHERE p.robot_id = s.robot_id)"
HOURS = """
INSERT INTO readings_hour (robot_id, hour, axis_id, n_rows, n_values, n_zero, sum_amps, sum_sq_amps, min_amps,
                           max_amps, max_active_amps, peak_minute, folded_until)
SELECT robot_id, hour, axis_id, sum(n_rows), sum(n_values), sum(n_zero), sum(sum_amps), sum(sum_sq_amps),
       min(min_amps), max(max_amps), max(max_active_amps), min(CASE WHEN max_amps = hour_max THEN minute END),
       max(until)
FROM (SELECT s.*, {hour_of_minute} AS hour, {folded_until} AS until,
             max(max_amps) OVER (PARTITION BY robot_id, {hour_of_minute}, axis_id) AS hour_max
      FROM readings_minute s WHERE {running}) m
GROUP BY robot_id, hour, axis_id
"""
STAMPS = """
INSERT INTO reading_stamps_hour (robot_id, hour, readings, first_ts, last_ts, longest_step_s, n_rows, axes_stored,
                                 axes_with_values, folded_until)
SELECT t.robot_id, t.hour, t.readings, t.first_ts, t.last_ts, t.longest_step_s, t.n_rows,
       a.axes_stored, a.axes_with_values, t.until
FROM (
  SELECT robot_id, hour, sum(readings) AS readings, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
         max(CASE WHEN {step_in} > longest_step_s THEN {step_in} ELSE longest_step_s END) AS longest_step_s,
         sum(n_rows) AS n_rows, max(until) AS until
  FROM (SELECT robot_id, {hour_of_minute} AS hour, readings, first_ts, last_ts, longest_step_s, n_rows,
               {folded_until} AS until,
               lag(last_ts) OVER (PARTITION BY robot_id, {hour_of_minute} ORDER BY minute) AS prev_last
        FROM reading_stamps_minute s WHERE {running}) m
  GROUP BY robot_id, hour
) t JOIN (
  SELECT robot_id, {hour_of_minute} AS hour, sum(DISTINCT CAST(1 AS BIGINT) << axis_id) AS axes_stored,
         coalesce(sum(DISTINCT CASE WHEN n_values > 0 THEN CAST(1 AS BIGINT) << axis_id END), 0) AS axes_with_values
  FROM readings_minute s WHERE {running} GROUP BY robot_id, {hour_of_minute}
) a ON a.robot_id = t.robot_id AND a.hour = t.hour
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("readings_hour", "reading_stamps_hour"):
        op.add_column(table, sa.Column("folded_until", sa.DateTime(timezone=True), comment=COMMENT))
        op.execute(f"UPDATE {table} SET folded_until = {NEXT_HOUR[dialect].format('hour')}")  # whole hours
    hour_of_minute = HOUR[dialect].format("minute")
    running = f"s.minute >= {HOUR[dialect].format(FOLDED_UNTIL)} AND s.minute < {FOLDED_UNTIL}"
    common = {"hour_of_minute": hour_of_minute, "folded_until": FOLDED_UNTIL, "running": running}
    op.execute(HOURS.format(**common))
    op.execute(STAMPS.format(**common, step_in=SECONDS_BETWEEN[dialect].format("first_ts", "prev_last")))


def downgrade() -> None:
    for table in ("readings_hour", "reading_stamps_hour"):
        op.execute(f"DELETE FROM {table} WHERE folded_until < {NEXT_HOUR[op.get_bind().dialect.name].format('hour')}")
        op.drop_column(table, "folded_until")
