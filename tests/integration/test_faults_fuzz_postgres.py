"""Malformed messages, fuzzed with hypothesis, into the sink on PostgreSQL: what SQLite lets through (NUL
in text, integers past a column's range, text longer than its column) PostgreSQL refuses, and the sink
must still store every message as a reading, an alert event or a rejected record, and never raise."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from common.store.db import make_engine
from common.wire.bus import Message
from consumer_db.axislock import AxisLock
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from tests.fuzz_messages import POISON, TOPICS, messages, unaccounted

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_sink(pg_url):
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    yield Sink(engine, AxisLock(engine, [1, 2, 3, 4]), TOPICS, copy_min_rows=4)  # COPY for most batches too
    engine.dispose()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)  # one database for all
@given(batch=messages())
def test_the_sink_on_postgres_stores_or_rejects_every_message(pg_sink, batch):
    assert pg_sink.write(batch).messages == len(batch)
    assert unaccounted(pg_sink.engine, batch) == []


def test_text_postgres_cannot_hold_is_rejected_not_raised(pg_sink):
    nul = b'{"schema_version":1,"robot_id":"r\\u0000","ts":"2022-10-17T12:00:00Z","currents":{"1":1.0}}'
    long_robot = (
        b'{"schema_version":1,"event_id":"e","robot_id":"'
        + b"r" * 65
        + (b'","axis":1,"detector":"z","severity":"ALERT","state":"open","opened_at":"2022-10-17T12:00:00Z"}')
    )
    big_axis = long_robot.replace(b"r" * 65, b"r1").replace(b'"axis":1', b'"axis":70000')
    batch = [
        Message(TOPICS.readings, 0, 1, b"r\x00", nul, None),
        Message(TOPICS.alerts, 0, 2, None, long_robot, None),
        Message(TOPICS.alerts, 0, 3, None, big_axis, None),
    ]
    batch += [Message(TOPICS.readings, 1, i, None, value, None) for i, value in enumerate(POISON.values())]
    report = pg_sink.write(batch)
    assert report.rejected == len(batch) and unaccounted(pg_sink.engine, batch) == []
