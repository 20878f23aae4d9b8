"""``python -m consumer_alerts backfill-health``: the health tables from the readings already stored.

Each robot's readings (``readings_fact``, oldest first) go through a fresh :class:`HealthMonitor`, the same
code as the stream, and its health events into the tables in transactions of ``chunk`` events, by the same
upserts as consumer_db's (``common.store.joint_health``): running it twice, or over what the stream already
stored, leaves the same rows. It stops where the stream would stand after the last stored reading (the cycle
in progress is not cut), so its rows equal the stream's. Maintenance-due alerts are the stream's business
(they go through the alerts topic); the backfill writes the forecast they come from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, distinct, select

from common.store.joint_health import HealthWrite, store_health
from common.store.tables import readings_fact
from common.wire.schemas import HealthEvent
from consumer_alerts.health.monitor import HealthConfig, HealthMonitor
from consumer_alerts.sources import db_readings

logger = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    robots: int = 0
    readings: int = 0
    cycles: int = 0  # cycle x axis rows
    forecasts: int = 0


def backfill_health(
    engine: Engine,
    config: HealthConfig,
    *,
    robot_id: str | None = None,
    chunk: int = 2000,
    report_every: int = 100_000,
    progress: Callable[[str], None] = lambda line: None,
) -> BackfillReport:
    with engine.connect() as conn:
        robots = (
            [robot_id]
            if robot_id
            else list(conn.scalars(select(distinct(readings_fact.c.robot_id)).order_by(readings_fact.c.robot_id)))
        )
    report = BackfillReport()
    for n, robot in enumerate(robots, 1):
        started, readings = time.perf_counter(), 0
        monitor, pending = HealthMonitor(config), []
        for reading in db_readings(engine, robot_id=robot):
            monitor.process(reading)
            readings += 1
            pending += monitor.take_events()
            if len(pending) >= chunk:
                _write(engine, pending, report)
                pending = []
            if readings % report_every == 0:
                progress(
                    f"robot {robot!r} ({n}/{len(robots)}): {readings:,} readings, up to {reading.ts:%Y-%m-%d %H:%M}"
                )
        _write(engine, pending, report)
        report.robots += 1
        report.readings += readings
        progress(
            f"robot {robot!r} ({n}/{len(robots)}) done: {readings:,} readings in {time.perf_counter() - started:.1f} s"
        )
    return report


def _write(engine: Engine, events: list[HealthEvent], report: BackfillReport) -> None:
    if not events:
        return
    with engine.begin() as conn:
        written: HealthWrite = store_health(conn, events)
    report.cycles += written.cycles
    report.forecasts += written.forecasts
