"""Valid Kafka records no JSON test reaches, written into the readings topic by outside clients while
consumer_db, consumer_alerts and the dashboard run as processes: batches compressed with each of Kafka's codecs,
null values (tombstones) and keys, an empty value, a huge key, record headers (Kafka's own console producer),
and a transaction its producer aborts (aiokafka's transactional producer, as an outside client: the console
producer has no transactions). Every service still runs; every message is stored or a dead letter with its
reason; an aborted transaction's readings are neither stored nor judged.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, text

from common.settings import CommonSettings
from common.store.tables import readings_fact, rejected_readings
from common.wire.schemas import Alert
from tests.fault_support import TopicReader, apoll, poll
from tests.integration.test_hostile_outside_client import (
    BASE,
    _health,
    console_fed_services,
    console_producer,
    normal,
    produce_all_accounted,
    reading,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
CODECS = ("gzip", "snappy", "lz4", "zstd")  # every codec Kafka has


async def _events_for(kafka_env: dict, robots: set[str], services) -> list[Alert]:
    """The alerts topic once every robot in ``robots`` has an event on axis 1."""
    async with TopicReader(CommonSettings(_env_file=None, **kafka_env), kafka_env["alerts_topic"]) as reader:
        events: list[Alert] = []

        async def judged() -> bool:
            events[:] = [Alert.from_bytes(v) for v in await reader.read()]
            return robots <= {e.robot_id for e in events if e.axis == 1}

        await apoll(judged, f"an alert event for each of {sorted(robots)}", timeout=180, services=services)
        return events


async def test_batches_in_every_compression_codec_are_read(pg_url, kafka_env, unique, tmp_path):
    """Before: aiokafka decodes snappy, lz4 and zstd with cramjam, which was not installed. consumer_db,
    consumer_alerts and the dashboard each stopped on the first such batch (UnsupportedCodecError), and again
    on it at every restart: the topic was stuck for good."""
    tag = f"c{unique[:6]}"
    robots = {codec: f"{tag}-{codec}" for codec in CODECS}
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        for codec, robot in robots.items():
            lines = normal(robot, 0, 60, fault_from=54)
            produce_all_accounted(kafka_env, lines, engine, services, tmp_path, "--compression-codec", codec)
        with engine.connect() as conn:
            stored = dict(
                conn.execute(select(readings_fact.c.robot_id, text("count(distinct ts)")).group_by("robot_id")).all()
            )
            rejected = conn.execute(select(rejected_readings.c.reason)).scalars().all()
        assert {codec: stored.get(robot) for codec, robot in robots.items()} == dict.fromkeys(CODECS, 60)
        assert rejected == []
        await _events_for(kafka_env, set(robots.values()), services)
        # 20 MB of reading in a batch of a few KB (the broker's limit is on the batch as compressed): a dead letter
        # with an excerpt, and the robot's next readings stored.
        big = f"{tag}-big"
        padded = reading(big, BASE.isoformat(), {"1": 5.0}, note=json.dumps("x" * 20_000_000))
        roomy = ("--producer-property", "max.request.size=25000000", "--producer-property", "buffer.memory=67108864")
        lines = [(big, padded), *normal(big, 1, 5)]
        produce_all_accounted(kafka_env, lines, engine, services, tmp_path, "--compression-codec", "zstd", *roomy)
        with engine.connect() as conn:
            reasons = conn.execute(select(rejected_readings.c.reason).where(rejected_readings.c.robot_id == big))
            assert reasons.scalars().all() == ["Reading: note: Extra inputs are not permitted"]
        assert _health(port)


async def test_tombstones_null_and_empty_values_huge_keys_and_headers_stop_nothing(pg_url, kafka_env, unique, tmp_path):
    """Each such record is a dead letter with its reason (a reading with headers is stored: they carry nothing
    of it), and the robots' later readings are stored and judged."""
    tag = f"t{unique[:6]}"
    r = {n: f"{tag}-{n}" for n in ("tomb", "nullkey", "empty", "hugekey", "headers")}
    huge_key = "k" * 100_000
    null = ("--property", "null.marker=<null>")
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        odd = [
            (r["tomb"], "<null>"),  # a tombstone: the robot's key, no value
            ("<null>", reading(r["nullkey"], BASE.isoformat(), {"1": 5.0})),  # no key
            (r["empty"], ""),  # a value of no bytes
            (huge_key, reading(r["hugekey"], BASE.isoformat(), {"1": 5.0})),  # a 100 KB key
        ]
        console_producer(
            kafka_env["kafka_bootstrap_servers"], kafka_env["readings_topic"], odd, tmp_path / "o.log", *null
        )
        # With parse.headers, each line starts with its headers and a tab: written here before the key.
        headed = [(f"trace:{uuid.uuid4()},source:plc-7\t{key}", value) for key, value in normal(r["headers"], 0, 3)]
        produce_all_accounted(kafka_env, headed, engine, services, tmp_path, "--property", "parse.headers=true")

        def reasons() -> dict[str, str]:
            with engine.connect() as conn:
                rows = conn.execute(select(rejected_readings.c.robot_id, rejected_readings.c.reason)).all()
            return {robot: reason for robot, reason in rows}

        poll(lambda: len(reasons()) >= len(odd), "a dead letter for each odd record", timeout=180, services=services)
        got = reasons()
        assert got[r["tomb"]] == got[r["empty"]] == "Reading: the message has no value (empty, or a Kafka tombstone)"
        assert "message key none is not its robot id" in got[None], got
        assert "is not its robot id" in got[huge_key[:64]], got
        # The same robots live on, each ending in a fault.
        later = [
            line for name in ("tomb", "nullkey", "empty", "hugekey") for line in normal(r[name], 1, 60, fault_from=54)
        ]
        produce_all_accounted(kafka_env, later, engine, services, tmp_path)
        await _events_for(kafka_env, {r[n] for n in ("tomb", "nullkey", "empty", "hugekey")}, services)
        assert _health(port)


async def test_an_aborted_transactions_readings_are_neither_stored_nor_judged(pg_url, kafka_env, unique, tmp_path):
    """Before: the consumers read uncommitted records, so a fault sent in a transaction its producer then
    aborted was stored and raised an event."""
    robot = f"x{unique[:6]}-tx"
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_env["kafka_bootstrap_servers"], transactional_id=f"outside-{unique}"
        )
        await producer.start()
        try:

            async def in_transaction(lines: list[tuple[str, str]], *, commit: bool) -> None:
                await producer.begin_transaction()
                for key, value in lines:  # each one in the topic's log before the transaction ends
                    await producer.send_and_wait(kafka_env["readings_topic"], value.encode(), key=key.encode())
                await (producer.commit_transaction() if commit else producer.abort_transaction())

            await in_transaction(normal(robot, 0, 60, fault_from=40), commit=False)  # a fault, then aborted
            await in_transaction(normal(robot, 60, 60, fault_from=110), commit=True)  # a later one, committed
        finally:
            await producer.stop()
        events = await _events_for(kafka_env, {robot}, services)

        def stored() -> set[datetime]:
            with engine.connect() as conn:
                return set(conn.execute(select(readings_fact.c.ts).where(readings_fact.c.robot_id == robot)).scalars())

        committed = {BASE + timedelta(seconds=2 * i) for i in range(60, 120)}
        # The aborted records sit before the committed ones in the robot's partition: read before them.
        poll(lambda: max(committed) in stored(), "the last committed reading stored", timeout=180, services=services)
        assert stored() == committed
        opened = {e.opened_at for e in events if e.robot_id == robot}
        assert min(opened) >= min(committed), f"an event of the aborted fault: {sorted(opened)}"
        assert _health(port)
