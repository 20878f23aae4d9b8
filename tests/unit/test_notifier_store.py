"""The notifier's records on the migrated schema (SQLite here; PostgreSQL in the integration tests): one delivery
per (event, change, channel) whatever is read again, quiet hours, reminders, claims and attempts."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select

from common.store.tables import notification_attempts, notification_deliveries
from common.wire.schemas import Alert, AlertState, Severity
from consumer_db.migrate import migrate
from notifier import store
from notifier.config import ChannelFile

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
CHANNEL = "c"


@pytest.fixture
def engine(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine)
    yield engine
    engine.dispose()


def alert(**change) -> Alert:
    values = {
        "event_id": "r1:2:zscore:t0",
        "robot_id": "r1",
        "axis": 2,
        "detector": "zscore",
        "severity": Severity.ALERT,
        "state": AlertState.OPEN,
        "opened_at": NOW - timedelta(minutes=1),
    }
    return Alert(**(values | change))


def config(*channels) -> ChannelFile:
    base = {"kind": "webhook", "url": "http://x", "secret_env": "S"}
    return ChannelFile.model_validate({"channels": [base | c for c in channels]})


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(notification_deliveries).order_by(notification_deliveries.c.id)).all()


def test_each_change_is_recorded_once_per_channel_whatever_is_read_again(engine):
    channels = config(
        {"name": "all", "changes": ["open", "escalate", "close"]}, {"name": "errors", "min_severity": "ERROR"}
    )
    feed = [
        alert(),
        alert(peak_amps=20.0),
        alert(severity=Severity.ERROR),
        alert(severity=Severity.ERROR, state=AlertState.CLOSED, closed_at=NOW),
    ]
    first = store.record(engine, feed, channels, NOW).raised
    assert [(r.channel, r.change) for r in first] == [
        ("all", "open"),
        ("all", "escalate"),
        ("errors", "escalate"),
        ("all", "close"),
    ]
    assert store.record(engine, feed, channels, NOW + timedelta(minutes=1)).raised == []  # a restart reads them again
    assert store.record(engine, feed[:2], channels, NOW + timedelta(minutes=2)).raised == []  # and older ones
    recorded = rows(engine)
    assert len(recorded) == 4 and {r.status for r in recorded} == {"pending"}
    assert Alert.from_bytes(recorded[1].alert).severity == Severity.ERROR  # the event as at its change


def test_a_change_in_quiet_hours_is_due_at_their_end(engine):
    quiet = {"name": "night", "quiet_hours": {"start": "11:00", "end": "13:00", "timezone": "UTC"}}
    store.record(engine, [alert()], config(quiet, {"name": "day"}), NOW)
    due = {r.channel: r.due_at for r in rows(engine)}
    assert due == {"night": NOW.replace(hour=13), "day": NOW}
    (day,) = store.claim_due(engine, "day", NOW, LEASE)
    assert day.channel == "day"
    sent(engine, day, NOW)
    assert store.claim_due(engine, "night", NOW.replace(hour=12, minute=59), LEASE) == []
    assert [c.channel for c in store.claim_due(engine, "night", NOW.replace(hour=13), LEASE)] == ["night"]
    assert store.claim_due(engine, "day", NOW.replace(hour=13), LEASE) == []  # sent: final


def sent(engine, claimed, at):
    number, _ = store.begin_attempt(engine, claimed, claimed.claim, at, LEASE)
    store.end_attempt(engine, claimed, number, "sent", None, at)


def test_reminders_while_open_and_unacknowledged_once_per_interval(engine):
    channels = config({"name": "c", "remind_every_min": 30})
    store.record(engine, [alert()], channels, NOW)
    assert store.schedule_reminders(engine, channels, NOW + timedelta(hours=1)) == []  # nothing sent yet
    (claimed,) = store.claim_due(engine, CHANNEL, NOW, LEASE)
    sent(engine, claimed, NOW)
    assert store.schedule_reminders(engine, channels, NOW + timedelta(minutes=29)) == []
    assert [r.change for r in store.schedule_reminders(engine, channels, NOW + timedelta(minutes=31))] == ["reminder-1"]
    assert store.schedule_reminders(engine, channels, NOW + timedelta(minutes=59)) == []  # reminder-1 is there
    assert [r.change for r in store.schedule_reminders(engine, channels, NOW + timedelta(minutes=61))] == ["reminder-2"]
    store.record(engine, [alert(acknowledged_by="ann", acknowledged_at=NOW)], channels, NOW + timedelta(minutes=70))
    assert store.schedule_reminders(engine, channels, NOW + timedelta(hours=5)) == []


def test_no_reminder_once_closed(engine):
    channels = config({"name": "c", "remind_every_min": 30})
    store.record(engine, [alert()], channels, NOW)
    sent(engine, store.claim_due(engine, CHANNEL, NOW, LEASE)[0], NOW)
    store.record(engine, [alert(state=AlertState.CLOSED, closed_at=NOW)], channels, NOW)
    assert store.schedule_reminders(engine, channels, NOW + timedelta(hours=2)) == []


def test_attempts_are_counted_before_and_recorded_after_and_a_lost_claim_stops_a_sender(engine):
    store.record(engine, [alert()], config({"name": "c"}), NOW)
    (claimed,) = store.claim_due(engine, CHANNEL, NOW, LEASE)
    assert store.claim_due(engine, CHANNEL, NOW + timedelta(seconds=30), LEASE) == []  # claimed: nobody else takes it
    number, token = store.begin_attempt(engine, claimed, claimed.claim, NOW, LEASE)
    store.end_attempt(engine, claimed, number, "retried", "HTTP 500: 'x\nforged log line'", NOW, NOW + LEASE)
    assert rows(engine)[0].status == "retrying"
    # a sender whose claim ran out finds its token gone once another sender has claimed the row
    (again,) = store.claim_due(engine, CHANNEL, NOW + timedelta(minutes=5), LEASE)
    assert store.begin_attempt(engine, claimed, token, NOW + timedelta(minutes=5), LEASE) is None
    number, _ = store.begin_attempt(engine, again, again.claim, NOW + timedelta(minutes=5), LEASE)
    store.end_attempt(engine, again, number, "sent", None, NOW + timedelta(minutes=5))
    (row,) = rows(engine)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 2, NOW + timedelta(minutes=5))
    assert row.last_error == "HTTP 500: 'x\\nforged log line'"  # escaped: one line
    with engine.connect() as conn:
        tries = conn.execute(
            select(notification_attempts.c.attempt, notification_attempts.c.outcome).order_by(
                notification_attempts.c.id
            )
        ).all()
    assert tries == [(1, "retried"), (2, "sent")]
    assert store.claim_due(engine, CHANNEL, NOW + timedelta(hours=1), LEASE) == []  # sent is final


def test_a_row_left_sending_by_a_crash_goes_again_once_its_lease_runs_out(engine):
    store.record(engine, [alert()], config({"name": "c"}), NOW)
    (claimed,) = store.claim_due(engine, CHANNEL, NOW, LEASE)
    store.begin_attempt(engine, claimed, claimed.claim, NOW, LEASE)  # ... and the process dies mid-send
    assert store.claim_due(engine, CHANNEL, NOW + LEASE / 2, LEASE) == []
    (again,) = store.claim_due(engine, CHANNEL, NOW + LEASE * 2, LEASE)
    assert again.interrupted and again.attempts == 1


def test_an_error_is_stored_cut_to_a_bounded_length():
    assert len(store.cut("x" * 10_000)) < 600


def test_a_stop_frees_the_claims_not_being_sent_at_once(engine):
    store.record(engine, [alert(), alert(event_id="r1:2:zscore:t1")], config({"name": "c"}), NOW)
    first, second = store.claim_due(engine, CHANNEL, NOW, LEASE)
    store.begin_attempt(engine, first, first.claim, NOW, LEASE)  # being sent: the stop waits for it, not freed
    store.release(engine, [first, second], NOW)
    assert [c.id for c in store.claim_due(engine, CHANNEL, NOW + timedelta(seconds=1), LEASE)] == [second.id]


def test_a_change_read_long_after_it_was_published_is_recorded_but_not_notified(engine):
    channels = config({"name": "c"})
    old, fresh = NOW - timedelta(days=3), NOW - timedelta(seconds=5)
    day = timedelta(hours=6)
    recorded = store.record(engine, [alert()], channels, NOW, published=[old], max_age=day)
    assert (recorded.raised, recorded.too_old) == ([], 1)
    # the event is known all the same: its escalation, published now, is the news
    escalated = store.record(engine, [alert(severity=Severity.ERROR)], channels, NOW, published=[fresh], max_age=day)
    assert [(r.change, r.channel) for r in escalated.raised] == [("escalate", "c")]
    assert store.record(engine, [alert(event_id="e2")], channels, NOW, published=[None], max_age=day).too_old == 0
