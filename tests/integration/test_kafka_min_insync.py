"""TOPIC_MIN_INSYNC_REPLICAS on the real broker: what a user who sets the production layout gets.

Kafka counts min.insync.replicas only up to a partition's copies. On one broker, with TOPIC_MIN_INSYNC_REPLICAS=2
and the default TOPIC_REPLICATION_FACTOR (1), the topics were made with min.insync.replicas=2 and the producer's
200 readings were confirmed with acks=all: one copy was enough, whatever the setting said. A service now refuses
that at start-up, naming both settings; a topic that was there already with fewer copies or another
min.insync.replicas than the settings ask is named in a warning (the settings apply to topics made at start-up).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from common.settings import CommonSettings
from common.wire.kafka import KafkaBus, connection_options

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


async def test_two_in_sync_of_one_copy_stops_the_producer_before_a_topic_or_a_reading(kafka_env, tmp_path):
    env = {k.upper(): str(v) for k, v in kafka_env.items()} | {"TOPIC_MIN_INSYNC_REPLICAS": "2"}
    env |= {"PRODUCER_METRICS_PORT": "0", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    done = subprocess.run(
        [sys.executable, "-m", "producer", "--synthetic", "--robots", "2", "--max-speed", "--limit", "200"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stderr[-2000:]
    assert "readings confirmed" not in done.stderr + done.stdout
    said = [line for line in done.stderr.splitlines() if "TOPIC_MIN_INSYNC_REPLICAS (2)" in line]
    assert said and "TOPIC_REPLICATION_FACTOR (1)" in said[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    admin = AIOKafkaAdminClient(**connection_options(CommonSettings(_env_file=None, **kafka_env)))
    await admin.start()
    try:
        assert kafka_env["readings_topic"] not in await admin.list_topics()
    finally:
        await admin.close()


async def make_topic(settings: CommonSettings, topic: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def test_a_topic_there_before_with_fewer_copies_or_another_min_insync_is_named(kafka_env, caplog):
    topic = kafka_env["readings_topic"]
    await make_topic(CommonSettings(_env_file=None, **kafka_env), topic, **{"min.insync.replicas": "1"})
    asked = CommonSettings(_env_file=None, **kafka_env, topic_replication_factor=3, topic_min_insync_replicas=2)
    with caplog.at_level(logging.INFO, logger="common.wire.kafka"):
        await KafkaBus(asked).ensure_topics([topic])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warned if f"{topic!r} exists with 1 copy per partition" in w and "(3)" in w], warned
    assert [w for w in warned if f"{topic!r} exists with min.insync.replicas=1, not TOPIC_MIN_INSYNC_REPLICAS (2)" in w]
    assert "created topics" not in caplog.text


async def test_a_topic_that_has_what_the_settings_ask_is_not_named(kafka_env, caplog):
    topic = kafka_env["readings_topic"]
    settings = CommonSettings(_env_file=None, **kafka_env, topic_min_insync_replicas=1)
    await KafkaBus(settings).ensure_topics([topic])  # made here, as the settings ask
    with caplog.at_level(logging.WARNING, logger="common.wire.kafka"):
        await KafkaBus(settings).ensure_topics([topic])  # there already: nothing to say
    assert caplog.records == []
