"""What the fault tests share: services as real processes, a private Kafka broker, polling with deadlines."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from common.settings import CommonSettings
from common.store.tables import readings_fact, rejected_readings
from common.wire.kafka import connection_options
from tests.conftest import service_missing

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "scripts" / "kafka.sh"


def service_env(kafka_env: dict, **settings) -> dict[str, str]:
    """The environment of a service process: this one's, plus the test's topics and settings (upper-cased)."""
    values = {**kafka_env, **settings}
    return {**os.environ, **{k.upper(): str(v) for k, v in values.items()}, "PYTHONUNBUFFERED": "1"}


class Service:
    """``python -m <module>`` as a child process, its output in a log file the failure messages quote."""

    def __init__(self, module: str, env: dict[str, str], log: Path, *args: str) -> None:
        self.module, self.log = module, log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout``, so nothing outlives the test)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"{self.module} did not stop within {timeout} s after {sig.name}:\n{self.tail()}"
            ) from None


def poll(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float = 60.0,
    every: float = 0.1,
    services: tuple[Service, ...] = (),
) -> object:
    """Call ``condition`` until it returns something true, or fail with ``what`` and the services' logs;
    also fail at once when one of ``services`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _all_running(services, what)
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(_timed_out(what, timeout, services))


async def apoll(
    condition: Callable[[], Awaitable[object]], what: str, *, timeout: float = 60.0, services: tuple[Service, ...] = ()
) -> object:
    """:func:`poll` for a coroutine condition, from async code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _all_running(services, what)
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(_timed_out(what, timeout, services))


def _all_running(services: tuple[Service, ...], what: str) -> None:
    for service in services:
        if service.process.poll() is not None:
            raise AssertionError(
                f"{service.module} exited ({service.process.returncode}) while waiting for {what}:\n{service.tail()}"
            )


def _timed_out(what: str, timeout: float, services: tuple[Service, ...]) -> str:
    logs = "\n".join(f"--- {s.module} ---\n{s.tail()}" for s in services)
    return f"no {what} within {timeout:.0f} s\n{logs}"


async def committed(settings: CommonSettings, group: str) -> int:
    """The readings offsets ``group`` has committed, summed over the partitions."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic == settings.readings_topic and o.offset > 0)


def stored(engine: Engine) -> tuple[int, int]:
    """(rows in readings_fact, rows in rejected_readings); (-1, -1) while the sink has not migrated yet or
    the database is away."""
    try:
        with engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(readings_fact)).scalar_one(),
                conn.execute(select(func.count()).select_from(rejected_readings)).scalar_one(),
            )
    except SQLAlchemyError:
        return (-1, -1)


def stored_rows(conn: Connection) -> list[tuple]:
    """Every stored reading row as (robot_id, ts, axis, amps), the shape ``SyntheticFleet.rows()`` gives."""
    columns = (readings_fact.c.robot_id, readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps)
    return conn.execute(select(*columns)).all()


def assert_exactly(rows: list[tuple], expected: set[tuple]) -> None:
    """The stored rows are the input: none missing, none extra, none twice."""
    missing, extra = len(expected - set(rows)), len(set(rows) - expected)
    assert (len(rows), missing, extra) == (len(expected), 0, 0), (
        f"{len(rows)} rows stored for {len(expected)} expected: {missing} missing, {extra} not in the input, "
        f"{len(rows) - len(set(rows))} twice"
    )


def assert_every_reading_confirmed(producer: Service, readings: int) -> None:
    """The producer's final report confirms every reading, and no idempotent-producer sequence error happened."""
    report = producer.tail(5000)
    assert f"{readings} readings confirmed" in report and "NOT SENT" not in report, report
    assert "OutOfOrderSequence" not in producer.log.read_text(), "an idempotent-producer sequence error"


@dataclass(frozen=True)
class SyntheticFleet:
    """A synthetic fleet as the producer's command line makes it: ``robots`` robots of seed ``seed``, a
    reading every ``tick_s`` seconds from ``start``, ``readings`` readings in all, values on ``axes``."""

    robots: int
    seed: int
    tick_s: float
    start: datetime
    axes: list[int]
    readings: int

    def rows(self) -> set[tuple]:
        """(robot_id, ts, axis, amps) of every row the fleet's readings must store."""
        from producer.synthetic import synthetic_fleet

        made = synthetic_fleet(self.robots, seed=self.seed, tick_seconds=self.tick_s, start=self.start, axes=self.axes)
        return {(r.robot_id, r.ts, axis, r.currents[axis]) for r in islice(made, self.readings) for axis in self.axes}


def synthetic_producer(
    fleet: SyntheticFleet, env: dict[str, str], log: Path, *, max_speed: bool = False, axes_from_db: bool = True
) -> Service:
    """``python -m producer --synthetic`` sending ``fleet``'s readings, then exiting; ``max_speed``: without
    waiting a tick between readings; ``axes_from_db`` False: the axes from the AXES setting, not axes_dim."""
    return Service(
        "producer",
        env,
        log,
        *("--synthetic", "--robots", str(fleet.robots), "--seed", str(fleet.seed)),
        *("--tick-seconds", str(fleet.tick_s), "--start-time", fleet.start.isoformat(), "--limit", str(fleet.readings)),
        *(["--max-speed"] if max_speed else []),
        *([] if axes_from_db else ["--no-axes-from-db"]),
    )


def stream_through(
    env: dict[str, str],
    watch: Engine,
    log_dir: Path,
    *,
    fleet: tuple[int, int, float, datetime, list[int], int],
    while_running: Callable[[Connection], None] | None = None,
) -> tuple[set, list]:
    """The producer (the synthetic fleet ``(robots, seed, tick_s, start, axes, readings)``, at max speed)
    and consumer_db, with ``env`` (the sink's group in it): what the fleet should store and what was stored, once
    every row is in. ``while_running`` looks at the database meanwhile, the sink still connected."""
    fleet = SyntheticFleet(*fleet)
    sink = Service("consumer_db", env, log_dir / "sink.log")
    producer = None
    try:
        poll(lambda: stored(watch)[0] == 0, "the sink's tables", services=(sink,))
        producer = synthetic_producer(fleet, env, log_dir / "producer.log", max_speed=True)
        assert producer.process.wait(90) == 0, producer.tail()
        poll(lambda: stored(watch)[0] == len(fleet.axes) * fleet.readings, "every row", timeout=90, services=(sink,))
        with watch.connect() as conn:
            if while_running is not None:
                while_running(conn)
            rows = stored_rows(conn)
        assert sink.stop(signal.SIGTERM) == 0, sink.tail()
    finally:
        for service in (producer, sink):
            if service is not None and service.process.poll() is None:
                service.stop(signal.SIGKILL)
    return fleet.rows(), rows


class PrivateKafka:
    """A broker of the test's own (scripts/kafka.sh under its own AXISWATCH_VAR_DIR), to stop and restart
    without touching the shared one. ``stop()`` keeps the data and the ports, so a restart comes back at the
    same address with the same topics, as a real broker restart does. ``knobs`` are more of the script's
    environment knobs (``AXISWATCH_KAFKA_BROKERS="3"`` for a cluster, the SASL_SSL ones)."""

    def __init__(self, var_dir: Path, **knobs: str) -> None:
        self.env = {
            **os.environ,
            "AXISWATCH_VAR_DIR": str(var_dir),
            "AXISWATCH_KAFKA_STOP_TIMEOUT": "30",
            **knobs,
        }
        self.bootstrap = ""

    @staticmethod
    def available() -> str | None:
        """Why a private broker cannot run here, or None."""
        if not shutil.which("java"):
            return "no java for a private Kafka broker (apt-get install openjdk-17-jre-headless)"
        if not list((REPO / ".cache" / "kafka" / "libs").glob("kafka_2.13-*.jar")) and not shutil.which("mvn"):
            return "the Kafka jars are not cached in .cache/kafka/libs and mvn is missing"
        return None

    def _script(self, *args: str) -> str:
        done = subprocess.run([str(KAFKA_SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/kafka.sh {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> str:
        self.bootstrap = self._script("start").strip().removeprefix("KAFKA_BOOTSTRAP_SERVERS=")
        return self.bootstrap

    def stop(self, *flags: str) -> None:
        self._script("stop", *flags)

    def pid(self, node: int) -> int:
        """The process id of one node of the cluster (node ids 1, 2, ...)."""
        return int(self._script("pid", str(node)))


class TopicReader:
    """Every message of a topic from the beginning, as it arrives: one group-less consumer assigned to all
    partitions, so watching commits no offsets and joins no group."""

    def __init__(self, settings: CommonSettings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.values: list[bytes] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(**connection_options(self.settings), enable_auto_commit=False)
        await self._consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(self.settings.topic_partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def read(self) -> list[bytes]:
        """What has arrived so far (waits at most 100 ms for more)."""
        batches = await self._consumer.getmany(timeout_ms=100)
        self.values += [r.value for records in batches.values() for r in sorted(records, key=lambda r: r.offset)]
        return self.values


@contextmanager
def private_kafka(var_dir: Path, **knobs: str) -> Iterator[PrivateKafka]:
    """A started ``PrivateKafka`` (``knobs`` as there), removed with its data afterwards; the test is skipped
    (failed under CI=true) where one cannot run."""
    reason = PrivateKafka.available()
    if reason:
        service_missing(reason)
    broker = PrivateKafka(var_dir, **knobs)
    try:
        broker.start()
    except RuntimeError as exc:
        broker.stop("--clean")
        service_missing(str(exc))
    try:
        yield broker
    finally:
        broker.stop("--clean")
