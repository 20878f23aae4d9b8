"""SIGTERM with the Kafka broker gone: consumer_alerts and the producer still stop, by force once
STOP_TIMEOUT_S has passed, with exit code 1 and one line saying what was left unconfirmed and uncommitted.

Before, both waited for ever: the producer on the confirmation of a batch sent before the outage
(producer/sender.py), consumer_alerts on the acknowledgements of its checkpoint's state records
(consumer_alerts/checkpoint.py, the stop's own checkpoint too); neither wait looks at the stop event, and
aiokafka retries without end.
Both services are real processes on a private broker of this test (tests/fault_support.py), which is stopped
while they run.
"""

import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest

from common.wire.kafka import CLOSE_TIMEOUT_S
from tests.fault_support import Service, SyntheticFleet, poll, private_kafka, service_env, synthetic_producer

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


def exit_code(service: Service, deadline: float) -> int:
    try:
        return service.process.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{service.module} still running {BOUND_S + SLACK_S:g} s after SIGTERM:\n{service.tail()}"
        ) from None


def test_sigterm_stops_the_services_in_bounded_time_with_the_broker_gone(kafka_env, unique, tmp_path):
    with private_kafka(tmp_path / "var") as broker:
        env = service_env(
            {**kafka_env, "kafka_bootstrap_servers": broker.bootstrap},
            axes="1-4",
            log_level="INFO",
            stop_timeout_s=STOP_TIMEOUT_S,
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
            deadline = time.monotonic() + BOUND_S + SLACK_S
            codes = [exit_code(service, deadline) for service in services]
        finally:
            for service in (alerts, producer):
                if service.process.poll() is None:
                    service.stop(signal.SIGKILL)
    for service, code in zip(services, codes, strict=True):
        log = service.tail(100_000)
        assert code == 1, log[-3000:]
        assert f"stopping by force: not stopped within {STOP_TIMEOUT_S:g} s of SIGTERM" in log, log[-3000:]
    assert "messages not confirmed by the broker, NOT counted as sent" in producer.tail(100_000)
