"""The notifier's records in the database: its view of each event, the deliveries (an outbox) and their attempts.

    record(messages)    one transaction: merge each event, insert a delivery per (event, change, channel)
                        wanted (the unique key drops one already there), and only then are offsets committed
    claim_due()         deliveries due and not under way, claimed for this sender (claimed_until)
    begin / end_attempt each attempt counted before it starts, its outcome and error after it ends

Every call is synchronous (SQLAlchemy Core); the service runs them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, inspect, or_, select, update

from common.service import one_line
from common.store.tables import (
    dialect_insert,
    insert_new_rows,
    notification_attempts,
    notification_deliveries,
    notification_events,
)
from common.wire.schemas import Alert, AlertState
from notifier.config import Channel, ChannelFile
from notifier.rules import changes, due_at, merge, reminder_number, wants, wants_change

events, deliveries, attempts = notification_events, notification_deliveries, notification_attempts
FIRST_NOTICES = ("open", "escalate", "maintenance_due")
ERROR_CHARS = 500  # of an error kept: a receiver's whole HTML error page says no more than its start


def tables_missing(engine: Engine) -> list[str]:
    names = set(inspect(engine).get_table_names())
    return [t.name for t in (events, deliveries, attempts) if t.name not in names]


@dataclass(frozen=True)
class Raised:
    channel: str
    change: str


@dataclass(frozen=True)
class Recorded:
    raised: list[Raised]  # the deliveries that are new
    too_old: int  # changes not notified: read more than max_age after they were published


def record(
    engine: Engine,
    alerts: list[Alert],
    config: ChannelFile,
    now: datetime,
    *,
    published: list[datetime | None] | None = None,
    max_age: timedelta | None = None,
) -> Recorded:
    """Fold ``alerts`` (in topic order) into the events and add the deliveries their changes call for. Read
    again after a restart, a message changes nothing: its event already holds it, and a delivery already
    there is not added twice. A change ``published`` (the bus's time, None: unknown) more than ``max_age``
    ago is folded in but not notified: a notifier started on a topic with days of history does not page
    anyone about last week."""
    if not alerts:
        return Recorded([], 0)
    cutoff = None if max_age is None else now - max_age
    with engine.begin() as conn:
        ids = sorted({a.event_id for a in alerts})
        rows = conn.execute(
            select(events.c.event_id, events.c.alert).where(events.c.event_id.in_(ids)).with_for_update()
        )
        held = {event_id: Alert.from_bytes(text) for event_id, text in rows}
        changed: dict[str, Alert] = {}
        wanted, too_old = [], 0
        for alert, at in zip(alerts, published or [None] * len(alerts), strict=True):
            before = held.get(alert.event_id)
            merged = merge(before, alert)
            found = changes(before, merged, config.maintenance_detectors)
            if found and cutoff is not None and at is not None and at < cutoff:
                too_old += len(found)
                found = []
            for change in found:
                wanted += [
                    _delivery(merged, change, channel, now)
                    for channel in config.channels
                    if wants_change(channel, change, merged)
                ]
            held[alert.event_id] = changed[alert.event_id] = merged
        _upsert_events(conn, list(changed.values()), now)
        new = insert_new_rows(conn, deliveries, wanted, ["channel", "change"])
    return Recorded([Raised(channel, change) for channel, change in new], too_old)


def _delivery(alert: Alert, change: str, channel: Channel, now: datetime) -> dict:
    return {
        "event_id": alert.event_id,
        "change": change,
        "channel": channel.name,
        "status": "pending",
        "alert": alert.model_dump_json(),
        "created_at": now,
        "due_at": due_at(channel, now),
        "attempts": 0,
        "updated_at": now,
    }


def _upsert_events(conn, merged: list[Alert], now: datetime) -> None:
    rows = [
        {
            "event_id": a.event_id,
            "state": a.state.value,
            "severity": a.severity.value,
            "acknowledged_at": a.acknowledged_at,
            "alert": a.model_dump_json(),
            "updated_at": now,
        }
        for a in merged
    ]
    insert = dialect_insert(conn.dialect.name, events)
    columns = ("state", "severity", "acknowledged_at", "alert", "updated_at")
    conn.execute(
        insert.on_conflict_do_update(index_elements=["event_id"], set_={c: insert.excluded[c] for c in columns}),
        rows,
    )


def schedule_reminders(engine: Engine, config: ChannelFile, now: datetime) -> list[Raised]:
    """A reminder for each open, unacknowledged event a reminding channel has told of, when one is due."""
    reminding = {c.name: c for c in config.channels if c.remind_every_min is not None}
    if not reminding:
        return []
    first_sent = func.min(deliveries.c.sent_at)
    query = (
        select(deliveries.c.channel, events.c.alert, first_sent)
        .join(events, events.c.event_id == deliveries.c.event_id)
        .where(
            events.c.state == AlertState.OPEN.value,
            events.c.acknowledged_at.is_(None),
            deliveries.c.status == "sent",
            deliveries.c.change.in_(FIRST_NOTICES),
            deliveries.c.channel.in_(sorted(reminding)),
        )
        .group_by(deliveries.c.channel, deliveries.c.event_id, events.c.alert)
    )
    with engine.begin() as conn:
        wanted = []
        for channel_name, text, first in conn.execute(query):
            channel, alert = reminding[channel_name], Alert.from_bytes(text)
            n = reminder_number(channel, first, now)
            if n is not None and wants(channel, alert):
                wanted.append(_delivery(alert, f"reminder-{n}", channel, now))
        new = insert_new_rows(conn, deliveries, wanted, ["channel", "change"])
    return [Raised(channel, change) for channel, change in new]


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: str
    change: str
    channel: str
    alert: Alert
    created_at: datetime
    attempts: int
    interrupted: bool  # it was being sent when its sender stopped: it goes again (at-least-once)
    claim: datetime  # the claimed_until this sender set: its token for the next update


def claim_due(engine: Engine, channel: str, now: datetime, lease: timedelta, limit: int = 100) -> list[Claimed]:
    """The channel's deliveries due and not claimed by a live sender (no claim, or one whose lease ran out),
    oldest first, claimed for ``lease``. SKIP LOCKED: two notifiers never claim the same row."""
    claim = now + lease
    with engine.begin() as conn:
        due = conn.execute(
            select(deliveries)
            .where(
                deliveries.c.channel == channel,
                deliveries.c.status.in_(("pending", "sending", "retrying")),
                deliveries.c.due_at <= now,
                or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not due:
            return []
        conn.execute(update(deliveries).where(deliveries.c.id.in_([r.id for r in due])).values(claimed_until=claim))
    return [
        Claimed(
            r.id,
            r.event_id,
            r.change,
            r.channel,
            Alert.from_bytes(r.alert),
            r.created_at,
            r.attempts,
            r.status == "sending",
            claim,
        )
        for r in due
    ]


def begin_attempt(
    engine: Engine, claimed: Claimed, claim: datetime, now: datetime, lease: timedelta
) -> tuple[int, datetime] | None:
    """Count the attempt before it starts (status sending); None when the claim was lost to another sender."""
    renewed = now + lease
    with engine.begin() as conn:
        attempt = conn.execute(
            update(deliveries)
            .where(deliveries.c.id == claimed.id, deliveries.c.claimed_until == claim)
            .values(status="sending", attempts=deliveries.c.attempts + 1, claimed_until=renewed, updated_at=now)
            .returning(deliveries.c.attempts)
        ).scalar_one_or_none()
    return None if attempt is None else (attempt, renewed)


def end_attempt(
    engine: Engine,
    claimed: Claimed,
    attempt: int,
    outcome: str,
    error: str | None,
    now: datetime,
    hold_until: datetime | None = None,
) -> None:
    """``outcome``: sent, retried (the next attempt follows; the claim is held until ``hold_until``) or failed."""
    error = None if error is None else cut(error)
    status = {"sent": "sent", "retried": "retrying", "failed": "failed"}[outcome]
    with engine.begin() as conn:
        conn.execute(
            attempts.insert().values(delivery_id=claimed.id, attempt=attempt, at=now, outcome=outcome, error=error)
        )
        values = {"status": status, "claimed_until": hold_until, "updated_at": now}
        if error is not None:
            values["last_error"] = error
        if outcome == "sent":
            values["sent_at"] = now
        conn.execute(update(deliveries).where(deliveries.c.id == claimed.id).values(**values))


def release(engine: Engine, claimed: list[Claimed], now: datetime) -> None:
    """Stopping: rows claimed but not being sent (not started, or waiting between two attempts) are free at
    once for the next start. A row being sent is not among them: the stop waits for its outcome."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([c.id for c in claimed]), deliveries.c.status.in_(("pending", "retrying")))
            .values(claimed_until=None, updated_at=now)
        )


def cut(text: str, limit: int = ERROR_CHARS) -> str:
    """An error as stored: one line (control characters escaped) and at most ``limit`` characters."""
    text = one_line(text)
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text)} characters]"
