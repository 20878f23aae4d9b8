"""The sender: confirmations counted, refusals retried in order, on the per-message and the batch path."""

from __future__ import annotations

import asyncio

import pytest

from common.settings import CommonSettings
from common.wire.bus import InProcessBus
from common.wire.kafka import KafkaBus
from producer.sender import Sender


def messages(bus: InProcessBus, topic: str):
    return [m for partition in bus._log(topic) for m in partition]


class FlakyBus(InProcessBus):
    """Refuses ``refusals`` sends outright, then fails ``failures`` confirmations, then works."""

    def __init__(self, refusals: int = 0, failures: int = 0) -> None:
        super().__init__()
        self.refusals, self.failures = refusals, failures

    async def send(self, topic, key, value):
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("broker away")
        if self.failures:
            self.failures -= 1
            future = asyncio.get_running_loop().create_future()
            future.set_exception(TimeoutError("not confirmed"))
            return future
        return await super().send(topic, key, value)


@pytest.mark.parametrize("refusals, failures", [(3, 0), (0, 5), (2, 4)])
async def test_refused_sends_are_retried_in_order_and_nothing_is_lost(refusals, failures):
    bus = FlakyBus(refusals, failures)
    sender = Sender(bus, first_retry_s=0.001, max_retry_s=0.002)
    for i in range(20):
        await sender.send("t", "k", str(i).encode())
    await sender.drain()
    assert [m.value for m in messages(bus, "t")] == [str(i).encode() for i in range(20)]
    assert (sender.confirmed["t"], sender.unconfirmed, sender.failed_attempts) == (20, 0, refusals + failures)


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity, self.records = capacity, []

    def append(self, *, key, value, timestamp):
        if len(self.records) == self.capacity:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """Stands in for AIOKafkaProducer's batch API; fails the first ``failures`` batches."""

    def __init__(self, failures: int = 0, capacity: int = 4, *, later: bool = False) -> None:
        self.failures, self.capacity, self.later = failures, capacity, later
        self.log: dict[int, list[bytes]] = {}

    async def partitions_for(self, topic):
        return {0, 1, 2}

    def create_batch(self):
        return FakeBatch(self.capacity)

    async def send_batch(self, batch, topic, *, partition):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.failures:
            self.failures -= 1
            outcome = (future.set_exception, TimeoutError("batch expired"))
        else:
            self.log.setdefault(partition, []).extend(value for _, value in batch.records)
            outcome = (future.set_result, None)
        if self.later:  # confirmed (or refused) on a later turn of the loop, as a broker would
            loop.call_soon(*outcome)
        else:
            outcome[0](outcome[1])
        return future

    async def send(self, topic, value, key=None):  # the one-by-one path of re-sends
        batch = FakeBatch(1)
        batch.append(key=key, value=value, timestamp=None)
        from aiokafka.partitioner import DefaultPartitioner

        return await self.send_batch(batch, topic, partition=DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2]))

    async def flush(self):
        return None


def fake_kafka_bus(producer: FakeProducer) -> KafkaBus:
    bus = KafkaBus(CommonSettings(_env_file=None))
    bus._producer = producer
    return bus


@pytest.mark.parametrize("later", [False, True])
@pytest.mark.parametrize("failures", [0, 1, 3])
async def test_batches_keep_per_key_order_through_failed_batches(failures, later):
    producer = FakeProducer(failures=failures, later=later)
    sender = Sender(fake_kafka_bus(producer), first_retry_s=0.001, max_retry_s=0.002)
    sent = [(f"robot-{i % 3}", f"{i % 3}:{i}".encode()) for i in range(40)]
    for key, value in sent:
        await sender.send("t", key, value)
    await sender.drain()
    assert (sender.confirmed["t"], sender.unconfirmed) == (40, 0)
    received = [v for values in producer.log.values() for v in values]
    assert sorted(received) == sorted(v for _, v in sent), "nothing lost, nothing twice"
    for robot in ("0", "1", "2"):
        mine = [v for v in received if v.startswith(robot.encode() + b":")]
        assert mine == [v for _, v in sent if v.startswith(robot.encode() + b":")]


async def test_open_batches_go_out_on_push():
    producer = FakeProducer(capacity=100)
    sender = Sender(fake_kafka_bus(producer), linger_s=3600)
    await sender.send("t", "k", b"1")
    assert producer.log == {} and sender.unconfirmed == 1
    await sender.push()
    await sender.drain()
    assert [v for vs in producer.log.values() for v in vs] == [b"1"] and sender.confirmed["t"] == 1
