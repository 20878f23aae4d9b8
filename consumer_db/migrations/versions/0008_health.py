"""Joint health (issue 22): one row per work cycle and axis, an hourly and daily rollup, and the latest
maintenance forecast per robot and axis. consumer_db writes them from the health topic (idempotently, by
these primary keys), ``python -m consumer_alerts backfill-health`` from the stored readings. The services'
role gets its rights on them through the owner's default privileges (scripts/postgres-roles.sql).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AMPS = sa.Float(precision=53)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "health_cycles",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis", sa.SmallInteger(), nullable=False),
        sa.Column("cycle_start", TIME, nullable=False),
        sa.Column("cycle_end", TIME, nullable=False),
        sa.Column("duration_s", AMPS, nullable=False),
        sa.Column("energy_as", AMPS, nullable=False, comment="∫A dt over the cycle"),
        sa.Column("energy_a2s", AMPS, nullable=False, comment="∫A² dt over the cycle"),
        sa.Column("peak_amps", AMPS, nullable=False),
        sa.Column("rms_amps", AMPS, nullable=False),
        sa.Column("covered_s", AMPS, nullable=False, comment="seconds of the cycle the axis reported a number"),
        sa.Column("deviation", AMPS, comment="rms / learned normal - 1; NULL while learning, or cold or cut"),
        sa.Column("cold", sa.Boolean(), nullable=False),
        sa.Column("cut", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("robot_id", "axis", "cycle_start", name="pk_health_cycles"),
    )
    op.create_table(
        "health_rollup",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False, comment="hour or day"),
        sa.Column("bucket_start", TIME, nullable=False),
        sa.Column("cycles", sa.Integer(), nullable=False),
        sa.Column("judged", sa.Integer(), nullable=False, comment="cycles with a deviation"),
        sa.Column("duration_s", AMPS, nullable=False),
        sa.Column("energy_as", AMPS, nullable=False),
        sa.Column("energy_a2s", AMPS, nullable=False),
        sa.Column("covered_s", AMPS, nullable=False),
        sa.Column("peak_amps", AMPS, nullable=False),
        sa.Column("rms_amps", AMPS, nullable=False),
        sa.Column("deviation_median", AMPS, comment="of the cycles (hour), of the hours' medians (day)"),
        sa.Column("deviation_max", AMPS),
        sa.CheckConstraint("period IN ('hour', 'day')", name="ck_health_rollup_period"),
        sa.PrimaryKeyConstraint("robot_id", "axis", "period", "bucket_start", name="pk_health_rollup"),
    )
    op.create_table(
        "health_forecast",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis", sa.SmallInteger(), nullable=False),
        sa.Column("level", AMPS, nullable=False),
        sa.Column("slope_per_day", AMPS, nullable=False),
        sa.Column("limit_level", AMPS, nullable=False),
        sa.Column("days_left", AMPS, comment="NULL: no crossing within the horizon"),
        sa.Column("low_days", AMPS, comment="80 % interval of days_left"),
        sa.Column("high_days", AMPS),
        sa.Column("updated_at", TIME, nullable=False, comment="feed time of the forecast"),
        sa.PrimaryKeyConstraint("robot_id", "axis", name="pk_health_forecast"),
    )


def downgrade() -> None:
    for table in ("health_forecast", "health_rollup", "health_cycles"):
        op.drop_table(table)
