"""Retrying blocking database work while the database is away: log it, wait longer each time, resume."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)
T = TypeVar("T")


async def retry(
    call: Callable[[], T], *, stop: asyncio.Event, what: str, initial_s: float = 0.5, max_s: float = 30.0
) -> T | None:
    """Run ``call`` in a worker thread until it succeeds and return its result (which must not be None);
    return None if ``stop`` is set first. Only database errors are retried; anything else is a bug and
    propagates."""
    delay, failures, since = initial_s, 0, time.monotonic()
    while True:
        try:
            result = await asyncio.to_thread(call)
        except SQLAlchemyError as exc:
            failures += 1
            logger.error(
                "database unavailable (%s failed: %s); not consuming meanwhile; retry %d in %.1f s",
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
