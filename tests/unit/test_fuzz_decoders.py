"""Malformed messages, fuzzed with hypothesis, through the consumers' decoders.

consumer_db: whatever arrives on any topic becomes a reading, an alert event or a rejected record; the
sink never raises, and every message is in the database afterwards (on SQLite here; on PostgreSQL in
tests/integration/test_faults_fuzz_postgres.py). consumer_alerts: a message it cannot read is skipped with
a warning (consumer_db keeps it), and odd but valid readings never crash the detectors.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import create_engine

from common.errors import SchemaError
from common.wire.bus import Message
from common.wire.schemas import DEFAULT_POLICY, Alert, DeadLetter, Reading
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.service import process
from consumer_db.axislock import AxisLock
from consumer_db.decode import decode, origin
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from tests.fuzz_messages import POISON, TOPICS, messages, unaccounted

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(messages(max_size=20))
def test_decode_turns_every_message_into_exactly_one_record(batch):
    decoded = decode(batch, TOPICS)
    rejected_origins = [row["origin"] for row in decoded.rejected]
    assert len(decoded.readings) + len(decoded.alerts) + len(decoded.rejected) == len(batch)
    assert len(set(rejected_origins)) == len(rejected_origins)
    reasons = {row["origin"]: row["reason"] for row in decoded.rejected}
    unreadable = [m for m in batch if m.topic == TOPICS.readings and not _reads(m)]
    assert all(reasons.get(origin(m)) for m in unreadable), "every unreadable reading rejected, with a reason"


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'sink.sqlite'}")
    migrate(engine)
    yield Sink(engine, AxisLock(engine, [1, 2, 3, 4]), TOPICS)
    engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=messages())
def test_the_sink_stores_or_rejects_every_message_and_never_raises(sink, batch):
    report = sink.write(batch)
    assert report.messages == len(batch)
    assert unaccounted(sink.engine, batch) == []
    sink.write(batch)  # a redelivery: harmless
    assert unaccounted(sink.engine, batch) == []


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=messages(max_size=20))
def test_consumer_alerts_skips_what_it_cannot_read_and_survives_odd_readings(batch, caplog):
    # Tiny windows, so that the few readings of an example reach every detector's firing code.
    engine = DetectorEngine(
        EngineConfig(
            z_window=10, z_min_samples=2, z_test_samples=1, holdoff_s=1.0, holdoff_readings=0, stuck_readings=2
        )
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.service"):
        alerts = process(engine, batch) + process(engine, batch)  # the second pass: a redelivery
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2 * sum(not _reads(m) for m in batch)
    assert all(a.robot_id and a.event_id for a in alerts)


@pytest.mark.parametrize("payload", POISON.values(), ids=POISON.keys())
def test_known_poison_messages_are_rejected_everywhere(sink, payload, caplog):
    batch = [
        Message(topic, 0, 10**9 + i, b"r1", payload, 1_666_000_000_000)
        for i, topic in enumerate([TOPICS.readings, TOPICS.alerts, TOPICS.dead_letters])
    ]
    assert len(decode(batch, TOPICS).rejected) == 3
    assert sink.write(batch).rejected == 3 and unaccounted(sink.engine, batch) == []
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.service"):
        assert process(DetectorEngine(), batch[:1]) == []
    assert "skipped" in caplog.text


@FUZZ
@given(messages(max_size=20))
def test_the_fast_json_path_gives_what_the_careful_one_gives(batch):
    """``from_bytes`` tries pydantic's own JSON parser first; whatever it accepts must be what the careful
    path (json.loads, the version check, then validation) makes of the same bytes, and what it refuses must
    get the careful path's error."""
    for message in batch:
        for model in (Reading, Alert, DeadLetter):
            assert _outcome(model.from_bytes, message.value) == _outcome(model.from_bytes_checked, message.value)


@pytest.mark.parametrize(
    "payload",
    [
        *POISON.values(),
        b'{"robot_id": "r", "ts": "2024-01-01T00:00:00Z", "currents": {}}',
        b'{"schema_version": 1, "robot_id": "r", "ts": "2024-01-01T00:00:00Z", "currents": {"1": 2}}',
    ],
)
def test_the_fast_json_path_agrees_on_known_payloads(payload):
    assert _outcome(Reading.from_bytes, payload) == _outcome(Reading.from_bytes_checked, payload)


def _outcome(decode_with, value: bytes):
    """The fields the message gave (a default such as a dead letter's time of receipt is made afresh at each
    decoding), or the error."""
    try:
        message = decode_with(value)
    except SchemaError as exc:
        return str(exc)
    return message.model_dump(include=message.model_fields_set)


def _reads(message: Message) -> bool:
    try:
        DEFAULT_POLICY.read_message(message)
    except SchemaError:
        return False
    return True
