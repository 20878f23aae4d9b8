"""open_minute (PostgreSQL): each robot's minutes not folded yet, one row per robot and minute, the per-axis
statistics as arrays indexed by axis; kept by the writers in the transaction that stores the readings and
deleted by the fold of the minute (consumer_db.open_minutes). Readers take a robot's minutes from its
folded_until on from these rows instead of its raw readings (common.store.rollup). Backfilled from each
robot's readings at or after its folded_until, so that every such reading is in a row from the start.

Written out, like 0014: frozen at the schema of its day. SQLite keeps reading the raw rows: nothing changes there.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

CREATE = """
CREATE TABLE open_minute (
    robot_id varchar(64) NOT NULL,
    minute timestamptz NOT NULL,
    readings integer NOT NULL,
    first_ts timestamptz NOT NULL,
    last_ts timestamptz NOT NULL,
    longest_step_s double precision NOT NULL,
    n_rows integer NOT NULL,
    axes_stored bigint NOT NULL,
    axes_with_values bigint NOT NULL,
    axis_n_rows integer[] NOT NULL,
    axis_n_values integer[] NOT NULL,
    axis_n_zero integer[] NOT NULL,
    axis_sum_amps double precision[] NOT NULL,
    axis_sum_sq_amps double precision[] NOT NULL,
    axis_min_amps double precision[] NOT NULL,
    axis_max_amps double precision[] NOT NULL,
    axis_max_active_amps double precision[] NOT NULL,
    axis_peak_ts timestamptz[] NOT NULL,
    CONSTRAINT pk_open_minute PRIMARY KEY (robot_id, minute)
)
"""
COMMENTS = {
    "minute": "start of the UTC minute",
    "readings": "distinct reading times",
    "n_rows": "rows of the minute, every axis",
    "axes_stored": "bit N set: rows of axis N",
    "axes_with_values": "bit N set: a value (not NULL) on axis N",
    "axis_peak_ts": "element N: the first reading time at element N of axis_max_amps",
}
# Each robot's readings from its folded_until on, as the writer's statement computes them (its text of the day).
BACKFILL = sa.text(
    """WITH span AS (
  SELECT * FROM unnest(CAST(:robots AS text[]), CAST(:lows AS timestamptz[]), CAST(:highs AS timestamptz[]))
    AS s(robot_id, low, high)
), reading AS (
  SELECT r.robot_id, date_trunc('minute', r.ts) AS minute, r.ts, r.axes, r.amps
  FROM span CROSS JOIN LATERAL (
    SELECT * FROM readings r WHERE r.robot_id = span.robot_id AND r.ts >= span.low AND r.ts <= span.high OFFSET 0
  ) r
), axis AS (
  SELECT r.robot_id, r.minute, CAST(e.axis_id AS integer) AS axis_id, count(*) AS n_rows,
         count(e.amps) AS n_values, sum(CASE WHEN e.amps = 0 THEN 1 ELSE 0 END) AS n_zero, sum(e.amps) AS sum_amps,
         sum(e.amps * e.amps) AS sum_sq_amps, min(e.amps) AS min_amps, max(e.amps) AS max_amps,
         max(CASE WHEN e.amps <> 0 THEN e.amps END) AS max_active_amps,
         to_timestamp(-(max(CASE WHEN e.amps IS NOT NULL
                                 THEN ARRAY[e.amps, -date_part('epoch', r.ts)] END))[2]) AS peak_ts
  FROM reading r CROSS JOIN LATERAL unnest(r.amps) WITH ORDINALITY AS e(amps, axis_id)
  WHERE (r.axes >> CAST(e.axis_id AS integer)) & 1 <> 0
  GROUP BY r.robot_id, r.minute, e.axis_id
), arrays AS (
  SELECT k.robot_id, k.minute,
         array_agg(coalesce(a.n_rows, 0) ORDER BY g.i) AS axis_n_rows,
         array_agg(coalesce(a.n_values, 0) ORDER BY g.i) AS axis_n_values,
         array_agg(coalesce(a.n_zero, 0) ORDER BY g.i) AS axis_n_zero,
         array_agg(a.sum_amps ORDER BY g.i) AS axis_sum_amps,
         array_agg(a.sum_sq_amps ORDER BY g.i) AS axis_sum_sq_amps,
         array_agg(a.min_amps ORDER BY g.i) AS axis_min_amps,
         array_agg(a.max_amps ORDER BY g.i) AS axis_max_amps,
         array_agg(a.max_active_amps ORDER BY g.i) AS axis_max_active_amps,
         array_agg(a.peak_ts ORDER BY g.i) AS axis_peak_ts,
         sum(coalesce(a.n_rows, 0)) AS n_rows,
         coalesce(bit_or(CASE WHEN a.n_rows > 0 THEN CAST(1 AS bigint) << g.i END), 0) AS axes_stored,
         coalesce(bit_or(CASE WHEN a.n_values > 0 THEN CAST(1 AS bigint) << g.i END), 0) AS axes_with_values
  FROM (SELECT robot_id, minute, max(axis_id) AS top FROM axis GROUP BY robot_id, minute) k
  CROSS JOIN LATERAL generate_series(1, k.top) g(i)
  LEFT JOIN axis a ON a.robot_id = k.robot_id AND a.minute = k.minute AND a.axis_id = g.i
  GROUP BY k.robot_id, k.minute
), step AS (
  SELECT robot_id, minute, ts,
         date_part('epoch', ts - lag(ts) OVER (PARTITION BY robot_id, minute ORDER BY ts)) AS step
  FROM reading
), stamps AS (
  SELECT robot_id, minute, count(*) AS readings, min(ts) AS first_ts, max(ts) AS last_ts,
         coalesce(max(step), 0.0) AS longest_step_s
  FROM step GROUP BY robot_id, minute
)
INSERT INTO open_minute AS o (robot_id, minute, readings, first_ts, last_ts, longest_step_s, n_rows, axes_stored,
  axes_with_values, axis_n_rows, axis_n_values, axis_n_zero, axis_sum_amps, axis_sum_sq_amps, axis_min_amps,
  axis_max_amps, axis_max_active_amps, axis_peak_ts)
SELECT t.robot_id, t.minute, t.readings, t.first_ts, t.last_ts, t.longest_step_s, coalesce(a.n_rows, 0),
       coalesce(a.axes_stored, 0), coalesce(a.axes_with_values, 0), coalesce(a.axis_n_rows, '{}'),
       coalesce(a.axis_n_values, '{}'), coalesce(a.axis_n_zero, '{}'), coalesce(a.axis_sum_amps, '{}'),
       coalesce(a.axis_sum_sq_amps, '{}'), coalesce(a.axis_min_amps, '{}'), coalesce(a.axis_max_amps, '{}'),
       coalesce(a.axis_max_active_amps, '{}'), coalesce(a.axis_peak_ts, '{}')
FROM stamps t LEFT JOIN arrays a ON a.robot_id = t.robot_id AND a.minute = t.minute
ORDER BY t.robot_id, t.minute
ON CONFLICT (robot_id, minute) DO UPDATE SET
  readings = excluded.readings,
  first_ts = excluded.first_ts,
  last_ts = excluded.last_ts,
  longest_step_s = excluded.longest_step_s,
  n_rows = excluded.n_rows,
  axes_stored = excluded.axes_stored,
  axes_with_values = excluded.axes_with_values,
  axis_n_rows = excluded.axis_n_rows,
  axis_n_values = excluded.axis_n_values,
  axis_n_zero = excluded.axis_n_zero,
  axis_sum_amps = excluded.axis_sum_amps,
  axis_sum_sq_amps = excluded.axis_sum_sq_amps,
  axis_min_amps = excluded.axis_min_amps,
  axis_max_amps = excluded.axis_max_amps,
  axis_max_active_amps = excluded.axis_max_active_amps,
  axis_peak_ts = excluded.axis_peak_ts
"""
)
SPANS = sa.text("SELECT robot_id, folded_until FROM rollup_progress ORDER BY robot_id")
ENDLESS = datetime.max.replace(tzinfo=UTC)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(CREATE)
    for column, comment in COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN open_minute.{column} IS '{comment}'")
    progress = bind.execute(SPANS).all()
    if progress:
        robots, lows = (list(column) for column in zip(*progress, strict=True))
        bind.execute(BACKFILL, {"robots": robots, "lows": lows, "highs": [ENDLESS] * len(robots)})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("open_minute")
