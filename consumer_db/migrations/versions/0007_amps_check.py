"""readings_fact.amps within ±1e6 A (a CHECK): one absurd value (1e308 once) overflowed the fold of its
minute at every try, so the robot's later readings were refused, its rollup stopped and `export` and
`query summary` failed. The reading policy (common.wire.schemas.ReadingPolicy) refuses such readings first; the
constraint makes them impossible whatever writes to the table. Rows already there beyond the bound (or not
finite) move to rejected_readings with the reason; the rollup never folded them (the fold failed whole).

Written out, like 0003: frozen at the schema of its day.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BOUND = 1e6
CHECK = "ck_readings_fact_amps_physical"
OUTSIDE = "{0} IS NOT NULL AND NOT ({0} BETWEEN -1e6 AND 1e6)"  # NaN is outside too (PostgreSQL)
REASON = "migration 0007: current beyond ±1e6 A or not finite; removed from readings_fact"
TEXT = {"postgresql": "CAST({} AS text)", "sqlite": "CAST({} AS TEXT)"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    as_text = TEXT[dialect].format
    raw = (
        f"'robot ' || robot_id || ', axis ' || {as_text('axis_id')} || ', ' || {as_text('ts')} || ': ' "
        f"|| {as_text('amps')}"
    )
    origin = f"'migration-0007:' || robot_id || ':' || {as_text('axis_id')} || ':' || {as_text('ts')}"
    op.execute(
        f"INSERT INTO rejected_readings (source, raw, reason, robot_id, received_at, origin) "
        f"SELECT 'readings_fact', {raw}, '{REASON}', robot_id, ingested_at, {origin} "
        f"FROM readings_fact WHERE {OUTSIDE.format('amps')}"
    )
    op.execute(f"DELETE FROM readings_fact WHERE {OUTSIDE.format('amps')}")
    if dialect == "postgresql":
        op.create_check_constraint(CHECK, "readings_fact", sa.text(f"amps BETWEEN {-BOUND} AND {BOUND}"))
    else:  # SQLite cannot add a CHECK without rebuilding the table, which its views forbid: triggers instead
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER {CHECK}_{event.lower()} BEFORE {event} ON readings_fact "
                f"WHEN {OUTSIDE.format('NEW.amps')} BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {CHECK}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(CHECK, "readings_fact", type_="check")
    else:
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {CHECK}_{event}")
