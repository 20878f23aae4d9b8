"""What the policy for sane readings costs per message: decoding a reading off the wire, shape only
(``Reading.from_bytes``) against shape and plausibility (``ReadingPolicy.read``, what every consumer does).

    .venv/bin/python -m bench.reading_decode [--messages 50000] [--repeats 5]

Single-threaded, in-process; the best of ``--repeats`` runs (a shared machine only ever adds time).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.results import write_results
from common.wire.schemas import DEFAULT_POLICY, Reading


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
        started = time.perf_counter()
        for raw in raws:
            decode(raw)
        best = min(best, time.perf_counter() - started)
    return best / len(raws) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    raws = messages(args.messages)
    shape = best_us(Reading.from_bytes, raws, args.repeats)
    policy = best_us(DEFAULT_POLICY.read, raws, args.repeats)
    rows = [
        {"decode": "Reading.from_bytes (shape)", "us_per_message": shape, "messages_per_s": 1e6 / shape},
        {"decode": "ReadingPolicy.read (shape + policy)", "us_per_message": policy, "messages_per_s": 1e6 / policy},
    ]
    write_results(
        "reading_decode",
        rows,
        notes=f"{args.messages} messages, best of {args.repeats}; the policy adds {policy - shape:.1f} us a message.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
