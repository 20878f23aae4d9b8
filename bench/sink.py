"""The sink's throughput: readings already on Kafka -> consumer_db -> PostgreSQL, as fast as it goes.

    .venv/bin/python -m bench.sink [--readings 100000] [--robots 20]

Publishes the readings (14 axes, 8 with values) to fresh topics on KAFKA_BOOTSTRAP_SERVERS, then runs the
sink in this process against a scratch database on DATABASE_URL and times it from the first stored row
to the last (the consumer group's start-up is left out; polled every 0.25 s), for two batch sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from bench._postgres import postgres_url, scratch_database
from bench.results import write_results
from common.store.tables import readings_fact
from common.wire.kafka import KafkaBus
from common.wire.schemas import Reading
from consumer_db.service import run
from consumer_db.settings import ConsumerDbSettings

T0 = datetime(2022, 10, 17, tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--robots", type=int, default=20)
    args = parser.parse_args(argv)
    url = postgres_url("sink")
    if url is None or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print("bench.sink needs DATABASE_URL (PostgreSQL) and KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    rows = [asyncio.run(measure(url, args, batch_size)) for batch_size in (500, 5000)]
    write_results(
        "sink",
        rows,
        notes=f"{args.readings:,} readings of {args.robots} robots, 14 axes each, "
        "6 partitions; from the first stored row to the last.",
    )
    return 0


async def measure(url: str, args, batch_size: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    with scratch_database(url, prefix="bench_sink") as engine:
        settings = ConsumerDbSettings(
            _env_file=None,
            database_url=engine.url.render_as_string(hide_password=False),
            bus="kafka",
            readings_topic=f"bench-readings-{tag}",
            alerts_topic=f"bench-alerts-{tag}",
            dead_letter_topic=f"bench-dead-{tag}",
            topic_partitions=6,
            sink_group_id=f"bench-sink-{tag}",
            sink_batch_size=batch_size,
        )
        bus = KafkaBus(settings)
        await bus.start()
        try:
            await bus.ensure_topics([settings.readings_topic, settings.alerts_topic, settings.dead_letter_topic])
            for i in range(args.readings):
                robot = f"robot-{i % args.robots:03d}"
                currents = {a: (round((i * a) % 97 / 7, 2) if a <= 8 else None) for a in range(1, 15)}
                await bus.send(
                    settings.readings_topic,
                    robot,
                    Reading(
                        robot_id=robot, ts=T0 + timedelta(seconds=2 * (i // args.robots)), currents=currents
                    ).to_bytes(),
                )
            await bus.flush()
            stop = asyncio.Event()
            sink = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
            first, last = await watch(engine, args.readings * 14)
            stop.set()
            await sink
        finally:
            await bus.stop()
    seconds = last - first
    return {
        "batch size": batch_size,
        "readings": args.readings,
        "seconds": round(seconds, 2),
        "readings/s": round(args.readings / seconds),
        "rows/s": round(args.readings * 14 / seconds),
    }


async def watch(engine: Engine, rows: int) -> tuple[float, float]:
    first = None
    while True:
        stored = await asyncio.to_thread(count, engine)
        now = time.perf_counter()
        if stored and first is None:
            first = now
        if stored >= rows:
            return first, now
        await asyncio.sleep(0.25)  # counting a growing table is not free: not too often


def count(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(readings_fact)).scalar_one()
    except Exception:  # noqa: BLE001 - not migrated yet
        return 0


if __name__ == "__main__":
    sys.exit(main())
