"""Where training and the offline twin get readings: a controller export, or the database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select

from common.csvio.controller_csv import CsvOptions, read_export
from common.csvio.skipped import SkippedRows
from common.store.tables import readings_fact
from common.wire.schemas import DeadLetter, Reading

logger = logging.getLogger(__name__)


def export_readings(path: Path, options: CsvOptions, *, rejected: list[DeadLetter] | None = None) -> Iterator[Reading]:
    """The readings of a controller export; bad rows are logged (common.csvio.skipped: the first few, then a
    count) and kept in ``rejected``, not fatal."""
    skipped = SkippedRows(logger)
    try:
        for item in read_export(path, options):
            if isinstance(item, DeadLetter):
                skipped.skip(item)
                if rejected is not None:
                    rejected.append(item)
            else:
                yield item
    finally:
        skipped.close()


def db_readings(engine: Engine, *, robot_id: str, until: datetime | None = None) -> Iterator[Reading]:
    """One robot's readings from ``readings_fact`` (one row per axis) as wide readings, oldest first."""
    query = (
        select(readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps)
        .where(readings_fact.c.robot_id == robot_id)
        .order_by(readings_fact.c.ts, readings_fact.c.axis_id)
    )
    if until is not None:
        query = query.where(readings_fact.c.ts < until)
    construct = Reading.model_construct
    ts, currents = None, {}
    with engine.connect() as conn:
        for row_ts, axis, amps in conn.execute(query).yield_per(10_000):
            if row_ts != ts and ts is not None:
                yield construct(robot_id=robot_id, ts=ts, row=None, currents=currents)
                currents = {}
            ts = row_ts
            currents[axis] = amps
    if ts is not None:
        yield construct(robot_id=robot_id, ts=ts, row=None, currents=currents)
