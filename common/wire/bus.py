"""The message bus the services talk through: Kafka, or an in-process stand-in for the embedded demo.

Both keep per-key order (a key always maps to the same partition), and both let a consumer commit
explicitly, after its own work is durable. The in-process bus is a drop-in for the Kafka one (as
FastStream's test broker is): the services call the same methods on either and never ask which it is.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

TopicPartition = tuple[str, int]


class Message(NamedTuple):
    """One message as fetched. A named tuple, not a frozen dataclass: one is made for every message a service
    reads, and a tuple is made in a third of the time (a frozen dataclass sets each field through
    ``object.__setattr__``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


@dataclass
class Pending:
    """A message handed to the producer's sender, numbered in the order it was sent."""

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


class Batches(Protocol):
    """Messages packed per partition for the producer (Kafka: one produce request per batch)."""

    opened_at: float
    """Monotonic time the oldest open batch got its first message (inf: none open)."""

    @property
    def pending(self) -> int:
        """Messages in open batches, not shipped yet."""

    async def add(self, message: Pending) -> list[Unit]:
        """Append ``message`` to its partition's open batch; returns the batches it filled up, to ship."""

    def take_all(self) -> list[Unit]:
        """Every open batch, to ship now."""

    def take_back(self) -> list[Pending]:
        """The messages of the open batches, which are dropped unsent (to be re-sent in order)."""

    async def group(self, messages: list[Pending]) -> list[Unit]:
        """The messages in full batches (per partition, in order), apart from the open ones."""

    async def ship(self, unit: Unit) -> asyncio.Future:
        """Send a batch; the future resolves once the bus has accepted it durably (or fails)."""


class Subscription(Protocol):
    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 1000) -> list[Message]:
        """The next messages in partition order; an empty list after ``timeout_ms`` with nothing new."""

    async def commit(self, messages: list[Message]) -> None:
        """Mark everything up to and including these messages as done for the group; raises
        :class:`~common.errors.CommitFailed` when the bus refuses (the messages come again)."""

    async def close(self) -> None: ...

    async def lag(self) -> int:
        """Messages on the assigned partitions that this subscription has not fetched yet."""


class Rebalance(Protocol):
    """What a group member does when the group moves partitions (Kafka's ConsumerRebalanceListener)."""

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        """Before the partitions are released: the last moment to save their state and commit their offsets
        (every member has returned from this before any member is handed partitions)."""

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        """After the group handed these partitions over, before any of their messages is fetched."""


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Flush what was sent and release connections."""

    async def ensure_topics(self, topics: list[str], *, compacted: bool = False) -> None:
        """Create the topics that do not exist yet; ``compacted``: the log keeps the latest message per key."""

    async def send(self, topic: str, key: str, value: bytes, *, partition: int | None = None) -> asyncio.Future:
        """Queue a message (to ``partition``, else the key's); the future resolves once the bus has accepted it
        durably."""

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        """Send and wait for the acknowledgement."""

    async def flush(self) -> None: ...

    def batches(self) -> Batches:
        """A fresh set of per-partition batches for a producer that sends many messages."""

    async def read_to_end(self, topic: str, partitions: Collection[int] | None = None) -> list[Message]:
        """Every message now on ``topic`` (its ``partitions``, else all), from the beginning to the current end,
        without a consumer group (no offsets are committed anywhere)."""

    async def subscribe(
        self, topics: list[str], *, group_id: str, from_beginning: bool = True, on_rebalance: Rebalance | None = None
    ) -> Subscription: ...


LOOP_TURNS_TO_THE_WIRE = 4


async def let_out() -> None:
    """Let the bus's client put what was just sent on the wire before going on with work that does not yield.

    aiokafka's sender needs three turns of the event loop to ship a new batch (wake up, drain, start the
    request); turns, not a sleep, which would give the CPU away at every event (docs/benchmarks.md,
    "Measurements behind the code")."""
    for _ in range(LOOP_TURNS_TO_THE_WIRE):
        await asyncio.sleep(0)


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


class InProcessBus:
    """An append-only log per topic partition, in memory, shared by every service of one process."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self._logs: dict[str, list[list[Message]]] = {}
        self._committed: dict[tuple[str, str, int], int] = defaultdict(int)
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def ensure_topics(self, topics: list[str], *, compacted: bool = False) -> None:
        for topic in topics:
            self._log(topic)

    def _log(self, topic: str) -> list[list[Message]]:
        return self._logs.setdefault(topic, [[] for _ in range(self.partitions)])

    async def send(self, topic: str, key: str, value: bytes, *, partition: int | None = None) -> asyncio.Future:
        await self.publish(topic, key, value, partition=partition)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def publish(self, topic: str, key: str, value: bytes, *, partition: int | None = None) -> None:
        partition = partition_for(key, self.partitions) if partition is None else partition
        log = self._log(topic)[partition]
        log.append(Message(topic, partition, len(log), key.encode(), value))
        async with self._changed:
            self._changed.notify_all()

    async def subscribe(
        self, topics: list[str], *, group_id: str, from_beginning: bool = True, on_rebalance: Rebalance | None = None
    ) -> InProcessSubscription:
        """One member per group here: it is handed every partition at once, and keeps them."""
        await self.ensure_topics(topics)
        subscription = InProcessSubscription(self, topics, group_id, from_beginning)
        if on_rebalance is not None:
            await on_rebalance.assigned(list(subscription._position))
        return subscription

    def batches(self) -> OneByOne:
        return OneByOne(self)

    async def read_to_end(self, topic: str, partitions: Collection[int] | None = None) -> list[Message]:
        logs = self._log(topic)
        return [m for p in (range(len(logs)) if partitions is None else partitions) for m in list(logs[p])]

    def end_offsets(self, topic: str) -> list[int]:
        return [len(log) for log in self._log(topic)]

    def uncommitted(self, group_id: str, topics: list[str]) -> int:
        """Messages of ``topics`` the group has not committed yet: 0 once it has done all there is."""
        return sum(
            len(log) - self._committed[(group_id, topic, p)]
            for topic in topics
            for p, log in enumerate(self._log(topic))
        )


class InProcessSubscription:
    def __init__(self, bus: InProcessBus, topics: list[str], group_id: str, from_beginning: bool) -> None:
        self._bus = bus
        self._group = group_id
        self._position = {
            (topic, p): (bus._committed[(group_id, topic, p)] if from_beginning else len(log))
            for topic in topics
            for p, log in enumerate(bus._log(topic))
        }

    def _pending(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for (topic, p), position in self._position.items():
            log = self._bus._log(topic)[p]
            batch = log[position : position + max_records - len(out)]
            self._position[(topic, p)] = position + len(batch)
            out.extend(batch)
            if len(out) >= max_records:
                break
        return out

    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 1000) -> list[Message]:
        messages = self._pending(max_records)
        if messages:
            return messages
        try:
            async with self._bus._changed:
                await asyncio.wait_for(self._bus._changed.wait(), timeout_ms / 1000)
        except TimeoutError:
            return []
        return self._pending(max_records)

    async def commit(self, messages: list[Message]) -> None:
        for m in messages:
            key = (self._group, m.topic, m.partition)
            self._bus._committed[key] = max(self._bus._committed[key], m.offset + 1)

    async def lag(self) -> int:
        return sum(len(self._bus._log(topic)[p]) - position for (topic, p), position in self._position.items())

    async def close(self) -> None:
        return None


class OneByOne:
    """The in-process bus's batches: each message a unit of its own, shipped with ``send`` (the bus
    confirms at once, so there is nothing to gain from packing)."""

    opened_at = float("inf")
    pending = 0

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def add(self, message: Pending) -> list[Unit]:
        return [Unit(None, [message])]

    def take_all(self) -> list[Unit]:
        return []

    def take_back(self) -> list[Pending]:
        return []

    async def group(self, messages: list[Pending]) -> list[Unit]:
        return [Unit(None, [m]) for m in messages]

    async def ship(self, unit: Unit) -> asyncio.Future:
        (message,) = unit.messages
        return await self.bus.send(message.topic, message.key, message.value)
