"""Pieces of SQL the queries share: filters, and time arithmetic that reads the same on PostgreSQL and
SQLite (which stores UTC text)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from common.tables import UtcDateTime, axes_dim


class minute_start(FunctionElement):
    """The start of the UTC minute a timestamp falls in."""

    type = UtcDateTime()
    inherit_cache = True
    name = "minute_start"


class epoch_seconds(FunctionElement):
    """Seconds since 1970-01-01 UTC, with the fraction."""

    type = Float()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(minute_start, "postgresql")
def _minute_start_pg(element, compiler, **kw) -> str:
    return f"date_trunc('minute', {compiler.process(element.clauses, **kw)})"


@compiles(minute_start, "sqlite")
def _minute_start_sqlite(element, compiler, **kw) -> str:
    # Same text shape as SQLAlchemy's own SQLite DATETIME, so it compares and parses like a stored ts.
    return f"strftime('%Y-%m-%d %H:%M:00.000000', {compiler.process(element.clauses, **kw)})"


@compiles(epoch_seconds, "postgresql")
def _epoch_pg(element, compiler, **kw) -> str:
    return f"extract(epoch from {compiler.process(element.clauses, **kw)})"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element, compiler, **kw) -> str:
    # Whole seconds from strftime, the fraction from the text (".660000"): exact to the microsecond,
    # where julianday() would be off by ~30 us.
    value = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {value}) AS INTEGER) + CAST(substr({value}, 20) AS REAL))"


Row = dict[str, Any]


def where(table, *, robot_id: str | None, start: datetime | None, end: datetime | None) -> list:
    """The common filters: one robot (None = all), ``start <= ts <= end`` (either end open when None).

    For every robot and a time range, the robots are named from axes_dim: then the (robot_id, ts) index
    serves the range robot by robot instead of a scan of the whole table."""
    conds = []
    if robot_id is not None:
        conds.append(table.c.robot_id == robot_id)
    elif start is not None or end is not None:
        conds.append(table.c.robot_id.in_(select(axes_dim.c.robot_id).distinct()))
    if start is not None:
        conds.append(table.c.ts >= start)
    if end is not None:
        conds.append(table.c.ts <= end)
    return conds


def dicts(result) -> list[Row]:
    return [dict(m) for m in result.mappings()]
