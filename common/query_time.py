"""The one rule for a time a user asks a query about (``consumer_db query --start/--end/--at``, the API's
``since``/``until``/``due_before``): in UTC, and inside the calendar's inner days.

A datetime holds the years 1 to 9999 and nothing past them, and a query steps a minute or an hour beyond its
bounds (a range's whole minutes and hours, the minute before ``--at``): ``--start 0001-01-01``, or a time whose
UTC falls off the calendar (year 1 at +05:00), raised OverflowError, a traceback or a 500. A time outside
``EARLIEST``..``LATEST`` is taken as that end instead: no reading is stored so near the calendar's ends (the
policy refuses readings before ``READING_EARLIEST``, 1990 by default), so the answer is the same.
Plain ``datetime`` only: the query commands load this before any library."""

from datetime import UTC, datetime

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def query_time(value: datetime) -> datetime:
    """``value`` in UTC (a naive one read as UTC), kept inside ``EARLIEST``..``LATEST``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Aware datetimes compare by their UTC instant without computing it, so this never overflows.
    if value < EARLIEST:
        return EARLIEST
    if value > LATEST:
        return LATEST
    return value.astimezone(UTC)
