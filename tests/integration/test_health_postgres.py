"""Health tables on real PostgreSQL, written as the services' role (least privilege): cycles stored once
across a replay, rollups recomputed not added to, and the backfill from stored readings equal to what the
stream stored through consumer_db's sink."""

import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from common.store.db import make_engine
from common.store.joint_health import store_health
from common.store.tables import health_cycles, health_forecast, health_rollup
from common.wire.bus import Message
from consumer_alerts.health.backfill import backfill_health
from consumer_alerts.health.monitor import HealthConfig, HealthMonitor
from consumer_db.axislock import AxisLock
from consumer_db.decode import Topics
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from producer.synthetic import SyntheticRobot
from tests.integration.test_hostile_outside_client import least_privilege_urls

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, tzinfo=UTC)
AXES = list(range(1, 8))
CONFIG = HealthConfig(min_hours=2)
TOPICS = Topics("readings", "alerts", "dead", "health")
TABLES = (health_cycles, health_rollup, health_forecast)


@pytest.fixture(scope="module")
def readings():
    robot = SyntheticRobot("r1", seed=5, tick_seconds=2.0, start=START, axes=AXES)
    return list(itertools.islice(robot, 12 * 1800))  # 12 hours


def streamed_events(readings):
    monitor = HealthMonitor(CONFIG)
    events = []
    for reading in readings:
        monitor.process(reading)
        events += monitor.take_events()
    return events


@pytest.fixture
def app_engine(pg_url, postgres_admin_url, unique):
    owner_url, app_url, _ = least_privilege_urls(pg_url, postgres_admin_url, f"h{unique}")
    owner = make_engine(owner_url, log_version=False)
    migrate(owner)
    owner.dispose()
    engine = make_engine(app_url, log_version=False)
    yield engine
    engine.dispose()


def snapshot(engine):
    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t))) for t in TABLES}


def messages(topic, events):
    return [Message(topic, 0, i, e.robot_id.encode(), e.to_bytes()) for i, e in enumerate(events)]


def test_indicators_are_stored_once_across_a_replay(app_engine, readings):
    events = streamed_events(readings[: 6 * 1800])
    cycles = [e for e in events if e.kind == "cycle"]
    with app_engine.begin() as conn:
        store_health(conn, events)
    first = snapshot(app_engine)
    assert len(first["health_cycles"]) == sum(len(e.axes) for e in cycles) > 1000
    with app_engine.begin() as conn:  # a replay, in other batches
        for i in range(0, len(events), 97):
            store_health(conn, events[i : i + 97])
    assert snapshot(app_engine) == first
    with app_engine.connect() as conn:
        hours = conn.execute(
            select(health_rollup.c.cycles, health_rollup.c.energy_a2s).where(
                health_rollup.c.robot_id == "r1", health_rollup.c.axis == 1, health_rollup.c.period == "hour"
            )
        ).all()
        per_cycle = conn.execute(
            select(func.count(), func.sum(health_cycles.c.energy_a2s)).where(health_cycles.c.axis == 1)
        ).one()
        day = conn.execute(
            select(health_rollup.c.cycles).where(health_rollup.c.axis == 1, health_rollup.c.period == "day")
        ).scalar_one()
    assert sum(c for c, _ in hours) == per_cycle[0] == day  # every cycle counted once, in its hour and day
    assert sum(e for _, e in hours) == pytest.approx(per_cycle[1])


def test_backfill_equals_what_the_stream_stored(app_engine, readings):
    sink = Sink(app_engine, AxisLock(app_engine, AXES), TOPICS)
    for i in range(0, len(readings), 2000):
        sink.write(messages("readings", [r for r in readings[i : i + 2000]]))
    events = streamed_events(readings)
    report = sink.write(messages("health", events))
    assert report.health_rows > 0 and report.rejected == 0
    streamed = snapshot(app_engine)
    assert streamed["health_forecast"], "12 hours and no forecast"
    with app_engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table.name}"))  # the app role may delete rows, not drop tables
    lines = []
    done = backfill_health(app_engine, CONFIG, chunk=300, report_every=5000, progress=lines.append)
    assert done.robots == 1 and done.readings == len(readings)
    assert len(lines) == len(readings) // 5000 + 1 and "done" in lines[-1]  # progress while it runs
    assert snapshot(app_engine) == streamed
    backfill_health(app_engine, CONFIG)  # again: idempotent
    assert snapshot(app_engine) == streamed


def test_an_older_forecast_does_not_replace_a_newer_one(app_engine, readings):
    events = [e for e in streamed_events(readings) if e.kind == "forecast"]
    assert len(events) > 2
    with app_engine.begin() as conn:
        store_health(conn, events)
        store_health(conn, events[:1])  # a replay of the first hour's forecast
    with app_engine.connect() as conn:
        updated = conn.execute(select(func.max(health_forecast.c.updated_at))).scalar_one()
    assert updated == max(e.start for e in events)
