"""Retrying blocking database work while the database is away or refuses: log it, wait longer each time, resume.

Recovery does not assume the connection dropped. A database made read-only and back keeps its pooled
connections read-only (``default_transaction_read_only`` is read when a session starts), and a pre-ping
on them succeeds; so after any failure the pool is recycled (``recycle``, the engine's ``dispose``) and the
next try starts fresh sessions. Each failure is logged as transient (the database is away, restarting,
read-only, busy: waiting is the cure) or persistent (permission denied, a table missing: an operator has
to act), and the loop keeps trying either way, so it resumes by itself once the cause is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError, StatementError

from common.metrics import Health

logger = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATEs that pass by themselves: connection exceptions (08), read-only transaction (25006), serialization
# failure and deadlock (40), too many connections (53300) and other resource limits (53), lock not available
# (55P03), server shutting down or starting (57P01-57P03), and the standby/recovery conflicts (40001, 57014).
TRANSIENT_SQLSTATE_PREFIXES = ("08", "25006", "40", "53", "55P03", "57P0", "57014")


def is_transient(exc: BaseException) -> bool:
    """Whether waiting can cure the error (else an operator has to act)."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    if code:
        return code.startswith(TRANSIENT_SQLSTATE_PREFIXES)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError)  # no SQLSTATE: connection refused, SQLite "database is locked"


# SQLSTATEs of content the database refuses, whichever batch brings it, so that only storing it apart can help:
# data exceptions (22: out of range, too long, NUL, malformed), integrity constraint violations (23) but a
# duplicate key (23505: another transaction stored that key meanwhile, and a retry finds it there), program
# limits (54: an index row too big for its index, too many parameters in one statement).
CONTENT_SQLSTATE_PREFIXES = ("22", "23", "54")
DUPLICATE_KEY = "23505"


def is_content_error(exc: BaseException) -> bool:
    """Whether the messages' content caused the error, not the database's state: retrying the same messages
    would fail for ever, while the others can be stored (consumer_db.sink isolates the offending ones).
    This and ``is_transient`` are the one place that tells the database refusing content from the
    database being unavailable; anything not content is retried."""
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "pgcode", None)
        if code:
            return code.startswith(CONTENT_SQLSTATE_PREFIXES) and code != DUPLICATE_KEY
        return isinstance(exc, (DataError, IntegrityError))  # SQLite: no SQLSTATE
    # Refused before the database saw it: a column type or the driver could not convert a value (SQLAlchemy
    # wraps that in a StatementError), or the driver raised on its own: psycopg2 a ValueError for a string
    # holding NUL, sqlite3 an OverflowError for an integer past 64 bits.
    return isinstance(exc, (StatementError, ValueError, OverflowError))


async def retry(
    call: Callable[[], T],
    *,
    stop: asyncio.Event,
    what: str,
    initial_s: float = 0.5,
    max_s: float = 30.0,
    recycle: Callable[[], None] | None = None,
    health: Health | None = None,
) -> T | None:
    """Run ``call`` in a worker thread until it succeeds and return its result (which must not be None);
    return None if ``stop`` is set first. Only database errors are retried, each followed by ``recycle()``
    (fresh connections for the next try); anything else is a bug and propagates. ``health``: not ready while
    the database fails, ready again once it answers; alive all the while (waiting is this loop's work)."""
    delay, failures, since = initial_s, 0, time.monotonic()
    while True:
        try:
            result = await asyncio.to_thread(call)
        except SQLAlchemyError as exc:
            failures += 1
            if recycle is not None:
                recycle()
            if health is not None:
                health.ready(False, f"database unavailable: {what} failed")
                health.beat()
            if is_transient(exc):
                logger.error(
                    "database unavailable, transient (%s failed: %s); not consuming meanwhile; retry %d in %.1f s",
                    what,
                    short_error(exc),
                    failures,
                    delay,
                )
            else:
                logger.error(
                    "database refuses the work, persistent: an operator has to act (%s failed: %s); "
                    "not consuming meanwhile; retry %d in %.1f s",
                    what,
                    short_error(exc),
                    failures,
                    delay,
                )
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return None
            except TimeoutError:
                delay = min(delay * 2, max_s)
                continue
        if failures:
            if health is not None:
                health.ready(True, "database back")
            logger.warning(
                "database is back after %.1f s and %d retries; %s done, resuming",
                time.monotonic() - since,
                failures,
                what,
            )
        return result


def short_error(exc: Exception) -> str:
    """The driver's message on one line, without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:300]
