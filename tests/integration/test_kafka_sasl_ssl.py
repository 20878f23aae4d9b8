"""The services over a secured Kafka, as a managed one is (issue 24): the repo's own broker with a SASL_SSL
listener (SCRAM-SHA-512) and a certificate from a CA made at test time; the producer and consumer_db as
processes configured only by the documented settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE), consumer_alerts and the dashboard beside them
until they are ready (connected and subscribed). PostgreSQL holds exactly the input; a wrong password, a
client without the CA, and a plaintext client are all refused, so the broker is really secured.
"""

import asyncio
import secrets
import signal
import socket
import urllib.request
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import select

from common.settings import CommonSettings
from common.store.db import make_engine
from common.store.tables import readings_fact
from common.wire.kafka import connection_options
from producer.synthetic import synthetic_fleet
from tests.conftest import service_missing
from tests.fault_support import PrivateKafka, Service, poll, service_env, stored
from tests.tls_support import make_server_tls, openssl_missing

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
START = datetime(2024, 3, 1, 8, tzinfo=UTC)
ROBOTS, TICK_S, READINGS, AXES = 4, 2.0, 2000, [1, 2, 3]
USER, MECHANISM = "axiswatch", "SCRAM-SHA-512"


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory):
    """One secured broker for the module's tests (a start costs ~15 s)."""
    tmp_path = tmp_path_factory.mktemp("secured-kafka")
    reason = PrivateKafka.available() or openssl_missing()
    if reason:
        service_missing(reason)
    tls = make_server_tls(tmp_path / "tls")
    password = secrets.token_urlsafe(24)
    password_file = tmp_path / "kafka-password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    broker = PrivateKafka(
        tmp_path / "var",
        AXISWATCH_KAFKA_SECURITY="SASL_SSL",
        AXISWATCH_KAFKA_SSL_CERTFILE=str(tls.cert),
        AXISWATCH_KAFKA_SSL_KEYFILE=str(tls.key),
        AXISWATCH_KAFKA_SSL_CAFILE=str(tls.ca),
        AXISWATCH_KAFKA_SASL_MECHANISM=MECHANISM,
        AXISWATCH_KAFKA_SASL_USERNAME=USER,
        AXISWATCH_KAFKA_SASL_PASSWORD_FILE=str(password_file),
    )
    try:
        broker.start()
    except RuntimeError as exc:
        broker.stop("--clean")
        service_missing(str(exc))
    try:
        yield {
            "kafka_bootstrap_servers": broker.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": USER,
            "kafka_sasl_password": password,
            "kafka_ssl_cafile": str(tls.ca),
        }
    finally:
        broker.stop("--clean")


async def bootstraps(settings: CommonSettings) -> bool:
    """Whether an admin client with these settings gets the cluster's metadata (and so past TLS and SASL)."""
    admin = AIOKafkaAdminClient(**connection_options(settings), request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 30)
    except KafkaConnectionError:
        return False
    await admin.close()
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status == 200
    except OSError:  # refused while starting, or HTTP 503 (HTTPError is an OSError)
        return False


def test_the_broker_refuses_wrong_credentials_no_ca_and_plaintext(secured_kafka):
    good = CommonSettings(**secured_kafka)
    assert asyncio.run(bootstraps(good))
    wrong = CommonSettings(**{**secured_kafka, "kafka_sasl_password": "not-" + secured_kafka["kafka_sasl_password"]})
    assert not asyncio.run(bootstraps(wrong))
    no_ca = CommonSettings(**{**secured_kafka, "kafka_ssl_cafile": None})  # the system store does not know our CA
    assert not asyncio.run(bootstraps(no_ca))
    plaintext = CommonSettings(**{**secured_kafka, "kafka_security_protocol": "PLAINTEXT"})
    assert not asyncio.run(bootstraps(plaintext))


def test_producer_and_sink_over_sasl_ssl_store_exactly_the_input(secured_kafka, pg_url, unique, tmp_path):
    kafka_env = {
        **secured_kafka,
        "bus": "kafka",
        "readings_topic": f"readings-{unique}",
        "alerts_topic": f"alerts-{unique}",
        "dead_letter_topic": f"dead-{unique}",
        "topic_partitions": 3,
    }
    env = service_env(kafka_env, database_url=pg_url, axes="1-3", log_level="INFO")
    sink = Service("consumer_db", {**env, "SINK_GROUP_ID": f"sink-{unique}"}, tmp_path / "sink.log")
    ports = {"consumer_alerts": free_port(), "dashboard": free_port()}
    alerts = Service(
        "consumer_alerts",
        {
            **env,
            "ALERTS_METRICS_PORT": str(ports["consumer_alerts"]),
            "MODEL_PATH": str(REPO / "consumer_alerts" / "models" / "synthetic-fleet.json"),
            "STATE_PATH": str(tmp_path / "alerts-state.json"),
        },
        tmp_path / "alerts.log",
    )
    dashboard = Service("dashboard", {**env, "DASHBOARD_PORT": str(ports["dashboard"])}, tmp_path / "dashboard.log")
    producer = None
    engine = make_engine(pg_url, log_version=False)
    try:
        poll(lambda: stored(engine)[0] == 0, "the sink's tables", services=(sink,))
        # /readyz answers 200 once the service is connected to Kafka (here: past TLS and SCRAM) and subscribed.
        poll(
            lambda: all(ready(port) for port in ports.values()),
            "consumer_alerts and the dashboard ready over SASL_SSL",
            timeout=90,
            every=0.5,
            services=(alerts, dashboard),
        )
        producer = Service(
            "producer",
            env,
            tmp_path / "producer.log",
            *("--synthetic", "--robots", str(ROBOTS), "--seed", "3", "--tick-seconds", str(TICK_S), "--max-speed"),
            *("--start-time", START.isoformat(), "--limit", str(READINGS), "--no-axes-from-db"),
        )
        assert producer.process.wait(90) == 0, producer.tail()
        poll(lambda: stored(engine)[0] == len(AXES) * READINGS, "every row", timeout=90, services=(sink,))
        assert sink.stop(signal.SIGTERM) == 0, sink.tail()
        with engine.connect() as conn:
            rows = conn.execute(
                select(readings_fact.c.robot_id, readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps)
            ).all()
    finally:
        for service in (producer, sink, alerts, dashboard):
            if service is not None and service.process.poll() is None:
                service.stop(signal.SIGKILL)
        engine.dispose()
    assert f"{READINGS} readings confirmed" in producer.tail(5000)
    fleet = synthetic_fleet(ROBOTS, seed=3, tick_seconds=TICK_S, start=START, axes=AXES)
    expected = {(r.robot_id, r.ts, axis, r.currents[axis]) for r in islice(fleet, READINGS) for axis in AXES}
    assert len(rows) == len(expected) and set(rows) == expected
    for service in (producer, sink, alerts, dashboard):  # the secret is never written to a log
        assert secured_kafka["kafka_sasl_password"] not in service.log.read_text()
