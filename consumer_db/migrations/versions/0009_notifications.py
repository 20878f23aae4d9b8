"""The notifier's tables (docs/notifier.md): its view of each event, one delivery row per (event, change,
channel) whose unique key makes a change notified once per channel across restarts, and every attempt.

The services' role gets its rights on them through the default privileges of scripts/postgres-roles.sql.
Written out, like 0003: frozen at the schema of its day.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("acknowledged_at", utc()),
        sa.Column("alert", sa.Text(), nullable=False, comment="the merged event as wire JSON"),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_notification_events"),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column(
            "change", sa.String(32), nullable=False, comment="open, escalate, maintenance_due, close, reminder-N"
        ),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alert", sa.Text(), nullable=False, comment="the event as it was at the change, wire JSON"),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("due_at", utc(), nullable=False, comment="now, or the end of the channel's quiet hours"),
        sa.Column("claimed_until", utc(), comment="an attempt under way; past: its sender is gone"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("sent_at", utc()),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notification_deliveries"),
        sa.UniqueConstraint("event_id", "change", "channel", name="uq_notification_deliveries_event_id_change_channel"),
        sa.CheckConstraint("status IN ('pending', 'sending', 'retrying', 'sent', 'failed')", name="status_known"),
    )
    op.create_index("ix_notification_deliveries_status_due_at", "notification_deliveries", ["status", "due_at"])
    op.create_table(
        "notification_attempts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", utc(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_notification_attempts"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notification_deliveries.id"],
            ondelete="CASCADE",
            name="fk_notification_attempts_delivery_id_notification_deliveries",
        ),
        sa.UniqueConstraint("delivery_id", "attempt", name="uq_notification_attempts_delivery_id_attempt"),
    )


def downgrade() -> None:
    op.drop_table("notification_attempts")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_events")
