"""Read a Kafka topic from the beginning to its current end, without a consumer group."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from common.bus import Message
from common.kafka import KafkaBus, connection_options, start_with_retry


async def partitions_of(bus: KafkaBus, topic: str) -> list[int]:
    # The admin client, because a group-less consumer only learns a topic's partitions by subscribing.
    admin = AIOKafkaAdminClient(**connection_options(bus.settings))
    await start_with_retry(admin, "admin")
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


async def kafka_read_to_end(bus: KafkaBus, topic: str) -> list[Message]:
    tps = [TopicPartition(topic, p) for p in await partitions_of(bus, topic)]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(**connection_options(bus.settings), enable_auto_commit=False)
    await start_with_retry(consumer, f"read-back of {topic}")
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Message] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(*tps, timeout_ms=500, max_records=10_000)
            out += [
                Message(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                for tp, records in batches.items()
                for r in records
                if r.offset < end[tp]
            ]
        return out
    finally:
        await consumer.stop()
