"""One SQLAlchemy engine per process, for PostgreSQL or the embedded demo's SQLite."""

from __future__ import annotations

import logging

from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)


def make_engine(database_url: SecretStr | str, *, log_version: bool = True, **kwargs) -> Engine:
    """Create the engine; log the server version and the URL without its password."""
    raw = database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
    url = make_url(raw)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # JIT compilation off: it pays for queries that run for seconds; ours run for tens of milliseconds,
        # and JIT was most of their time (docs/benchmarks.md, "Measurements behind the code").
        connect_args = {"options": "-c jit=off", **kwargs.pop("connect_args", {})}
        # No HSTORE column anywhere: without it the first connection does not look the type's oids up (a
        # round trip and psycopg2.extras loaded: ~0.03 s of every command's start).
        kwargs.setdefault("use_native_hstore", False)
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
        event.listen(engine, "do_connect", _StartupOptionsRefused())
    if log_version:
        with engine.connect() as conn:
            logger.info("database %s: %s", safe_url(engine), server_version(conn))
    return engine


class _StartupOptionsRefused:
    """A connection pooler in front of the database (PgBouncer, and so Neon's ``-pooler`` endpoints) refuses
    the ``options`` startup parameter: connect without it there, from then on. JIT is then off through the
    roles' own default (``ALTER ROLE ... SET jit = off``, scripts/postgres-roles.sql), which the pooler's server
    connections get. What the services do per connection is transaction-scoped (advisory locks, the staging
    table), so a transaction-mode pool is safe (docs/consumer_db.md, "Behind PgBouncer")."""

    def __init__(self) -> None:
        self.refused = False

    def __call__(self, dialect, _record, cargs: list, cparams: dict):
        if self.refused:
            cparams.pop("options", None)
            return None
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            if "options" not in cparams or "unsupported startup parameter" not in str(exc):
                raise
        self.refused = True
        logger.info(
            "the database (a pooler?) refuses startup options; connecting without them (JIT: the role's default)"
        )
        cparams.pop("options")
        return dialect.connect(*cargs, **cparams)


def database_problem(exc: DBAPIError) -> str:
    """The one line a command says when the database cannot answer (away, or not migrated yet): the driver's
    message, never the statement and its parameters, which the traceback showed (a user's name, a hash)."""
    said = " ".join(str(exc.orig).split())
    if "no such table" in said or "does not exist" in said:
        return f"the database has no axiswatch schema yet ({said}); run: python -m consumer_db migrate"
    return f"the database does not answer: {said}"


def safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def server_version(conn) -> str:
    if conn.dialect.name == "sqlite":
        return "SQLite " + conn.execute(text("select sqlite_version()")).scalar_one()
    return conn.execute(text("select version()")).scalar_one()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the dashboard read while the sink writes; NORMAL sync is durable enough with WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
