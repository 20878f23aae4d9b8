"""The Kafka side of the end-to-end benchmarks: topics, how far each consumer group got (read from the
broker, so watching costs the services nothing), the synthetic fleet's payloads, and bare aiokafka
produce/consume, the floor the services are compared with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from bench.producer_throughput import _send_batches, leaders_ready
from common.settings import CommonSettings
from common.wire.kafka import KafkaBus
from common.wire.schemas import Reading
from producer.synthetic import synthetic_fleet

if TYPE_CHECKING:
    from bench._services import Service

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SEED = 42
PARTITIONS = 6
# A fresh broker creates __consumer_offsets on the first group call: until its coordinator is elected,
# asking for a group's offsets fails with these. They pass; the benchmark waits for them, briefly.
COORDINATOR_STARTING = (
    GroupCoordinatorNotAvailableError,
    CoordinatorLoadInProgressError,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)


def settings(servers: str) -> CommonSettings:
    return CommonSettings(_env_file=None, bus="kafka", kafka_bootstrap_servers=servers, topic_partitions=PARTITIONS)


async def create_topics(servers: str, topics: list[str], *, append_time: tuple[str, ...] = ()) -> None:
    """Create the topics (6 partitions) and wait until every partition has a leader. The topics named in
    ``append_time`` stamp each record with the broker's time of append (LogAppendTime), not the producer's."""
    if append_time:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(t, PARTITIONS, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})
                    for t in append_time
                ]
            )
        finally:
            await admin.close()
    bus = KafkaBus(settings(servers))
    await bus.ensure_topics(topics)
    await bus.start()
    try:
        await leaders_ready(bus.producer, topics)
    finally:
        await bus.stop()


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
            offsets = await self._committed(group)
            row[name] = sum(max(0, o.offset) for tp, o in offsets.items() if tp.topic == self.topic)
        self.samples.append(row)
        return row

    async def _committed(self, group: str) -> dict:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(COORDINATOR_STARTING),
            stop=stop_after_delay(60),
            wait=wait_exponential(0.1, max=2),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.admin.list_consumer_group_offsets(group, partitions=self.partitions)

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
    rate, without its start-up (process start, group join). A stage done within one sampling interval is
    timed from the sample before."""
    index = next(i for i, s in enumerate(samples) if s[key] > 0)
    first = samples[index - 1] if samples[index][key] >= total and index > 0 else samples[index]
    done = next(s for s in samples if s[key] >= total)
    seconds = max(done["t"] - first["t"], 1e-9)
    return {"first_t": first["t"], "done_t": done["t"], "seconds": seconds, "rate": (total - first[key]) / seconds}


# -- payloads and the bare client --------------------------------------------------------------------
def fleet(
    robots: int, readings_per_robot: int, *, seed: int = SEED, start: datetime = T0, faults: bool = False
) -> Iterator[Reading]:
    """The readings ``python -m producer --synthetic --robots R --limit R*N --seed S --start-time T`` sends."""
    it = synthetic_fleet(robots, seed=seed, start=start, faults=faults)
    return (next(it) for _ in range(robots * readings_per_robot))


async def bare_produce(servers: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    """Pre-serialised payloads with create_batch/send_batch (the producer's own way), same client settings
    as KafkaBus; seconds from the first append to the last confirmation."""
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        compression_type=None,
    )
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
