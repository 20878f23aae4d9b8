"""Writes Kafka refuses for lack of in-sync replicas, on a cluster of the test's own (3 nodes: the quorum outlives
one node killed, so Kafka does take the node out of the in-sync replicas; with 2 nodes it cannot).

A topic at 2 copies with min.insync.replicas=2 loses the node of one copy: Kafka refuses every write with acks=all
(NotEnoughReplicas). aiokafka's idempotent producer retries such a write without end and said only
``Got error produce response on topic-partition ..., retrying. Error: <class 'aiokafka.errors.NotEnoughReplicasError'>``
at each retry; the producer's own lines said only that the broker had not confirmed. The user now reads what it means
once, and the producer reports the readings NOT sent, exit 1.
"""

import asyncio
import os
import signal
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from common.settings import CommonSettings
from common.wire.kafka import KafkaBus, connection_options
from tests.fault_support import SyntheticFleet, poll, private_kafka, service_env, synthetic_producer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
FLEET = SyntheticFleet(
    robots=2, seed=7, tick_s=0.02, start=datetime(2024, 3, 1, 8, tzinfo=UTC), axes=[1, 2, 3, 4], readings=50
)


@pytest.fixture
def kafka_cluster(tmp_path):
    with private_kafka(tmp_path / "var", AXISWATCH_KAFKA_BROKERS="3") as cluster:
        yield cluster


async def partition_zero(settings: CommonSettings) -> dict | None:
    """Partition 0 of the readings topic; None while the admin client asked a node that is gone (aiokafka picks one
    at random from the metadata, which lists a killed node until Kafka fences it)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        [topic] = await admin.describe_topics([settings.readings_topic])
    except KafkaError:
        return None
    finally:
        await admin.close()
    return next(p for p in topic["partitions"] if p["partition"] == 0)


def test_writes_refused_for_lack_of_in_sync_replicas_are_said_so_and_not_counted(kafka_cluster, unique, tmp_path):
    kafka_env = {
        "bus": "kafka",
        "kafka_bootstrap_servers": kafka_cluster.bootstrap,
        "readings_topic": f"readings-{unique}",
        "dead_letter_topic": f"dead-{unique}",
        "topic_partitions": 1,
        "topic_replication_factor": 2,
        "topic_min_insync_replicas": 2,
    }
    settings = CommonSettings(_env_file=None, **kafka_env)
    asyncio.run(KafkaBus(settings).ensure_topics([settings.readings_topic, settings.dead_letter_topic]))
    placed = poll(lambda: asyncio.run(partition_zero(settings)), "the readings topic's partition")
    # The copy that is not the leader goes: the leader stays, and is left alone in the in-sync replicas.
    [victim] = [node for node in placed["replicas"] if node != placed["leader"]]
    os.kill(kafka_cluster.pid(victim), signal.SIGKILL)
    poll(
        lambda: (asyncio.run(partition_zero(settings)) or {}).get("isr") == [placed["leader"]],
        "the copy out of sync",
        every=1,
    )

    env = service_env(kafka_env, axes="1-4", producer_metrics_port=0, shutdown_timeout_s=5, stop_timeout_s=20)
    producer = synthetic_producer(FLEET, env, tmp_path / "producer.log", max_speed=True, axes_from_db=False)
    assert producer.process.wait(120) == 1, producer.tail()
    log = producer.log.read_text()
    said = [line for line in log.splitlines() if "for lack of in-sync replicas" in line]
    assert len(said) == 1, log[-3000:]
    assert f"Kafka refuses writes to '{settings.readings_topic}' partition 0" in said[0]
    assert "NotEnoughReplicasError" in said[0] and "min.insync.replicas" in said[0]
    assert f"NOT SENT: {FLEET.readings} messages were not confirmed" in log
    assert "<class 'aiokafka.errors" not in log
    # The close says what it waited for, not a cause it cannot know ("no broker answering?": three were).
    assert "Kafka producer did not stop within 10 s, still waiting for Kafka to confirm the sends it held" in log
