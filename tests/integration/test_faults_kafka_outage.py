"""The Kafka broker stopped for ~10 s in the middle of a stream, then restarted: the producer's sends wait
and are retried (no idempotent-producer sequence error left stuck), the sink reconnects and rejoins its
group, and PostgreSQL ends with exactly the input: nothing lost, nothing twice.

Producer and sink are real processes. The broker is a private one of this test (scripts/kafka.sh under
its own AXISWATCH_VAR_DIR), never the shared development broker; it restarts at the same address with
its data, as a real broker restart does. Stop, 10 s, restart: the clients see ~25 s without a broker,
which aiokafka's own retries bridge (its request timeout is 40 s); what it gives up on after that goes
through producer/sender.py's resend, tested in tests/unit/test_sender.py.
"""

import signal
import time
from datetime import UTC, datetime

import pytest

from common.store.db import make_engine
from tests.fault_support import (
    Service,
    SyntheticFleet,
    assert_every_reading_confirmed,
    assert_exactly,
    poll,
    private_kafka,
    service_env,
    stored,
    stored_rows,
    synthetic_producer,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
START = datetime(2024, 3, 1, 8, tzinfo=UTC)
# 300 readings/s for 20 s, plus the outage
FLEET = SyntheticFleet(robots=6, seed=7, tick_s=0.02, start=START, axes=[1, 2, 3, 4], readings=6000)
READINGS = FLEET.readings
OUTAGE_S = 10.0


@pytest.fixture
def broker(tmp_path):
    with private_kafka(tmp_path / "var") as started:
        yield started


def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(broker, kafka_env, pg_url, unique, tmp_path):
    kafka_env = {**kafka_env, "kafka_bootstrap_servers": broker.bootstrap}
    env = service_env(kafka_env, database_url=pg_url, axes="1-4", log_level="INFO")
    sink = Service("consumer_db", {**env, "SINK_GROUP_ID": f"sink-{unique}"}, tmp_path / "sink.log")
    producer = None
    engine = make_engine(pg_url, log_version=False)
    try:
        poll(lambda: stored(engine)[0] == 0, "the sink's tables", services=(sink,))
        producer = synthetic_producer(
            FLEET,
            {**env, "SHUTDOWN_TIMEOUT_S": "120", "STOP_TIMEOUT_S": "180"},
            tmp_path / "producer.log",
            axes_from_db=False,
        )
        poll(lambda: stored(engine)[0] >= 4 * 500, "the first rows", services=(sink, producer))

        broker.stop()  # kept data and ports: the restart comes back at the same address
        down_at, at_stop = time.monotonic(), stored(engine)[0]
        # The outage itself; meanwhile both processes must stay up (the producer buffers, the sink waits).
        poll(lambda: time.monotonic() - down_at >= OUTAGE_S, "the end of the outage", services=(sink, producer))
        assert broker.start() == kafka_env["kafka_bootstrap_servers"]
        assert at_stop < 4 * READINGS, "the outage has to land in the middle of the stream"

        assert producer.process.wait(180) == 0, producer.tail()
        poll(lambda: stored(engine)[0] == 4 * READINGS, "every row after the restart", timeout=90, services=(sink,))
        assert sink.stop(signal.SIGTERM) == 0, sink.tail()
        with engine.connect() as conn:
            rows = stored_rows(conn)
    finally:
        for service in (producer, sink):
            if service is not None and service.process.poll() is None:
                service.stop(signal.SIGKILL)
        engine.dispose()
    assert_every_reading_confirmed(producer, READINGS)
    assert_exactly(rows, FLEET.rows())
