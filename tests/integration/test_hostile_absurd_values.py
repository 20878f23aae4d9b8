"""Absurd but well-formed readings, written into the readings topic by Kafka's own console producer, through
the real consumer_db, consumer_alerts and dashboard processes: each is stored, or a dead letter with its
reason, and every robot's later readings go on being stored and judged.

The one that stopped a robot: a current of 1e-200 A passed the policy and was stored, and then the fold of
its minute squared it, which PostgreSQL refuses as an underflow (it raises where a CPU rounds to 0), at every
try: every later reading of that robot was a dead letter "refused by the database". And -0.0 was stored as
0.0 by the sink's INSERT (small batches) where its COPY (large ones) kept -0.0.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DataError

from common.settings import CommonSettings
from common.store.db import make_engine
from common.store.tables import readings, readings_fact, rejected_readings
from common.wire.bus import Message
from common.wire.schemas import RAW_EXCERPT_CHARS, Alert
from consumer_db.axislock import AxisLock
from consumer_db.decode import Topics
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from consumer_db.store import ensure_partitions, insert_readings
from tests.fault_support import TopicReader, apoll
from tests.integration.test_hostile_outside_client import (
    _health,
    console_fed_services,
    produce_all_accounted,
    reading,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=1)
BROKER_MAX_BYTES = 1_048_588  # Kafka's default message.max.bytes, the broker's largest message
ALL_AXES = {str(axis): round(1.0 + axis / 10, 1) for axis in range(1, 15)}


def stamp(i: int) -> datetime:
    return BASE + timedelta(seconds=2 * i)


def at(i: int) -> str:
    return stamp(i).isoformat().replace("+00:00", "Z")


def life(robot: str, first: int, count: int, *, key: str | None = None, fault_from: int | None = None) -> list:
    """A robot's plain readings (axis 1 at 10-10.6 A, at 40 A from ``fault_from`` on), keyed by its id."""
    lines = []
    for i in range(first, first + count):
        amps = 40.0 if fault_from is not None and i >= fault_from else round(10 + (i % 7) * 0.1, 1)
        lines.append((key or robot, reading(robot, at(i), {"1": amps, "2": round(5 + (i % 5) * 0.1, 1)})))
    return lines


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def absurd_lines(tag: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    robots = {n: f"{tag}-{n}" for n in ("tiny", "sub", "negzero", "huge", "early", "ahead", "full", "key", "big")}
    r = robots
    day_ahead = (NOW + timedelta(seconds=86_400 - 600)).isoformat().replace("+00:00", "Z")
    lines = [
        (r["tiny"], reading(r["tiny"], at(0), {"1": 10.0, "2": 1e-200})),  # no instrument measures 1e-200 A
        (r["sub"], reading(r["sub"], at(0), {"1": 10.0, "2": 5e-324})),  # the smallest double there is
        (r["negzero"], reading(r["negzero"], at(0), '{"1": -0.0, "2": 5.0}')),
        (r["huge"], reading(r["huge"], at(0), {"1": 1e308})),
        (r["early"], reading(r["early"], "1990-01-01T00:00:00Z", {"1": 5.0})),  # READING_EARLIEST itself
        (r["ahead"], reading(r["ahead"], day_ahead, {"1": 5.0})),  # just inside READING_MAX_FUTURE_S
        (r["full"], reading(r["full"], at(0), ALL_AXES)),  # every axis 1-14 with a value
        ("someone-else", reading(r["key"], at(0), {"1": 5.0})),  # a key that is not the robot's id
    ]
    # A message as big as the broker takes, a reading with a field of no schema: a dead letter, cut short.
    big = reading(r["big"], at(0), {"1": 5.0}, note=json.dumps("x"))
    lines.append((r["big"], big.replace('"x"', json.dumps("x" * (BROKER_MAX_BYTES - 200 - len(big))))))
    for name in ("tiny", "sub", "negzero", "early", "full"):
        lines += life(r[name], 1, 60, fault_from=54)
    lines += life(r["key"], 1, 10, key="someone-else")
    return lines, robots


async def test_absurd_values_are_stored_or_refused_with_a_reason_and_the_stream_goes_on(
    pg_url, kafka_env, unique, tmp_path
):
    tag = f"a{unique[:6]}"
    inserts_only = {"sink_copy_min_rows": 10**9}  # every batch through the INSERT path, that dropped -0.0's sign
    with console_fed_services(kafka_env, pg_url, unique, tmp_path, **inserts_only) as (port, engine, services):
        lines, robots = absurd_lines(tag)
        produce_all_accounted(kafka_env, lines, engine, services, tmp_path)
        with engine.connect() as conn:
            reasons: dict[str, str] = {}  # a robot's reasons, consumer_db's and consumer_alerts' (its dead letters)
            for robot, reason in conn.execute(select(rejected_readings.c.robot_id, rejected_readings.c.reason)):
                reasons[robot] = f"{reasons.get(robot, '')} | {reason}"
            stored = dict(
                conn.execute(select(readings_fact.c.robot_id, text("count(distinct ts)")).group_by("robot_id")).all()
            )
            negzero = conn.execute(
                select(readings.c.amps[1]).where(readings.c.robot_id == robots["negzero"], readings.c.ts == stamp(0))
            ).scalar_one()
            raw_lengths = conn.execute(text("select max(length(raw)) from rejected_readings")).scalar_one()
        r = robots
        assert "smallest current taken" in reasons[r["tiny"]] and "smallest current taken" in reasons[r["sub"]]
        assert "READING_MAX_ABS_AMPS" in reasons[r["huge"]]
        assert "note" in reasons[r["big"]] and raw_lengths <= RAW_EXCERPT_CHARS + 100
        assert not any("refused by the database" in reason for reason in reasons.values()), reasons
        # The robots' later readings all stored: none is held up by the absurd one before it.
        assert {n: stored.get(r[n]) for n in ("tiny", "sub", "negzero", "early", "full")} == {
            "tiny": 60,
            "sub": 60,
            "negzero": 61,
            "early": 61,
            "full": 61,
        }
        # keyed by another id (Kafka partitions by key): every one a dead letter with the reason, filed by its key
        assert (
            r["key"] not in stored
            and f"message key 'someone-else' is not its robot id '{r['key']}'" in reasons["someone-else"]
        )
        assert stored.get(r["ahead"]) == 1
        assert negzero == 0.0 and math.copysign(1.0, negzero) == -1.0, "-0.0 stored as sent"
        with engine.connect() as conn:
            full = conn.execute(
                select(readings.c.amps).where(readings.c.robot_id == r["full"], readings.c.ts == stamp(0))
            )
            assert full.scalar_one() == list(ALL_AXES.values())
        # Judged: each robot's fault after its absurd reading raises its event.
        async with TopicReader(CommonSettings(_env_file=None, **kafka_env), kafka_env["alerts_topic"]) as reader:

            async def faults_judged():
                events = [Alert.from_bytes(v) for v in await reader.read()]
                wanted = {r[n] for n in ("tiny", "sub", "negzero", "early", "full")}
                return wanted <= {e.robot_id for e in events if e.axis == 1}

            await apoll(faults_judged, "an alert event for each robot's fault", timeout=180, services=services)
        assert _health(port)


@pytest.mark.parametrize("copy_min_rows", [1, 10**9], ids=["copy", "insert"])
def test_both_write_paths_store_a_reading_alike_and_a_tiny_current_stops_nothing(pg_url, copy_min_rows):
    """The sink's two ways to write a batch (COPY when large, INSERT when small) store -0.0 alike, and a
    current below the smallest taken is a dead letter with its reason, the robot's next readings stored."""
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    sink = Sink(engine, AxisLock(engine, list(range(1, 15))), Topics("r", "a", "d"), copy_min_rows=copy_min_rows)
    start = BASE.replace(second=0)
    lines = [
        reading("R1", iso(start), '{"1": -0.0, "2": 5.0, "3": 1e-100}'),
        reading("R1", iso(start + timedelta(seconds=2)), {"1": 1.0, "2": 1e-200}),
        # then a reading every 2 minutes: each folds the minutes before it (fold_delay is below a minute)
        *(reading("R1", iso(start + timedelta(minutes=2 * k)), {"1": 1.0, "2": 5.0}) for k in range(1, 5)),
    ]
    reports = [sink.write([Message("r", 0, i, b"R1", line.encode())]) for i, line in enumerate(lines)]
    try:
        with engine.connect() as conn:
            first = conn.execute(select(readings.c.amps).where(readings.c.ts == start)).scalar_one()
            stored = conn.execute(select(text("count(*)")).select_from(readings)).scalar_one()
            folded = conn.execute(text("select count(distinct minute) from readings_minute")).scalar_one()
            reasons = conn.execute(select(rejected_readings.c.reason)).scalars().all()
        assert [math.copysign(1.0, v) for v in first[:3]] == [-1.0, 1.0, 1.0] and first[2] == 1e-100
        assert [rep.rejected for rep in reports] == [0, 1, 0, 0, 0, 0]
        assert len(reasons) == 1 and "smallest current taken" in reasons[0]
        assert stored == 5 and folded >= 4  # minutes 0, 2, 4, 6 folded by the readings after them
    finally:
        engine.dispose()


def test_migration_0016_moves_out_a_stored_tiny_current_and_the_robot_is_folded_again(pg_url):
    """A reading stored before the policy refused tiny currents held its robot's rollup up at every later
    write; after the migration it is a dead letter and the robot's readings are stored and folded again."""
    engine = make_engine(pg_url, log_version=False)
    start = BASE.replace(second=0)
    try:
        migrate(engine, "0015")
        AxisLock(engine, [1, 2]).for_robots(["R1"])
        with engine.begin() as conn:  # not through the policy: as it was stored before it, by the writer of then
            # (today's keeps open_minute, which 0017 makes): the readings and the robot's progress, nothing folded
            ensure_partitions(conn, {"R1": {start}})
            conn.execute(
                text(
                    "INSERT INTO readings (robot_id, ts, axes, amps) VALUES ('R1', :ts, :axes, CAST(:amps AS float8[]))"
                ),
                [
                    {"ts": start, "axes": 0b110, "amps": "{1.0,1e-200}"},
                    {"ts": start + timedelta(seconds=2), "axes": 0b10, "amps": "{1.0}"},  # the same minute
                ],
            )
            conn.execute(text("INSERT INTO rollup_progress (robot_id, folded_until) VALUES ('R1', :ts)"), {"ts": start})
        with pytest.raises(DataError, match="underflow"), engine.begin() as conn:
            insert_readings(conn, [("R1", 1, start + timedelta(minutes=2), 1.0)])  # folds its minute: refused
        migrate(engine)
        with engine.begin() as conn:
            assert insert_readings(conn, [("R1", 1, start + timedelta(minutes=2), 1.0)]) == 1
        with engine.connect() as conn:
            stored = conn.execute(select(readings.c.ts).order_by(readings.c.ts)).scalars().all()
            folded = conn.execute(text("select minute, n_values from readings_minute where axis_id = 1")).all()
            reasons = conn.execute(select(rejected_readings.c.reason, rejected_readings.c.raw)).all()
        assert stored == [start + timedelta(seconds=2), start + timedelta(minutes=2)]
        assert folded == [(start, 1)]
        assert len(reasons) == 1 and "migration 0016" in reasons[0][0] and "1e-200" in reasons[0][1]
    finally:
        engine.dispose()
