"""Per-partition Kafka batches built by the producer itself (aiokafka ``create_batch``/``send_batch``).

Keys go to the partition aiokafka's default partitioner would choose (murmur2 of the key over all
partitions), so per-key order and the key -> partition mapping are the same as with ``send``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import DefaultPartitioner


@dataclass
class Pending:
    seq: int
    topic: str
    key: str
    value: bytes


@dataclass
class Unit:
    """What one confirmation covers: a single message, or a whole batch of one partition."""

    future: asyncio.Future | None
    messages: list[Pending]
    builder: Any = None  # a batch still being filled or not shipped yet
    partition: int | None = None


class KafkaBatches:
    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.opened_at = float("inf")  # monotonic time the oldest open batch got its first message
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[tuple[str, str], int] = {}
        self._open: dict[tuple[str, int], Unit] = {}

    @classmethod
    def for_bus(cls, bus: Any) -> KafkaBatches | None:
        """Batches for a :class:`~common.kafka.KafkaBus`; None for any other bus (one send per message)."""
        from common.kafka import KafkaBus

        return cls(bus.producer) if isinstance(bus, KafkaBus) else None

    @property
    def pending(self) -> int:
        return sum(len(unit.messages) for unit in self._open.values())

    async def add(self, message: Pending) -> list[Unit]:
        """Append ``message`` to its partition's open batch; returns the batch it filled up, if any."""
        partition = self._partition_of.get((message.topic, message.key))
        if partition is None:  # once per key: it needs the topic's metadata, and murmur2 is slow in Python
            partition = await self._learn_partition(message.topic, message.key)
        slot = (message.topic, partition)
        unit = self._open.get(slot)
        if (
            unit is not None
            and unit.builder.append(key=message.key.encode(), value=message.value, timestamp=None) is not None
        ):
            unit.messages.append(message)
            return []
        full = [self._open.pop(slot)] if unit is not None else []
        builder = self.producer.create_batch()
        if builder.append(key=message.key.encode(), value=message.value, timestamp=None) is None:
            raise ValueError(f"a message of {len(message.value)} bytes does not fit in an empty batch")
        if not self._open:
            self.opened_at = time.monotonic()
        self._open[slot] = Unit(None, [message], builder, slot[1])
        return full

    def take_all(self) -> list[Unit]:
        """Every open batch, to ship now."""
        units = list(self._open.values())
        self._open.clear()
        self.opened_at = float("inf")
        return units

    def take_back(self) -> list[Pending]:
        """The messages of the open batches, which are dropped unsent (to be re-sent in order)."""
        return [m for unit in self.take_all() for m in unit.messages]

    async def group(self, messages: list[Pending]) -> list[Unit]:
        """The messages in full batches (per partition, in order), apart from the open ones."""
        spare = KafkaBatches(self.producer)
        spare._partition_of = self._partition_of
        units = []
        for message in messages:
            units += await spare.add(message)
        return units + spare.take_all()

    async def ship(self, unit: Unit) -> asyncio.Future:
        future = await self.producer.send_batch(unit.builder, unit.messages[0].topic, partition=unit.partition)
        unit.builder = None
        return future

    async def _learn_partition(self, topic: str, key: str) -> int:
        partitions = sorted(await self.producer.partitions_for(topic))
        partition = self._partition_of[(topic, key)] = self._partitioner(key.encode(), partitions, partitions)
        return partition
