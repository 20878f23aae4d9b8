"""A robot's clock that jumps ahead and is corrected, and readings keyed by another id, written into the readings
topic by Kafka's own console producer, through the real consumer_db, consumer_alerts and dashboard processes.

The policy lets a reading through up to ``READING_MAX_FUTURE_S`` (a day) ahead. After one (or ten) from ahead,
the robot's later, correct readings were "older than its newest": consumer_alerts judged none (a fault went
unseen), its health pipeline cut no cycle, and the dashboard's latest values stayed the ones from ahead, until
the clock caught up a day later. Each now follows the clock back once it is more than a stoppage behind
(``common.wire.clock``), with a warning; one valid reading stamped days back, on a robot that never stopped,
changes none of its events (it closed them all), nor do late readings stamped inside a past outage sent between
live ones (each closed them). And a reading keyed by another id (Kafka partitions by key: two
instances of consumer_alerts could each judge part of a robot) is a dead letter with its reason.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from common.settings import CommonSettings
from common.store.tables import readings_fact, rejected_readings
from common.wire.schemas import Alert, HealthEvent
from tests.fault_support import TopicReader, apoll, poll
from tests.integration.test_hostile_outside_client import (
    _accounted,
    console_fed_services,
    produce_all_accounted,
    reading,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=1)
AHEAD = NOW + timedelta(hours=23)  # inside READING_MAX_FUTURE_S (a day)
IDLE_FROM = 12  # of every 15 readings, the last 3 are idle: a work cycle each, for the health pipeline


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def life(robot: str, first: int, count: int, *, start: datetime = BASE, fault_from: int = 10**9) -> list:
    """A robot's readings every 2 s from ``start``: work cycles (axis 1 at 10-10.6 A, 40 A from ``fault_from`` on)
    with 3 idle readings between them, keyed by its id."""
    lines = []
    for i in range(first, first + count):
        idle = i % 15 >= IDLE_FROM
        amps = 0.0 if idle else 40.0 if i >= fault_from else round(10 + (i % 7) * 0.1, 1)
        currents = {"1": amps, "2": 0.0 if idle else round(5 + (i % 5) * 0.1, 1)}
        lines.append((robot, reading(robot, iso(start + timedelta(seconds=2 * i)), currents)))
    return lines


async def changes_of_each_robot(alerts: TopicReader):
    """The alerts topic read to its end (three reads in a row bring nothing), then a robot's changes, each
    without the ids that differ between two robots: what a twin's must equal, change for change."""
    unchanged = 0
    while unchanged < 3:
        known = len(alerts.values)
        unchanged = unchanged + 1 if len(await alerts.read()) == known else 0

    def changes(robot: str) -> list[dict]:
        events = (e for e in map(Alert.from_bytes, alerts.values) if e.robot_id == robot)
        return [e.model_dump(exclude={"event_id", "robot_id"}) for e in events]

    return changes


def leap_lines(tag: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    robots = {n: f"{tag}-{n}" for n in ("lone", "ten", "plain", "stray", "twin", "key", "gap", "gaptwin")}
    lines = []
    for name, leap in (("lone", 1), ("ten", 10), ("plain", 0)):
        robot = robots[name]
        lines += life(robot, 0, 30) + life(robot, 0, leap, start=AHEAD) + life(robot, 30, 120, fault_from=130)
    # a robot that never stops, its fault's events open, then one valid reading stamped three days back; its twin
    # has the same life without that reading
    stray = robots["stray"]
    lines += life(stray, 0, 100, fault_from=80) + life(stray, 0, 1, start=BASE - timedelta(days=3))
    lines += life(stray, 100, 50, fault_from=80) + life(robots["twin"], 0, 150, fault_from=80)
    # a robot back from a 2-hour outage, its fault's events open, then 20 late readings stamped inside the outage
    # sent between its live ones (a gateway's buffer); its twin has the same life without them
    for name in ("gap", "gaptwin"):
        lines += life(robots[name], 0, 60, start=BASE - timedelta(hours=2)) + life(robots[name], 60, 45, fault_from=100)
    late = life(robots["gap"], 0, 20, start=BASE - timedelta(hours=1))
    live = life(robots["gap"], 105, 20, fault_from=100)
    lines += [line for pair in zip(late, live, strict=True) for line in pair]
    lines += life(robots["gap"], 125, 25, fault_from=100) + life(robots["gaptwin"], 105, 45, fault_from=100)
    # a robot whose messages are keyed by another id: each a dead letter, whatever else it holds
    lines += [(f"{tag}-other", value) for _, value in life(robots["key"], 0, 10)]
    return lines, robots


async def test_a_clock_that_leaps_ahead_and_comes_back_is_followed_by_every_service(
    pg_url, kafka_env, unique, tmp_path
):
    tag = f"c{unique[:6]}"
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        lines, robots = leap_lines(tag)
        produce_all_accounted(kafka_env, lines, engine, services, tmp_path)
        with engine.connect() as conn:
            stored = dict(
                conn.execute(select(readings_fact.c.robot_id, text("count(distinct ts)")).group_by("robot_id")).all()
            )
            reasons = conn.execute(
                select(rejected_readings.c.reason).where(rejected_readings.c.robot_id == f"{tag}-other")  # its key
            ).scalars()
            reasons = list(reasons)
        # consumer_db stores what passes the policy: the readings from ahead too
        names = ("lone", "ten", "plain", "stray", "twin", "key", "gap", "gaptwin")
        assert [stored.get(robots[n]) for n in names] == [151, 160, 150, 151, 150, None, 170, 150]
        assert len(reasons) == 10
        assert all(f"message key '{tag}-other' is not its robot id '{robots['key']}'" in r for r in reasons)
        settings_for_readers = CommonSettings(_env_file=None, **kafka_env)
        corrected_from = BASE + timedelta(seconds=2 * 30)
        stray, twin = robots["stray"], robots["twin"]
        last_cycle = BASE + timedelta(seconds=2 * 135)  # the readings 135-149: the last whole cycle
        async with (
            TopicReader(settings_for_readers, kafka_env["alerts_topic"]) as alerts,
            TopicReader(settings_for_readers, kafka_env["health_topic"]) as health,
        ):

            async def faults_judged():
                events = [Alert.from_bytes(v) for v in await alerts.read()]
                wanted = {robots[n] for n in ("lone", "ten", "plain", "stray")}
                return wanted <= {e.robot_id for e in events if e.axis == 1 and e.opened_at >= BASE}

            await apoll(faults_judged, "an alert event for each robot's fault", timeout=180, services=services)

            async def cycles_after_the_leap():
                events = [HealthEvent.from_bytes(v) for v in await health.read()]
                after = {
                    e.robot_id
                    for e in events
                    if e.kind == "cycle" and corrected_from <= e.start < NOW and not e.cold and not e.cut
                }
                # a last cycle of the stray's robot and its twin: their events (sent before health) are on the topic
                judged = {e.robot_id for e in events if e.start >= last_cycle}
                last = {stray, twin, robots["gap"], robots["gaptwin"]}
                return {robots[n] for n in ("lone", "ten", "plain")} <= after and last <= judged

            await apoll(
                cycles_after_the_leap, "health cycles after the clock came back", timeout=120, services=services
            )
            changes = await changes_of_each_robot(alerts)
            # the stray reading changed nothing: the robot's events are its twin's, change for change
            assert changes(stray) and changes(stray) == changes(twin)
            # nor did the late readings inside the outage: before, each took the clock back and closed the events
            assert changes(robots["gap"]) and changes(robots["gap"]) == changes(robots["gaptwin"])
        alerts_log = (tmp_path / "a.log").read_text()
        for name in ("lone", "ten"):
            assert f"robot '{robots[name]}': its readings from" in alerts_log
        assert all(f"robot '{robots[n]}': its readings from" not in alerts_log for n in ("plain", "stray", "gap"))
        assert f"robot '{robots['stray']}': a reading at" in alerts_log  # skipped, with a warning
        assert f"message key '{tag}-other' is not its robot id" in alerts_log  # skipped, with the reason
        # the dashboard's newest reading is of now, not of the clocks that ran ahead
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            newest = datetime.fromisoformat(json.loads(response.read())["newest_reading"])
        assert newest < NOW + timedelta(minutes=5)
        dashboard_log = (tmp_path / "dashboard.log").read_text()
        assert all(f"robot '{robots[n]}': its clock went back from" in dashboard_log for n in ("lone", "ten"))
        assert f"robot '{robots['gap']}': its clock went back from" not in dashboard_log


def absurd_clock_lines(tag: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """A clock set three days back after a stoppage, and staying there; times at 1970, 2200 and 9999; robot ids of
    10,000 characters and with control characters; a reading of no axis, of axis 0, of a ten-digit axis and of
    5,000 axes; a robot's readings sent twice with other values."""
    robots = {n: f"{tag}-{n}" for n in ("back", "times", "axes", "none", "twice")}
    r = robots
    back = BASE - timedelta(days=3)
    lines = life(r["back"], 0, 30) + life(r["back"], 0, 30, start=BASE + timedelta(minutes=30))
    lines += life(r["back"], 0, 460, start=back, fault_from=380)  # judged again: its offsets are new
    lines += [
        (r["times"], reading(r["times"], "1970-01-01T00:00:00Z", {"1": 5.0})),
        (r["times"], reading(r["times"], "2200-01-01T00:00:00Z", {"1": 5.0})),
        (r["times"], reading(r["times"], "9999-12-31T23:59:59.999999Z", {"1": 5.0})),
        ("R" * 10_000, reading("R" * 10_000, iso(BASE), {"1": 5.0})),
        (f"{tag}\x01\x07bell", reading(f"{tag}\x01\x07bell", iso(BASE), {"1": 5.0})),
        (r["none"], reading(r["none"], iso(BASE - timedelta(seconds=2)), {})),
        (r["axes"], reading(r["axes"], iso(BASE - timedelta(seconds=8)), {"0": 5.0, "1": 5.0})),
        (r["axes"], reading(r["axes"], iso(BASE - timedelta(seconds=6)), {"1": 5.0, "9999999999": 5.0})),
        (r["axes"], reading(r["axes"], iso(BASE - timedelta(seconds=4)), {str(a): 1.0 for a in range(1, 5001)})),
    ]
    for name in ("times", "axes", "none"):
        lines += life(r[name], 0, 150, fault_from=130)
    # each reading sent twice, the second with other values (a controller's retry with a new sample)
    for key, value in life(r["twice"], 0, 150, fault_from=130):
        lines += [(key, value), (key, value.replace('"2": ', '"2": 1'))]
    return lines, robots


async def test_absurd_clocks_ids_and_axes_stop_nothing_and_lose_nothing(pg_url, kafka_env, unique, tmp_path):
    tag = f"b{unique[:6]}"
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        lines, robots = absurd_clock_lines(tag)
        produce_all_accounted(kafka_env, lines, engine, services, tmp_path)
        r = robots
        with engine.connect() as conn:
            stored = dict(
                conn.execute(select(readings_fact.c.robot_id, text("count(distinct ts)")).group_by("robot_id")).all()
            )
            reasons = [row.reason for row in conn.execute(select(rejected_readings.c.reason))]
        # every reading of the robot whose clock went back is stored, before and after
        assert stored.get(r["back"]) == 60 + 460
        assert stored.get(r["times"]) == 150 and stored.get(r["axes"]) == 150 and stored.get(r["none"]) >= 150
        assert any("1970-01-01T00:00:00.000Z is before READING_EARLIEST" in reason for reason in reasons)
        assert any("9999-12-31T23:59:59.999Z is" in reason and "ahead" in reason for reason in reasons)
        assert any("2200-01-01T00:00:00.000Z is" in reason and "ahead" in reason for reason in reasons)
        assert any("robot_id: String should have at most 64 characters" in reason for reason in reasons)
        assert any("\\x01\\x07bell' does not match ROBOT_ID_PATTERN" in reason for reason in reasons)
        for axis in ("0", "9999999999", "63"):
            assert any(f"axis '{axis}' is not an axis number from 1 to 62" in reason for reason in reasons), axis
        settings_for_readers = CommonSettings(_env_file=None, **kafka_env)
        async with TopicReader(settings_for_readers, kafka_env["alerts_topic"]) as alerts:
            set_back_fault = BASE - timedelta(days=3) + timedelta(seconds=2 * 380)

            async def faults_judged():
                events = [Alert.from_bytes(v) for v in await alerts.read()]
                judged = {e.robot_id for e in events if e.axis == 1 and e.opened_at >= BASE}
                judged |= {e.robot_id for e in events if e.axis == 1 and set_back_fault <= e.opened_at < BASE}
                return {r[n] for n in ("back", "times", "axes", "none", "twice")} <= judged

            await apoll(faults_judged, "an alert event for each robot's fault", timeout=180, services=services)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200
        alerts_log = (tmp_path / "a.log").read_text()
        assert alerts_log.count(f"robot '{r['back']}': its clock went back from ") == 1  # announced once


async def produce_with_record_times(bootstrap: str, topic: str, lines: list[tuple[str, str, datetime]]) -> None:
    """(key, value, its record's time) written by a plain Kafka client, which sets each record's CreateTime as a
    gateway does: the console producer stamps every record with the time it sends it."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value.encode(), key=key.encode(), timestamp_ms=int(at.timestamp() * 1000))
            for key, value, at in lines
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def reading_time(value: str) -> datetime:
    return datetime.fromisoformat(json.loads(value)["ts"])


async def test_a_burst_of_late_readings_after_an_outage_closes_nothing_when_record_times_say_so(
    pg_url, kafka_env, unique, tmp_path
):
    """A robot back from a 2-hour outage, its fault's events open, then its gateway's buffer: 20 readings stamped
    inside the outage, all at once, no live reading between them, their records stamped when they were sent. By
    reading time alone that is the clock coming back from ahead (its events closed, judged on from before the
    outage: the consumer_alerts warning "its readings from ... came from ahead"); over the outage the records' times
    leapt with the readings', so they are late readings: its events are its twin's, which has no buffer."""
    tag = f"f{unique[:6]}"
    robots = {n: f"{tag}-{n}" for n in ("flush", "twin")}
    latency = timedelta(seconds=0.3)
    lines = []
    for robot in robots.values():
        before = life(robot, 0, 60, start=BASE - timedelta(hours=2)) + life(robot, 60, 45, fault_from=100)
        lines += [(key, value, reading_time(value) + latency) for key, value in before]
    buffer = life(robots["flush"], 0, 20, start=BASE - timedelta(hours=1))
    sent_at = reading_time(lines[104][1]) + latency  # sent as the robot's live reading just before
    lines += [(key, value, sent_at) for key, value in buffer]
    for robot in robots.values():
        after = life(robot, 105, 45, fault_from=100)
        lines += [(key, value, reading_time(value) + latency) for key, value in after]
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        await produce_with_record_times(kafka_env["kafka_bootstrap_servers"], kafka_env["readings_topic"], lines)
        poll(
            lambda: all(_accounted(engine, value) for _, value, _ in lines),
            "every message stored",
            timeout=180,
            services=services,
        )
        settings_for_readers = CommonSettings(_env_file=None, **kafka_env)
        last_cycle = BASE + timedelta(seconds=2 * 135)  # the readings 135-149: the last whole cycle
        async with (
            TopicReader(settings_for_readers, kafka_env["alerts_topic"]) as alerts,
            TopicReader(settings_for_readers, kafka_env["health_topic"]) as health,
        ):

            async def all_judged():
                await alerts.read()
                events = [HealthEvent.from_bytes(v) for v in await health.read()]
                return set(robots.values()) <= {e.robot_id for e in events if e.start >= last_cycle}

            await apoll(all_judged, "a last health cycle for each robot", timeout=180, services=services)
            changes = await changes_of_each_robot(alerts)
            fault = [c for c in changes(robots["twin"]) if c["axis"] == 1 and c["opened_at"] >= BASE]
            assert fault and changes(robots["flush"]) == changes(robots["twin"])
        alerts_log = (tmp_path / "a.log").read_text()
        assert f"robot '{robots['flush']}': its readings from" not in alerts_log
        assert (
            f"robot '{robots['flush']}': a reading at" in alerts_log and "a late reading, stamped inside" in alerts_log
        )
        dashboard_log = (tmp_path / "dashboard.log").read_text()
        assert f"robot '{robots['flush']}': its clock went back from" not in dashboard_log
