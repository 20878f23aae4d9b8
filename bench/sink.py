"""The sink alone: readings already on Kafka -> ``python -m consumer_db`` -> PostgreSQL, as fast as it goes,
against its own work done bare, in turn.

    .venv/bin/python -m bench.sink [--robots 100] [--readings 1000] [--rounds 2] [--against REF]

The synthetic fleet's readings (the pipeline benchmark's, 14 axes, 8 with values) are published once to a
topic of 6 partitions; then, each round, on emptied tables:

1. consumer_db as a process of its own (a fresh consumer group, the default settings), timed from its group's
   first committed offset to the last (start-up and group join left out; polled every 0.25 s), with its
   process CPU time and the PostgreSQL server's over the run (``bench.ingest.ServerCpu``, when the server runs
   on this machine: the sink's statements are half of its work); the database then holds exactly the
   readings sent. With ``--against REF`` the sink of git commit REF's tree too (not migrating: the database
   is at this tree's schema), the first of the two alternating from round to round.
2. Its floor, ``bench.pipeline_throughput.consume_and_copy``: the same messages fetched with aiokafka,
   parsed with ``json.loads`` into their ``readings`` rows and COPied, over 2 connections with a
   transaction in flight on each (the sink's parallelism); and the bare COPY of the stored rows over 2
   connections beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from bench._kafka import Progress, bare_produce, create_topics, fleet, stage
from bench._services import Names, Service, stop_all, with_services
from bench.ingest import ServerCpu, empty, stored
from bench.pipeline_throughput import (
    AXES,
    SINK_WRITERS,
    _checkout,
    bare_copy,
    check,
    consume_and_copy,
    fresh,
    own_topics,
)
from bench.results import write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--readings", type=int, default=1000, help="readings per robot")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--against", metavar="REF", help="also run the sink of git commit REF's tree, in turn")
    args = parser.parse_args(argv)
    found = with_services("sink", measure, args)
    if found is None:
        return 2
    result, _ = found
    rows = report(result)
    write_results("sink", rows, notes=notes(result, args))
    return 0


async def measure(engine: Engine, servers: str, args, log_dir: Path) -> dict:
    if not args.against:
        return await _measure(engine, servers, args, log_dir, None)
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tree:
        return await _measure(engine, servers, args, log_dir, _checkout(args.against, Path(tree)))


async def _measure(engine: Engine, servers: str, args, log_dir: Path, base: dict | None) -> dict:
    payloads, keys = [], set()
    for r in fleet(args.robots, args.readings):
        payloads.append((r.robot_id.encode(), r.to_bytes()))
        keys.add((r.robot_id, round(r.ts.timestamp() * 1e6)))
    total = len(payloads)
    names = Names.fresh("bench-sink")
    await create_topics(servers, [names.readings, names.alerts, names.dead_letters])
    await bare_produce(servers, names.readings, payloads)
    runs = [("this tree", {})] + ([(base["ref"], base["env"])] if base else [])
    rounds = []
    for round_no in range(args.rounds):
        this: dict = {}
        for label, extra_env in runs if round_no % 2 == 0 else runs[::-1]:
            await asyncio.to_thread(fresh, engine)
            this[label] = await sink_alone(engine, servers, names, total, log_dir, extra_env)
            await asyncio.to_thread(check, engine, total, keys)
        this["copy2"] = total / await asyncio.to_thread(bare_copy, engine, total, SINK_WRITERS)
        await asyncio.to_thread(empty, engine)
        this["floor"] = total / await consume_and_copy(servers, names.readings, total, engine, SINK_WRITERS)
        if stored(engine) != total * AXES:
            raise AssertionError("the consume-and-COPY floor did not store every row")
        print(f"round {round_no + 1}: {this}", flush=True)
        rounds.append(this)
    return {"total": total, "runs": [label for label, _ in runs], "rounds": rounds}


async def sink_alone(engine: Engine, servers: str, names: Names, total: int, log_dir: Path, extra_env: dict) -> dict:
    """consumer_db from the start of the full topic, in a fresh group: its rate and process CPU time."""
    group = Names.fresh("bench-sink").sink_group
    env = names.env(servers, engine.url.render_as_string(hide_password=False), LOG_LEVEL="WARNING") | own_topics(names)
    service = Service("consumer_db", ["consumer_db", "run"], env | {"SINK_GROUP_ID": group} | extra_env, log_dir)
    server = ServerCpu(engine)
    server_before = await asyncio.to_thread(server.seconds)
    try:
        async with Progress(servers, names.readings, {"consumer_db": group}) as progress:
            service.start()
            await progress.until(total, services=[service], timeout_s=120 + total / 500)
    finally:
        stop_all([service])
    server_after = await asyncio.to_thread(server.seconds)
    timed = stage(progress.samples, "consumer_db", total)
    server_us = (
        None if None in (server_before, server_after) else round((server_after - server_before) / total * 1e6, 1)
    )
    return {"rate": round(timed["rate"]), "cpu_us": round(service.cpu_s / total * 1e6, 1), "server_us": server_us}


def _median_or_none(values: list) -> float | None:
    return None if not values or None in values else statistics.median(values)


def report(result: dict) -> list[dict]:
    rounds, total = result["rounds"], result["total"]
    floor = statistics.median(r["floor"] for r in rounds)
    copy2 = statistics.median(r["copy2"] for r in rounds)
    rows = []
    for label in result["runs"]:
        rates = [r[label]["rate"] for r in rounds]
        rate = statistics.median(rates)
        rows.append(
            {
                "what": f"consumer_db alone ({label})",
                "readings": total,
                "readings/s": round(rate),
                "rounds": ", ".join(f"{x:,}" for x in rates),
                "process CPU µs a reading": statistics.median(r[label]["cpu_us"] for r in rounds),
                "server CPU µs a reading": _median_or_none([r[label].get("server_us") for r in rounds]),
                "floor / sink": round(floor / rate, 2),
                "bare COPY / sink": round(copy2 / rate, 2),
            }
        )
    for what, key in (
        (f"floor: consume + json.loads + COPY, {SINK_WRITERS} connections", "floor"),
        (f"floor: bare COPY, {SINK_WRITERS} connections", "copy2"),
    ):
        values = [r[key] for r in rounds]
        rows.append(
            {
                "what": what,
                "readings": total,
                "readings/s": round(statistics.median(values)),
                "rounds": ", ".join(f"{x:,.0f}" for x in values),
            }
        )
    return rows


def notes(result: dict, args) -> str:
    against = f" --against {args.against}" if args.against else ""
    return (
        f"Command: `.venv/bin/python -m bench.sink --robots {args.robots} --readings {args.readings} "
        f"--rounds {args.rounds}{against}`: {result['total']:,} readings from a full topic of 6 partitions, "
        "each run on emptied tables, the sink's default settings; median of the rounds, the trees in turn "
        "(the first alternating). The sink's process CPU includes its start (imports, migrations check). "
        f"1-min load average at the end {__import__('os').getloadavg()[0]:.1f} (2 cores, shared)."
    )


if __name__ == "__main__":
    sys.exit(main())
