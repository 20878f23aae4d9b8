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

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

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
