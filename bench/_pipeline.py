"""What the end-to-end benchmarks share: the services as real processes on topics of their own, how far
each consumer group got (read from Kafka, so watching costs the services nothing), the synthetic fleet's
payloads, bare aiokafka produce/consume, and the check that aiokafka's C extensions are in use."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench._postgres import postgres_url, scratch_database
from bench.producer_throughput import _send_batches, leaders_ready
from common.kafka import KafkaBus
from common.schemas import Reading
from common.settings import CommonSettings
from producer.synthetic import synthetic_fleet

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
SEED = 42
PARTITIONS = 6


def aiokafka_extensions() -> dict:
    """aiokafka falls back to pure Python silently (about 6x slower): say which record classes are in use."""
    import aiokafka
    from aiokafka import util
    from aiokafka.record import default_records, legacy_records, memory_records

    classes = (default_records.DefaultRecordBatchBuilder, default_records.DefaultRecordBatch,
               legacy_records.LegacyRecordBatchBuilder, memory_records.MemoryRecords)
    in_use = not util.NO_EXTENSIONS and all(c.__module__.startswith("aiokafka.record._crecords") for c in classes)
    if not in_use:
        print("WARNING: aiokafka's C extensions are NOT in use (pure-Python records): numbers will be low",
              file=sys.stderr)
    return {"aiokafka": aiokafka.__version__, "c_extensions": in_use,
            "record_classes": sorted({c.__module__ for c in classes})}


def kafka_servers(benchmark: str) -> str | None:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        print(f"bench.{benchmark} needs KAFKA_BOOTSTRAP_SERVERS (source /tmp/axiswatch-services.env or `make bench`)",
              file=sys.stderr)
    return servers


def with_services(name: str, measure, *args, keep_logs: bool = False):
    """``measure(engine, servers, *args, log_dir)`` on a scratch database of DATABASE_URL's server and the broker
    of KAFKA_BOOTSTRAP_SERVERS; returns (its result, aiokafka_extensions()), or None when either is not
    configured (the reason on stderr). The services' logs are removed afterwards unless ``keep_logs`` or
    the measurement failed (then their folder is printed)."""
    url, servers = postgres_url(name), kafka_servers(name)
    if url is None or servers is None:
        return None
    extensions = aiokafka_extensions()
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        with scratch_database(url, prefix=f"bench_{name}") as engine:
            result = asyncio.run(measure(engine, servers, *args, log_dir))
    except BaseException:
        print(f"the services' logs: {log_dir}", file=sys.stderr)
        raise
    if keep_logs:
        print(f"the services' logs: {log_dir}", file=sys.stderr)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return result, extensions


@dataclass(frozen=True)
class Names:
    """Topics and consumer groups of one run, unique so runs never see each other's messages."""

    tag: str

    @classmethod
    def fresh(cls, prefix: str) -> Names:
        return cls(f"{prefix}-{uuid.uuid4().hex[:8]}")

    readings = property(lambda self: f"{self.tag}-readings")
    alerts = property(lambda self: f"{self.tag}-alerts")
    dead_letters = property(lambda self: f"{self.tag}-dead")
    sink_group = property(lambda self: f"{self.tag}-sink")
    alerts_group = property(lambda self: f"{self.tag}-alerts")

    def env(self, servers: str, database_url: str, **extra: str) -> dict[str, str]:
        return {"BUS": "kafka", "KAFKA_BOOTSTRAP_SERVERS": servers, "DATABASE_URL": database_url,
                "READINGS_TOPIC": self.readings, "ALERTS_TOPIC": self.alerts, "DEAD_LETTER_TOPIC": self.dead_letters,
                "SINK_GROUP_ID": self.sink_group, "ALERTS_GROUP_ID": self.alerts_group,
                "TOPIC_PARTITIONS": str(PARTITIONS), "STATE_PATH": "", "LOG_LEVEL": "INFO", **extra}


def settings(servers: str) -> CommonSettings:
    return CommonSettings(_env_file=None, bus="kafka", kafka_bootstrap_servers=servers, topic_partitions=PARTITIONS)


async def create_topics(servers: str, topics: list[str]) -> None:
    """Create the topics (6 partitions) and wait until every partition has a leader."""
    bus = KafkaBus(settings(servers))
    await bus.ensure_topics(topics)
    await bus.start()
    try:
        await leaders_ready(bus.producer, topics)
    finally:
        await bus.stop()


# -- services as processes ---------------------------------------------------------------------------
@dataclass
class Service:
    """``python -m <argv>`` in a process of its own, output to ``<log_dir>/<name>.log``; with ``profile`` it
    runs under pyinstrument (bench._profiled) and writes its profile there."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    profile: Path | None = None
    cpu_s: float | None = None
    returncode: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Service:
        prefix = ["bench._profiled", str(self.profile)] if self.profile else []
        self.log_path = self.log_dir / f"{self.name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", *prefix, *self.argv], cwd=REPO, env={**os.environ, **self.env},
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def alive(self) -> bool:
        return self.returncode is None and self._reap(os.WNOHANG) is None

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM (the services flush and commit, then return), SIGKILL after ``timeout_s``."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive():
                self.proc.kill()
                self._reap(0)
        self._log.close()
        return self.returncode

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.returncode

    def _reap(self, flags: int) -> int | None:
        # wait4 instead of Popen.wait: it also gives the process's own CPU time.
        pid, status, usage = os.wait4(self.proc.pid, flags)
        if pid == 0:
            return None
        self.returncode = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return self.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all(services: list[Service]) -> None:
    for service in services:
        if service.proc is not None and service.returncode is None:
            service.stop()


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # A consumer without a subscription keeps no metadata: ask for this topic's (aiokafka has no public call).
    await consumer._client.add_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]


# -- progress, read from Kafka -----------------------------------------------------------------------
class Progress:
    """Every ``sample()``: the readings topic's high watermarks (what the producer got confirmed) and the
    offsets each group committed on it (consumer_db commits after its database transaction)."""

    def __init__(self, servers: str, topic: str, groups: dict[str, str]) -> None:
        self.servers, self.topic, self.groups = servers, topic, groups
        self.samples: list[dict] = []

    async def __aenter__(self) -> Progress:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        await self.consumer.start()
        await self.admin.start()
        self.partitions = await partitions_of(self.consumer, self.topic)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def sample(self) -> dict:
        ends = await self.consumer.end_offsets(self.partitions)
        row = {"t": time.monotonic(), "produced": sum(ends.values())}
        for name, group in self.groups.items():
            offsets = await self.admin.list_consumer_group_offsets(group, partitions=self.partitions)
            row[name] = sum(max(0, o.offset) for tp, o in offsets.items() if tp.topic == self.topic)
        self.samples.append(row)
        return row

    async def until(self, total: int, *, services: list[Service], timeout_s: float, interval_s: float = 0.25) -> dict:
        """Sample until every group committed ``total``; fail at once if a service died, or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = await self.sample()
            if all(row[name] >= total for name in self.groups):
                return row
            dead = [s for s in services if not s.alive() and s.returncode != 0]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited with {dead[0].returncode}:\n{dead[0].tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout_s:.0f} s: {row}")
            await asyncio.sleep(interval_s)


async def group_stable(servers: str, group: str, members: int, timeout_s: float = 90.0) -> None:
    """Wait until ``group`` is Stable with ``members`` members (every instance joined, partitions assigned)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                (response,) = await admin.describe_consumer_groups([group])
                _, _, state, _, _, joined = response.groups[0]
                if state == "Stable" and len(joined) == members:
                    return
                await asyncio.sleep(0.25)
    finally:
        await admin.close()


def stage(samples: list[dict], key: str, total: int) -> dict:
    """From the first sample where ``key`` moved to the first where it reached ``total``: the stage's own
    rate, without its start-up (process start, group join)."""
    first = next(s for s in samples if s[key] > 0)
    done = next(s for s in samples if s[key] >= total)
    seconds = max(done["t"] - first["t"], 1e-9)
    return {"first_t": first["t"], "done_t": done["t"], "seconds": seconds, "rate": (total - first[key]) / seconds}


# -- payloads and the bare client --------------------------------------------------------------------
def fleet(robots: int, readings_per_robot: int, *, seed: int = SEED, start: datetime = T0,
          faults: bool = False) -> Iterator[Reading]:
    """The readings ``python -m producer --synthetic --robots R --limit R*N --seed S --start-time T`` sends."""
    it = synthetic_fleet(robots, seed=seed, start=start, faults=faults)
    return (next(it) for _ in range(robots * readings_per_robot))


async def bare_produce(servers: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    """Pre-serialised payloads with create_batch/send_batch (the producer's own way), same client settings
    as KafkaBus; seconds from the first append to the last confirmation."""
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=256 * 1024, compression_type=None)
    await producer.start()
    try:
        await leaders_ready(producer, [topic])
        started = time.perf_counter()
        futures = await _send_batches(producer, topic, payloads)
        await producer.flush()
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def bare_consume(servers: str, topic: str, total: int) -> float:
    """Every message of ``topic`` fetched (no parsing, no commit, no group: partitions assigned), with the
    services' max_poll_records; seconds from the first fetch to the last message."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, started = 0, time.perf_counter()
        async with asyncio.timeout(600):
            while seen < total:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                seen += sum(len(records) for records in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()
