"""The start-up's Kafka calls retry aiokafka's transient errors for a bounded time, then stop with one message naming
the bootstrap servers; any other error passes at once. Driven with aiokafka's own error classes (the real
cluster's case: tests/integration/test_kafka_start_node_gone.py)."""

import logging

import pytest
from aiokafka.errors import (
    InvalidReplicationFactorError,
    KafkaConnectionError,
    NodeNotReadyError,
    NotControllerError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from common.errors import ConfigurationError, ServiceUnavailable
from common.wire import kafka
from common.wire.kafka import _say_created, with_retry

BOOTSTRAP = "127.0.0.1:19092,127.0.0.1:19093"


class FailsThen:
    """A call that raises each of ``errors`` in turn, then returns ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors, self.calls = list(errors), 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.mark.parametrize(
    "error",
    [
        NodeNotReadyError("Attempt to send a request to node which is not ready (node id 3)."),
        KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 19092)]"),
        RequestTimedOutError(),
        NotControllerError(),
        TimeoutError(),  # the admin client's own wait for a node to be ready
    ],
)
async def test_a_transient_error_is_tried_again_and_said(error, caplog):
    call = FailsThen(error, error)
    with caplog.at_level(logging.WARNING, logger="common.wire.kafka"):
        assert await with_retry(call, "admin list_topics", BOOTSTRAP) == "done"
    assert call.calls == 3
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all(s.startswith("Kafka admin list_topics failed (") for s in said)
    assert all(type(error).__name__ in s for s in said)
    assert "attempt 2 again in 0.5 s" in said[0] and "attempt 3 again in 1.0 s" in said[1]


async def test_a_transient_error_that_lasts_stops_with_one_message_naming_the_bootstrap_servers(monkeypatch):
    monkeypatch.setattr(kafka, "START_PATIENCE_S", 1.0)
    call = FailsThen(*[NodeNotReadyError("node id 3 not ready")] * 10)
    with pytest.raises(ServiceUnavailable) as raised:
        await with_retry(call, "making sure of topics ['readings']", BOOTSTRAP)
    assert call.calls == 2  # 0.5 s, then 1 s more would pass the patience
    said = str(raised.value)
    assert said.startswith(f"Kafka at {BOOTSTRAP} (KAFKA_BOOTSTRAP_SERVERS): making sure of topics ['readings'] failed")
    assert said.endswith(" s, 2 attempts; the last: NodeNotReadyError: node id 3 not ready"), said


@pytest.mark.parametrize("error", [TopicAuthorizationFailedError(), ConfigurationError("refused"), ValueError("x")])
async def test_any_other_error_passes_at_once(error):
    call = FailsThen(error)
    with pytest.raises(type(error)):
        await with_retry(call, "admin list_topics", BOOTSTRAP)
    assert call.calls == 1


def test_a_topic_kafka_could_not_make_for_now_is_tried_again_not_called_refused(caplog):
    """CreateTopics answers each topic with a code: a timed-out one (no quorum) is no refusal of the settings."""
    with caplog.at_level(logging.INFO, logger="common.wire.kafka"), pytest.raises(RequestTimedOutError) as raised:
        _say_created([("made", 0, None), ("late", RequestTimedOutError.errno, "Timed out waiting")])
    assert "'late': Timed out waiting" in str(raised.value) and "created topics 'made'" in caplog.text
    with pytest.raises(ConfigurationError, match="InvalidReplicationFactorError"):
        _say_created([("x", TopicAlreadyExistsError.errno, None), ("y", InvalidReplicationFactorError.errno, "3 > 1")])
