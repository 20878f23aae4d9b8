"""The API (docs/api.md): an acknowledgement's outcome and note on alerts (optional, as on the wire), the
API's users, their tokens (hashes only) and the audit of acknowledgements made through it.

The services' role gets its rights on the new tables through the default privileges of
scripts/postgres-roles.sql; on PostgreSQL the audit is made append-only for it (no UPDATE, DELETE).
Written out, like 0009: frozen at the schema of its day.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column(
                "ack_outcome", sa.String(32), comment="real_fault, false_alarm, inspected_ok, part_replaced (API)"
            )
        )
        batch.add_column(sa.Column("ack_note", sa.Text()))
    op.create_table(
        "api_users",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_users"),
        sa.UniqueConstraint("name", name="uq_api_users_name"),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role_known"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, comment="SHA-256 of the token, hex"),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("expires_at", utc(), nullable=False),
        sa.Column("revoked_at", utc()),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["api_users.id"], ondelete="CASCADE", name="fk_api_tokens_user_id_api_users"
        ),
    )
    op.create_table(
        "api_audit",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", utc(), nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("note", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_api_audit"),
    )
    op.create_index("ix_api_audit_at", "api_audit", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        # The audit is appended to, never changed: the roles the default privileges just gave UPDATE, DELETE
        # and TRUNCATE on it (the services' role) lose them; scripts/postgres-roles.sql does the same.
        op.execute(
            """
            DO $$ DECLARE r record; BEGIN
              FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
                       WHERE table_schema = current_schema() AND table_name = 'api_audit'
                         AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE') AND grantee <> current_user
              LOOP
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON api_audit FROM %I', r.grantee);
              END LOOP;
            END $$
            """
        )


def downgrade() -> None:
    op.drop_table("api_audit")
    op.drop_table("api_tokens")
    op.drop_table("api_users")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("ack_note")
        batch.drop_column("ack_outcome")
