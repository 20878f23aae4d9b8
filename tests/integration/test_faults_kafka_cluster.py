"""The production layout (docs/kafka.md): 3 Kafka nodes, topics at replication factor 3 with
min.insync.replicas=2, the producer with acks=all. The node leading a readings partition is killed with
SIGKILL in the middle of a stream and started again: the stream goes on with two nodes, the producer
exits 0 with every reading confirmed, no idempotent-producer sequence error, the restarted node is back in
every partition's in-sync replicas, and PostgreSQL holds exactly the input, nothing twice.

Producer and sink are real processes; the cluster is the test's own (scripts/kafka.sh with
AXISWATCH_KAFKA_BROKERS=3 under its own AXISWATCH_VAR_DIR, removed afterwards).
"""

import asyncio
import os
import signal
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from common.settings import CommonSettings
from common.store.db import make_engine
from common.wire.kafka import connection_options
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
START = datetime(2024, 3, 1, 8, tzinfo=UTC)
# 300 readings/s for 20 s
FLEET = SyntheticFleet(robots=6, seed=7, tick_s=0.02, start=START, axes=[1, 2, 3, 4], readings=6000)
READINGS = FLEET.readings
NODES, COPIES, MIN_IN_SYNC = 3, 3, 2


@pytest.fixture
def kafka_cluster(tmp_path):
    with private_kafka(tmp_path / "var", AXISWATCH_KAFKA_BROKERS=str(NODES)) as cluster:
        yield cluster


async def describe(settings: CommonSettings, topic: str) -> tuple[list[dict], str | None]:
    """The topic's partitions (leader, replicas, isr) as the cluster reports them, and its min.insync.replicas
    (None while the topic is not there yet)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        # Asked by name before it exists, aiokafka's metadata request would have the broker auto-create the
        # topic (one partition), racing the sink's own creation with the settings' partitions.
        if topic not in await admin.list_topics():
            return [], None
        partitions = (await admin.describe_topics([topic]))[0]["partitions"]
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = configs[0].to_object()["resources"][0]["config_entries"]
    # aiokafka spells the field "config_names"
    min_in_sync = [e["config_value"] for e in entries if e["config_names"] == "min.insync.replicas"]
    return partitions, (min_in_sync or [None])[0]


def test_a_node_killed_mid_stream_loses_and_duplicates_nothing(kafka_cluster, pg_url, unique, tmp_path):
    kafka_env = {
        "bus": "kafka",
        "kafka_bootstrap_servers": kafka_cluster.bootstrap,
        "readings_topic": f"readings-{unique}",
        "alerts_topic": f"alerts-{unique}",
        "dead_letter_topic": f"dead-{unique}",
        "topic_partitions": 3,
        "topic_replication_factor": COPIES,
        "topic_min_insync_replicas": MIN_IN_SYNC,
    }
    settings = CommonSettings(**kafka_env)
    env = service_env(kafka_env, database_url=pg_url, axes="1-4", log_level="INFO")
    sink = Service("consumer_db", {**env, "SINK_GROUP_ID": f"sink-{unique}"}, tmp_path / "sink.log")
    producer = None
    engine = make_engine(pg_url, log_version=False)
    try:
        # The sink creates the topics with the settings' replication.
        poll(lambda: stored(engine)[0] == 0, "the sink's tables", services=(sink,))
        # A broker can list the new topic's partitions before it holds the topic's configs (KRaft metadata
        # reaches the brokers one by one): wait for both (a config that never comes fails the wait).
        partitions, min_in_sync = poll(
            lambda: (
                (found := asyncio.run(describe(settings, settings.readings_topic)))[0]
                and found[1] is not None
                and found
            ),
            "the readings topic and its min.insync.replicas",
            every=0.5,
            services=(sink,),
        )
        assert len(partitions) == kafka_env["topic_partitions"] and min_in_sync == str(MIN_IN_SYNC)
        assert all(len(p["replicas"]) == COPIES for p in partitions), partitions

        producer = synthetic_producer(
            FLEET,
            {**env, "SHUTDOWN_TIMEOUT_S": "120", "STOP_TIMEOUT_S": "180"},
            tmp_path / "producer.log",
            axes_from_db=False,
        )
        poll(lambda: stored(engine)[0] >= 4 * 500, "the first rows", services=(sink, producer))

        # The leader of partition 0 goes, without a chance to hand anything over.
        victim = next(p["leader"] for p in partitions if p["partition"] == 0)
        os.kill(kafka_cluster.pid(victim), signal.SIGKILL)
        at_kill = stored(engine)[0]
        # Two nodes are still min.insync.replicas: the stream goes on while the third is away.
        poll(
            lambda: stored(engine)[0] >= at_kill + 4 * 1000,
            "rows stored with a node down",
            timeout=90,
            services=(sink, producer),
        )
        assert at_kill < 4 * READINGS, "the kill has to land in the middle of the stream"
        assert kafka_cluster.start() == kafka_cluster.bootstrap  # the killed node only, at its old ports

        assert producer.process.wait(180) == 0, producer.tail()
        poll(lambda: stored(engine)[0] == 4 * READINGS, "every row", timeout=90, services=(sink,))
        poll(
            lambda: all(len(p["isr"]) == COPIES for p in asyncio.run(describe(settings, settings.readings_topic))[0]),
            "the restarted node back in every in-sync replica set",
            timeout=60,
            every=1.0,
        )
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
