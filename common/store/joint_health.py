"""Health events into their tables: cycles, the hourly and daily rollup, the latest forecast.

Every write is an upsert by the table's primary key, so a redelivered or replayed event, or a backfill over
what the stream already stored, leaves one row per cycle and axis. The rollup rows of the hours and days a
batch touched are recomputed from the stored rows below them (cycles -> hour, hours -> day), not added to:
recomputing is what makes a replay harmless. A forecast only replaces an older one (feed time), so a replay
of old events cannot move the latest forecast back.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, select

from common.store.tables import dialect_insert, health_cycles, health_forecast, health_rollup
from common.wire.schemas import HealthEvent

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
SUMMED = ("duration_s", "energy_as", "energy_a2s", "covered_s")


@dataclass
class HealthWrite:
    cycles: int = 0  # cycle x axis rows written
    rollups: int = 0
    forecasts: int = 0


def cycle_rows(event: HealthEvent) -> list[dict]:
    duration = (event.end - event.start).total_seconds() if event.end is not None else 0.0
    return [
        {
            "robot_id": event.robot_id,
            "axis": a.axis,
            "cycle_start": event.start,
            "cycle_end": event.end or event.start,
            "duration_s": duration,
            "energy_as": a.energy_as,
            "energy_a2s": a.energy_a2s,
            "peak_amps": a.peak_amps,
            "rms_amps": a.rms_amps,
            "covered_s": a.covered_s,
            "deviation": a.deviation,
            "cold": event.cold,
            "cut": event.cut,
        }
        for a in event.axes
    ]


def store_health(conn: Connection, events: Iterable[HealthEvent]) -> HealthWrite:
    cycles: dict[tuple, dict] = {}
    forecasts: dict[tuple, dict] = {}
    for event in events:
        if event.kind == "cycle":
            for row in cycle_rows(event):
                cycles[(row["robot_id"], row["axis"], row["cycle_start"])] = row  # one row per key per statement
        else:
            for f in event.forecasts:
                key = (event.robot_id, f.axis)
                if key not in forecasts or forecasts[key]["updated_at"] <= event.start:
                    forecasts[key] = {
                        "robot_id": event.robot_id,
                        "axis": f.axis,
                        "level": f.level,
                        "slope_per_day": f.slope_per_day,
                        "limit_level": f.limit,
                        "days_left": f.days_left,
                        "low_days": f.low_days,
                        "high_days": f.high_days,
                        "updated_at": event.start,
                    }
    written = HealthWrite(cycles=_upsert(conn, health_cycles, list(cycles.values())))
    if cycles:
        written.rollups = refresh_rollup(conn, {(r, a, _floor(t, HOUR)) for r, a, t in cycles})
    if forecasts:
        insert = dialect_insert(conn.dialect.name, health_forecast)
        new = insert.excluded
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[health_forecast.c.robot_id, health_forecast.c.axis],
                set_={c.name: new[c.name] for c in health_forecast.columns if not c.primary_key},
                where=health_forecast.c.updated_at <= new.updated_at,
            ),
            list(forecasts.values()),
        )
        written.forecasts = len(forecasts)
    return written


def refresh_rollup(conn: Connection, hours: set[tuple[str, int, datetime]]) -> int:
    """Recompute the hour rows of ``hours`` (robot, axis, hour start) from their cycles, then the day rows
    of their days from the hour rows; returns the rows written. One query per robot and level."""
    hour_rows = [
        _rollup(robot, axis, "hour", start, cycles)
        for (robot, axis, start), cycles in _below(conn, hours, health_cycles.c.cycle_start, HOUR).items()
    ]
    written = _upsert(conn, health_rollup, hour_rows)
    days = {(r, a, _floor(t, DAY)) for r, a, t in hours}
    hour_level = health_rollup.c.period == "hour"
    day_rows = [
        _day(robot, axis, start, hours_of_day)
        for (robot, axis, start), hours_of_day in _below(
            conn, days, health_rollup.c.bucket_start, DAY, hour_level
        ).items()
    ]
    return written + _upsert(conn, health_rollup, day_rows)


def _below(conn: Connection, buckets: set[tuple[str, int, datetime]], time_column, step: timedelta, *where) -> dict:
    """The stored rows under each bucket (robot, axis, start): rows of ``time_column``'s table in it."""
    table = time_column.table
    by_robot: dict[str, set[tuple[int, datetime]]] = defaultdict(set)
    for robot, axis, start in buckets:
        by_robot[robot].add((axis, start))
    out: dict[tuple, list] = defaultdict(list)
    for robot, wanted in by_robot.items():
        starts = [start for _, start in wanted]
        rows = conn.execute(
            select(table).where(
                and_(
                    table.c.robot_id == robot,
                    table.c.axis.in_({axis for axis, _ in wanted}),
                    time_column >= min(starts),
                    time_column < max(starts) + step,
                    *where,
                )
            )
        ).mappings()
        for row in rows:
            key = (row["axis"], _floor(row[time_column.name], step))
            if key in wanted:
                out[(robot, *key)].append(row)
    return out


def _rollup(robot: str, axis: int, period: str, start: datetime, cycles: list) -> dict:
    deviations = [c["deviation"] for c in cycles if c["deviation"] is not None]
    row = _sums(robot, axis, period, start, cycles)
    return row | {
        "cycles": len(cycles),
        "judged": len(deviations),
        "deviation_median": statistics.median(deviations) if deviations else None,
        "deviation_max": max(deviations) if deviations else None,
    }


def _day(robot: str, axis: int, start: datetime, hours: list) -> dict:
    medians = [h["deviation_median"] for h in hours if h["deviation_median"] is not None]
    maxima = [h["deviation_max"] for h in hours if h["deviation_max"] is not None]
    return _sums(robot, axis, "day", start, hours) | {
        "cycles": sum(h["cycles"] for h in hours),
        "judged": sum(h["judged"] for h in hours),
        "deviation_median": statistics.median(medians) if medians else None,
        "deviation_max": max(maxima) if maxima else None,
    }


def _sums(robot: str, axis: int, period: str, start: datetime, rows: list) -> dict:
    sums = {name: math.fsum(r[name] for r in rows) for name in SUMMED}
    return {
        "robot_id": robot,
        "axis": axis,
        "period": period,
        "bucket_start": start,
        **sums,
        "peak_amps": max(r["peak_amps"] for r in rows),
        "rms_amps": math.sqrt(sums["energy_a2s"] / sums["covered_s"]) if sums["covered_s"] > 0 else 0.0,
    }


def _upsert(conn: Connection, table, rows: list[dict]) -> int:
    if not rows:
        return 0
    insert = dialect_insert(conn.dialect.name, table)
    keys = [c for c in table.primary_key]
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=keys, set_={c.name: insert.excluded[c.name] for c in table.columns if not c.primary_key}
        ),
        rows,
    )
    return len(rows)


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=t.tzinfo)
    return t - (t - epoch) % step
