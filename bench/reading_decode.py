"""What the policy for sane readings costs per message: decoding a reading off the wire, shape only
(``Reading.from_bytes``) against shape and plausibility (``ReadingPolicy.read``, what consumer_alerts and the
dashboard do; ``ReadingPolicy.read_values``, the same verdict through msgspec, what the sink does), and the
sink's decoding of a batch of them (``consumer_db.decode.decode``: the clock read once a batch).

    .venv/bin/python -m bench.reading_decode [--messages 50000] [--repeats 5]

Single-threaded, in-process; the best of ``--repeats`` runs (a shared machine only ever adds time), timed as
this process's CPU time, which other processes on a busy machine stretch far less than the clock on the wall.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.results import write_results
from common.wire.bus import Message
from common.wire.schemas import DEFAULT_POLICY, Reading
from consumer_db.decode import Topics, decode

SINK_BATCH = 5000  # the sink's default SINK_BATCH_SIZE
TOPICS = Topics("readings", "alerts", "dead-letters")


def messages(count: int) -> list[bytes]:
    """Readings as the producer writes them: 14 axes, 8 with values, 20 robots, 2 s apart."""
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        Reading(
            robot_id=f"robot-{i % 20:03d}",
            ts=start + timedelta(seconds=2 * (i // 20)),
            row=None,
            currents={a: (round(3.0 + (i * a) % 97 / 10, 3) if a <= 8 else None) for a in range(1, 15)},
        ).to_bytes()
        for i in range(count)
    ]


def best_us(decode, raws: list[bytes], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for raw in raws:
            decode(raw)
        best = min(best, time.process_time() - started)
    return best / len(raws) * 1e6


def sink_decode_us(raws: list[bytes], repeats: int) -> float:
    """``decode`` of the messages in the sink's batches, per message."""
    stream = [Message(TOPICS.readings, 0, offset, None, raw, None) for offset, raw in enumerate(raws)]
    batches = [stream[i : i + SINK_BATCH] for i in range(0, len(stream), SINK_BATCH)]
    return best_us(lambda batch: decode(batch, TOPICS), batches, repeats) * len(batches) / len(raws)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    raws = messages(args.messages)
    shape = best_us(Reading.from_bytes, raws, args.repeats)
    policy = best_us(DEFAULT_POLICY.read, raws, args.repeats)
    values = best_us(DEFAULT_POLICY.read_values, raws, args.repeats)
    sink = sink_decode_us(raws, args.repeats)
    rows = [
        {"decode": "Reading.from_bytes (shape)", "us_per_message": shape, "messages_per_s": 1e6 / shape},
        {"decode": "ReadingPolicy.read (shape + policy)", "us_per_message": policy, "messages_per_s": 1e6 / policy},
        {"decode": "ReadingPolicy.read_values (msgspec)", "us_per_message": values, "messages_per_s": 1e6 / values},
        {"decode": f"consumer_db decode, {SINK_BATCH} a batch", "us_per_message": sink, "messages_per_s": 1e6 / sink},
    ]
    write_results(
        "reading_decode",
        rows,
        notes=f"{args.messages} messages, best of {args.repeats}; the policy adds {policy - shape:.1f} us a message.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
