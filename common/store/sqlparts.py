"""Pieces of SQL the queries share: filters, and time arithmetic that reads the same on PostgreSQL and
SQLite (which stores UTC text)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, case, cast, distinct, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from common.store.tables import UtcDateTime, axes_dim


class _unit_start(FunctionElement):
    """The start of the UTC ``unit`` a timestamp falls in."""

    type = UtcDateTime()
    inherit_cache = True
    unit = ""


class minute_start(_unit_start):
    inherit_cache = True
    name, unit = "minute_start", "minute"


class hour_start(_unit_start):
    inherit_cache = True
    name, unit = "hour_start", "hour"


class seconds_between(FunctionElement):
    """``later - earlier`` in seconds, with the fraction: ``seconds_between(later, earlier)``."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(_unit_start, "postgresql")
def _unit_start_pg(element, compiler, **kw) -> str:
    return f"date_trunc('{element.unit}', {compiler.process(element.clauses, **kw)})"


# Same text shape as SQLAlchemy's own SQLite DATETIME, so it compares and parses like a stored ts.
SQLITE_UNIT_START = {"minute": "%Y-%m-%d %H:%M:00.000000", "hour": "%Y-%m-%d %H:00:00.000000"}


@compiles(_unit_start, "sqlite")
def _unit_start_sqlite(element, compiler, **kw) -> str:
    return f"strftime('{SQLITE_UNIT_START[element.unit]}', {compiler.process(element.clauses, **kw)})"


@compiles(seconds_between, "postgresql")
def _seconds_between_pg(element, compiler, **kw) -> str:
    # date_part of the interval: a double, exact to the microsecond. extract() is numeric since
    # PostgreSQL 14, several times slower over the rows data health looks at.
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"date_part('epoch', {later} - {earlier})"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw) -> str:
    later, earlier = (_epoch_sqlite(compiler.process(c, **kw)) for c in element.clauses)
    return f"({later} - {earlier})"


def _epoch_sqlite(value: str) -> str:
    # Whole seconds from strftime, the fraction from the text (".660000"): exact to the microsecond,
    # where julianday() would be off by ~30 us.
    return f"(CAST(strftime('%s', {value}) AS INTEGER) + CAST(substr({value}, 20) AS REAL))"


class _unit_after(FunctionElement):
    """The start of the UTC ``unit`` after the one that starts at its argument (a rollup's ``minute``/``hour``)."""

    type = UtcDateTime()
    inherit_cache = True
    unit = ""


class next_minute(_unit_after):
    inherit_cache = True
    name, unit = "next_minute", "minute"


class next_hour(_unit_after):
    inherit_cache = True
    name, unit = "next_hour", "hour"


@compiles(_unit_after, "postgresql")
def _unit_after_pg(element, compiler, **kw) -> str:
    return f"({compiler.process(element.clauses, **kw)} + interval '1 {element.unit}')"


@compiles(_unit_after, "sqlite")
def _unit_after_sqlite(element, compiler, **kw) -> str:
    start = compiler.process(element.clauses, **kw)
    return f"strftime('{SQLITE_UNIT_START[element.unit]}', {start}, '+1 {element.unit}')"


def mean_of(total, count) -> Any:
    """``total / count``, NULL where ``count`` is 0 (a minute or robot without values)."""
    return case((count > 0, total / count))


def axes_mask(axis_id) -> Any:
    """Aggregate: the axes ``axis_id`` takes in the group (NULLs skipped) as the bits of one integer, bit N
    for axis N. A sum of distinct powers of two is their OR, which SQLite has no aggregate for."""
    bit = cast(literal(1), BigInteger).op("<<", return_type=BigInteger)(axis_id)
    return cast(func.coalesce(func.sum(distinct(bit)), 0), BigInteger)


def mask_bit(mask, axis_id) -> Any:
    """Bit ``axis_id`` (0 or 1) of ``mask``, a mask of axes as ``axes_mask`` makes it (and ``readings.axes``)."""
    return mask.op(">>", return_type=BigInteger)(cast(axis_id, Integer)).op("&", return_type=BigInteger)(1)


def axes_of_mask(mask: int) -> set[int]:
    return {axis for axis in range(mask.bit_length()) if mask >> axis & 1}


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
    # the keys once, then zip: dict(row_mapping) builds a key view per row, half the cost of a big answer
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]
