"""The foundation's proof that the real services are there: one produce/consume, one write/read."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from common.settings import CommonSettings
from common.store.db import make_engine
from common.wire.kafka import KafkaBus
from common.wire.schemas import Reading

pytestmark = pytest.mark.integration


async def test_kafka_produce_then_consume_in_key_order(kafka_env):
    settings = CommonSettings(_env_file=None, **kafka_env)
    bus = KafkaBus(settings)
    await bus.start()
    try:
        await bus.ensure_topics([settings.readings_topic])
        sent = [
            Reading(
                robot_id=f"r{i % 2}",
                ts=datetime(2022, 10, 17, 12, 0, i, tzinfo=UTC),
                row=i,
                currents={1: float(i), 9: None},
            )
            for i in range(10)
        ]
        for reading in sent:
            await bus.send(settings.readings_topic, reading.robot_id, reading.to_bytes())
        await bus.flush()
        sub = await bus.subscribe([settings.readings_topic], group_id=f"g-{uuid.uuid4().hex}")
        received: list[Reading] = []
        async with asyncio.timeout(30):
            while len(received) < len(sent):
                messages = await sub.getmany(timeout_ms=500)
                received += [Reading.from_bytes(m.value) for m in messages]
                await sub.commit(messages)
        await sub.close()
    finally:
        await bus.stop()
    for robot in ("r0", "r1"):
        assert [r.row for r in received if r.robot_id == robot] == [r.row for r in sent if r.robot_id == robot]
    assert all(r.currents[9] is None for r in received)


def test_postgres_write_then_read(pg_url):
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("create table t (id int primary key, amps double precision)"))
        conn.execute(text("insert into t values (:id, :amps)"), [{"id": 1, "amps": 2.5}, {"id": 2, "amps": None}])
    with engine.connect() as conn:
        rows = conn.execute(text("select id, amps from t order by id")).all()
    assert rows == [(1, 2.5), (2, None)]
    assert engine.dialect.name == "postgresql"
    engine.dispose()
