"""PostgreSQL stopped in the middle of a stream: the sink pauses, says so, and loses nothing.

The shared development PostgreSQL is never stopped: the test starts a private server of its own with
scripts/postgres.sh under its own AXISWATCH_VAR_DIR, and removes it afterwards.
"""

import asyncio
import logging
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.store.db import make_engine
from common.store.tables import readings_fact
from common.wire.kafka import KafkaBus
from common.wire.schemas import Reading
from consumer_db.service import run
from consumer_db.settings import ConsumerDbSettings
from tests.conftest import service_missing

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)


class PrivatePostgres:
    def __init__(self, var_dir: Path) -> None:
        self.env = {**os.environ, "AXISWATCH_VAR_DIR": str(var_dir)}

    def _script(self, *args: str) -> str:
        done = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/postgres.sh {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> str:
        return self._script("start").strip().removeprefix("DATABASE_URL=")

    def stop(self, *flags: str) -> None:
        self._script("stop", *flags)


@pytest.fixture
def private_postgres(tmp_path):
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("pg_ctl"):
        service_missing("no PostgreSQL server binaries for a private server (apt-get install postgresql)")
    server = PrivatePostgres(tmp_path / "var")
    try:
        server.url = server.start()
    except RuntimeError as exc:
        service_missing(str(exc))
    yield server
    server.stop("--clean")


def reading(i: int) -> Reading:
    return Reading(robot_id="robot-001", ts=T0 + timedelta(seconds=2 * i), row=i, currents={1: float(i % 500), 2: None})


async def publish(bus: KafkaBus, topic: str, numbers: range) -> None:
    for i in numbers:
        await bus.send(topic, "robot-001", reading(i).to_bytes())
    await bus.flush()


async def until(condition, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(condition):
            await asyncio.sleep(0.05)


async def test_postgres_outage_mid_stream_loses_nothing(private_postgres, kafka_env, unique, caplog):
    settings = ConsumerDbSettings(
        _env_file=None,
        database_url=private_postgres.url,
        **kafka_env,
        axes="1-2",
        sink_group_id=f"sink-{unique}",
        sink_batch_size=100,
        sink_retry_initial_s=0.2,
        sink_retry_max_s=1.0,
    )
    engine = make_engine(private_postgres.url, log_version=False)

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(readings_fact)).scalar_one()

    bus, stop = KafkaBus(settings), asyncio.Event()
    await bus.start()
    await bus.ensure_topics([settings.readings_topic, settings.alerts_topic, settings.dead_letter_topic])
    sink = asyncio.create_task(run(settings, bus=bus, stop=stop))
    try:
        with caplog.at_level(logging.INFO, logger="consumer_db"):
            await publish(bus, settings.readings_topic, range(0, 1000))
            await until(lambda: _safe(stored) == 2000)
            engine.dispose()
            await asyncio.to_thread(private_postgres.stop)
            await publish(bus, settings.readings_topic, range(1000, 3000))  # the stream goes on meanwhile
            await until(lambda: "database unavailable" in caplog.text)
            assert not sink.done()
            assert private_postgres.start() == private_postgres.url
            await publish(bus, settings.readings_topic, range(3000, 4000))
            await until(lambda: _safe(stored) == 8000)
            assert "database is back" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(sink, 30)
        await bus.stop()
    with engine.connect() as conn:
        rows = conn.execute(select(readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps)).all()
    engine.dispose()
    expected = {(reading(i).ts, axis, reading(i).currents[axis]) for i in range(4000) for axis in (1, 2)}
    assert len(rows) == len(expected) and set(rows) == expected


def _safe(count) -> int:
    try:
        return count()
    except Exception:  # noqa: BLE001 - the database is away or not migrated yet
        return -1
