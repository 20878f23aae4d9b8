"""Topics made at start-up on the real broker: Kafka's admin API answers each topic with an error code instead of
raising, so a topic it refused (here a replication factor above the brokers there are) was logged as "created" and
the service went on to wait for a topic that did not exist. It now stops with Kafka's reason; a topic another
instance created a moment before is no error."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigurationError
from common.settings import CommonSettings
from common.wire.kafka import KafkaBus

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NO_CLUSTER_HAS = 100  # copies: more than any test broker has


async def test_a_topic_kafka_refuses_stops_with_its_reason_and_is_not_said_created(kafka_env, unique, caplog):
    bus = KafkaBus(CommonSettings(_env_file=None, **kafka_env, topic_replication_factor=NO_CLUSTER_HAS))
    topic = f"refused-{unique}"
    with caplog.at_level(logging.INFO, logger="common.wire.kafka"), pytest.raises(ConfigurationError) as refused:
        await bus.ensure_topics([topic])
    assert f"Kafka refused to create '{topic}': InvalidReplicationFactorError" in str(refused.value)
    assert "TOPIC_REPLICATION_FACTOR" in str(refused.value)
    assert "created topics" not in caplog.text


async def test_a_topic_two_instances_create_at_once_is_made_once_and_stops_neither(kafka_env, unique, caplog):
    settings = CommonSettings(_env_file=None, **kafka_env)
    topic = f"both-{unique}"
    with caplog.at_level(logging.INFO, logger="common.wire.kafka"):
        await asyncio.gather(KafkaBus(settings).ensure_topics([topic]), KafkaBus(settings).ensure_topics([topic]))
    assert caplog.text.count(f"created topics '{topic}'") == 1
    assert await KafkaBus(settings)._partitions_of(topic) == list(range(settings.topic_partitions))


@pytest.mark.parametrize("service", ["producer", "consumer_db", "consumer_alerts", "dashboard"])
def test_a_service_whose_topics_kafka_refuses_exits_with_one_line_that_says_why(service, kafka_env, unique, tmp_path):
    env = {k.upper(): str(v) for k, v in kafka_env.items()}
    env |= {"TOPIC_REPLICATION_FACTOR": str(NO_CLUSTER_HAS), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    env |= {"STATE_PATH": str(tmp_path / "state.json"), "DASHBOARD_PORT": "0"}
    env |= {f"{name}_METRICS_PORT": "0" for name in ("PRODUCER", "SINK", "ALERTS")}
    done = subprocess.run(
        [sys.executable, "-m", service],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "Kafka refused to create" in line]
    assert said and "InvalidReplicationFactorError" in said[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
