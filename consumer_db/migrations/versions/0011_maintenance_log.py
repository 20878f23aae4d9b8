"""The maintenance log (docs/maintenance.md): one row per entry, keyed by the id its author chose, so that a
redelivered entry is stored once.

The services' role gets its rights through the default privileges of scripts/postgres-roles.sql; on PostgreSQL
the log is made append-only for it (no UPDATE, DELETE), as 0010 does for the API's audit: a record of what
was done to a joint is not rewritten. Written out, like 0010: frozen at the schema of its day.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "maintenance_log",
        sa.Column("entry_id", sa.String(300), nullable=False),
        sa.Column("robot_id", sa.String(64), nullable=False),
        sa.Column("axis", sa.SmallInteger(), nullable=False),
        sa.Column("at", utc(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(200), comment="the alert whose acknowledgement logged it, if any"),
        sa.Column("stored_at", utc(), server_default=sa.func.current_timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_maintenance_log"),
        sa.CheckConstraint("action IN ('part_replaced', 'inspected_ok', 'lubricated', 'other')", name="action_known"),
    )
    op.create_index("ix_maintenance_log_robot_id_axis_at", "maintenance_log", ["robot_id", "axis", "at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            DO $$ DECLARE r record; BEGIN
              FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
                       WHERE table_schema = current_schema() AND table_name = 'maintenance_log'
                         AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE') AND grantee <> current_user
              LOOP
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON maintenance_log FROM %I', r.grantee);
              END LOOP;
            END $$
            """
        )


def downgrade() -> None:
    op.drop_table("maintenance_log")
