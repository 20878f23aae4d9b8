"""Scale-out: 1, 2 and 3 consumer_db processes in one consumer group on a topic of 6 partitions.

    .venv/bin/python -m bench.scale_out [--robots 100] [--readings 2000] [--instances 1,2,3]

The synthetic fleet's readings: robots x readings each.
For each instance count, readings_fact is emptied, N ``python -m consumer_db`` processes of a fresh group
start on a fresh, empty topic, and once the group is stable with all N members (so no rebalance moves
partitions mid-stream: that is the fault tests' subject) the readings are published (pre-serialised, bare
aiokafka, faster than any sink); the run ends when the group has committed every reading (read from
Kafka every 0.25 s; consumer_db commits after its transaction). Rate: from the group's first commit to its
last; wall: from the start of publishing.

Then readings_fact must hold exactly the input: the same (robot, ts) readings, and per robot and axis the
same row count, value count and sum of currents; the primary key rules out a row stored twice. Each
instance's last log line says how many rows it wrote new and how many it found already stored (a
redelivery after a rebalance: harmless, but work done twice).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import Engine, text

from bench._kafka import Progress, bare_produce, create_topics, fleet, group_stable, stage
from bench._services import Names, Service, machine_cpu, stop_all, with_services
from bench.ingest import empty
from bench.results import write_results

WRITTEN = re.compile(r"written so far: (\d+) messages, (\d+) readings \((\d+) rows new, (\d+) already there\)")
DIGEST = """
SELECT robot_id, axis_id, count(*), count(amps), round(coalesce(sum(amps), 0)::numeric, 6)
FROM readings_fact GROUP BY robot_id, axis_id
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--readings", type=int, default=2000, help="readings per robot")
    parser.add_argument("--instances", default="1,2,3", help="instance counts to run, comma-separated")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.instances.split(",")]
    found = with_services("scale_out", measure, args, counts)
    if found is None:
        return 2
    rows, extensions = found
    base = rows[0]["readings/s"]
    for row in rows:
        row["x one instance"] = round(row["readings/s"] / base, 2)
    total = args.robots * args.readings
    notes = (
        f"Command: `.venv/bin/python -m bench.scale_out --robots {args.robots} --readings {args.readings} "
        f"--instances {args.instances}`: {total:,} readings ({total * 14:,} rows), 6 partitions, one consumer "
        f"group per run, every instance its own process; the broker, PostgreSQL and the instances share one "
        f"2-core machine. `exact input` = readings_fact held the same readings, row counts, value counts and "
        f"sums of currents per robot and axis as the input. aiokafka {extensions['aiokafka']}, C extensions "
        f"in use: **{extensions['c_extensions']}**."
    )
    write_results("scale_out", rows, notes=notes, extra={"aiokafka": extensions})
    return 0


async def measure(engine: Engine, servers: str, args, counts: list[int], log_dir: Path) -> list[dict]:
    payloads, keys, digest = [], set(), defaultdict(lambda: [0, 0, 0.0])
    for r in fleet(args.robots, args.readings):
        payloads.append((r.robot_id.encode(), r.to_bytes()))
        keys.add((r.robot_id, round(r.ts.timestamp() * 1e6)))
        for axis in range(1, 15):
            d, value = digest[(r.robot_id, axis)], r.currents.get(axis)
            d[0], d[1], d[2] = d[0] + 1, d[1] + (value is not None), d[2] + (value or 0.0)
    rows = []
    for count in counts:
        await asyncio.to_thread(empty, engine)
        row = await run_group(engine, servers, count, payloads, log_dir)
        row["exact input"] = await asyncio.to_thread(exact, engine, keys, digest)
        rows.append(row)
        print(row, flush=True)
    return rows


async def run_group(engine: Engine, servers: str, count: int, payloads: list, log_dir: Path) -> dict:
    names, total = Names.fresh(f"bench-scale{count}"), len(payloads)
    await create_topics(servers, [names.readings, names.alerts, names.dead_letters])
    env = names.env(servers, engine.url.render_as_string(hide_password=False))
    services = [Service(f"consumer_db-{count}-{i}", ["consumer_db", "run"], env, log_dir) for i in range(1, count + 1)]
    try:
        async with Progress(servers, names.readings, {"group": names.sink_group}) as progress:
            for service in services:
                service.start()
            await group_stable(servers, names.sink_group, count)
            cpu0, t0 = machine_cpu(), time.monotonic()
            await bare_produce(servers, names.readings, payloads)
            await progress.until(total, services=services, timeout_s=120 + total / 500)
            cpu1 = machine_cpu()
    finally:
        stop_all(services)
    written = [written_by(s) for s in services]
    s = stage(progress.samples, "group", total)
    return {
        "instances": count,
        "readings": total,
        "seconds": round(s["seconds"], 2),
        "readings/s": round(s["rate"]),
        "wall s": round(s["done_t"] - t0, 2),
        "cores busy": round((cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]) * os.cpu_count(), 2),
        "readings per instance": ", ".join(str(w[1]) for w in written),
        "rows new (sum)": sum(w[2] for w in written),
        "rows already there (sum)": sum(w[3] for w in written),
    }


def written_by(service: Service) -> tuple[int, int, int, int]:
    """(messages, readings, rows new, rows already there) from the instance's last report line."""
    found = WRITTEN.findall(service.log_path.read_text(errors="replace"))
    return tuple(int(x) for x in found[-1]) if found else (0, 0, 0, 0)


def exact(engine: Engine, keys: set, digest: dict) -> bool:
    with engine.connect() as conn:
        stored_keys = {
            (robot, round(ts.timestamp() * 1e6))
            for robot, ts in conn.execute(text("SELECT robot_id, ts FROM readings_fact WHERE axis_id = 1"))
        }
        stored = {
            (robot, axis): (rows, values, float(total))
            for robot, axis, rows, values, total in conn.execute(text(DIGEST))
        }
    same_sums = stored.keys() == digest.keys() and all(
        stored[k][:2] == tuple(d[:2]) and abs(stored[k][2] - d[2]) < 1e-6 * max(1.0, abs(d[2]))
        for k, d in digest.items()
    )
    return stored_keys == keys and same_sums


if __name__ == "__main__":
    sys.exit(main())
