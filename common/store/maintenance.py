"""The maintenance log in the database: entries stored once each, the history of a joint, and how the
people who acknowledged each detector's alerts judged them (docs/maintenance.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, case, func, select

from common.store.sqlparts import Row
from common.store.sqlparts import dicts as _dicts
from common.store.tables import alerts, insert_ignoring_duplicates, maintenance_log
from common.wire.outcomes import AckOutcome

if TYPE_CHECKING:  # the wire's pydantic models: for what stores entries, not for the query command's phrases
    from common.wire.schemas import MaintenanceEntry

# Outcomes that say the alert was right: something was wrong with the joint. "Inspected, OK" says it was not.
REAL_OUTCOMES = (AckOutcome.REAL_FAULT, AckOutcome.PART_REPLACED)


def entry_row(entry: MaintenanceEntry) -> dict:
    return entry.model_dump(mode="python", exclude={"schema_version"}) | {"action": str(entry.action)}


def store_entries(conn: Connection, entries: Iterable[MaintenanceEntry]) -> int:
    """Insert the entries not stored yet (by ``entry_id``); returns how many were new."""
    rows = {entry.entry_id: entry_row(entry) for entry in entries}
    return insert_ignoring_duplicates(conn, maintenance_log, list(rows.values())) if rows else 0


def maintenance_history(
    conn: Connection,
    *,
    robot_id: str | None = None,
    axis: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Entries of the log, newest first."""
    c = maintenance_log.c
    conds = []
    if robot_id is not None:
        conds.append(c.robot_id == robot_id)
    if axis is not None:
        conds.append(c.axis == axis)
    if start is not None:
        conds.append(c.at >= start)
    if end is not None:
        conds.append(c.at <= end)
    columns = [col for col in maintenance_log.c if col.name != "stored_at"]
    query = select(*columns).where(*conds).order_by(c.at.desc(), c.entry_id).limit(limit)
    return _dicts(conn.execute(query))


def outcomes_per_detector(
    conn: Connection, *, robot_id: str | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[Row]:
    """Per detector: its alert events (opened in the range), how many were judged, each outcome's count, and
    the share of the judged ones people found real (None while none was judged)."""
    c = alerts.c
    conds = []
    if robot_id is not None:
        conds.append(c.robot_id == robot_id)
    if start is not None:
        conds.append(c.opened_at >= start)
    if end is not None:
        conds.append(c.opened_at <= end)

    def counted(*outcomes: AckOutcome):
        return func.sum(case((c.ack_outcome.in_([str(o) for o in outcomes]), 1), else_=0))

    query = (
        select(
            c.detector,
            func.count().label("alerts"),
            func.count(c.ack_outcome).label("judged"),
            counted(AckOutcome.REAL_FAULT).label("real_fault"),
            counted(AckOutcome.PART_REPLACED).label("part_replaced"),
            counted(AckOutcome.INSPECTED_OK).label("inspected_ok"),
            counted(AckOutcome.FALSE_ALARM).label("false_alarm"),
        )
        .where(*conds)
        .group_by(c.detector)
        .order_by(c.detector)
    )
    out = []
    for row in conn.execute(query).mappings():
        row = dict(row)
        real = sum(int(row[str(outcome)]) for outcome in REAL_OUTCOMES)
        row["real"] = real
        row["real_share"] = round(real / row["judged"], 4) if row["judged"] else None
        out.append(
            {k: (int(v) if k not in ("detector", "real_share") and v is not None else v) for k, v in row.items()}
        )
    return out
