"""Producer throughput at max speed vs a bare aiokafka producer sending the same payloads, in one run.

On the real broker (KAFKA_BOOTSTRAP_SERVERS) and the real export (../shared/data), each on fresh topics:

- parse only: ``read_export_rows`` (the bulk-ingest fast path), ``read_export`` (readings), pandas.read_csv;
- the synthetic fleet's generation rate, and serialisation (``Reading.to_bytes``);
- ``producer.service.run`` at max speed (parse + serialise + send + wait for every acks=all confirmation);
- bare aiokafka ``send`` of the pre-serialised payloads, then ``flush`` and every confirmation;
- bare aiokafka ``create_batch``/``send_batch`` of the same payloads.

Both producers use the same client settings (acks=all, idempotence, linger 5 ms, 256 KiB batches).

    .venv/bin/python -m bench.producer_throughput [--csv FILE] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench.results import write_results
from common.csvio.controller_csv import CsvOptions, read_export, read_export_rows
from common.wire.kafka import KafkaBus, connection_options
from common.wire.schemas import Reading
from producer.service import run
from producer.settings import ProducerSettings
from producer.synthetic import synthetic_fleet

REAL_EXPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "RMBR4-2_export_test.csv"
AXES = list(range(1, 15))


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def parse_rows(csv_path: Path, repeat: int) -> list[dict]:
    options = CsvOptions("RMBR4-2", AXES)
    rows = []
    for name, fn in [
        (
            "parse: read_export_rows (fast path)",
            lambda: sum(1 for _ in read_export_rows(csv_path, options, log_columns=False)),
        ),
        (
            "parse: read_export (Reading objects)",
            lambda: sum(1 for _ in read_export(csv_path, options, log_columns=False)),
        ),
        ("parse: pandas.read_csv (reference)", lambda: len(__import__("pandas").read_csv(csv_path))),
    ]:
        runs = [timed(fn) for _ in range(repeat)]
        rows.append(_row(name, runs[0][1], [t for t, _ in runs]))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fleet = lambda: sum(1 for _ in itertools.islice(synthetic_fleet(10, seed=1, start=start, axes=AXES), 100_000))  # noqa: E731
    rows.append(_row("synthetic fleet: 10 robots, generate", 100_000, [timed(fleet)[0] for _ in range(repeat)]))
    readings = [r for r in read_export(csv_path, options, log_columns=False) if isinstance(r, Reading)]
    rows.append(
        _row(
            "serialise: Reading.to_bytes",
            len(readings),
            [timed(lambda: [r.to_bytes() for r in readings])[0] for _ in range(repeat)],
        )
    )
    return rows


def _row(name: str, count: int, seconds: list[float]) -> dict:
    best = min(seconds)
    return {
        "what": name,
        "rows": count,
        "best_s": round(best, 3),
        "median_s": round(statistics.median(seconds), 3),
        "rows_per_s": round(count / best),
    }


async def leaders_ready(producer: AIOKafkaProducer, topics: list[str], timeout_s: float = 30) -> None:
    """Wait until every partition of fresh topics has a leader, so that no run pays for the election."""
    async with asyncio.timeout(timeout_s):
        while True:
            await producer.client.force_metadata_update()
            cluster = producer.client.cluster
            if all(
                cluster.partitions_for_topic(t)
                and all(
                    cluster.leader_for_partition(TopicPartition(t, p)) not in (None, -1)
                    for p in cluster.partitions_for_topic(t)
                )
                for t in topics
            ):
                return
            await asyncio.sleep(0.2)


async def producer_run(settings: ProducerSettings, csv_path: Path | None, **update) -> tuple[float, int]:
    config = settings.model_copy(
        update={
            "csv_path": csv_path,
            "readings_topic": f"bench-readings-{uuid.uuid4().hex[:8]}",
            "dead_letter_topic": f"bench-dead-{uuid.uuid4().hex[:8]}",
            **update,
        }
    )
    bus = KafkaBus(config)
    await bus.start()
    try:
        await bus.ensure_topics([config.readings_topic, config.dead_letter_topic])
        await leaders_ready(bus.producer, [config.readings_topic, config.dead_letter_topic])
        started = time.perf_counter()
        report = await run(config, bus=bus, stop=asyncio.Event())
        elapsed = time.perf_counter() - started
    finally:
        await bus.stop()
    assert report.unconfirmed == 0 and report.readings_confirmed > 0
    print(f"producer run: {elapsed:.3f} s wall, {report.elapsed_s:.3f} s from the first row to the last confirmation")
    return elapsed, report.readings_confirmed


async def bare_run(settings: ProducerSettings, payloads: list[tuple[bytes, bytes]], *, batches: bool) -> float:
    topic = f"bench-bare-{uuid.uuid4().hex[:8]}"
    await KafkaBus(settings).ensure_topics([topic])
    producer = AIOKafkaProducer(
        **connection_options(settings),
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
        futures = await (_send_batches(producer, topic, payloads) if batches else _send_each(producer, topic, payloads))
        await producer.flush()
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _send_each(producer: AIOKafkaProducer, topic: str, payloads) -> list:
    return [await producer.send(topic, value, key=key) for key, value in payloads]


async def _send_batches(producer: AIOKafkaProducer, topic: str, payloads) -> list:
    partitions = sorted(await producer.partitions_for(topic))
    partitioner, futures, open_batches = DefaultPartitioner(), [], {}
    for key, value in payloads:
        partition = partitioner(key, partitions, partitions)
        batch = open_batches.get(partition) or open_batches.setdefault(partition, producer.create_batch())
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    for partition, batch in open_batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def kafka_rows(settings: ProducerSettings, csv_path: Path, repeat: int) -> tuple[list[dict], float]:
    readings = [
        r
        for r in read_export(csv_path, CsvOptions(settings.robot_id, AXES), log_columns=False)
        if isinstance(r, Reading)
    ]
    payloads = [(r.robot_id.encode(), r.to_bytes()) for r in readings]
    timings: dict[str, list[float]] = {"producer": [], "bare send": [], "bare send_batch": []}
    for _ in range(repeat):  # interleaved, so that a slow moment of the broker hits all three alike
        elapsed, sent = await producer_run(settings, csv_path)
        timings["producer"].append(elapsed)
        timings["bare send"].append(await bare_run(settings, payloads, batches=False))
        timings["bare send_batch"].append(await bare_run(settings, payloads, batches=True))
    fleet = [
        await producer_run(settings, None, robots=10, limit=100_000, start_time=datetime(2024, 1, 1, tzinfo=UTC))
        for _ in range(repeat)
    ]
    names = {
        "producer": "kafka: producer --max-speed (parse+serialise+send+acks)",
        "bare send": "kafka: bare aiokafka send (pre-serialised)",
        "bare send_batch": "kafka: bare aiokafka send_batch (pre-serialised)",
    }
    rows = [_row(names[k], len(payloads), v) for k, v in timings.items()]
    rows.append(_row("kafka: producer --synthetic --robots 10 --max-speed", fleet[0][1], [t for t, _ in fleet]))
    best = {k: min(v) for k, v in timings.items()}
    return rows, {
        "producer_to_bare_send": round(best["bare send"] / best["producer"], 3),
        "producer_to_bare_send_batch": round(best["bare send_batch"] / best["producer"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=REAL_EXPORT, help="the controller export (default: the real one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is reported")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        print(f"no export at {args.csv}")
        return 2
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        print("KAFKA_BOOTSTRAP_SERVERS is not set (source /tmp/axiswatch-services.env or run `make bench`)")
        return 2
    settings = ProducerSettings(_env_file=None, kafka_bootstrap_servers=servers, max_speed=True, axes_from_db=False)
    rows = parse_rows(args.csv, args.repeat)
    kafka, ratios = asyncio.run(kafka_rows(settings, args.csv, args.repeat))
    notes = (
        f"Producer rows/s as a share of the bare aiokafka producer's: **{ratios['producer_to_bare_send']:.2f}** of "
        f"per-message `send`, **{ratios['producer_to_bare_send_batch']:.2f}** of `send_batch` (best of {args.repeat} "
        f"each, interleaved in one run, broker {servers}, one key = one partition, acks=all + idempotence). "
        "The producer's time includes reading and parsing the file, building and serialising every reading "
        "and waiting for every confirmation; the bare producers' payloads were serialised beforehand, so the "
        "gap is the cost of parsing and serialising (see the parse and serialise rows), not of sending."
    )
    write_results("producer_throughput", rows + kafka, notes=notes, extra={"ratios": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
