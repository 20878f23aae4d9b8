"""The day partitions of ``readings`` (PostgreSQL, migration 0012): made ahead of time, dropped past the retention.

``maintain`` runs when consumer_db starts and then every ``PARTITION_MAINTENANCE_S``; any instance may run it
at any time (making a day that exists and dropping a day that is gone do nothing). Raw days past
``RAW_RETENTION_DAYS`` go, whole; their robots' minutes are folded into the rollup first, so the history,
fleet and data-health figures of those days stay (the rollup readers take whole minutes from the rollup).
The SQL functions do the DDL as the schema's owner: the services' role has no DDL rights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from consumer_db.rollup_writer import fold_through

logger = logging.getLogger(__name__)

MAKE = text("SELECT ensure_readings_partitions(:low, :high)")
DROP = text("SELECT drop_readings_partitions(:before)")


@dataclass
class PartitionReport:
    made: int = 0
    robots_folded: int = 0
    dropped: list[str] = field(default_factory=list)


def start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def retention_cutoff(now: datetime, retention_days: int) -> datetime:
    """Raw days ending at or before this go: the ``retention_days`` whole days before today stay, and today."""
    return start_of_day(now) - timedelta(days=retention_days)


def maintain(
    engine: Engine, *, ahead_days: int, retention_days: int | None, now: datetime | None = None
) -> PartitionReport:
    """Make today's partition and ``ahead_days`` more; with ``retention_days`` set, fold and drop the days
    past it. Nothing on SQLite (one unpartitioned table)."""
    report = PartitionReport()
    if engine.dialect.name != "postgresql":
        return report
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        report.made = conn.execute(MAKE, {"low": now, "high": now + timedelta(days=ahead_days)}).scalar_one()
    if retention_days is not None:
        before = retention_cutoff(now, retention_days)
        with engine.begin() as conn:  # folded and committed before any day goes
            report.robots_folded = fold_through(conn, before)
        with engine.begin() as conn:
            report.dropped = list(conn.execute(DROP, {"before": before}).scalars())
    if report.made or report.dropped:
        logger.info(
            "readings partitions: %d made ahead, %d robots folded, dropped %s",
            report.made,
            report.robots_folded,
            ", ".join(report.dropped) or "none",
        )
    return report
