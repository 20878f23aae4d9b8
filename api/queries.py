"""What the API reads: alert events by filter, one page at a time, and robots with their latest readings.

Pages are cut by a cursor (keyset), not an offset: the order is newest opening first, then event id, which no
two events share, so a page never repeats or skips an event when new ones arrive between two requests.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, or_, select

from common.store import queries
from common.store.tables import alerts
from common.wire.schemas import Alert, AlertState, Severity, utc


class BadCursor(ValueError):
    """A cursor this API did not write."""


@dataclass(frozen=True)
class AlertFilter:
    robot: str | None = None
    axis: int | None = None
    state: AlertState | None = None
    severity: Severity | None = None
    since: datetime | None = None  # events open at some moment of [since, until]
    until: datetime | None = None


def pack_cursor(values: list) -> str:
    """A page's cursor: the sort key of its last item, JSON in URL-safe base64."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def unpack_cursor(cursor: str) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise BadCursor(CURSOR_HELP) from exc
    if not isinstance(values, list):
        raise BadCursor(CURSOR_HELP)
    return values


CURSOR_HELP = "cursor not understood: pass next_cursor of the previous page as it came"


def encode_cursor(alert: Alert) -> str:
    return pack_cursor([alert.opened_at.isoformat(), alert.event_id])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        opened, event_id = unpack_cursor(cursor)
        event_id = str(event_id)
        if "\x00" in event_id:  # no event id stored holds one; the database's driver refuses it (a 500 before)
            raise ValueError(event_id)
        return utc(datetime.fromisoformat(opened)), event_id
    except (ValueError, TypeError) as exc:
        raise BadCursor(CURSOR_HELP) from exc


def alert_page(conn: Connection, where: AlertFilter, limit: int, cursor: str | None) -> tuple[list[Alert], str | None]:
    """One page of events, newest opening first, and the cursor of the next page (None: this is the last)."""
    c = alerts.c
    conds = []
    if where.robot is not None:
        conds.append(c.robot_id == where.robot)
    if where.axis is not None:
        conds.append(c.axis == where.axis)
    if where.state is not None:
        conds.append(c.state == str(where.state))
    if where.severity is not None:
        conds.append(c.severity == str(where.severity))
    if where.until is not None:
        conds.append(c.opened_at <= where.until)
    if where.since is not None:
        conds.append(or_(c.closed_at.is_(None), c.closed_at >= where.since))
    if cursor is not None:
        opened, event_id = decode_cursor(cursor)
        # The first condition is implied by the second; it is there so the opened_at index bounds the scan.
        conds.append(c.opened_at <= opened)
        conds.append(or_(c.opened_at < opened, and_(c.opened_at == opened, c.event_id > event_id)))
    query = select(alerts).where(*conds).order_by(c.opened_at.desc(), c.event_id).limit(limit + 1)
    rows = conn.execute(query).mappings().all()
    page = [alert_of(row) for row in rows[:limit]]
    return page, (encode_cursor(page[-1]) if len(rows) > limit else None)


def alert_of(row) -> Alert:
    return Alert.model_validate({k: v for k, v in row.items() if k in Alert.model_fields})


def one_alert(conn: Connection, event_id: str) -> Alert | None:
    row = conn.execute(select(alerts).where(alerts.c.event_id == event_id)).mappings().first()
    return None if row is None else alert_of(row)


def robots(conn: Connection) -> list[dict]:
    """Every robot with the time of its newest stored reading and each axis's newest value."""
    found: dict[str, dict] = {}
    for row in queries.latest_per_axis(conn):
        robot = found.setdefault(row["robot_id"], {"robot_id": row["robot_id"], "latest_ts": None, "axes": []})
        robot["axes"].append({"axis": row["axis_id"], "label": row["label"], "ts": row["ts"], "amps": row["amps"]})
        if robot["latest_ts"] is None or row["ts"] > robot["latest_ts"]:
            robot["latest_ts"] = row["ts"]
    return list(found.values())
