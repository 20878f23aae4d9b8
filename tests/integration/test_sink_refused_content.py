"""Messages the wire schemas accept and PostgreSQL refuses: each a dead letter with the database's reason,
every other message stored once, the offsets committed, the stream going on.

The sink took any refusal it had not foreseen (one not a DataError or IntegrityError) for the database being
unavailable and retried the same batch for ever, storing nothing more from any topic. Here the database
refuses two valid messages, on indexes and constraints an operator may well add to the test's own database:
a maintenance note too big for an index on the notes (SQLSTATE 54000, "index row size exceeds": the
refusal the sink did not foresee), and one reading a CHECK constraint rules out (23514).
"""

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text

from common.store.db import make_engine
from common.store.tables import (
    alerts,
    maintenance_log,
    readings_fact,
    readings_minute,
    rejected_readings,
    rollup_progress,
)
from common.wire.bus import InProcessBus
from common.wire.schemas import Alert, MaintenanceAction, MaintenanceEntry, Reading
from consumer_db.migrate import migrate
from consumer_db.service import run
from consumer_db.settings import ConsumerDbSettings

pytestmark = pytest.mark.integration
# A ceiling against a hang only (the sink retried the batch for ever): how soon it is done is no test's business.
HANG_S = 120
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
READINGS = 1200
REFUSED_READING = 777  # its time is ruled out by the test's CHECK constraint


def reading(i: int) -> Reading:
    return Reading(robot_id="robot-001", ts=T0 + timedelta(seconds=2 * i), row=i, currents={1: float(i % 500), 2: 1.5})


def entry(i: int, note: str | None = None) -> MaintenanceEntry:
    return MaintenanceEntry(
        entry_id=f"log:{i}",
        robot_id="robot-001",
        axis=1,
        at=T0 + timedelta(minutes=i),
        action=MaintenanceAction.INSPECTED_OK,
        note=note if note is not None else f"looked at it, {i}",
        user_name="operator",
    )


def alert(i: int) -> Alert:
    return Alert(
        event_id=f"ev-{i}", robot_id="robot-001", axis=2, detector="zscore", severity="ALERT", state="open",
        opened_at=T0 + timedelta(minutes=i),
    )  # fmt: skip


def refusals_counted() -> float:
    labels = {"reason": "refused_by_database"}
    return REGISTRY.get_sample_value("axiswatch_consumer_db_dead_letters_total", labels) or 0.0


async def until(condition, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(condition):
            await asyncio.sleep(0.05)


async def test_content_the_database_refuses_becomes_dead_letters_and_the_stream_goes_on(pg_url, caplog):
    # 2,000 characters (the schema's most) of 3 bytes each, random so that PostgreSQL cannot compress them
    # below the 2,704 bytes a B-tree index row may hold
    rng = random.Random(23)
    big_note = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(2000))
    assert MaintenanceEntry.from_bytes(entry(2, big_note).to_bytes()).note == big_note  # valid on the wire
    settings = ConsumerDbSettings(
        _env_file=None, database_url=pg_url, bus="memory", axes="1-2", sink_batch_size=500, sink_batch_ms=50
    )
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX test_notes ON maintenance_log (note)"))
        conn.execute(
            text("ALTER TABLE readings ADD CONSTRAINT test_not_this_time CHECK (ts <> :ts)").bindparams(
                ts=reading(REFUSED_READING).ts
            )
        )
    bus, stop = InProcessBus(partitions=1), asyncio.Event()
    topics = [settings.readings_topic, settings.maintenance_topic, settings.alerts_topic]

    async def publish(numbers: range) -> None:
        for i in numbers:
            await bus.publish(settings.readings_topic, "robot-001", reading(i).to_bytes())
            if i % 100 == 0:  # the refused entry (2) and others in the same batches as readings
                j = i // 100
                note = big_note if j == 2 else None
                await bus.publish(settings.maintenance_topic, "robot-001", entry(j, note).to_bytes())
                await bus.publish(settings.alerts_topic, "robot-001", alert(j).to_bytes())

    def all_committed() -> bool:
        return bus.uncommitted(settings.sink_group_id, topics) == 0

    await publish(range(0, READINGS // 2))
    counted_before = refusals_counted()
    sink = asyncio.create_task(run(settings, bus=bus, stop=stop))
    try:
        with caplog.at_level(logging.INFO, logger="consumer_db"):
            await until(all_committed, HANG_S)  # on the stalled sink: a TimeoutError here
            await publish(range(READINGS // 2, READINGS))  # the stream goes on
            await until(all_committed, HANG_S)
            assert not sink.done()
    finally:
        stop.set()
        await asyncio.wait_for(sink, 30)

    kept = [i for i in range(READINGS) if i != REFUSED_READING]
    with engine.connect() as conn:
        rows = conn.execute(select(readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps)).all()
        folded = conn.execute(select(func.sum(readings_minute.c.n_rows))).scalar_one()
        folded_until = conn.execute(select(rollup_progress.c.folded_until)).scalar_one()
        entries = conn.execute(select(maintenance_log.c.entry_id)).scalars().all()
        events = conn.execute(select(alerts.c.event_id)).scalars().all()
        letters = dict(conn.execute(select(rejected_readings.c.origin, rejected_readings.c.reason)).all())
    engine.dispose()
    expected = [(reading(i).ts, axis, reading(i).currents[axis]) for i in kept for axis in (1, 2)]
    assert sorted(rows) == sorted(expected)  # every other reading, each once
    # each folded into the rollup once, not again when a half was written again; the newest minutes are not yet:
    # a robot's minute is folded up to 60 s after its end (consumer_db.rollup_writer.fold_delay), so the rows of
    # less than the last 2 minutes (at most 60 readings of 2 axes) may wait (62 was too few: 72 waited once in CI)
    assert folded == sum(ts < folded_until for ts, _, _ in expected) > len(expected) - 2 * 61
    assert sorted(entries) == sorted(f"log:{j}" for j in range(READINGS // 100) if j != 2)
    assert sorted(events) == sorted(f"ev-{j}" for j in range(READINGS // 100))
    refused_reading = f"{settings.readings_topic}/0/{REFUSED_READING}"
    assert set(letters) == {refused_reading, f"{settings.maintenance_topic}/0/2"}, letters
    assert letters[refused_reading].startswith("refused by the database: ")
    assert "test_not_this_time" in letters[refused_reading]
    assert letters[f"{settings.maintenance_topic}/0/2"].startswith("refused by the database: index row")
    assert refusals_counted() - counted_before == 2
