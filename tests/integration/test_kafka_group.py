"""A consumer group member on the real broker joins with one successful JoinGroup per rebalance.

aiokafka sends a JoinGroup per assignor listed, one after the other (aio-libs/aiokafka#1168): the second, with
other protocols, starts a new rebalance right after the first completed, and two members starting together could
keep restarting each other's rebalance for good (issue 23; two consumer_alerts instances on one partition,
tests/integration/test_alerts_readiness.py, hung that way in 4 of 10 starts)."""

from __future__ import annotations

import pytest
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import NoError, for_code

from common.settings import CommonSettings
from common.wire.kafka import KafkaBus

pytestmark = pytest.mark.integration

JOIN_GROUP = 11  # the JoinGroup request's API key in Kafka's protocol


async def test_a_member_joins_its_group_once(kafka_env, unique, monkeypatch):
    bus = KafkaBus(CommonSettings(_env_file=None, **kafka_env))
    topic = kafka_env["readings_topic"]
    await bus.ensure_topics([topic])
    joined = []
    send = GroupCoordinator._send_req

    async def counted(coordinator, request):
        response = await send(coordinator, request)
        if request.API_KEY == JOIN_GROUP and for_code(response.error_code) is NoError:
            joined.append(response.generation_id)
        return response

    monkeypatch.setattr(GroupCoordinator, "_send_req", counted)
    subscription = await bus.subscribe([topic], group_id=f"group-{unique}")
    await subscription.close()
    assert len(joined) == 1, f"joined generations {joined}: a JoinGroup after the join started a rebalance again"
