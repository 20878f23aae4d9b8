"""SIGTERM with the Kafka broker gone: consumer_alerts, the producer and consumer_db, with work pending, still
stop, by force once STOP_TIMEOUT_S has passed, with exit code 1 and one line saying what was left unconfirmed
and uncommitted; the dashboard, with nothing pending, stops by itself.

Before, the first three waited for ever: the producer on the confirmation of a batch sent before the outage
(producer/sender.py), consumer_alerts on the acknowledgements of its checkpoint's state records
(consumer_alerts/checkpoint.py, the stop's own checkpoint too); neither wait looks at the stop event, and
aiokafka retries without end. consumer_db was stopped by force, then waited in its loop's ``finally`` for the
offset commit of the batch under way (consumer_db/service.py).
The services are real processes on a private broker of each test (tests/fault_support.py), which is stopped
while they run.
"""

import re
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from common.defaults import LONGEST_POLL_MS
from common.store.db import make_engine
from common.wire.kafka import CLOSE_TIMEOUT_S
from tests.fault_support import (
    Service,
    SyntheticFleet,
    poll,
    private_kafka,
    service_env,
    stored,
    synthetic_producer,
)
from tests.secured_services import free_port, ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
STOP_TIMEOUT_S = 5.0
# The documented bound (docs/kafka.md, "Stopping"): STOP_TIMEOUT_S, then the forced stop's closes, each at most
# CLOSE_TIMEOUT_S (consumer_alerts: its subscription, then its producer). SLACK_S: starting Python's exit on a
# machine under load, not a part of the service's wait.
BOUND_S = STOP_TIMEOUT_S + 2 * CLOSE_TIMEOUT_S
SLACK_S = 10.0
# 300 readings/s, far longer than the test: the producer is still sending when the broker goes.
FLEET = SyntheticFleet(
    robots=6, seed=7, tick_s=0.02, start=datetime(2024, 3, 1, 8, tzinfo=UTC), axes=[1, 2, 3, 4], readings=10**6
)


def exit_code(service: Service, signalled_at: float, bound_s: float = BOUND_S) -> int:
    """The exit code of ``service``, sent SIGTERM at ``signalled_at``; a failure if it runs ``bound_s`` + SLACK_S
    past that."""
    try:
        return service.process.wait(max(signalled_at + bound_s + SLACK_S - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{service.module} still running {bound_s + SLACK_S:g} s after SIGTERM:\n{service.tail()}"
        ) from None


def test_sigterm_stops_the_services_in_bounded_time_with_the_broker_gone(kafka_env, unique, tmp_path):
    with private_kafka(tmp_path / "var") as broker:
        env = service_env(
            {**kafka_env, "kafka_bootstrap_servers": broker.bootstrap},
            axes="1-4",
            log_level="INFO",
            stop_timeout_s=STOP_TIMEOUT_S,
            # Below STOP_TIMEOUT_S, as the producer requires; the producer never gets to that wait here: the
            # outage holds its feed in the send of the next batch (producer/sender.py), which only the force ends.
            shutdown_timeout_s=STOP_TIMEOUT_S - 1,
            alerts_group_id=f"alerts-{unique}",
            alerts_metrics_port="",
            producer_metrics_port="",
            state_path=tmp_path / "state.json",
            # No checkpoint before SIGTERM: the stop's own (every judged robot's state, then a commit) is what
            # waits on the gone broker. At 1 s a checkpoint could finish between the outage and SIGTERM and leave
            # nothing to confirm: a clean stop, exit 0 (once in CI).
            snapshot_interval_s=3600,
        )
        alerts = Service("consumer_alerts", env, tmp_path / "alerts.log", "run")
        producer = synthetic_producer(FLEET, env, tmp_path / "producer.log", axes_from_db=False)
        services = (alerts, producer)
        try:
            poll(lambda: "alerts topic read back" in alerts.tail(100_000), "partitions", timeout=90, services=services)
            started = time.monotonic()
            poll(lambda: time.monotonic() - started > 3, "readings judged", services=services)
            broker.stop()
            poll(lambda: "Unable connect" in producer.tail(100_000), "the outage seen", timeout=60, services=services)

            for service in services:  # once: a second SIGTERM would force the stop at once
                service.process.send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            codes = [exit_code(service, signalled_at) for service in services]
        finally:
            for service in (alerts, producer):
                if service.process.poll() is None:
                    service.stop(signal.SIGKILL)
    for service, code in zip(services, codes, strict=True):
        log = service.tail(100_000)
        assert code == 1, log[-3000:]
        assert f"stopping by force: not stopped within {STOP_TIMEOUT_S:g} s of SIGTERM" in log, log[-3000:]
    assert "messages not confirmed by the broker, NOT counted as sent" in producer.tail(100_000)


# consumer_db's batches: full ones only (a batch closes at SINK_BATCH messages, long before SINK_BATCH_MS, its
# longest allowed (10 s): 600 readings at full speed come in far sooner), so that "two batches taken" is a
# count of messages. 600 readings: more than two batches.
SINK_BATCH = 100
SINK_FLEET = SyntheticFleet(
    robots=3, seed=5, tick_s=1.0, start=datetime(2024, 3, 1, 8, tzinfo=UTC), axes=[1, 2, 3, 4], readings=600
)
TAKEN = re.compile(r"^axiswatch_consumer_db_messages_in_total\{[^}]*\} (\S+)$", re.MULTILINE)


def messages_taken(port: int) -> float:
    """The messages the sink has taken from the bus (its metric, summed over the topics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return sum(float(value) for value in TAKEN.findall(answer.read().decode()))


def test_sigterm_stops_consumer_db_with_stored_batches_it_cannot_commit(kafka_env, pg_url, unique, tmp_path):
    """Work pending, made so and not left to chance: the sink's first batch is held on a table lock of the test
    while the producer sends everything and the sink takes its second batch (two in hand, its most); the broker
    goes, the lock is released, both batches are stored, and their offset commits wait on the gone broker.
    One SIGTERM: stopped by force, exit 1, the rows stored (a restart reads them again, writes nothing twice)."""
    with private_kafka(tmp_path / "var") as broker:
        port = free_port()
        env = service_env(
            {**kafka_env, "kafka_bootstrap_servers": broker.bootstrap},
            database_url=pg_url,
            axes="1-4",
            log_level="INFO",
            stop_timeout_s=STOP_TIMEOUT_S,
            sink_group_id=f"sink-{unique}",
            sink_metrics_port=port,
            sink_batch_size=SINK_BATCH,
            sink_batch_ms=LONGEST_POLL_MS,
            shutdown_timeout_s=STOP_TIMEOUT_S - 1,
        )
        sink = Service("consumer_db", env, tmp_path / "sink.log")
        engine = make_engine(pg_url, log_version=False)
        holder, producer = engine.connect(), None
        try:
            poll(lambda: ready(port), "the sink subscribed", timeout=90, every=0.5, services=(sink,))
            holding = holder.begin()
            holder.execute(text("LOCK TABLE readings_fact IN EXCLUSIVE MODE"))  # reads go on, writes wait
            producer = synthetic_producer(
                SINK_FLEET, env, tmp_path / "producer.log", max_speed=True, axes_from_db=False
            )
            assert producer.process.wait(90) == 0, producer.tail()
            poll(lambda: messages_taken(port) >= 2 * SINK_BATCH, "two batches taken", services=(sink,))
            broker.stop()
            holding.rollback()
            poll(lambda: stored(engine)[0] == 2 * 4 * SINK_BATCH, "both batches stored", services=(sink,))

            sink.process.send_signal(signal.SIGTERM)
            code = exit_code(sink, time.monotonic())
        finally:
            holder.close()
            for service in (sink, producer):
                if service is not None and service.process.poll() is None:
                    service.stop(signal.SIGKILL)
            rows = stored(engine)[0]
            engine.dispose()
    log = sink.tail(100_000)
    assert code == 1, log[-3000:]
    assert f"stopping by force: not stopped within {STOP_TIMEOUT_S:g} s of SIGTERM" in log, log[-3000:]
    assert rows == 2 * 4 * SINK_BATCH


# The dashboard holds nothing to confirm or commit: it stops by itself, its closes bounded (its consumer's, its
# producer's: at most CLOSE_TIMEOUT_S each). STOP_TIMEOUT_S above both, so that a stop by force means a wait
# that is not bounded.
DASHBOARD_STOP_TIMEOUT_S = 2 * CLOSE_TIMEOUT_S + 10


def test_sigterm_stops_the_dashboard_by_itself_with_the_broker_gone(kafka_env, unique, tmp_path):
    with private_kafka(tmp_path / "var") as broker:
        port = free_port()
        env = service_env(
            {**kafka_env, "kafka_bootstrap_servers": broker.bootstrap},
            axes="1-4",
            log_level="INFO",
            stop_timeout_s=DASHBOARD_STOP_TIMEOUT_S,
            dashboard_port=port,
            dashboard_sign_in="false",
        )
        dashboard = Service("dashboard", env, tmp_path / "dashboard.log", "--no-database")
        try:
            poll(lambda: ready(port), "the dashboard's feed subscribed", timeout=90, every=0.5, services=(dashboard,))
            broker.stop()
            dashboard.process.send_signal(signal.SIGTERM)
            code = exit_code(dashboard, time.monotonic(), DASHBOARD_STOP_TIMEOUT_S)
        finally:
            if dashboard.process.poll() is None:
                dashboard.stop(signal.SIGKILL)
    log = dashboard.tail(100_000)
    assert code == 0, log[-3000:]
    assert "SIGTERM: stopping" in log and "dashboard stopping" in log and "stopping by force" not in log, log[-3000:]
