"""The sink service on the in-process bus and SQLite: exact rows, rejections, batching, commits, outages."""

import asyncio
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select

from common.store.db import make_engine
from common.store.tables import alerts, health_cycles, health_forecast, readings_fact, rejected_readings
from common.wire.bus import InProcessBus
from common.wire.schemas import Alert, AxisForecast, CycleAxis, DeadLetter, HealthEvent, Reading
from consumer_db.migrate import migrate
from consumer_db.service import next_batch, run
from consumer_db.settings import ConsumerDbSettings
from tests.fault_support import assert_exactly, stored_rows

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)


def settings_for(url: str, **changes) -> ConsumerDbSettings:
    values = (
        dict(
            bus="memory",
            axes="1-3",
            sink_batch_size=50,
            sink_batch_ms=20,
            sink_retry_initial_s=0.05,
            sink_retry_max_s=0.2,
        )
        | changes
    )
    return ConsumerDbSettings(_env_file=None, database_url=url, **values)


def reading(i: int, robot: str = "r1", **currents) -> Reading:
    return Reading(
        robot_id=robot, ts=T0 + timedelta(seconds=2 * i), row=i, currents=currents or {1: float(i), 2: None, 3: 0.0}
    )


async def until(condition, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def count(db, table) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture
def engine(sqlite_url):
    """The service's engine, made as the service makes its own (WAL: readers never wait for the writer), with
    a short busy timeout: a locked database must show up as an outage quickly, not after 5 s."""
    engine = make_engine(sqlite_url, log_version=False, connect_args={"timeout": 0.05})
    migrate(engine)  # the service migrates too; done first here so the tests can count rows from the start
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine, sqlite_url):
    """The tests' own reads, on connections of their own with SQLite's usual busy timeout: never the service's
    short one, which a slow machine can outlast while the service opens, checkpoints or recycles its pool."""
    db = create_engine(sqlite_url)
    yield db
    db.dispose()


async def test_stream_stored_exactly_with_rejections_and_offsets_committed(engine, db, sqlite_url):
    settings = settings_for(sqlite_url)
    bus, stop = InProcessBus(partitions=3), asyncio.Event()
    for i in range(200):
        await bus.publish(settings.readings_topic, f"r{i % 2}", reading(i, f"r{i % 2}").to_bytes())
    await bus.publish(settings.readings_topic, "r1", b"not json at all")
    await bus.publish(settings.readings_topic, "r1", reading(999, **{"1": 1.0, "7": 2.0}).to_bytes())
    await bus.publish(
        settings.alerts_topic,
        "r1",
        Alert(
            event_id="e", robot_id="r1", axis=1, detector="z", severity="ALERT", state="open", opened_at=T0
        ).to_bytes(),
    )
    await bus.publish(
        settings.dead_letter_topic, "r1", DeadLetter(source="x.csv", line=4, raw="?", reason="bad").to_bytes()
    )
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    await until(lambda: count(db, rejected_readings) == 3 and count(db, readings_fact) == 600)
    stop.set()
    await asyncio.wait_for(task, 10)
    with db.connect() as conn:
        stored = stored_rows(conn)
        reasons = conn.execute(select(rejected_readings.c.reason).order_by(rejected_readings.c.reason)).scalars().all()
        assert count(db, alerts) == 1
    expected = {
        (f"r{i % 2}", T0 + timedelta(seconds=2 * i), axis, {1: float(i), 2: None, 3: 0.0}[axis])
        for i in range(200)
        for axis in (1, 2, 3)
    }
    assert_exactly(stored, expected)
    assert reasons[0] == "Reading: not JSON (Expecting value: line 1 column 1 (char 0))"
    assert reasons[1] == "axis 7 not in axes_dim for robot r1 (schema lock: 1, 2, 3)" and reasons[2] == "bad"
    for topic in (settings.readings_topic, settings.alerts_topic, settings.dead_letter_topic):
        ends = bus.end_offsets(topic)
        assert [bus._committed[(settings.sink_group_id, topic, p)] for p in range(3)] == ends


def forecast(robot: str) -> HealthEvent:
    f = AxisForecast(axis=1, level=0.1, slope_per_day=0.01, limit=0.3, days_left=20.0)
    return HealthEvent(robot_id=robot, kind="forecast", start=T0, forecasts=[f])


def cycle(robot: str) -> HealthEvent:
    axis = CycleAxis(axis=1, energy_as=10.0, energy_a2s=50.0, peak_amps=5.0, rms_amps=1.6, covered_s=20.0)
    return HealthEvent(robot_id=robot, kind="cycle", start=T0, end=T0 + timedelta(seconds=20), axes=[axis])


def robots_in(db, table) -> set[str]:
    with db.connect() as conn:
        return set(conn.execute(select(table.c.robot_id).distinct()).scalars())


async def flood_health(settings, engine, bus, made_up: list[str]) -> None:
    """A sink run that takes a flood of health events of made-up robot ids, then r1's own, to the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    for robot in made_up:
        await bus.publish(settings.health_topic, robot, forecast(robot).to_bytes())
        await bus.publish(settings.health_topic, robot, cycle(robot).to_bytes())
    for event in (forecast("r1"), cycle("r1")):
        await bus.publish(settings.health_topic, "r1", event.to_bytes())
    ends = bus.end_offsets(settings.health_topic)
    await until(lambda: [bus._committed.get((settings.sink_group_id, settings.health_topic, 0))] == ends)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_health_events_of_robots_new_past_max_robots_are_dead_letters_and_known_robots_stored(
    engine, db, sqlite_url
):
    """An outside client floods the health topic with forecasts and cycles of made-up robot ids: the sink
    takes on robots from them as from readings, up to MAX_ROBOTS, and every later one's events are dead
    letters with the reason, so health_forecast (the Fleet tab's list) stops at the bound. r1, known from its
    readings, has its own health events stored after the flood, and a restart (the roster learnt again from
    the database) takes on no more made-up robots."""
    settings = settings_for(sqlite_url, max_robots=3)
    bus, stop = InProcessBus(), asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    await bus.publish(settings.readings_topic, "r1", reading(0).to_bytes())
    await until(lambda: count(db, readings_fact) == 3)
    stop.set()
    await asyncio.wait_for(task, 10)

    await flood_health(settings, engine, bus, [f"fake-{i}" for i in range(40)])
    assert robots_in(db, health_forecast) == {"r1", "fake-0", "fake-1"}
    assert robots_in(db, health_cycles) == {"r1", "fake-0", "fake-1"}
    with db.connect() as conn:
        refused = conn.execute(select(rejected_readings.c.robot_id, rejected_readings.c.reason)).all()
    assert sorted(robot for robot, _ in refused) == sorted(f"fake-{i}" for i in range(2, 40) for _ in range(2))
    assert all("refused" in reason and "MAX_ROBOTS" in reason for _, reason in refused)

    await flood_health(settings, engine, bus, [f"again-{i}" for i in range(10)])
    assert robots_in(db, health_forecast) == {"r1", "fake-0", "fake-1"}
    assert count(db, rejected_readings) == 2 * 38 + 2 * 10


async def test_next_batch_is_bounded_by_size_and_returns_what_came_within_the_time(sqlite_url):
    bus, stop = InProcessBus(), asyncio.Event()
    for _ in range(25):
        await bus.publish("t", "k", b"x")
    subscription = await bus.subscribe(["t"], group_id="g")
    sizes = [len(await next_batch(subscription, stop, max_size=10, max_wait_s=0.05)) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


async def running_then_locked(engine, db, sqlite_url):
    """A sink that has stored one reading, then a database that refuses every writer (the outage)."""
    settings = settings_for(sqlite_url)
    bus, stop = InProcessBus(), asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    await bus.publish(settings.readings_topic, "r1", reading(0).to_bytes())
    await until(lambda: count(db, readings_fact) == 3)
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN EXCLUSIVE")
    return settings, bus, stop, task, blocker


async def test_database_outage_pauses_without_commit_and_resumes_without_loss(engine, db, sqlite_url, caplog):
    settings, bus, stop, task, blocker = await running_then_locked(engine, db, sqlite_url)
    with caplog.at_level(logging.WARNING, logger="consumer_db.retry"):
        for i in range(1, 40):
            await bus.publish(settings.readings_topic, "r1", reading(i).to_bytes())
        await until(lambda: sum("database unavailable" in r.getMessage() for r in caplog.records) >= 2)
    committed = bus._committed[(settings.sink_group_id, settings.readings_topic, 0)]
    assert committed == 1  # nothing of the failing batch is marked done
    blocker.rollback()
    blocker.close()
    await until(lambda: count(db, readings_fact) == 120)
    await until(lambda: bus._committed[(settings.sink_group_id, settings.readings_topic, 0)] == 40)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert "database is back" in caplog.text


async def test_stop_during_an_outage_returns_without_committing(engine, db, sqlite_url, caplog):
    settings, bus, stop, task, blocker = await running_then_locked(engine, db, sqlite_url)
    with caplog.at_level(logging.ERROR, logger="consumer_db.retry"):
        await bus.publish(settings.readings_topic, "r1", reading(1).to_bytes())
        await until(lambda: "database unavailable" in caplog.text)
    stop.set()
    await asyncio.wait_for(task, 10)
    blocker.rollback()
    blocker.close()
    assert bus._committed[(settings.sink_group_id, settings.readings_topic, 0)] == 1


def recording_sink(first_store_held: threading.Event):
    """The sink, recording the order of its steps; its first transaction waits for ``first_store_held``."""
    from consumer_db.sink import Sink

    class RecordingSink(Sink):
        steps: list[tuple[str, int]] = []

        def prepare(self, messages):
            RecordingSink.steps.append(("prepare", messages[0].offset))
            return super().prepare(messages)

        def store(self, prepared, turn=None):
            first = prepared.messages[0].offset
            RecordingSink.steps.append(("store", first))
            if first == 0:
                first_store_held.wait(10)
            report = super().store(prepared, turn)
            RecordingSink.steps.append(("stored", first))
            return report

    return RecordingSink


async def run_recording_sink(engine, sqlite_url, monkeypatch, readings: int):
    """The service with a ``recording_sink`` (batches of 10) over ``readings`` readings of r1, running."""
    import consumer_db.service

    release = threading.Event()
    sink_class = recording_sink(release)
    monkeypatch.setattr(consumer_db.service, "Sink", sink_class)
    settings = settings_for(sqlite_url, sink_batch_size=10)
    bus, stop = InProcessBus(), asyncio.Event()
    for i in range(readings):
        await bus.publish(settings.readings_topic, "r1", reading(i).to_bytes())
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    return release, sink_class, settings, bus, stop, task


async def test_next_batch_is_prepared_and_started_while_the_previous_one_is_stored_and_commits_stay_in_order(
    engine, db, sqlite_url, monkeypatch
):
    release, sink_class, settings, bus, stop, task = await run_recording_sink(engine, sqlite_url, monkeypatch, 30)
    try:
        await until(lambda: ("store", 10) in sink_class.steps)
        await asyncio.sleep(0.2)  # time enough for a third batch or the second commit, had the loop not waited
        committed = lambda: bus._committed.get((settings.sink_group_id, settings.readings_topic, 0), 0)  # noqa: E731
        assert sink_class.steps[0] == ("prepare", 0)  # then the first store and the next prepare, in either order
        assert sorted(sink_class.steps[1:]) == [("prepare", 10), ("store", 0), ("store", 10)]
        assert committed() == 0 and count(db, readings_fact) == 0  # the second store waits for its turn
        release.set()
        await until(lambda: committed() == 30)
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 10)
    stored = [s for s in sink_class.steps if s[0] == "stored"]
    assert stored == [("stored", 0), ("stored", 10), ("stored", 20)]
    assert count(db, readings_fact) == 90


async def test_stop_while_a_batch_is_being_stored_finishes_and_commits_it(engine, db, sqlite_url, monkeypatch):
    release, sink_class, settings, bus, stop, task = await run_recording_sink(engine, sqlite_url, monkeypatch, 10)
    await until(lambda: ("store", 0) in sink_class.steps)
    stop.set()
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting for the transaction under way, not dropping it
    release.set()
    await asyncio.wait_for(task, 10)
    assert count(db, readings_fact) == 30
    assert bus._committed[(settings.sink_group_id, settings.readings_topic, 0)] == 10


def test_run_refuses_a_batch_wait_past_its_settings_bound_given_as_an_option(capsys, sqlite_url):
    """--batch-ms went past SINK_BATCH_MS's bound (the settings were copied, not checked): at 10^12 a trickle of
    readings was never written, and /livez said the loop was stuck."""
    from consumer_db.cli import main

    assert main(["--database-url", sqlite_url, "run", "--batch-ms", "1000000000000"]) == 2
    err = capsys.readouterr().err
    assert "sink_batch_ms" in err and "less than or equal to 10000" in err and "Traceback" not in err
