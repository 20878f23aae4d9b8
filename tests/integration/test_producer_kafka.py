"""The producer on the real broker: N rows arrive as N messages in order per key, bad rows on the dead
letters with their line numbers, the real export end to end at max speed, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common.wire.kafka import KafkaBus
from common.wire.schemas import DeadLetter, Reading
from producer.pacing import ManualClock
from producer.service import run
from producer.settings import ProducerSettings
from tests.broker_watch import BrokerWatch

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def producer_settings(kafka_env, **kw) -> ProducerSettings:
    return ProducerSettings(_env_file=None, **kafka_env, axes_from_db=False, max_speed=True, **kw)


async def consume(bus: KafkaBus, topic: str, count: int, *, timeout_s: float = 60) -> list:
    """The first ``count`` messages of ``topic`` (a fresh group, from the beginning), polling with a deadline."""
    sub = await bus.subscribe([topic], group_id=f"check-{uuid.uuid4().hex}")
    got = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < count:
                got += await sub.getmany(timeout_ms=500, max_records=10_000)
    finally:
        await sub.close()
    return got


async def produce(config: ProducerSettings, **kw):
    bus = KafkaBus(config)
    await bus.start()
    try:
        report = await run(config, bus=bus, stop=asyncio.Event(), **kw)
    finally:
        await bus.stop()
    return report


async def test_a_file_of_n_rows_arrives_as_n_messages_in_order_and_bad_rows_as_dead_letters(kafka_env, tmp_path):
    rows = [f'"current",{i},{i % 7},,"2022-10-17T12:{i // 30:02d}:{2 * (i % 30):02d}Z"' for i in range(500)]
    rows[10] = '"current",1,2,3,"not a time"'
    rows[300] = '"current",1,2'
    path = tmp_path / "export.csv"
    path.write_text('"Trait","Axis #1","Axis #2","Axis #3","Time"\n' + "\n".join(rows) + "\n")
    config = producer_settings(kafka_env, csv_path=path, axes="1-3", robot_id="robot-7")
    report = await produce(config)
    assert (report.readings_confirmed, report.dead_letters_confirmed, report.unconfirmed) == (498, 2, 0)
    bus = KafkaBus(config)
    await bus.start()
    try:
        readings = [Reading.from_bytes(m.value) for m in await consume(bus, config.readings_topic, 498)]
        letters = [DeadLetter.from_bytes(m.value) for m in await consume(bus, config.dead_letter_topic, 2)]
    finally:
        await bus.stop()
    assert [r.row for r in readings] == [line for line in range(2, 502) if line not in (12, 302)]
    assert all(r.robot_id == "robot-7" and r.currents[3] is None for r in readings)
    assert sorted((d.source, d.line) for d in letters) == [("export.csv", 12), ("export.csv", 302)]


async def test_a_synthetic_fleet_keeps_order_per_robot(kafka_env):
    config = producer_settings(kafka_env, robots=4, seed=3, limit=4 * 250, start_time="2024-01-01T00:00:00Z")
    report = await produce(config)
    assert report.readings_confirmed == 1000
    bus = KafkaBus(config)
    await bus.start()
    try:
        messages = await consume(bus, config.readings_topic, 1000)
    finally:
        await bus.stop()
    by_robot: dict[str, list] = {}
    for m in messages:
        reading = Reading.from_bytes(m.value)
        assert m.key == reading.robot_id.encode()
        by_robot.setdefault(reading.robot_id, []).append(reading.ts)
    assert sorted(by_robot) == ["robot-001", "robot-002", "robot-003", "robot-004"]
    assert all(len(stamps) == 250 and stamps == sorted(stamps) for stamps in by_robot.values())


async def test_a_spread_fleet_reaches_the_broker_in_slices_over_the_tick(kafka_env):
    # 20 robots, a 1-s tick: robot i reads i/20 s after robot 1 and goes out with its 0.1-s slice
    config = producer_settings(
        kafka_env, robots=20, tick_seconds=1.0, spread_robots=True, limit=20 * 3, start_time="2024-01-01T00:00:00Z"
    )
    report = await produce(config.model_copy(update={"max_speed": False}))
    assert report.readings_confirmed == 60
    bus = KafkaBus(config)
    await bus.start()
    messages = await consume(bus, config.readings_topic, 60)
    first = min(messages, key=lambda m: m.timestamp_ms)
    start_ts = Reading.from_bytes(first.value).ts
    created_s, slices = [], set()
    for m in messages:
        due_s = (Reading.from_bytes(m.value).ts - start_ts).total_seconds() // 0.1 * 0.1
        created_s.append((m.timestamp_ms - first.timestamp_ms) / 1000)
        assert created_s[-1] >= due_s - 0.02, "no row goes out before its slice"
        slices.add(round(due_s, 1))
    assert len(slices) >= 20, "a tick in ten slices, not in one burst"
    assert max(created_s) >= 2.5, "three ticks of 1 s, paced"


async def test_the_real_export_replays_end_to_end_at_max_speed(kafka_env, real_export):
    config = producer_settings(kafka_env, csv_path=real_export)
    report = await produce(config)
    assert (report.readings_confirmed, report.rejected, report.unconfirmed) == (39_672, 0, 0)
    bus = KafkaBus(config)
    await bus.start()
    try:
        messages = await consume(bus, config.readings_topic, 39_672, timeout_s=120)
    finally:
        await bus.stop()
    rows = [Reading.from_bytes(m.value).row for m in messages]
    assert rows == list(range(2, 39_674)), "one key, so one partition, in file order"


def test_sigterm_flushes_and_exits_zero(kafka_env, tmp_path):
    env = {**os.environ, **{k.upper(): str(v) for k, v in kafka_env.items()}, "AXES_FROM_DB": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer", "--synthetic", "--robots", "3", "--tick-seconds", "0.01"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # wait until it is producing, then stop it
            if "producing synthetic fleet" in line:
                break
        config = producer_settings(kafka_env)
        asyncio.run(_wait_for_messages(config, 30))
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "stopped on request" in rest and "NOT SENT" not in rest
    confirmed = int(rest.split(" readings confirmed")[0].rsplit(" ", 1)[1])
    count = asyncio.run(_count(config, confirmed))
    assert count >= confirmed >= 30


async def _wait_for_messages(config, n):
    bus = KafkaBus(config)
    await bus.start()
    try:
        await consume(bus, config.readings_topic, n)
    finally:
        await bus.stop()


async def _count(config, at_least):
    bus = KafkaBus(config)
    await bus.start()
    try:
        return len(await consume(bus, config.readings_topic, at_least))
    finally:
        await bus.stop()


async def test_a_tick_is_on_the_broker_before_the_next_one_is_made(kafka_env):
    """The paced producer makes the next tick's rows while it waits for it (producer/ahead.py); the tick
    before must already be on the broker by then, not held back by that work."""
    settings = ProducerSettings(_env_file=None, **kafka_env, axes_from_db=False, tick_seconds=2.0)
    first = Reading(robot_id="r1", ts=T0, row=1, currents={1: 1.0})
    watch = BrokerWatch(
        settings.kafka_bootstrap_servers,
        settings.readings_topic,
        lambda value: Reading.from_bytes(value).row == first.row,
    )
    seen_while_making: list[bool] = []

    def feed():
        yield first
        yield first.model_copy(update={"ts": T0 + timedelta(seconds=2), "row": 2})
        # made during the wait for row 2; blocks the event loop, as making rows does
        seen_while_making.append(watch.wait())
        yield first.model_copy(update={"ts": T0 + timedelta(seconds=4), "row": 3})

    bus = KafkaBus(settings)
    await bus.start()
    try:
        await bus.ensure_topics([settings.readings_topic])
        # a fresh topic's partitions get their leader a moment late: the test's send must not be a retry
        await bus.publish(settings.readings_topic, "r1", first.model_copy(update={"row": 0}).to_bytes())
        with watch:
            report = await run(settings, bus=bus, stop=asyncio.Event(), source=feed(), clock=ManualClock())
    finally:
        await bus.stop()
    assert report.readings_confirmed == 3
    assert seen_while_making == [True]
