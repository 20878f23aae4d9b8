"""consumer_alerts on the real broker: readings in, events out on the alerts topic, a restart that
re-raises nothing, and the events persisted by consumer_db."""

import asyncio
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import ProgrammingError

from common.wire.bus import Message
from common.wire.kafka import KafkaBus
from common.wire.schemas import Alert, AlertState, Reading
from consumer_alerts.recovery import latest_alerts, read_to_end
from consumer_alerts.service import process_and_send, run
from consumer_alerts.settings import AlertsSettings
from tests.alerts_fixtures import cycle_readings
from tests.broker_watch import BrokerWatch

pytestmark = pytest.mark.integration


def surge(i, axis, amps):
    return amps + 60.0 if axis == 1 and 600 <= i < 640 else amps


async def wait_for(check, *, timeout=60.0, every=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(every)
    raise AssertionError("condition not met before the deadline")


async def run_until(settings, bus, check, *, timeout=60.0):
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop))
    try:
        return await wait_for(check, timeout=timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_events_reach_the_alerts_topic_and_a_restart_raises_none_again(kafka_env, tmp_path):
    settings = AlertsSettings(
        _env_file=None,
        **kafka_env,
        alerts_group_id=f"alerts-{kafka_env['alerts_topic']}",
        state_path=tmp_path / "state.json",
        holdoff_s=30.0,
        holdoff_readings=0,
        z_window=200,
        z_min_samples=50,
        poll_timeout_ms=200,
        detectors=["zscore", "stuck"],
    )
    readings = cycle_readings(1200, fault=surge)
    bus = KafkaBus(settings)
    await bus.start()
    try:
        await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])
        for r in readings[:620]:
            await bus.send(settings.readings_topic, r.robot_id, r.to_bytes())
        await bus.flush()

        async def opened():
            return [a for a in (await latest_alerts(bus, settings.alerts_topic)).values() if a.state is AlertState.OPEN]

        first = await run_until(settings, bus, opened)
        assert [(a.axis, a.detector) for a in first] == [(1, "zscore")]
        for r in readings[620:]:
            await bus.send(settings.readings_topic, r.robot_id, r.to_bytes())
        await bus.flush()

        async def closed():
            return [
                a for a in (await latest_alerts(bus, settings.alerts_topic)).values() if a.state is AlertState.CLOSED
            ]

        done = await run_until(settings, bus, closed)  # a second service instance: a restart
        messages = [Alert.from_bytes(m.value) for m in await read_to_end(bus, settings.alerts_topic)]
    finally:
        await bus.stop()
    assert [a.event_id for a in done] == [first[0].event_id]
    assert {a.event_id for a in messages} == {first[0].event_id}
    assert sum(a.state is AlertState.CLOSED for a in messages) == 1
    assert all(m.robot_id == "r1" for m in messages)


async def test_events_are_persisted_by_consumer_db(kafka_env, pg_url, tmp_path):
    consumer_db = pytest.importorskip("consumer_db.service")
    from common.store.db import make_engine
    from common.store.tables import alerts
    from consumer_db.settings import ConsumerDbSettings

    settings = AlertsSettings(
        _env_file=None,
        **kafka_env,
        alerts_group_id=f"alerts-{kafka_env['alerts_topic']}",
        state_path=tmp_path / "state.json",
        holdoff_s=30.0,
        holdoff_readings=0,
        z_window=200,
        z_min_samples=50,
        poll_timeout_ms=200,
        detectors=["zscore", "stuck"],
    )
    db_settings = ConsumerDbSettings(
        _env_file=None, **kafka_env, database_url=pg_url, sink_group_id=f"db-{kafka_env['alerts_topic']}"
    )
    engine = make_engine(pg_url, log_version=False)
    bus = KafkaBus(settings)
    await bus.start()
    stop = asyncio.Event()
    try:
        await bus.ensure_topics([settings.readings_topic, settings.alerts_topic, settings.dead_letter_topic])
        for r in cycle_readings(900, fault=surge):
            await bus.send(settings.readings_topic, r.robot_id, r.to_bytes())
        await bus.flush()
        tasks = [
            asyncio.create_task(run(settings, bus=bus, stop=stop)),
            asyncio.create_task(consumer_db.run(db_settings, bus=bus, stop=stop, engine=engine)),
        ]

        async def stored_closed():
            def query():
                with engine.connect() as conn:
                    return conn.execute(select(alerts).where(alerts.c.state == "closed")).mappings().all()

            try:
                return await asyncio.to_thread(query)
            except ProgrammingError:  # consumer_db has not created its tables yet
                return None

        rows = await wait_for(stored_closed, timeout=90)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        stop.set()
        await bus.stop()
        engine.dispose()
    assert len(rows) == 1
    row = rows[0]
    assert (row["robot_id"], row["axis"], row["detector"], row["severity"]) == ("r1", 1, "zscore", "ERROR")
    assert row["closed_at"] > row["opened_at"] and row["peak_amps"] > 60


async def test_an_event_is_on_the_alerts_topic_before_the_rest_of_its_batch_is_judged(kafka_env):
    """The event of a batch's first reading must not wait for the batch's other readings (at the real rate
    a tick's 200 take ~10-20 ms): while the engine judges the second reading, a reader on its own
    thread must already find the event on the broker."""
    settings = AlertsSettings(_env_file=None, **kafka_env)
    opened = Alert(
        event_id="r1:1:zscore:early",
        robot_id="r1",
        axis=1,
        detector="zscore",
        severity="ALERT",
        state="open",
        opened_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    watch = BrokerWatch(
        settings.kafka_bootstrap_servers,
        settings.alerts_topic,
        lambda value: Alert.from_bytes(value).event_id == opened.event_id,
    )

    class FirstReadingOpensAnEvent:
        def __init__(self):
            self.seen_while_judging: list[bool] = []
            self.robots: dict = {}  # the service counts them (freeze_new_robots)

        def newest(self, robot_id):
            return None  # no robot's clock ever goes back here

        def process(self, reading, place=None, record_ts=None):
            if reading.row == 1:
                return [opened]
            # Blocks the event loop, as judging a reading does: only a send already on the wire gets through.
            self.seen_while_judging.append(watch.wait())
            return []

    engine = FirstReadingOpensAnEvent()
    readings = [
        Reading(robot_id="r1", ts=datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC), row=i, currents={1: 1.0}) for i in (1, 2)
    ]
    messages = [Message(settings.readings_topic, 0, i, b"r1", r.to_bytes()) for i, r in enumerate(readings)]
    bus = KafkaBus(settings)
    await bus.start()
    try:
        await bus.ensure_topics([settings.alerts_topic])
        # a fresh topic's partitions get their leader a moment late: the test's send must not be a retry
        await bus.publish(settings.alerts_topic, "r1", opened.model_copy(update={"event_id": "warm-up"}).to_bytes())
        with watch:
            alerts = await process_and_send(
                engine, messages, bus, settings.alerts_topic, {}, before=lambda robot, partition: None
            )
    finally:
        await bus.stop()
    assert [a.event_id for a in alerts] == [opened.event_id]
    assert engine.seen_while_judging == [True]


async def test_reading_back_a_topic_that_does_not_exist_does_not_create_it(kafka_env):
    # The local broker auto-creates topics (a few seconds after the request); a read-back at start must not
    # make the alerts topic with the broker's partition count before ensure_topics makes it with ours.
    from aiokafka.admin import AIOKafkaAdminClient

    settings = AlertsSettings(_env_file=None, **kafka_env)
    bus = KafkaBus(settings)
    await bus.start()
    try:
        assert await read_to_end(bus, settings.alerts_topic) == []
    finally:
        await bus.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await asyncio.sleep(3)
        assert settings.alerts_topic not in await admin.list_topics()
    finally:
        await admin.close()
