"""rollup_progress: per robot, how far its minutes are folded into the per-minute rollup. The writers used
to fold every reading into its minute at once; from here on a minute is folded once it has passed
(common.rollup). The rollup 0003 kept is whole, so every robot starts folded up to the minute after its
newest one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NEXT_MINUTE = {
    "postgresql": "max(minute) + interval '1 minute'",
    "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', max(minute), '+1 minute')",
}
STAMPS = """
SELECT robot_id, minute, count(*) AS readings, min(ts) AS first_ts, max(ts) AS last_ts,
       coalesce(max(step), 0) AS longest_step_s FROM (
  SELECT robot_id, ts, {minute} AS minute, {step} AS step
  FROM (SELECT DISTINCT robot_id, ts FROM readings_fact WHERE {unfolded}) stamps
) steps GROUP BY robot_id, minute
"""
MINUTE = {
    "postgresql": "date_trunc('minute', {})",
    "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', {})",
}
EPOCH = {
    "postgresql": "extract(epoch from {})",
    "sqlite": "(CAST(strftime('%s', {0}) AS INTEGER) + CAST(substr({0}, 20) AS REAL))",
}
UNFOLDED = ("EXISTS (SELECT 1 FROM rollup_progress p WHERE p.robot_id = readings_fact.robot_id "
            "AND readings_fact.ts >= p.folded_until)")


def upgrade() -> None:
    op.create_table(
        "rollup_progress",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("folded_until", sa.DateTime(timezone=True), nullable=False,
                  comment="start of the robot's first minute not folded"),
        sa.PrimaryKeyConstraint("robot_id", name="pk_rollup_progress"),
    )
    dialect = op.get_bind().dialect.name
    op.execute(f"INSERT INTO rollup_progress (robot_id, folded_until) "
               f"SELECT robot_id, {NEXT_MINUTE[dialect]} FROM reading_stamps_minute GROUP BY robot_id")


def downgrade() -> None:
    # 0003's writers keep every minute in the rollup, also the ones not folded yet: fold them.
    dialect = op.get_bind().dialect.name
    minute, epoch = MINUTE[dialect].format, EPOCH[dialect].format
    prev = f"lag(ts) OVER (PARTITION BY robot_id, {minute('ts')} ORDER BY ts)"
    op.execute(f"""
INSERT INTO readings_minute (robot_id, minute, axis_id, n_rows, n_values, n_zero, sum_amps, sum_sq_amps,
                             min_amps, max_amps, max_active_amps)
SELECT robot_id, {minute('ts')}, axis_id, count(*), count(amps), sum(CASE WHEN amps = 0 THEN 1 ELSE 0 END),
       sum(amps), sum(amps * amps), min(amps), max(amps), max(CASE WHEN amps <> 0 THEN amps END)
FROM readings_fact WHERE {UNFOLDED} GROUP BY robot_id, {minute('ts')}, axis_id""")
    op.execute("INSERT INTO reading_stamps_minute (robot_id, minute, readings, first_ts, last_ts, longest_step_s) "
               + STAMPS.format(minute=minute("ts"), step=f"{epoch('ts')} - {epoch(prev)}", unfolded=UNFOLDED))
    op.drop_table("rollup_progress")
