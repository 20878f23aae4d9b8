"""A Kafka redelivery's cost in the sink: ``Sink.write`` of a batch stored already, in turn with the check
it replaced (every reading of the batch fetched back with ``stored_currents`` and compared in Python).

    scripts/with-services.sh .venv/bin/python -m bench.sink_redeliver [--batch 5000] [--batches 200] [--rounds 10]

A scratch database first gets ``--batches`` batches of ``--batch`` readings (10 robots, 8 axes) through the
sink; then each round redelivers one of them to both sinks, in alternating order, so a busy moment of the
shared machine falls on both alike. Every redelivery must store nothing and make no dead letter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench._postgres import postgres_url, scratch_database
from common.store.conflicts import conflict_reason, stored_currents
from common.wire.bus import Message
from common.wire.schemas import Reading
from consumer_db.axislock import AxisLock
from consumer_db.decode import Topics, rejected_row
from consumer_db.sink import Sink

AXES = list(range(1, 9))
ROBOTS = 10
TOPICS = Topics("readings", "alerts", "dead")


class FetchEverySink(Sink):
    """The check before ``store.may_conflict``: every reading of the batch fetched back and compared."""

    @staticmethod
    def _conflicts(conn, batch, rows):
        stored = stored_currents(conn, ((r.robot_id, r.ts) for r, _ in batch.readings))
        return [
            rejected_row(message, reason, robot_id=reading.robot_id)
            for reading, message in batch.readings
            if (reason := conflict_reason(stored.get((reading.robot_id, reading.ts), {}), reading.currents))
        ]


def batch(k: int, size: int) -> list[Message]:
    t0 = datetime(2022, 10, 17, tzinfo=UTC) + timedelta(seconds=2 * k * (size // ROBOTS + 1))
    messages = []
    for i in range(size):
        robot = f"R{i % ROBOTS}"
        currents = {a: (k * 7 + i * a) % 97 / 3 for a in AXES}
        reading = Reading(robot_id=robot, ts=t0 + timedelta(seconds=2 * (i // ROBOTS)), currents=currents)
        messages.append(Message("readings", 0, k * size + i, robot.encode(), reading.to_bytes()))
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5000, help="readings per batch (SINK_BATCH_SIZE's default)")
    parser.add_argument("--batches", type=int, default=200, help="batches stored before the clock starts")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    url = postgres_url("sink_redeliver")
    if url is None:
        raise SystemExit(2)
    with scratch_database(url, prefix="bench_redeliver") as engine:
        sinks = {
            "may_conflict": Sink(engine, AxisLock(engine, AXES), TOPICS),
            "every reading fetched back": FetchEverySink(engine, AxisLock(engine, AXES), TOPICS),
        }
        batches = [batch(k, args.batch) for k in range(args.batches)]
        for messages in batches:
            sinks["may_conflict"].write(messages)
        times: dict[str, list[float]] = {name: [] for name in sinks}
        loads = []
        for n in range(args.rounds):
            messages = batches[n * 37 % args.batches]
            for name in sinks if n % 2 == 0 else reversed(sinks):
                start = time.perf_counter()
                report = sinks[name].write(messages)
                times[name].append(time.perf_counter() - start)
                assert (report.rows_new, report.rejected) == (0, 0), report
            loads.append(os.getloadavg()[0])
    print(
        f"redelivered batch of {args.batch} readings x {len(AXES)} axes, database of {args.batch * args.batches} "
        f"readings, {args.rounds} rounds in turn, load {min(loads):.1f}-{max(loads):.1f}:"
    )
    for name, seconds in times.items():
        ms = sorted(s * 1000 for s in seconds)
        print(f"  {name}: median {statistics.median(ms):.1f} ms ({ms[0]:.1f}-{ms[-1]:.1f})")


if __name__ == "__main__":
    main()
