"""The cat_ views of the original notebook: latest per axis, per-minute peaks, per-axis summary, data health.

For ad-hoc SQL (psql, a BI tool). The services ask through common.store.queries, which takes filters the views
cannot; a test checks that both give the same answers. Time arithmetic differs by dialect: SQLite keeps
UTC as text ('YYYY-MM-DD HH:MM:SS.ffffff').

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MINUTE = {
    "postgresql": "date_trunc('minute', ts)",
    "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', ts)",
}
EPOCH = {
    "postgresql": "extract(epoch from {})",
    "sqlite": "(CAST(strftime('%s', {0}) AS INTEGER) + CAST(substr({0}, 20) AS REAL))",
}

LATEST = """
SELECT a.robot_id, a.axis_id, a.label, r.ts, r.amps
FROM axes_dim a
JOIN readings_fact r ON r.robot_id = a.robot_id AND r.axis_id = a.axis_id
 AND r.ts = (SELECT max(n.ts) FROM readings_fact n WHERE n.robot_id = a.robot_id AND n.axis_id = a.axis_id)
"""

MINUTE_PEAKS = """
SELECT robot_id, {minute} AS minute, axis_id, max(amps) AS peak_amps, avg(amps) AS mean_amps,
       count(amps) AS "values"
FROM readings_fact
GROUP BY robot_id, {minute}, axis_id
"""

SUMMARY = """
SELECT s.robot_id, s.axis_id, a.label, s.rows, s.non_null,
       CAST(s.rows - s.non_null AS FLOAT) / s.rows AS ok_null_share,
       CASE WHEN s.non_null > 0 THEN CAST(s.idle AS FLOAT) / s.non_null END AS idle_share,
       s.mean_active_amps, s.max_active_amps
FROM (
  SELECT robot_id, axis_id, count(*) AS rows, count(amps) AS non_null,
         sum(CASE WHEN amps = 0 THEN 1 ELSE 0 END) AS idle,
         avg(CASE WHEN amps <> 0 THEN amps END) AS mean_active_amps,
         max(CASE WHEN amps <> 0 THEN amps END) AS max_active_amps
  FROM readings_fact GROUP BY robot_id, axis_id
) s JOIN axes_dim a ON a.robot_id = s.robot_id AND a.axis_id = s.axis_id
"""

HEALTH = """
SELECT robot_id, min(ts) AS first_ts, max(ts) AS last_ts,
       {last} - {first} AS span_s,
       count(DISTINCT ts) AS readings, count(*) AS rows, count(*) - count(amps) AS null_rows
FROM readings_fact GROUP BY robot_id
"""

# Gaps at the default threshold (10 s); the query function takes any threshold.
GAPS = """
SELECT robot_id, "start", "end", length_s FROM (
  SELECT robot_id, lag(ts) OVER (PARTITION BY robot_id ORDER BY ts) AS "start", ts AS "end",
         {end} - {start} AS length_s
  FROM (SELECT DISTINCT robot_id, ts FROM readings_fact) stamps
) steps WHERE "start" IS NOT NULL AND length_s > 10
"""


def views(dialect: str) -> dict[str, str]:
    epoch = EPOCH[dialect].format
    prev = "lag(ts) OVER (PARTITION BY robot_id ORDER BY ts)"
    return {
        "cat_latest_per_axis": LATEST,
        "cat_minute_peaks": MINUTE_PEAKS.format(minute=MINUTE[dialect]),
        "cat_axis_summary": SUMMARY,
        "cat_data_health": HEALTH.format(last=epoch("max(ts)"), first=epoch("min(ts)")),
        "cat_gaps": GAPS.format(end=epoch("ts"), start=epoch(prev)),
    }


def upgrade() -> None:
    for name, body in views(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in views(op.get_bind().dialect.name):
        op.execute(f"DROP VIEW IF EXISTS {name}")
