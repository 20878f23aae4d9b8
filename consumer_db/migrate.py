"""Apply the Alembic migrations shipped inside the package; no alembic.ini in the working directory."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

logger = logging.getLogger(__name__)

SCRIPTS = Path(__file__).resolve().parent / "migrations"
# Any constant will do: it only has to be the same for every instance that might migrate at once.
ADVISORY_LOCK_ID = 0x617869737761  # "axiswa"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; safe to call from several instances at once (on PostgreSQL an
    advisory lock makes the others wait, then find nothing to do). Returns the revision reached."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        before = MigrationContext.configure(conn).get_current_revision()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        logger.info("database schema migrated from %s to %s", before or "empty", after)
    else:
        logger.info("database schema is at %s", after)
    return after
