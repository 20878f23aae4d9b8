"""rollup_progress: per robot, how far its minutes are folded into the per-minute rollup. The writers used
to fold every reading into its minute at once; from here on a minute is folded once it has passed
(consumer_db.rollup_writer). The rollup 0003 kept is whole, so every robot starts folded up to the minute after its
newest one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import importlib

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
UNFOLDED = (
    "EXISTS (SELECT 1 FROM rollup_progress p WHERE p.robot_id = readings_fact.robot_id "
    "AND readings_fact.ts >= p.folded_until)"
)


def upgrade() -> None:
    op.create_table(
        "rollup_progress",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column(
            "folded_until",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="start of the robot's first minute not folded",
        ),
        sa.PrimaryKeyConstraint("robot_id", name="pk_rollup_progress"),
    )
    dialect = op.get_bind().dialect.name
    op.execute(
        f"INSERT INTO rollup_progress (robot_id, folded_until) "
        f"SELECT robot_id, {NEXT_MINUTE[dialect]} FROM reading_stamps_minute GROUP BY robot_id"
    )


def downgrade() -> None:
    # 0003's writers keep every minute in the rollup, also the ones not folded yet: fold them, as 0003 did.
    importlib.import_module("consumer_db.migrations.versions.0003_minute_rollup").backfill(UNFOLDED)
    op.drop_table("rollup_progress")
