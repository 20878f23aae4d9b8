"""Readings with a nonzero current below 1e-100 A, not folded yet, move to rejected_readings (PostgreSQL).

Until the reading policy refused them (common.wire.schemas.MIN_NONZERO_AMPS), such a reading was stored, and
then the fold of its minute failed at every try: PostgreSQL raises an error when a double underflows (the
square of a current below ~1e-162 A, or a mean of subnormal ones), so every later reading of that robot was
refused by the database. Moving the reading out lets the robot's rollup go on. Only the robot's minutes not
folded yet (from its rollup_progress.folded_until) are looked at: the ones folded already took their
currents without an error, and the rollup keeps agreeing with the raw rows. SQLite rounds an underflow to 0,
and has nothing to move.

Written out, like 0007: frozen at the schema of its day.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

REASON = "migration 0016: a nonzero current below 1e-100 A; its minute could not be folded; removed from readings"
# Per robot, its readings from its first minute not folded on (the primary key's range, not the whole table).
MOVE = sa.text(
    """
WITH moved AS (
  DELETE FROM readings r
  WHERE r.robot_id = :robot AND r.ts >= :since
    AND EXISTS (SELECT 1 FROM unnest(r.amps) x WHERE x <> 0 AND abs(x) < 1e-100)
  RETURNING r.robot_id, r.ts, r.amps, r.ingested_at
)
INSERT INTO rejected_readings (source, raw, reason, robot_id, received_at, origin)
SELECT 'readings', 'robot ' || robot_id || ', ' || CAST(ts AS text) || ': ' || CAST(amps AS text), :reason,
       robot_id, ingested_at, 'migration-0016:' || robot_id || ':' || CAST(ts AS text)
FROM moved
ON CONFLICT (origin) DO NOTHING
"""
)
SINCE = sa.text(
    "SELECT a.robot_id, coalesce(p.folded_until, '-infinity') "
    "FROM (SELECT robot_id FROM axes_dim UNION SELECT robot_id FROM rollup_progress) a "
    "LEFT JOIN rollup_progress p ON p.robot_id = a.robot_id"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for robot, since in bind.execute(SINCE).all():
        bind.execute(MOVE, {"robot": robot, "since": since, "reason": REASON})


def downgrade() -> None:
    pass  # the readings moved stay dead letters: putting them back would stop their robots' rollup again
