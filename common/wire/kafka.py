"""Kafka on aiokafka: an idempotent producer keyed by robot id, consumers with manual commits.

Every aiokafka call of the services is in this module; the rest of the code sees the :mod:`common.wire.bus`
interfaces and :mod:`common.errors`, and runs the same on the in-process bus.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    KafkaError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from common.errors import CommitFailed, ConfigurationError, ServiceUnavailable
from common.settings import CommonSettings
from common.wire.bus import Message, Pending, Rebalance, Unit

logger = logging.getLogger(__name__)
T = TypeVar("T")
# aiokafka's stop() can retry forever when no broker answers (it looks for the group coordinator to leave
# the group, or waits to deliver what is pending: aio-libs/aiokafka#659). A stopping service waits this long.
CLOSE_TIMEOUT_S = 10.0
# How long a client's start and the admin calls of a start-up are retried while the error is transient: a broker
# not up yet, or a node killed but not yet fenced (~9 s), which aiokafka's admin client may still ask.
START_PATIENCE_S = 40.0
# One admin request's bound (aiokafka's default: 40 s). Its wait for the controller's node is bounded by it too, and
# that node is chosen once per request: a request that picked a dead one waits it out, only the next one asks the
# refreshed metadata. 10 s leaves START_PATIENCE_S room for a few attempts; Kafka makes topics well within it.
ADMIN_REQUEST_TIMEOUT_MS = 10_000
# A transaction's records are in the topic before it is committed or aborted; read uncommitted (aiokafka's
# default), an aborted transaction's readings were stored and judged. Read committed, a consumer sees them only
# once committed, and never those of an aborted one.
ISOLATION_LEVEL = "read_committed"


def connection_options(settings: CommonSettings) -> dict[str, Any]:
    """Bootstrap servers and security options, the same for producers, consumers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return options


def is_transient(exc: BaseException) -> bool:
    """An error worth another attempt: aiokafka's ``retriable`` ones (no broker reachable, a node gone but not yet
    fenced, a request timed out, no controller), and the admin client's own wait for a node that never became
    ready (a bare TimeoutError)."""
    return isinstance(exc, TimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


async def with_retry(call: Callable[[], Awaitable[T]], what: str, bootstrap: str) -> T:
    """``call()``, again with a bounded exponential backoff while it fails with a transient error, for at most
    START_PATIENCE_S (plus the attempt under way: aiokafka bounds each by its request timeout); then one
    ServiceUnavailable naming the bootstrap servers. Other errors pass as they are."""
    started = time.monotonic()
    delay, attempt = 0.5, 1
    while True:
        try:
            return await call()
        except (KafkaError, TimeoutError) as exc:
            if not is_transient(exc):
                raise
            waited = time.monotonic() - started
            # aiokafka's errors name their class themselves; the admin client's bare TimeoutError says nothing
            reason = str(exc) if isinstance(exc, KafkaError) else f"{type(exc).__name__} (no node ready in time)"
            if waited + delay > START_PATIENCE_S:
                raise ServiceUnavailable(
                    f"Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS): {what} failed for {waited:.0f} s, "
                    f"{attempt} attempts; the last: {reason}"
                ) from exc
            logger.warning("Kafka %s failed (%s); attempt %d again in %.1f s", what, reason, attempt + 1, delay)
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, 10.0), attempt + 1


async def stop_within(client: Any, what: str, waits_for: str, consequence: str) -> None:
    """``client.stop()``, waited on for at most CLOSE_TIMEOUT_S. ``waits_for``: what that stop waits on, said when
    it takes too long; the cause (no broker, writes refused for lack of in-sync replicas, ...) is not known here."""
    cancelling = asyncio.current_task().cancelling()
    try:
        await asyncio.wait_for(client.stop(), CLOSE_TIMEOUT_S)
    except asyncio.CancelledError:
        if asyncio.current_task().cancelling() > cancelling:
            raise  # this task is being cancelled (a second forced stop): the close is cut short
        # aiokafka's consumer re-raised the cancellation of a fetch of its own (seen when stopped by force, in
        # the middle of a commit): it is stopped, and the closes after this one must still run.
        logger.warning("Kafka %s stopped with its own task cancelled; %s", what, consequence)
    except TimeoutError:
        logger.warning(
            "Kafka %s did not stop within %g s, still waiting for %s; left as it is: %s",
            what,
            CLOSE_TIMEOUT_S,
            waits_for,
            consequence,
        )


class _SayLackOfInSyncReplicas(logging.Filter):
    """Kafka refuses a write with acks=all while fewer of a partition's copies are in sync than its
    min.insync.replicas. aiokafka's idempotent producer then retries without end (the send's future stays pending,
    so the producer's own code never hears of it) and says only ``Got error produce response on topic-partition
    ..., retrying. Error: <class 'aiokafka.errors.NotEnoughReplicasError'>`` at each retry (10 s apart with Kafka
    4.1). That warning is put in words here, at most once a minute per partition; other records pass as they are."""

    REPEAT_S = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._said: dict[Any, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if not (record.msg.startswith("Got error produce response on topic-partition") and len(args) == 2):
            return True
        tp, error = args
        if not (
            isinstance(error, type) and issubclass(error, (NotEnoughReplicasError, NotEnoughReplicasAfterAppendError))
        ):
            return True
        now = time.monotonic()
        if now - self._said.get(tp, -self.REPEAT_S) < self.REPEAT_S:
            return False
        self._said[tp] = now
        record.msg = (
            "Kafka refuses writes to %r partition %d for lack of in-sync replicas (%s): fewer of its copies are in "
            "sync than its min.insync.replicas (a broker holding one is down or behind); they are kept and sent "
            "again until Kafka confirms them, nothing is counted as sent before (docs/kafka.md)"
        )
        record.args = (tp.topic, tp.partition, error.__name__)
        return True


_LACK_OF_IN_SYNC_REPLICAS = _SayLackOfInSyncReplicas()


def message_of(record: ConsumerRecord) -> Message:
    """A record read from Kafka as the bus's message. One without a value (a tombstone) reads as an empty
    message: refused with its reason, not a crash."""
    return Message(record.topic, record.partition, record.offset, record.key, record.value or b"", record.timestamp)


class KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 1000) -> list[Message]:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [message_of(r) for records in batches.values() for r in records]

    async def commit(self, messages: list[Message]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        if not offsets:
            return
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as exc:  # e.g. CommitFailedError, or IllegalStateError: a rebalance moved them away
            raise CommitFailed(f"{type(exc).__name__}: {exc}") from exc

    async def lag(self) -> int:
        """High watermark minus position, summed over the assigned partitions (0 for one not fetched yet)."""
        total = 0
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                total += max(0, high - await self.consumer.position(tp))
        return total

    async def close(self) -> None:
        await stop_within(
            self.consumer,
            "consumer",
            "its group's coordinator to take its leaving",
            "the group learns of its leaving at its session timeout",
        )


class KafkaBus:
    """Producer with ``acks="all"`` and idempotence; consumers in a group, auto-commit off."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._options = connection_options(settings)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        aiokafka_sender = logging.getLogger("aiokafka.producer.sender")
        if _LACK_OF_IN_SYNC_REPLICAS not in aiokafka_sender.filters:
            aiokafka_sender.addFilter(_LACK_OF_IN_SYNC_REPLICAS)
        self._producer = AIOKafkaProducer(
            **self._options,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # no wait on a partial batch: the producer batches by itself (KafkaBatches)
            max_batch_size=256 * 1024,
            compression_type=None,
        )
        await self._retrying(self._producer.start, "producer start")

    async def stop(self) -> None:
        if self._producer is not None:
            # Flushes pending sends first; a send it cannot deliver stays unacknowledged, as its caller sees.
            await stop_within(
                self._producer,
                "producer",
                "Kafka to confirm the sends it held",
                "what it had not delivered stays unacknowledged",
            )
            self._producer = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus.start() was not awaited")
        return self._producer

    async def send(self, topic: str, key: str, value: bytes, *, partition: int | None = None) -> asyncio.Future:
        return await self.producer.send(topic, value, key=key.encode(), partition=partition)

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        await self.producer.send_and_wait(topic, value, key=key.encode())

    async def flush(self) -> None:
        await self.producer.flush()

    def batches(self) -> KafkaBatches:
        return KafkaBatches(self.producer)

    async def read_to_end(self, topic: str, partitions: Collection[int] | None = None) -> list[Message]:
        existing = await self._partitions_of(topic)
        tps = [TopicPartition(topic, p) for p in existing if partitions is None or p in partitions]
        if not tps:
            return []
        consumer = AIOKafkaConsumer(**self._options, enable_auto_commit=False, isolation_level=ISOLATION_LEVEL)
        await self._retrying(consumer.start, f"start of the read-back of {topic}")
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[Message] = []
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                batches = await consumer.getmany(*tps, timeout_ms=500, max_records=10_000)
                out += [message_of(r) for tp, records in batches.items() for r in records if r.offset < end[tp]]
            return out
        finally:
            await consumer.stop()

    async def _partitions_of(self, topic: str) -> list[int]:
        # The admin client, because a group-less consumer only learns a topic's partitions by subscribing.
        # Every topic is described, not the one named: naming a topic in a metadata request lets a broker
        # with auto.create.topics.enable create it, with the broker's partition count instead of ours.
        admin = AIOKafkaAdminClient(**self._options, request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)
        await self._retrying(admin.start, "admin start")
        try:
            described = await self._retrying(admin.describe_topics, "admin describe_topics")
        finally:
            await admin.close()
        return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        return await with_retry(call, what, self.settings.kafka_bootstrap_servers)

    async def ensure_topics(self, topics: list[str], *, compacted: bool = False) -> None:
        admin = AIOKafkaAdminClient(**self._options, request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)
        await self._retrying(admin.start, "admin start")
        try:
            # Each attempt lists the topics again: one made by an earlier attempt is not asked for twice.
            await self._retrying(lambda: self._ensure(admin, topics, compacted), f"making sure of topics {topics}")
        finally:
            await admin.close()

    async def _ensure(self, admin: AIOKafkaAdminClient, topics: list[str], compacted: bool) -> None:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            # With acks=all, a write counts once min.insync.replicas copies have it (docs/kafka.md).
            configs = {}
            if self.settings.topic_min_insync_replicas is not None:
                configs["min.insync.replicas"] = str(self.settings.topic_min_insync_replicas)
            if compacted:
                configs["cleanup.policy"] = "compact"
            new = [
                NewTopic(
                    t, self.settings.topic_partitions, self.settings.topic_replication_factor, topic_configs=configs
                )
                for t in missing
            ]
            _say_created((await admin.create_topics(new)).topic_errors)
        there = [t for t in dict.fromkeys(topics) if t in existing]
        # Only a layout asked of the cluster can differ from it (the defaults ask nothing): a start costs no
        # more requests then.
        asked = self.settings.topic_replication_factor > 1 or self.settings.topic_min_insync_replicas is not None
        if there and asked:
            # A node gone but not yet fenced may be the one asked: the check is no reason to stop the service.
            try:
                await self._say_unlike_the_settings(admin, there)
            except (KafkaError, TimeoutError) as exc:
                logger.warning("could not compare topics %s with the settings: %r", there, exc)

    async def _say_unlike_the_settings(self, admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        """Warn of a topic that was there already with fewer copies or another min.insync.replicas than the
        settings ask: they apply to topics made at start-up, and a user who moved to the production layout would
        otherwise believe they have it. Left as it is: more copies take a reassignment, and a changed
        min.insync.replicas changes which writes Kafka refuses, an operator's call (the warning gives the command)."""
        copies, wanted = self.settings.topic_replication_factor, self.settings.topic_min_insync_replicas
        described = {t["topic"]: t["partitions"] for t in await admin.describe_topics(topics)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        in_sync = {}
        for response in await admin.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                for entry in resource["config_entries"]:
                    if entry["config_names"] == "min.insync.replicas":  # aiokafka's spelling of the field
                        in_sync[resource["resource_name"]] = int(entry["config_value"])
        for topic in topics:
            fewest = min((len(p["replicas"]) for p in described.get(topic, [])), default=copies)
            if fewest < copies:
                logger.warning(
                    "topic %r exists with %d cop%s per partition, fewer than TOPIC_REPLICATION_FACTOR (%d): the "
                    "setting applies to topics made at start-up; a reassignment (kafka-reassign-partitions.sh) adds "
                    "copies",
                    topic,
                    fewest,
                    "y" if fewest == 1 else "ies",
                    copies,
                )
            if wanted is not None and in_sync.get(topic, wanted) != wanted:
                logger.warning(
                    "topic %r exists with min.insync.replicas=%d, not TOPIC_MIN_INSYNC_REPLICAS (%d): the setting "
                    "applies to topics made at start-up; to change it: kafka-configs.sh --bootstrap-server ... "
                    "--alter --entity-type topics --entity-name %s --add-config min.insync.replicas=%d",
                    topic,
                    in_sync[topic],
                    wanted,
                    topic,
                    wanted,
                )

    async def subscribe(
        self, topics: list[str], *, group_id: str, from_beginning: bool = True, on_rebalance: Rebalance | None = None
    ) -> KafkaSubscription:
        consumer = AIOKafkaConsumer(
            **self._options,
            group_id=group_id,
            enable_auto_commit=False,
            isolation_level=ISOLATION_LEVEL,
            auto_offset_reset="earliest" if from_beginning else "latest",
            max_poll_records=5000,
            # Range hands partition k of every topic to the same member: a robot's maintenance entries reach the
            # consumer_alerts instance holding its readings (docs/maintenance.md). Range alone: aiokafka sends a
            # JoinGroup per assignor listed, one after the other (aio-libs/aiokafka#1168, open), and the second,
            # with other protocols, starts a new rebalance; two members starting together could keep restarting
            # each other's rebalance for good (issue 23: one instance never judged a reading).
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        # Before start, as the constructor's topics would be: the group is joined once, at start.
        consumer.subscribe(topics, listener=_Listener(on_rebalance) if on_rebalance is not None else None)
        await self._retrying(consumer.start, f"consumer {group_id} start")
        return KafkaSubscription(consumer)


def _say_created(topic_errors: list[tuple]) -> None:
    """Log the topics Kafka created, and stop on one it refused. The admin client answers each topic with an error
    code rather than raising: a refused topic (a replication factor above the brokers there are, a policy, an ACL) was
    logged as created, and the service went on to wait for it. One another instance created first is no error."""
    created, refused, transient = [], [], []
    for topic, code, *rest in topic_errors:  # (topic, code[, message, ...]): the fields after code vary by version
        message = rest[0] if rest and rest[0] else "no message"
        if code == 0:
            created.append(topic)
        elif for_code(code).retriable:  # no controller, a timed-out request: not a refusal, worth another try
            transient.append(for_code(code)(f"creating {topic!r}: {message}"))
        elif code != TopicAlreadyExistsError.errno:
            refused.append(f"{topic!r}: {for_code(code).__name__} ({message})")
    if created:
        logger.info("created topics %s", ", ".join(map(repr, created)))
    if transient:
        raise transient[0]
    if refused:
        raise ConfigurationError(
            "Kafka refused to create " + "; ".join(refused) + " (see TOPIC_PARTITIONS, TOPIC_REPLICATION_FACTOR, "
            "TOPIC_MIN_INSYNC_REPLICAS)"
        )


class _Listener(ConsumerRebalanceListener):
    """aiokafka's listener around a :class:`~common.wire.bus.Rebalance` (partitions as (topic, partition))."""

    def __init__(self, rebalance: Rebalance) -> None:
        self.rebalance = rebalance

    async def on_partitions_revoked(self, revoked) -> None:
        await self.rebalance.revoked([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned) -> None:
        await self.rebalance.assigned([(tp.topic, tp.partition) for tp in assigned])


class KafkaBatches:
    """Per-partition batches built by the producer itself (aiokafka ``create_batch``/``send_batch``):
    aiokafka's per-message ``send`` costs more than all the rest of the producer. Keys go to the partition
    aiokafka's default partitioner would choose (murmur2 of the key over all partitions), so per-key order
    and the key -> partition mapping are the same as with ``send``."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.opened_at = float("inf")  # monotonic time the oldest open batch got its first message
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[tuple[str, str], int] = {}
        self._open: dict[tuple[str, int], Unit] = {}

    @property
    def pending(self) -> int:
        return sum(len(unit.messages) for unit in self._open.values())

    async def add(self, message: Pending) -> list[Unit]:
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
        units = list(self._open.values())
        self._open.clear()
        self.opened_at = float("inf")
        return units

    def take_back(self) -> list[Pending]:
        return [m for unit in self.take_all() for m in unit.messages]

    async def group(self, messages: list[Pending]) -> list[Unit]:
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


def open_bus(settings: CommonSettings):
    """The bus the settings ask for (``BUS=kafka`` or ``BUS=memory``)."""
    if settings.bus == "memory":
        from common.wire.bus import InProcessBus

        return InProcessBus()
    return KafkaBus(settings)
