"""What the database benchmarks share: the PostgreSQL of DATABASE_URL, and a scratch database on it."""

from __future__ import annotations

import os
import sys
import uuid

from sqlalchemy import Engine, create_engine, make_url, text

from common.store.db import make_engine
from consumer_db.migrate import migrate


def postgres_url(benchmark: str) -> str | None:
    """DATABASE_URL when it names PostgreSQL; otherwise None, with the reason on stderr."""
    url = os.environ.get("DATABASE_URL", "")
    if make_url(url or "sqlite://").get_backend_name() != "postgresql":
        print(
            f"bench.{benchmark} needs DATABASE_URL pointing at PostgreSQL (scripts/with-services.sh sets one)",
            file=sys.stderr,
        )
        return None
    return url


class scratch_database:
    """A database of its own on the server of ``url`` (``name``, or a fresh one), migrated (empty with
    ``migrated=False``, for a command that migrates it itself); dropped afterwards unless ``keep``. Entering
    it gives the engine."""

    def __init__(
        self, url: str, *, prefix: str, name: str | None = None, keep: bool = False, migrated: bool = True
    ) -> None:
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self.name = name or f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.url = make_url(url).set(database=self.name)
        self.keep = keep
        self.migrated = migrated

    def __enter__(self) -> Engine:
        with self.admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": self.name}).first():
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.engine = make_engine(self.url, log_version=False)  # as the services make theirs
        if self.migrated:
            migrate(self.engine)
        return self.engine

    def __exit__(self, *exc) -> None:
        self.engine.dispose()
        if self.keep:
            print(f"kept database {self.name}", file=sys.stderr)
        else:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()
