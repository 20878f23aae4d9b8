"""A service started while a node of the cluster is gone, on a cluster of the test's own (3 nodes).

A killed node stays in the cluster's metadata until Kafka fences it (about 9 s), and for good once the quorum is
lost; aiokafka's admin client picks a node of the metadata at random, so the topics' check at start could ask the
dead one and the service stopped with a NodeNotReadyError traceback (or a TimeoutError, waiting for a controller
that was gone). The start-up's admin calls now retry such transient errors for a bounded time
(common.wire.kafka.START_PATIENCE_S): a service started just after a node's death starts, and one that cannot
reach a quorum gives up on its topics with one message naming the bootstrap servers.
"""

import asyncio
import os
import signal

import pytest

from common.errors import ServiceUnavailable
from common.settings import CommonSettings
from common.wire.kafka import KafkaBus
from tests.fault_support import Service, poll, private_kafka, service_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]


def alerts_env(bootstrap: str, name: str, tmp_path) -> dict[str, str]:
    """consumer_alerts' environment, with topics and a group of its own (none of them there yet)."""
    topics = ("readings", "alerts", "dead_letter", "health", "maintenance", "alerts_state")
    return service_env(
        {"bus": "kafka", "kafka_bootstrap_servers": bootstrap, **{f"{t}_topic": f"{t}-{name}" for t in topics}},
        topic_partitions=1,
        axes="1-4",
        log_level="INFO",
        alerts_group_id=f"alerts-{name}",
        alerts_metrics_port="",
        state_path=tmp_path / f"state-{name}.json",
    )


def test_a_service_started_with_a_node_gone_starts_or_says_why_it_cannot(unique, tmp_path):
    with private_kafka(tmp_path / "var", AXISWATCH_KAFKA_BROKERS="3") as cluster:
        # One node killed just before the start: still in the metadata for a while, so still asked.
        os.kill(cluster.pid(3), signal.SIGKILL)
        started = Service("consumer_alerts", alerts_env(cluster.bootstrap, f"a-{unique}", tmp_path), tmp_path / "a.log")
        try:
            poll(
                lambda: "alerts topic read back" in started.tail(100_000), "the start", timeout=150, services=(started,)
            )
            assert started.stop(signal.SIGTERM) == 0, started.tail()
        finally:
            if started.process.poll() is None:
                started.stop(signal.SIGKILL)
        assert "Traceback" not in started.log.read_text(), started.tail()

        # A second node killed: the quorum is lost, no topic can be made, and the metadata keeps both dead nodes.
        # (A whole service would not get this far: its idempotent producer's start waits for a producer id, which
        # no controller hands out now; aiokafka retries that without end.)
        os.kill(cluster.pid(2), signal.SIGKILL)
        settings = CommonSettings(_env_file=None, bus="kafka", kafka_bootstrap_servers=cluster.bootstrap)
        with pytest.raises(ServiceUnavailable) as raised:
            asyncio.run(KafkaBus(settings).ensure_topics([f"readings-b-{unique}"]))
        said = str(raised.value)
        assert said.startswith(f"Kafka at {cluster.bootstrap} (KAFKA_BOOTSTRAP_SERVERS): making sure of topics"), said
        assert " failed for " in said and "attempts; the last: " in said, said
