"""The sink as a real process on real Kafka + PostgreSQL: SIGKILL mid-stream, restart, exact rows."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.store.db import make_engine
from common.store.tables import readings_fact, rejected_readings
from common.wire.kafka import KafkaBus
from common.wire.schemas import Reading
from consumer_db.settings import ConsumerDbSettings
from tests.fault_support import assert_exactly, stored_rows

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
ROBOTS = ("robot-001", "robot-002", "robot-003")
READINGS = 12_000
POISON_EVERY = 3_000


def reading(i: int) -> Reading:
    return Reading(
        robot_id=ROBOTS[i % 3],
        ts=T0 + timedelta(seconds=2 * (i // 3)),
        row=i,
        currents={1: round(i * 0.01, 2), 2: None, 3: float(i % 7), 4: 0.0},
    )


async def publish_stream(settings: ConsumerDbSettings) -> None:
    """The readings, with a message that is not JSON after every POISON_EVERY of them."""
    bus = KafkaBus(settings)
    await bus.start()
    try:
        await bus.ensure_topics([settings.readings_topic, settings.alerts_topic, settings.dead_letter_topic])
        for i in range(READINGS):
            await bus.send(settings.readings_topic, ROBOTS[i % 3], reading(i).to_bytes())
            if i % POISON_EVERY == POISON_EVERY - 1:
                await bus.send(settings.readings_topic, ROBOTS[i % 3], b"{not json " + str(i).encode())
        await bus.flush()
    finally:
        await bus.stop()


def start_sink(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumer_db"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(readings_fact)).scalar_one(),
            conn.execute(select(func.count()).select_from(rejected_readings)).scalar_one(),
        )


def wait_for(condition, what: str, log: Path, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"no {what} (exit code {process.poll()}); sink log:\n{log.read_text()[-3000:]}")


def test_sigkill_mid_stream_then_restart_stores_exactly_the_input(kafka_env, pg_url, unique, tmp_path):
    settings = ConsumerDbSettings(_env_file=None, database_url=pg_url, **kafka_env)
    asyncio.run(publish_stream(settings))
    env = {
        **os.environ,
        **{k.upper(): str(v) for k, v in kafka_env.items()},
        "DATABASE_URL": pg_url,
        "AXES": "1-4",
        "SINK_GROUP_ID": f"sink-{unique}",
        "SINK_BATCH_SIZE": "300",
        "LOG_LEVEL": "INFO",
    }
    engine = make_engine(pg_url, log_version=False)
    log = tmp_path / "sink.log"
    total_rows, poison = READINGS * 4, READINGS // POISON_EVERY
    try:
        first = start_sink(env, log)
        wait_for(lambda: counts(engine)[0] > 0 if _schema_ready(engine) else False, "the first rows", log, first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = counts(engine)[0]
        assert 0 < at_kill < total_rows, "the kill has to land in the middle of the stream"

        second = start_sink(env, log)
        wait_for(
            lambda: counts(engine) == (total_rows, poison), "every row after the restart", log, second, timeout=120
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        with engine.connect() as conn:
            stored = stored_rows(conn)
            reasons = conn.execute(select(rejected_readings.c.reason)).scalars().all()
    finally:
        engine.dispose()
    expected = {
        (r.robot_id, r.ts, axis, r.currents[axis]) for r in map(reading, range(READINGS)) for axis in (1, 2, 3, 4)
    }
    assert_exactly(stored, expected)
    assert len(reasons) == poison and all(reason.startswith("Reading: not JSON") for reason in reasons)
    assert "written so far" in log.read_text()


def _schema_ready(engine) -> bool:
    try:
        counts(engine)
        return True
    except Exception:  # noqa: BLE001 - the sink has not migrated yet
        return False
