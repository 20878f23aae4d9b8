import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import SecretStr

from common.errors import SchemaError
from common.settings import CommonSettings, parse_axes
from common.wire.bus import InProcessBus, partition_for
from common.wire.schemas import Alert, AlertState, DeadLetter, Reading, Severity, iso_utc

T0 = datetime(2022, 10, 17, 12, 18, 23, 660000, tzinfo=UTC)


def test_reading_round_trip_keeps_ok_null_apart_from_zero():
    reading = Reading(robot_id="r1", ts=T0, row=2, currents={1: 0.0, 2: 12.5, 9: None})
    back = Reading.from_bytes(reading.to_bytes())
    assert back == reading
    assert back.currents[1] == 0.0 and back.currents[9] is None
    assert json.loads(reading.to_bytes())["currents"]["9"] is None


def test_reading_converts_other_zones_to_utc_and_refuses_naive():
    cet = timezone(timedelta(hours=2))
    reading = Reading(robot_id="r1", ts=T0.astimezone(cet), currents={})
    assert reading.ts.tzinfo == UTC and reading.ts == T0
    with pytest.raises(ValueError):
        Reading(robot_id="r1", ts=T0.replace(tzinfo=None), currents={})


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"not json", "not JSON"),
        (b"", "the message has no value"),  # the wire reads a tombstone as empty
        (b"[1,2]", "JSON object"),
        (b'{"schema_version": 2, "robot_id": "r"}', "schema_version 2 is not supported"),
        (b'{"robot_id": "r"}', "schema_version None"),
        (b'{"schema_version": 1, "robot_id": "r", "ts": "2022-10-17T12:00:00Z", "currents": {"1": "x"}}', "currents.1"),
    ],
)
def test_unreadable_messages_raise_schema_error_with_reason(raw, needle):
    with pytest.raises(SchemaError, match=needle.replace("(", r"\(")):
        Reading.from_bytes(raw)


def test_idle_means_all_reporting_axes_zero():
    assert Reading(robot_id="r", ts=T0, currents={1: 0.0, 2: 0.0, 9: None}).is_idle
    assert not Reading(robot_id="r", ts=T0, currents={1: 0.0, 2: 0.1}).is_idle
    assert not Reading(robot_id="r", ts=T0, currents={9: None}).is_idle


def test_alert_and_dead_letter_round_trip():
    alert = Alert(
        event_id="r1:3:residual:1",
        robot_id="r1",
        axis=3,
        detector="residual",
        severity=Severity.ERROR,
        state=AlertState.CLOSED,
        opened_at=T0,
        closed_at=T0 + timedelta(seconds=30),
        peak_amps=40.0,
        threshold=30.0,
    )
    assert Alert.from_bytes(alert.to_bytes()) == alert
    assert alert.duration_s == 30.0
    dead = DeadLetter(source="x.csv", line=7, raw="a,b", reason="bad number")
    assert DeadLetter.from_bytes(dead.to_bytes()) == dead


def test_iso_utc_matches_export_format():
    assert iso_utc(T0) == "2022-10-17T12:18:23.660Z"


def test_axes_setting_accepts_ranges_and_lists():
    assert parse_axes("1-3,8") == [1, 2, 3, 8]
    assert parse_axes([3, 1]) == [1, 3]
    with pytest.raises(ValueError):
        parse_axes("3-1")
    for beyond in ("0-3", "1-63", [2, 70]):  # the rollup keeps a robot's axes as the bits of a 64-bit integer
        with pytest.raises(ValueError, match="from 1 to 62"):
            parse_axes(beyond)


def test_settings_from_environment_hide_secrets(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://u:hunter2@db/x")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("AXES", "1-8")
    settings = CommonSettings(_env_file=None)
    assert settings.axes == list(range(1, 9))
    assert isinstance(settings.database_url, SecretStr)
    assert "hunter2" not in repr(settings) and "s3cret" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_partitioning_is_stable_per_key():
    assert partition_for("robot-7", 6) == partition_for("robot-7", 6)
    assert {partition_for(f"robot-{i}", 6) for i in range(50)} == set(range(6))


async def test_in_process_bus_keeps_order_and_resumes_from_commit():
    bus = InProcessBus(partitions=3)
    for i in range(20):
        await bus.publish("t", f"robot-{i % 4}", str(i).encode())
    sub = await bus.subscribe(["t"], group_id="g")
    got = await sub.getmany(max_records=100)
    assert sorted(int(m.value) for m in got) == list(range(20))
    for key in {m.key for m in got}:
        values = [int(m.value) for m in got if m.key == key]
        assert values == sorted(values)
    first_half = [m for m in got if int(m.value) < 10]
    await sub.commit(first_half)
    again = await (await bus.subscribe(["t"], group_id="g")).getmany(max_records=100)
    assert {int(m.value) for m in again} >= set(range(10, 20))
    assert await sub.getmany(timeout_ms=10) == []


async def test_in_process_bus_wakes_a_waiting_consumer():
    bus = InProcessBus()
    sub = await bus.subscribe(["t"], group_id="g")
    waiter = asyncio.create_task(sub.getmany(timeout_ms=3_600_000))  # an hour: only a wake-up ends it in time
    await asyncio.sleep(0)
    await bus.publish("t", "k", b"x")
    assert [m.value for m in await asyncio.wait_for(waiter, 120)] == [b"x"]  # a ceiling against a hang only


def test_repeated_library_messages_are_let_through_once_per_interval():
    import logging

    from common.service import RepeatFilter

    repeat = RepeatFilter(interval_s=60.0)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("node-1",), None)

    flood = [repeat.filter(record("aiokafka.conn", "Unable connect to node with id %s")) for _ in range(2000)]
    assert flood.count(True) == 1
    assert repeat.filter(record("aiokafka.client", "Another message %s"))
    assert all(repeat.filter(record("consumer_db.service", "written so far %s")) for _ in range(5))


def test_no_setting_of_any_service_takes_infinity_but_the_backwards_tolerance(monkeypatch):
    """A float bound (gt=0) let "inf" through, and it broke far from the setting at run time: the dashboard's
    DASHBOARD_SIGN_IN_EXPIRY_S=inf failed every request once signed in (OverflowError on the cookie's age)."""
    from pydantic import ValidationError

    from api.settings import ApiSettings
    from consumer_alerts.settings import AlertsSettings
    from consumer_db.settings import ConsumerDbSettings
    from dashboard.settings import DashboardSettings
    from notifier.settings import NotifierSettings
    from producer.settings import ProducerSettings

    classes = (AlertsSettings, ApiSettings, ConsumerDbSettings, DashboardSettings, NotifierSettings, ProducerSettings)
    took = []
    for cls in classes:
        for name, field in cls.model_fields.items():
            if "float" not in str(field.annotation):
                continue
            for value in ("inf", "-inf", "nan"):
                monkeypatch.setenv(name.upper(), value)
                try:
                    cls(_env_file=None)
                    took.append((cls.__name__, name, value))
                except ValidationError:
                    pass
                monkeypatch.delenv(name.upper())
    assert sorted(took) == [
        ("ConsumerDbSettings", "backwards_tolerance_s", "inf"),  # any step back (README, BACKWARDS_TOLERANCE_S)
        ("ProducerSettings", "backwards_tolerance_s", "inf"),
    ]


# Absurd but valid numbers that hung, crashed or quietly undid their setting (docs/fault_tests.md, thirty-fourth
# session): each is refused at start with the setting named and its bound, and the bound itself is taken.
ABSURD = [
    ("common.settings", "CommonSettings", "topic_partitions", "1000000000000", "less than or equal to 1000", 1000),
    ("common.settings", "CommonSettings", "topic_replication_factor", "1000000000000", "or equal to 32767", 32767),
    ("consumer_alerts.settings", "AlertsSettings", "poll_timeout_ms", "1000000000000", "or equal to 10000", 10000),
    ("consumer_alerts.settings", "AlertsSettings", "snapshot_interval_s", "1e300", "or equal to 86400", 86400),
    ("consumer_db.settings", "ConsumerDbSettings", "sink_batch_ms", "1000000000000", "or equal to 10000", 10000),
    ("consumer_db.settings", "ConsumerDbSettings", "partitions_ahead_days", "1000000000000", "or equal to 366", 366),
    ("consumer_db.settings", "ConsumerDbSettings", "raw_retention_days", "1000000000000", "or equal to 36500", 36500),
    ("dashboard.settings", "DashboardSettings", "dashboard_push_ms", "1000000000000", "or equal to 10000", 10000),
    ("notifier.settings", "NotifierSettings", "notifier_poll_ms", "1000000000000", "or equal to 10000", 10000),
    ("notifier.settings", "NotifierSettings", "notifier_max_age_s", "1e300", "or equal to 3153600000", 3153600000),
    ("notifier.settings", "NotifierSettings", "notifier_send_timeout_s", "1e300", "or equal to 3600", 3600),
    ("producer.settings", "ProducerSettings", "fault_period_s", "1e300", "or equal to 3153600000", 3153600000),
    ("producer.settings", "ProducerSettings", "robots", "1000000000000", "or equal to 100000", 100000),
    ("producer.settings", "ProducerSettings", "seed", "-1", "greater than or equal to 0", 0),
]


@pytest.mark.parametrize("module, class_name, name, absurd, says, bound", ABSURD, ids=[row[2] for row in ABSURD])
def test_an_absurd_number_setting_is_refused_at_start_naming_the_setting_and_its_bound(
    monkeypatch, module, class_name, name, absurd, says, bound
):
    import importlib

    from pydantic import ValidationError

    settings = getattr(importlib.import_module(module), class_name)
    monkeypatch.setenv("MAX_ROBOTS", "1000000000000")  # ROBOTS is bounded by its own rule, not only by MAX_ROBOTS
    monkeypatch.setenv(name.upper(), absurd)
    with pytest.raises(ValidationError) as refused:
        settings(_env_file=None)
    assert name in str(refused.value) and says in str(refused.value)
    monkeypatch.setenv(name.upper(), str(bound))
    assert getattr(settings(_env_file=None), name) == bound


def test_more_in_sync_copies_than_copies_is_refused_at_start_naming_both_settings():
    from pydantic import ValidationError

    # Kafka would count min.insync.replicas only up to the copies: a write would count once 1 copy has it.
    with pytest.raises(ValidationError) as refused:
        CommonSettings(_env_file=None, topic_min_insync_replicas=2)
    assert "TOPIC_MIN_INSYNC_REPLICAS (2) is more than TOPIC_REPLICATION_FACTOR (1)" in str(refused.value)
    taken = CommonSettings(_env_file=None, topic_min_insync_replicas=3, topic_replication_factor=3)
    assert (taken.topic_min_insync_replicas, taken.topic_replication_factor) == (3, 3)
