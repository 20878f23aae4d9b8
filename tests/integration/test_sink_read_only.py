"""A database that refuses writes for a while, with its connections up all along: the sink resumes by itself.

``ALTER DATABASE ... SET default_transaction_read_only`` takes effect in sessions started after it, so the
test ends the sink's sessions once (as an operator would, to make the setting bite); the pool then holds
read-only sessions, and a pre-ping on them succeeds. After the setting is turned back, only sessions the
sink opens afresh can write: without recycling them it retried for minutes (issue 20).
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, make_url, select, text

from common.store.db import make_engine
from common.store.tables import readings_fact
from common.wire.bus import InProcessBus
from common.wire.schemas import Reading
from consumer_db.migrate import migrate
from consumer_db.service import run
from consumer_db.settings import ConsumerDbSettings

pytestmark = pytest.mark.integration
# A ceiling against a hang only (without recycling its sessions the sink retried for minutes): how soon it
# resumes is a benchmark's business, not a test's.
HANG_S = 120
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def reading(i: int) -> Reading:
    return Reading(robot_id="robot-001", ts=T0 + timedelta(seconds=2 * i), row=i, currents={1: float(i % 500), 2: None})


async def until(condition, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(condition):
            await asyncio.sleep(0.05)


async def test_the_sink_resumes_by_itself_once_the_database_accepts_writes_again(pg_url, postgres_admin_url, caplog):
    name = make_url(pg_url).database
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    settings = ConsumerDbSettings(_env_file=None, database_url=pg_url, bus="memory", axes="1-2")  # default retries
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)  # the sink migrates too; first here so that the test can count from the start
    bus, stop = InProcessBus(partitions=3), asyncio.Event()

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(readings_fact)).scalar_one()

    def set_read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'))
            if on:  # the sink's sessions end; the ones it opens next are read-only
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": name}
                )

    async def publish(numbers: range) -> None:
        for i in numbers:
            await bus.publish(settings.readings_topic, "robot-001", reading(i).to_bytes())

    sink = asyncio.create_task(run(settings, bus=bus, stop=stop))
    try:
        with caplog.at_level(logging.INFO, logger="consumer_db"):
            await publish(range(0, 500))
            await until(lambda: stored() == 1000)
            engine.dispose()
            await asyncio.to_thread(set_read_only, True)
            await publish(range(500, 1500))
            await until(lambda: "read-only transaction" in caplog.text)
            assert "transient" in caplog.text and not sink.done()
            await asyncio.sleep(3)  # several failed tries on the read-only sessions
            await asyncio.to_thread(set_read_only, False)
            await until(lambda: stored() == 3000, timeout=HANG_S)  # a ceiling against a hang, not a speed
            assert "database is back" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(sink, 30)
        await asyncio.to_thread(set_read_only, False)
    with engine.connect() as conn:
        rows = set(conn.execute(select(readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps)).all())
    engine.dispose()
    admin.dispose()
    expected = {(reading(i).ts, axis, reading(i).currents[axis]) for i in range(1500) for axis in (1, 2)}
    assert rows == expected
