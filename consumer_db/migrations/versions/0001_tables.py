"""The four tables: axes_dim, readings_fact, alerts, rejected_readings.

Written out here, not taken from common.store.tables: a migration is frozen at the schema of its day, so that
later migrations apply on top of it the same way everywhere.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)
DOUBLE = sa.Float(precision=53)
NOW = sa.func.current_timestamp()


def upgrade() -> None:
    op.create_table(
        "axes_dim",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis_id", sa.SmallInteger, nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False, server_default="A"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("robot_id", "axis_id", name="pk_axes_dim"),
    )
    op.create_table(
        "readings_fact",
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis_id", sa.SmallInteger, nullable=False),
        sa.Column("ts", UTC_TS, nullable=False),
        sa.Column("amps", DOUBLE, nullable=True, comment="NULL = OK null: the axis has no load channel"),
        sa.Column("ingested_at", UTC_TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("robot_id", "axis_id", "ts", name="pk_readings_fact"),
    )
    op.create_index(
        "ix_readings_fact_robot_id_ts", "readings_fact", ["robot_id", "ts"], postgresql_include=["axis_id", "amps"]
    )
    op.create_table(
        "alerts",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis", sa.SmallInteger, nullable=False),
        sa.Column("detector", sa.String(100), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", UTC_TS, nullable=False),
        sa.Column("closed_at", UTC_TS),
        sa.Column("peak_amps", DOUBLE),
        sa.Column("threshold", DOUBLE),
        sa.Column("score", DOUBLE),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("acknowledged_at", UTC_TS),
        sa.Column("updated_at", UTC_TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("event_id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_robot_id_opened_at", "alerts", ["robot_id", "opened_at"])
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"])
    op.create_table(
        "rejected_readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(300), nullable=False, comment="file name or topic"),
        sa.Column("line", sa.BigInteger, comment="line in the file, or offset in the topic"),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("robot_id", sa.String(64)),
        sa.Column("received_at", UTC_TS, nullable=False),
        sa.Column("stored_at", UTC_TS, nullable=False, server_default=NOW),
        sa.Column("origin", sa.String(400)),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_readings"),
        sa.UniqueConstraint("origin", name="uq_rejected_readings_origin"),
    )
    op.create_index("ix_rejected_readings_received_at", "rejected_readings", ["received_at"])


def downgrade() -> None:
    for table in ("rejected_readings", "alerts", "readings_fact", "axes_dim"):
        op.drop_table(table)
