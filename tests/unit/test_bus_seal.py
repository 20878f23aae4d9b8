"""The bus is sealed: what the services need from Kafka they get through the bus interface, and the
in-process bus answers the same calls (read a topic to its end, batches, commit refusals as our error)."""

import pytest
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import TopicPartition

from common.errors import CommitFailed
from common.wire.bus import InProcessBus, Message, Pending
from common.wire.kafka import KafkaSubscription


class RefusingConsumer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def commit(self, offsets):
        assert set(offsets) == {TopicPartition("t", 0)}
        raise self.error


@pytest.mark.parametrize("error", [CommitFailedError("rebalanced"), IllegalStateError("not assigned")])
async def test_a_refused_kafka_commit_is_our_own_error(error):
    with pytest.raises(CommitFailed, match=type(error).__name__):
        await KafkaSubscription(RefusingConsumer(error)).commit([Message("t", 0, 5, b"k", b"v")])


async def test_the_in_process_bus_reads_a_topic_to_its_end_without_a_group():
    bus = InProcessBus(partitions=3)
    keys = [f"robot-{i % 4}" for i in range(12)]
    for i, key in enumerate(keys):
        await bus.publish("t", key, str(i).encode())
    subscription = await bus.subscribe(["t"], group_id="g")
    read = await bus.read_to_end("t")
    assert sorted(int(m.value) for m in read) == list(range(12))
    for key in set(keys):  # per key, in the order sent
        mine = [int(m.value) for m in read if m.key == key.encode()]
        assert mine == [i for i, k in enumerate(keys) if k == key]
    assert bus.uncommitted("g", ["t"]) == 12 and len(await subscription.getmany(timeout_ms=10)) == 12


async def test_the_in_process_batches_ship_each_message_with_the_bus_send():
    bus = InProcessBus()
    batches = bus.batches()
    units = [u for i in range(3) for u in await batches.add(Pending(i, "t", "k", str(i).encode()))]
    assert batches.pending == 0 and batches.take_back() == []
    for unit in units:
        await (await batches.ship(unit))
    assert [m.value for m in await bus.read_to_end("t")] == [b"0", b"1", b"2"]
