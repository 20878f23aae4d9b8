"""The maintenance log on the real broker and PostgreSQL: an acknowledgement "part replaced" is stored in the
log and restarts the axis in consumer_alerts (the level that was a fault is the new part's normal); an entry
delivered twice is stored once; hostile entries are dead letters with their reason; outcomes per detector."""

import asyncio
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from common.store.db import make_engine
from common.store.tables import maintenance_log, rejected_readings
from common.wire.acknowledge import publish_acknowledgement, publish_maintenance
from common.wire.kafka import KafkaBus
from common.wire.schemas import AckOutcome, Alert, AlertState, MaintenanceEntry
from consumer_alerts.health.monitor import DETECTOR
from consumer_alerts.recovery import latest_alerts
from consumer_alerts.service import run
from consumer_alerts.settings import AlertsSettings
from consumer_db.phrases import QueryArgs, ask
from tests.integration.test_alerts_kafka import wait_for
from tests.integration.test_hostile_outside_client import least_privilege_urls
from tests.maintenance_support import AFTER, CONFIG, FAULT, FAULT_AMPS, NORMAL, NORMAL_AMPS, T0, readings

pytestmark = pytest.mark.integration

TAIL = range(AFTER.stop, AFTER.stop + 400)  # axis 1 overloaded: proves the detectors judged everything before


def sink_settings(kafka_env, database_url, **more):
    from consumer_db.settings import ConsumerDbSettings

    return ConsumerDbSettings(
        _env_file=None, **kafka_env, database_url=database_url, sink_group_id=f"db-{kafka_env['alerts_topic']}", **more
    )


def rows(engine, table):
    def query():
        with engine.connect() as conn:
            return conn.execute(select(table)).mappings().all()

    async def read():
        try:
            return await asyncio.to_thread(query)
        except ProgrammingError:  # consumer_db has not created its tables yet
            return []

    return read


async def test_part_replaced_is_logged_and_the_axis_learns_the_new_part(kafka_env, pg_url, tmp_path):
    from consumer_db.service import run as run_sink

    settings = AlertsSettings(
        _env_file=None,
        **kafka_env,
        alerts_group_id=f"alerts-{kafka_env['alerts_topic']}",
        state_path=tmp_path / "state.json",
        poll_timeout_ms=200,
        detectors=list(CONFIG.detectors),
        load_absorb=CONFIG.load_absorb,
    )
    engine = make_engine(pg_url, log_version=False)
    bus = KafkaBus(settings)
    await bus.start()
    stop_alerts, stop_sink = asyncio.Event(), asyncio.Event()
    tasks = []
    try:
        await bus.ensure_topics([settings.readings_topic])
        for reading in readings("r1", NORMAL, NORMAL_AMPS) + readings("r1", FAULT, FAULT_AMPS):
            await bus.send(settings.readings_topic, reading.robot_id, reading.to_bytes())
        await bus.flush()
        tasks = [
            asyncio.create_task(run(settings, bus=bus, stop=stop_alerts)),
            asyncio.create_task(run_sink(sink_settings(kafka_env, pg_url), bus=bus, stop=stop_sink, engine=engine)),
        ]

        async def events_on_axis(axis: int) -> list[Alert]:
            sent = await latest_alerts(bus, settings.alerts_topic)
            return [a for a in sent.values() if a.axis == axis and a.robot_id == "r1"]

        [fault] = await wait_for(lambda: events_on_axis(2), timeout=120)
        assert (fault.detector, fault.state) == ("load_high", AlertState.OPEN)
        at = readings("r1", FAULT, FAULT_AMPS)[-1].ts
        await publish_acknowledgement(
            bus,
            settings.alerts_topic,
            fault,
            "otto",
            at,
            AckOutcome.PART_REPLACED,
            "new gearbox",
            maintenance_topic=settings.maintenance_topic,
        )

        async def closed():
            found = await events_on_axis(2)
            return found if found and all(a.state is AlertState.CLOSED for a in found) else None

        await wait_for(closed, timeout=60)  # only the restart closes it: the old baseline would hold it open
        for reading in readings("r1", AFTER, FAULT_AMPS) + readings("r1", TAIL, FAULT_AMPS, axis1_amps=15.0):
            await bus.send(settings.readings_topic, reading.robot_id, reading.to_bytes())
        await bus.flush()
        await wait_for(lambda: events_on_axis(1), timeout=120)
        on_axis_2 = await events_on_axis(2)
        logged = await wait_for(rows(engine, maintenance_log), timeout=60)
    finally:
        stop_alerts.set()
        stop_sink.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.stop()
    engine.dispose()

    # the fault-sized level of axis 2 ran two hours more after the restart: the new part's normal, no event
    assert [(a.event_id, a.state, a.acknowledged_by, a.ack_outcome) for a in on_axis_2] == [
        (fault.event_id, AlertState.CLOSED, "otto", AckOutcome.PART_REPLACED)
    ]
    assert not [a for a in on_axis_2 if a.detector == DETECTOR]
    assert [(r["robot_id"], r["axis"], r["action"], r["event_id"], r["note"], r["at"]) for r in logged] == [
        ("r1", 2, "part_replaced", fault.event_id, "new gearbox", at)
    ]


async def test_entries_stored_once_hostile_ones_dead_letters_and_outcomes_counted(
    kafka_env, pg_url, postgres_admin_url, unique
):
    from consumer_db.service import run as run_sink

    # As in production: migrations as the schema's owner, the sink as the services' role (least privilege).
    owner_url, app_url, _ = least_privilege_urls(pg_url, postgres_admin_url, f"m{unique[:6]}")
    settings = sink_settings(kafka_env, app_url, migration_database_url=owner_url)
    engine = make_engine(app_url, log_version=False)
    bus = KafkaBus(settings)
    await bus.start()
    stop = asyncio.Event()
    task = None
    entry = MaintenanceEntry.new("r1", 3, "lubricated", "otto", T0, "grease; ' OR 1=1 --")
    good = json.loads(entry.to_bytes())
    hostile = [
        good | {"entry_id": "h1", "action": "kicked_it"},
        good | {"entry_id": "h2", "axis": 99_999},
        good | {"entry_id": "h3", "note": "x" * 1_000_000},
    ]
    judged = [
        Alert(
            event_id=f"r1:1:{detector}:{n}",
            robot_id="r1",
            axis=1,
            detector=detector,
            severity="ALERT",
            state="closed",
            opened_at=T0,
            closed_at=T0,
        )
        for n, detector in enumerate(["load_high", "load_high", "level_high"])
    ]
    try:
        await bus.ensure_topics([settings.maintenance_topic, settings.alerts_topic])
        await publish_maintenance(bus, settings.maintenance_topic, entry)
        await publish_maintenance(bus, settings.maintenance_topic, entry)  # a producer's retry: delivered twice
        for raw in hostile:
            await bus.publish(settings.maintenance_topic, "r1", json.dumps(raw).encode())
        for alert in judged:
            await bus.publish(settings.alerts_topic, "r1", alert.to_bytes())
        for alert, outcome in zip(judged, ["real_fault", "false_alarm", "inspected_ok"], strict=True):
            await publish_acknowledgement(
                bus, settings.alerts_topic, alert, "otto", T0, AckOutcome(outcome),
                maintenance_topic=settings.maintenance_topic,
            )  # fmt: skip
        task = asyncio.create_task(run_sink(settings, bus=bus, stop=stop, engine=engine))

        async def dead_letters():
            found = [r for r in await rows(engine, rejected_readings)() if r["source"] == settings.maintenance_topic]
            return found if len(found) == len(hostile) else None

        dead = await wait_for(dead_letters, timeout=120)
        logged = await wait_for(rows(engine, maintenance_log), timeout=30)

        def outcomes():
            with engine.connect() as conn:
                return ask(conn, "show outcomes per detector", QueryArgs()).rows

        counted = await wait_for(lambda: asyncio.to_thread(outcomes), timeout=30)
        for change in ("DELETE FROM maintenance_log", "UPDATE maintenance_log SET note = 'rewritten'"):
            with engine.begin() as conn, pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(change))  # the log is appended to, never rewritten
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await bus.stop()
    engine.dispose()

    assert [(r["entry_id"], r["note"]) for r in logged] == [(entry.entry_id, entry.note)]
    reason_of = {next(h for h in ("h1", "h2", "h3") if f'"entry_id": "{h}"' in r["raw"]): r["reason"] for r in dead}
    assert reason_of["h1"].startswith("MaintenanceEntry: action")
    assert reason_of["h2"].startswith("MaintenanceEntry: axis") and reason_of["h3"].startswith("MaintenanceEntry: note")
    assert all(len(r["raw"]) < 3000 for r in dead)  # the million-character note is cut, not stored whole
    assert {r["detector"]: (r["alerts"], r["judged"], r["real"], r["real_share"]) for r in counted} == {
        "level_high": (1, 1, 0, 0.0),
        "load_high": (2, 2, 1, 0.5),
    }


async def test_a_robots_entries_reach_the_instance_holding_its_readings(kafka_env):
    # Four instances over six partitions: round robin would hand readings and entries of one partition number
    # to different instances (6 is not a multiple of 4); range hands them to the same one.
    settings = AlertsSettings(_env_file=None, **{**kafka_env, "topic_partitions": 6})
    topics = [settings.readings_topic, settings.maintenance_topic]
    bus = KafkaBus(settings)
    await bus.start()
    subs = []
    try:
        await bus.ensure_topics(topics)
        for _ in range(4):
            subs.append(await bus.subscribe(topics, group_id=f"co-{kafka_env['readings_topic']}"))

        async def settled():
            await asyncio.gather(*(s.getmany(timeout_ms=200, max_records=1) for s in subs))
            held = [s.consumer.assignment() for s in subs]
            return held if sum(len(h) for h in held) == 12 and all(held) else None

        held = await wait_for(settled, timeout=90)
    finally:
        await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)
        await bus.stop()
    for partitions in held:
        readings_held = {tp.partition for tp in partitions if tp.topic == settings.readings_topic}
        entries_held = {tp.partition for tp in partitions if tp.topic == settings.maintenance_topic}
        assert readings_held == entries_held and readings_held
