"""The health pipeline on the real broker and PostgreSQL: consumer_alerts publishes health events on their
topic and a maintenance_due alert for the worn axis only, consumer_db stores both like any other."""

import asyncio
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import ProgrammingError

from common.store.db import make_engine
from common.store.tables import alerts, health_cycles, health_forecast
from common.wire.kafka import KafkaBus
from common.wire.schemas import AlertState, HealthEvent
from consumer_alerts.health.monitor import DETECTOR, HealthConfig, HealthMonitor
from consumer_alerts.health.state import dumps, pickle_robot
from consumer_alerts.recovery import latest_alerts, read_to_end
from consumer_alerts.service import run
from consumer_alerts.settings import AlertsSettings
from producer.synthetic import SyntheticRobot
from producer.wear import DAY_S, RobotWear, WearSpec
from tests.integration.test_alerts_kafka import wait_for

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, tzinfo=UTC)
LEARNED_S = 1.5 * DAY_S  # fed to the health pipeline before the service starts (its state file)
STREAMED_S = 2 * 3600.0  # then through Kafka


def feed(robot_id, wear):
    robot = SyntheticRobot(robot_id, seed=7, tick_seconds=2.0, start=START, axes=range(1, 8), wear=wear)
    readings = list(itertools.islice(robot, int((LEARNED_S + STREAMED_S) / 2)))
    cut = int(LEARNED_S / 2)
    return readings[:cut], readings[cut:]


async def test_a_worn_axis_gets_maintenance_due_a_healthy_robot_none(kafka_env, pg_url, tmp_path):
    from consumer_db.service import run as run_sink
    from consumer_db.settings import ConsumerDbSettings

    worn = feed("worn", RobotWear("worn", 7, [WearSpec("worn", 3, "linear", 0.5 * DAY_S, 3 * DAY_S)]))
    healthy = feed("healthy", None)
    # A day and a half learned (normals, trends) before the service starts, with "due" switched off, so that
    # the service's first hours through Kafka are the ones that decide; the service restores that state.
    learned = HealthMonitor(HealthConfig(due_days=1e-9))
    for reading in worn[0] + healthy[0]:
        assert learned.process(reading) == []
    state = tmp_path / "state.health.pkl"  # beside STATE_PATH
    state.write_bytes(dumps({robot_id: pickle_robot(robot) for robot_id, robot in learned.robots.items()}))

    settings = AlertsSettings(
        _env_file=None,
        **kafka_env,
        alerts_group_id=f"alerts-{kafka_env['alerts_topic']}",
        state_path=tmp_path / "state.json",
        health_due_days=7,
        health_min_hours=12,
        health_hold_hours=1,  # the two streamed hours decide (the rule of 12 in a row: unit tests, benchmark)
        poll_timeout_ms=200,
        detectors=["stuck"],
    )
    db_settings = ConsumerDbSettings(
        _env_file=None, **kafka_env, database_url=pg_url, sink_group_id=f"db-{kafka_env['alerts_topic']}"
    )
    engine = make_engine(pg_url, log_version=False)
    bus = KafkaBus(settings)
    await bus.start()
    stop_alerts, stop_sink = asyncio.Event(), asyncio.Event()
    try:
        await bus.ensure_topics([settings.readings_topic])
        for reading in worn[1] + healthy[1]:
            await bus.send(settings.readings_topic, reading.robot_id, reading.to_bytes())
        await bus.flush()
        tasks = [
            asyncio.create_task(run(settings, bus=bus, stop=stop_alerts)),
            asyncio.create_task(run_sink(db_settings, bus=bus, stop=stop_sink, engine=engine)),
        ]
        last_hour = (worn[1][-1].ts.timestamp() // 3600 - 1) * 3600

        async def stored():
            def query():
                with engine.connect() as conn:
                    newest = conn.execute(
                        select(health_forecast.c.robot_id, func.max(health_forecast.c.updated_at)).group_by(
                            health_forecast.c.robot_id
                        )
                    ).all()
                    due = conn.execute(select(alerts).where(alerts.c.detector == DETECTOR)).mappings().all()
                    return newest, due

            try:
                newest, due = await asyncio.to_thread(query)
            except ProgrammingError:  # consumer_db has not created its tables yet
                return None
            done = len(newest) == 2 and all(t.timestamp() >= last_hour for _, t in newest) and due
            return (newest, due) if done else None

        _, due = await wait_for(stored, timeout=180)
        # consumer_alerts stops first, so that the health topic is complete; then the sink is given the
        # time to store all of it (it may lag the forecasts by many cycles on a slow machine).
        stop_alerts.set()
        await asyncio.wait_for(tasks[0], 30)
        on_topic = [HealthEvent.from_bytes(m.value) for m in await read_to_end(bus, settings.health_topic)]
        stored_cycles = sum(len(e.axes) for e in on_topic if e.kind == "cycle")

        def cycles_by_robot():
            with engine.connect() as conn:
                rows = conn.execute(select(health_cycles.c.robot_id, func.count()).group_by(health_cycles.c.robot_id))
                return dict(rows.all())

        async def all_cycles_stored():
            cycles = await asyncio.to_thread(cycles_by_robot)
            return cycles if sum(cycles.values()) >= stored_cycles else None

        cycles = await wait_for(all_cycles_stored, timeout=60)
        stop_sink.set()
        await asyncio.wait_for(tasks[1], 30)
        sent = await latest_alerts(bus, settings.alerts_topic)
    finally:
        stop_alerts.set()
        stop_sink.set()
        await bus.stop()
    engine.dispose()

    assert [(r["robot_id"], r["axis"], r["state"], r["severity"]) for r in due] == [("worn", 3, "open", "ALERT")]
    on_alerts_topic = [a for a in sent.values() if a.detector == DETECTOR]
    assert [(a.event_id, a.state) for a in on_alerts_topic] == [(due[0]["event_id"], AlertState.OPEN)]
    assert {e.robot_id for e in on_topic} == {"worn", "healthy"}
    assert {e.kind for e in on_topic} == {"cycle", "forecast"}
    assert sum(cycles.values()) == stored_cycles > 0
