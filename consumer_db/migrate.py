"""Apply the Alembic migrations shipped inside the package; no alembic.ini in the working directory.

Alembic itself (a quarter of a second to import, and every script loaded) is only loaded when the database
is not at the newest revision already: a command that starts on an up-to-date database (every start but
the first) reads the one row of ``alembic_version`` and goes on.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

logger = logging.getLogger(__name__)

SCRIPTS = Path(__file__).resolve().parent / "migrations"
# Any constant will do: it only has to be the same for every instance that might migrate at once.
ADVISORY_LOCK_ID = 0x617869737761  # "axiswa"
# A script's own lines naming its revision and the one it follows (alembic's generated form).
REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*(?:['\"]([^'\"]+)['\"]|None)\s*$", re.MULTILINE)


def alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@cache
def newest_script() -> str | None:
    """The newest revision as the scripts' ``revision``/``down_revision`` lines give it, without alembic;
    None when they do not make one line of revisions (alembic then decides)."""
    revisions, parents = set(), set()
    for script in (SCRIPTS / "versions").glob("*.py"):
        found = dict(REVISION_LINE.findall(script.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision") or None)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _stored_revisions(engine: Engine) -> set[str] | None:
    """The rows of ``alembic_version``; None when there is no such table (an empty database)."""
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except (OperationalError, ProgrammingError):
        return None


def migrate(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; safe to call from several instances at once (on PostgreSQL an
    advisory lock makes the others wait, then find nothing to do). Returns the revision reached."""
    newest = newest_script()
    if revision == "head" and newest is not None and _stored_revisions(engine) == {newest}:
        logger.info("database schema is at %s", newest)
        return newest
    from alembic import command
    from alembic.runtime.migration import MigrationContext

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
