"""Alert events: one row per ``event_id``, upserted by the rules every message of an event follows.

Several messages of one event in one batch are merged in Python first (``Alert.merged_with``; PostgreSQL
refuses to update one row twice in one statement), then written with one ``INSERT ... ON CONFLICT DO
UPDATE`` whose SQL applies the same rules against the stored row, so one message per transaction or all
at once end the same (tests/unit/test_alert_merge.py holds the SQL to ``merged_with``).
"""

from __future__ import annotations

from sqlalchemy import Connection, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite

from common.store.tables import alerts
from common.wire.schemas import Alert


def alert_row(alert: Alert) -> dict:
    return alert.model_dump(mode="python", exclude={"schema_version"}) | {
        "severity": str(alert.severity),
        "state": str(alert.state),
        "ack_outcome": None if alert.ack_outcome is None else str(alert.ack_outcome),
    }


def upsert_alerts(conn: Connection, events: list[Alert]) -> int:
    """Insert new events, merge known ones by the rule of ``Alert.merged_with``; returns the number of
    distinct events written."""
    merged: dict[str, Alert] = {}
    for event in events:
        held = merged.get(event.event_id)
        merged[event.event_id] = event if held is None else held.merged_with(event)
    if not merged:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(alerts)
    new, old = stmt.excluded, alerts.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[old.event_id],
        set_={
            "robot_id": new.robot_id,
            "axis": new.axis,
            "detector": new.detector,
            "state": new.state,
            "closed_at": new.closed_at,
            "threshold": new.threshold,
            "score": new.score,
            "severity": case((or_(old.severity == "ERROR", new.severity == "ERROR"), "ERROR"), else_=new.severity),
            "peak_amps": case(
                (old.peak_amps.is_(None), new.peak_amps),
                (new.peak_amps.is_(None), old.peak_amps),
                (new.peak_amps > old.peak_amps, new.peak_amps),
                else_=old.peak_amps,
            ),
            "acknowledged_by": func.coalesce(new.acknowledged_by, old.acknowledged_by),
            "acknowledged_at": func.coalesce(new.acknowledged_at, old.acknowledged_at),
            "ack_outcome": func.coalesce(new.ack_outcome, old.ack_outcome),
            "ack_note": func.coalesce(new.ack_note, old.ack_note),
            "updated_at": func.current_timestamp(),
        },
    )
    conn.execute(stmt, [alert_row(a) for a in merged.values()])
    return len(merged)
