"""The detectors' state in a compacted Kafka topic, so that it moves with its partition; offsets committed
only with it, and without holding up the readings.

Every ``interval_s`` the robots changed since the last checkpoint are written to the state topic (key = robot
id, on the partition number of the robot's readings, value = its state plus that partition and the offset it
reflects), then the offsets of the readings that state reflects are committed: "offsets only together with
the state of the detectors". A robot is serialised between batches, a few milliseconds at a time, as of the
moment the checkpoint started (copy-on-write: a robot still pending is serialised before a reading for it is
processed). On a rebalance, the partitions' state is written and their offsets committed before they are
released; a partition handed over is restored from the topic before its first reading is judged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection

from prometheus_client import Gauge, Histogram

from common.errors import CommitFailed
from common.metrics import Health
from common.wire.bus import Bus, Message, Subscription, TopicPartition
from consumer_alerts import engine_state
from consumer_alerts.engine import DetectorEngine

logger = logging.getLogger(__name__)

SLICE_S = 0.005  # serialising work per turn of the loop; a reading waits at most about this long for it
# Kafka refuses a message over 1 MiB (the broker's message.max.bytes, the producer's max_request_size); a
# robot's state is ~50 KB with 14 axes and the default detectors after 5 minutes, more once its windows fill
# (zlib saved only 30 % of the JSON form, at ~20 ms of CPU per robot in the loop: not worth it).
MAX_RECORD_BYTES = 1_000_000
RESTORE_TIMEOUT_S = 60.0  # reading the state of partitions handed over; past it the service stops (see check)


class Snapshot:
    """A checkpoint being taken: the state of the robots changed since the last one, serialised one by one as
    of its start, and the readings it reflects."""

    def __init__(self, engine: DetectorEngine, robots: Collection[str], messages: list[Message]) -> None:
        self.engine, self.messages = engine, messages
        self.pending = dict.fromkeys(r for r in robots if r in engine.robots)
        self.parts: dict[str, bytes] = {}

    def before_reading(self, robot_id: str) -> None:
        """Copy-on-write: serialise the robot now if it is still pending, before the reading changes it."""
        if robot_id in self.pending:
            self._serialise(robot_id)

    def advance(self, budget_s: float = SLICE_S) -> bool:
        """Serialise pending robots for about ``budget_s``; True once every robot is done."""
        deadline = time.perf_counter() + budget_s
        while self.pending and time.perf_counter() < deadline:
            self._serialise(next(iter(self.pending)))
        return not self.pending

    def _serialise(self, robot_id: str) -> None:
        del self.pending[robot_id]
        robot = self.engine.robots.get(robot_id)
        if robot is not None:  # None: moved to another instance meanwhile
            self.parts[robot_id] = engine_state.encode(engine_state.robot_snapshot(robot))


def record(state: bytes, partition: int, offset: int | None) -> bytes:
    """A robot's message on the state topic: its serialised state, the partition of its readings and the
    offset there that the state reflects (the next reading to judge)."""
    head = json.dumps({"partition": partition, "offset": offset}).encode()
    return head + b"\n" + state


def read_record(value: bytes) -> tuple[int, int | None, dict]:
    head, state = value.split(b"\n", 1)
    meta = json.loads(head)
    return meta["partition"], meta["offset"], engine_state.decode(state)


SNAPSHOT_SECONDS = Histogram(
    "axiswatch_consumer_alerts_snapshot_write_seconds", "Time to write one checkpoint's state to the state topic."
)
LAST_SNAPSHOT = Gauge(
    "axiswatch_consumer_alerts_last_snapshot_timestamp_seconds", "Unix time of the last checkpoint written."
)


class Checkpoints:
    """Every ``interval_s``: the changed robots' state to ``topic``, then the commit of the readings it reflects;
    and the same at once when the group takes partitions away (:meth:`revoked`) or the service stops."""

    def __init__(self, engine: DetectorEngine, bus: Bus, topic: str, readings_topic: str, interval_s: float) -> None:
        self.engine, self.bus, self.topic, self.readings_topic = engine, bus, topic, readings_topic
        self.interval_s = interval_s
        self.sub: Subscription | None = None  # set once subscribed
        self.partition_of: dict[str, int] = {}  # robot -> the partition its readings come on
        self.changed: set[str] = set()  # robots changed since their state was last taken
        self.done: list[Message] = []  # processed, not yet in a checkpoint
        self.taking: Snapshot | None = None
        self.saving: asyncio.Task | None = None
        self.last = time.monotonic()

    @property
    def busy(self) -> bool:
        """A checkpoint is being serialised: the loop should not sleep on an empty poll."""
        return self.taking is not None

    def before_reading(self, robot_id: str, partition: int) -> None:
        if self.taking is not None:
            self.taking.before_reading(robot_id)
        self.changed.add(robot_id)
        self.partition_of[robot_id] = partition

    async def after_batch(self, messages: list[Message]) -> None:
        self.done += messages
        if self.taking is not None:
            if self.taking.advance():
                self.saving, self.taking = asyncio.create_task(self._save(self.taking)), None
        elif self.done and self._due(after_readings=bool(messages)) and not self._still_saving():
            self.taking, self.last = Snapshot(self.engine, self.changed, self.take_done()), time.monotonic()
            self.changed = set()

    def _due(self, *, after_readings: bool) -> bool:
        """Every ``interval_s``, started right after a batch: in a paced feed that leaves the whole gap before
        the next burst for its slices. Started on an empty poll late in the gap, the next burst found most
        robots still pending and serialised them on its readings' path (~1 ms each: at 200 robots up to 300 ms
        more on a tick, docs/benchmarks.md section 2). A feed that has gone quiet is still checkpointed, one
        interval later."""
        waited = time.monotonic() - self.last
        return waited >= self.interval_s * (1 if after_readings else 2)

    async def flush(self) -> None:
        """Everything processed so far: its state written, then its offsets committed (a clean stop, or
        partitions about to be released)."""
        if self.saving is not None:
            await self.saving
            self.saving = None
        if self.taking is not None:  # the new checkpoint covers its robots and readings too
            self.changed |= set(self.taking.pending) | set(self.taking.parts)
            self.done, self.taking = self.taking.messages + self.done, None
        snapshot = Snapshot(self.engine, self.changed, self.take_done())
        self.changed = set()
        snapshot.advance(float("inf"))
        await self._save(snapshot)

    def cancel(self) -> None:
        if self.saving is not None:
            self.saving.cancel()

    def take_done(self) -> list[Message]:
        done, self.done = self.done, []
        return done

    def robots_of(self, partitions: Collection[int]) -> list[str]:
        return [rid for rid, p in self.partition_of.items() if p in partitions]

    def forget(self, robot_id: str) -> None:
        """The robot moved to another instance: its state here is no longer current."""
        self.engine.robots.pop(robot_id, None)
        self.partition_of.pop(robot_id, None)
        self.changed.discard(robot_id)

    def _still_saving(self) -> bool:
        if self.saving is None or not self.saving.done():
            return self.saving is not None
        self.saving.result()  # an error _save does not handle stops the service, as it did inline
        return False

    async def _save(self, snapshot: Snapshot) -> None:
        """The snapshot's robots to the state topic; once every one is acknowledged, the commit."""
        offsets: dict[int, int] = {}
        for m in snapshot.messages:
            if m.topic == self.readings_topic:
                offsets[m.partition] = max(offsets.get(m.partition, 0), m.offset + 1)
        with SNAPSHOT_SECONDS.time():
            pending = []
            for robot_id, state in snapshot.parts.items():
                partition = self.partition_of.get(robot_id)
                if partition is None:  # forgotten meanwhile (moved away): its new owner has it
                    continue
                value = record(state, partition, offsets.get(partition))
                if len(value) > MAX_RECORD_BYTES:
                    logger.error(
                        "robot %r: state of %d bytes is over Kafka's message limit; it is not kept (a move or a "
                        "restart starts it cold)",
                        robot_id,
                        len(value),
                    )
                    continue
                pending.append(await self.bus.send(self.topic, robot_id, value, partition=partition))
            await asyncio.gather(*pending)  # an error here stops the service before the commit: a replay follows
        LAST_SNAPSHOT.set_to_current_time()
        await self._commit(snapshot.messages)

    async def _commit(self, messages: list[Message]) -> None:
        if not messages or self.sub is None:
            return
        try:
            await self.sub.commit(messages)
        except CommitFailed as exc:  # e.g. a rebalance moved the partitions away
            logger.warning("offset commit failed (%s); the new owner re-reads those readings", exc)


class PartitionOwnership:
    """The group's rebalances as the detectors see them (a :class:`~common.wire.bus.Rebalance`).

    Revoked: the partitions' state is written and their offsets committed before they are released (under
    ``lock``, so never in the middle of a batch). Assigned: the robots of the partitions this instance did not
    hold are restored from the state topic, and ``on_new`` is told (the service reads the alerts topic again,
    so that events another instance sent are not sent twice); robots of partitions gone elsewhere are dropped.

    Readiness (``health``, /readyz) follows the assignment: not ready while partitions handed over are restored,
    ready once they are, and its text names the partitions held. An instance handed no partition is ready too
    (a group of more instances than partitions keeps the others idle, and healthy), and says so.
    """

    def __init__(
        self,
        checkpoints: Checkpoints,
        lock: asyncio.Lock,
        on_new: Callable[[set[int]], object],
        health: Health | None = None,
    ) -> None:
        self.checkpoints, self.lock, self.on_new = checkpoints, lock, on_new
        self.health = health or Health()
        self.held: set[int] = set()
        # Kafka's client only logs what a listener raises and goes on: the partitions would be judged cold, or
        # with state not written. The service stops on it instead (a restart replays from the committed offsets).
        self.failed: Exception | None = None

    def check(self) -> None:
        """Raise what the last rebalance failed on, if anything."""
        if self.failed is not None:
            raise RuntimeError(f"a rebalance failed: {self.failed!r}") from self.failed

    def still_held(self, messages: list[Message]) -> list[Message]:
        """The messages of partitions this instance still holds (readings and maintenance entries alike: the
        group hands partition k of both topics to the same member)."""
        return [m for m in messages if m.partition in self.held]

    def _mine(self, partitions: list[TopicPartition]) -> set[int]:
        return {p for topic, p in partitions if topic == self.checkpoints.readings_topic}

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        mine = self._mine(partitions)
        if not mine:
            return
        try:
            async with self.lock:
                await self.checkpoints.flush()
        except Exception as exc:
            logger.exception("partitions %s: their state could not be written", sorted(mine))
            self.failed = exc
            raise
        logger.info("partitions %s released: their state written, their offsets committed", sorted(mine))

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        try:
            await self._take(self._mine(partitions))
        except Exception as exc:
            logger.exception("partitions handed over could not be restored")
            self.failed = exc
            raise

    async def _take(self, mine: set[int]) -> None:
        async with self.lock:
            for robot_id in self.checkpoints.robots_of(self.held - mine):
                self.checkpoints.forget(robot_id)
            new = mine - self.held
            self.held = mine
            if new:
                self.health.ready(False, f"restoring the state of partitions {sorted(new)} handed over")
                for robot_id in self.checkpoints.robots_of(new):  # held here once, changed elsewhere since
                    self.checkpoints.forget(robot_id)
                restored = await restore_partitions(self.checkpoints, new)
                logger.info("partitions %s taken over: %d robot(s) restored warm", sorted(new), restored)
                result = self.on_new(new)
                if asyncio.iscoroutine(result):
                    await result
            # A line at every hand-over, partitions new or not: the log of a start that hung in a group (issue 23)
            # could not tell whether the group had handed the instance anything.
            holding = self.holding()
            self.health.ready(True, holding)
            logger.info("%s", holding)

    def holding(self) -> str:
        """What /readyz says once the group's hand-over is done."""
        topic = self.checkpoints.readings_topic
        if self.held:
            return f"holding partitions {sorted(self.held)} of {topic}, their state restored"
        return f"holding no partition of {topic}: the group handed this instance none (more instances than partitions?)"


async def restore_partitions(checkpoints: Checkpoints, partitions: set[int]) -> int:
    """The latest state of every robot of ``partitions`` from the state topic, into the engine."""
    latest: dict[str, Message] = {}
    async with asyncio.timeout(RESTORE_TIMEOUT_S):
        messages = await checkpoints.bus.read_to_end(checkpoints.topic, partitions)
    for message in messages:
        if message.key is not None:
            latest[message.key.decode()] = message
    restored = 0
    for robot_id, message in latest.items():
        try:
            partition, offset, state = read_record(message.value)
            if partition not in partitions:
                continue
            engine_state.load_robot(checkpoints.engine, robot_id, state)
            if offset is not None:  # the readings before it are in the state: a redelivery is told by its offset
                checkpoints.engine.robots[robot_id].read_to = (partition, offset)
        except (ValueError, KeyError, TypeError) as exc:
            checkpoints.engine.robots.pop(robot_id, None)
            logger.warning("robot %r: state on %s not used (%s); it warms up again", robot_id, checkpoints.topic, exc)
            continue
        checkpoints.partition_of[robot_id] = partition
        restored += 1
        logger.debug("robot %r restored as of %s offset %s", robot_id, partition, offset)
    return restored
