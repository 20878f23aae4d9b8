"""End-to-end throughput: the synthetic fleet at max speed through producer -> Kafka -> consumer_db ->
PostgreSQL and -> consumer_alerts, each service a process of its own, against the floor measured in the
same run on the same broker and database.

    .venv/bin/python -m bench.pipeline_throughput [--robots 100] [--readings 10000] [--profile-readings 100000]

1. Floor: the same payloads (serialised beforehand) sent by a bare aiokafka producer (create_batch/send_batch,
   the producer's own way), fetched back by a bare consumer (no parsing, no commit), and the rows the
   pipeline stored COPied back into the emptied readings (the stored form, its partitions kept): once over
   one connection, once over two at once, the parallelism of the sink (it overlaps two transactions).
2. Pipeline: consumer_db and consumer_alerts start (fresh groups, 6 partitions), then
   ``python -m producer --synthetic --max-speed``; until both groups have committed every reading. Progress
   comes from Kafka every 0.25 s: the readings topic's high watermark (producer: confirmed), each group's
   committed offset (consumer_db commits after its transaction). A stage's rate runs from its first
   progress to its last (start-up and group join left out); end-to-end runs from the start of the processes.
   Floor and pipeline alternate, --rounds times (floor, pipeline, COPY floor, floor, pipeline, ...), so the
   shared machine's load falls on both; each figure is the median of its rounds.
3. Checks: readings_fact holds robots x readings x 14 rows, exactly the (robot, ts) pairs sent.
4. Profile: the slowest stage again, alone, under pyinstrument (bench._profiled), over --profile-readings.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, text

from bench._kafka import T0, Progress, bare_consume, bare_produce, create_topics, fleet, stage
from bench._services import Names, Service, machine_cpu, stop_all, with_services
from bench.ingest import empty, stored
from bench.results import RESULTS_DIR, write_results

AXES = 14
STAGES = ("producer", "consumer_db", "consumer_alerts")
SINK_WRITERS = 2  # transactions the sink keeps in flight at once: its floor COPies over as many connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--readings", type=int, default=10_000, help="readings per robot")
    parser.add_argument("--profile-readings", type=int, default=100_000, help="readings of the profiled run (0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="floor and pipeline in turn, this many times")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (their folder is printed)")
    args = parser.parse_args(argv)
    found = with_services("pipeline_throughput", measure, args, keep_logs=args.keep_logs)
    if found is None:
        return 2
    result, extensions = found
    rows, extra = report(result, args)
    extra["aiokafka"] = extensions
    write_results("pipeline_throughput", rows, notes=notes(result, args, extensions), extra=extra)
    return 0


async def measure(engine: Engine, servers: str, args, log_dir: Path) -> dict:
    total = args.robots * args.readings
    started = time.perf_counter()
    payloads, keys = [], set()
    for r in fleet(args.robots, args.readings):
        payloads.append((r.robot_id.encode(), r.to_bytes()))
        keys.add((r.robot_id, round(r.ts.timestamp() * 1e6)))
    print(f"{total:,} readings generated and serialised in {time.perf_counter() - started:.1f} s", flush=True)
    out: dict = {"total": total, "rounds": []}
    for round_no in range(args.rounds):
        if round_no:
            await asyncio.to_thread(empty, engine)
        floor_topic = Names.fresh("bench-floor").readings
        await create_topics(servers, [floor_topic])
        this = {"produce_s": await bare_produce(servers, floor_topic, payloads)}
        this["consume_s"] = await bare_consume(servers, floor_topic, total)
        this["pipeline"] = await pipeline(engine, servers, args, total, log_dir)
        this["checks"] = await asyncio.to_thread(check, engine, total, keys)
        this["copy_s"] = await asyncio.to_thread(bare_copy, engine, total, 1)
        this[f"copy{SINK_WRITERS}_s"] = await asyncio.to_thread(bare_copy, engine, total, SINK_WRITERS)
        print(f"round {round_no + 1}: {json.dumps(_brief(this))}", flush=True)
        out["rounds"].append(this)
    last = out["rounds"][-1]["pipeline"]
    out["profile"] = await profile(engine, servers, args, last, payloads, log_dir) if args.profile_readings else None
    return out


def _brief(one: dict) -> dict:
    stages = {k: round(v["rate"]) for k, v in one["pipeline"]["stages"].items()}
    return {k: round(v, 2) for k, v in one.items() if k.endswith("_s")} | {"rates": stages}


async def pipeline(engine: Engine, servers: str, args, total: int, log_dir: Path) -> dict:
    names = Names.fresh("bench-pipe")
    await create_topics(servers, [names.readings, names.alerts, names.dead_letters])
    env = names.env(servers, engine.url.render_as_string(hide_password=False))
    producer_argv = [
        "producer",
        "--synthetic",
        "--robots",
        str(args.robots),
        "--seed",
        "42",
        "--start-time",
        T0.isoformat(),
        "--limit",
        str(total),
        "--max-speed",
        "--no-axes-from-db",
    ]
    services = [
        Service("consumer_db", ["consumer_db", "run"], env, log_dir),
        # consumer_alerts commits its offsets with each checkpoint of its state: at the default 30 s the group's
        # offset would leap from 0 to the end in one step, and its rate could not be read from Kafka
        Service("consumer_alerts", ["consumer_alerts", "run"], {**env, "SNAPSHOT_INTERVAL_S": "1"}, log_dir),
        Service("producer", producer_argv, env, log_dir),
    ]
    groups = {"consumer_db": names.sink_group, "consumer_alerts": names.alerts_group}
    try:
        async with Progress(servers, names.readings, groups) as progress:
            cpu0, t0 = machine_cpu(), time.monotonic()
            for service in services:
                service.start()
            await progress.until(total, services=services, timeout_s=120 + total / 1000)
            cpu1 = machine_cpu()
            if services[2].wait(60) != 0:
                raise RuntimeError(f"producer exited with {services[2].returncode}:\n{services[2].tail()}")
    finally:
        stop_all(services)
    stages = {
        name: stage(progress.samples, key, total)
        for name, key in (
            ("producer", "produced"),
            ("consumer_db", "consumer_db"),
            ("consumer_alerts", "consumer_alerts"),
        )
    }
    done = max(s["done_t"] for s in stages.values())
    return {
        "stages": stages,
        "end_to_end_s": done - t0,
        "cpu_s": {s.name: s.cpu_s for s in services},
        "cores_busy": (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]) * __import__("os").cpu_count(),
        "returncodes": {s.name: s.returncode for s in services},
    }


def check(engine: Engine, total: int, keys: set) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM readings_fact")).scalar_one()
        stored_keys = {
            (robot, round(ts.timestamp() * 1e6))
            for robot, ts in conn.execute(text("SELECT robot_id, ts FROM readings_fact WHERE axis_id = 1"))
        }
    checks = {"rows": rows, "rows_expected": total * AXES, "readings_match": stored_keys == keys}
    if rows != total * AXES or not checks["readings_match"]:
        raise AssertionError(
            f"readings_fact does not hold exactly the input: {checks}, "
            f"{len(keys - stored_keys)} missing, {len(stored_keys - keys)} unexpected"
        )
    return checks


def bare_copy(engine: Engine, total: int, connections: int) -> float:
    """The stored rows out (COPY TO, not timed), the table emptied, then COPied back in over ``connections``
    connections at once, each its share of the rows in one transaction."""
    data = io.StringIO()
    raw = engine.raw_connection()
    try:
        # a partitioned table is copied out through a query (PostgreSQL refuses COPY readings TO)
        raw.cursor().copy_expert("COPY (SELECT robot_id, ts, axes, amps FROM readings) TO STDOUT", data)
        raw.commit()
    finally:
        raw.close()
    empty(engine)
    lines = data.getvalue().splitlines(keepends=True)
    size = -(-len(lines) // connections)
    parts = ["".join(lines[i : i + size]) for i in range(0, len(lines), size)]
    links = [engine.raw_connection() for _ in parts]

    def copy(link, part: str) -> None:
        link.cursor().copy_expert(
            "COPY readings (robot_id, ts, axes, amps) FROM STDIN", io.StringIO(part), size=1 << 18
        )
        link.commit()

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(copy, links, parts))
        seconds = time.perf_counter() - started
    finally:
        for link in links:
            link.close()
    if stored(engine) != total * AXES:
        raise AssertionError("the bare COPY did not store every row")
    return seconds


async def profile(engine: Engine, servers: str, args, result: dict, payloads: list, log_dir: Path) -> dict:
    """The slowest stage alone, under pyinstrument, over the first --profile-readings readings."""
    slowest = min(STAGES, key=lambda name: result["stages"][name]["rate"])
    count = min(args.profile_readings, len(payloads))
    names = Names.fresh("bench-prof")
    await create_topics(servers, [names.readings, names.alerts, names.dead_letters])
    env = names.env(servers, engine.url.render_as_string(hide_password=False), LOG_LEVEL="WARNING")
    out = RESULTS_DIR / "pipeline_throughput_profile.txt"
    if slowest == "producer":
        argv = [
            "producer",
            "--synthetic",
            "--robots",
            str(args.robots),
            "--start-time",
            T0.isoformat(),
            "--limit",
            str(count),
            "--max-speed",
            "--no-axes-from-db",
        ]
        key = "produced"
    else:
        await bare_produce(servers, names.readings, payloads[:count])
        await asyncio.to_thread(empty, engine)
        argv, key = [slowest, "run"], slowest
    service = Service(f"{slowest}-profiled", argv, env, log_dir, profile=out)
    groups = (
        {"consumer_db": names.sink_group}
        if slowest == "consumer_db"
        else {"consumer_alerts": names.alerts_group}
        if slowest == "consumer_alerts"
        else {}
    )
    try:
        async with Progress(servers, names.readings, groups) as progress:
            service.start()
            if groups:
                await progress.until(count, services=[service], timeout_s=120 + count / 200)
            else:
                service.wait(120 + count / 200)
                await progress.sample()
    finally:
        service.stop()
    hot = json.loads(out.with_suffix(".json").read_text())["hotspots"]
    rate = stage(progress.samples, key, count)["rate"] if groups else None
    return {"stage": slowest, "readings": count, "rate_profiled": rate, "file": out.name, "hotspots": hot}


def report(result: dict, args) -> tuple[list[dict], dict]:
    total, rounds = result["total"], result["rounds"]
    med = {key: statistics.median(r[key] for r in rounds) for key in ("produce_s", "consume_s", "copy_s")}
    med["copy2_s"] = statistics.median(r[f"copy{SINK_WRITERS}_s"] for r in rounds)
    floor = {
        "producer": total / med["produce_s"],
        "consume": total / med["consume_s"],
        "copy": total / med["copy_s"],
        "copy2": total / med["copy2_s"],
    }
    floor["consumer_db"] = min(floor["consume"], floor["copy2"])
    floor["consumer_alerts"] = floor["consume"]
    floor["end-to-end"] = total / max(med["produce_s"], med["consume_s"], med["copy2_s"])
    rows = []
    for name in STAGES:
        rates = [r["pipeline"]["stages"][name]["rate"] for r in rounds]
        rate = statistics.median(rates)
        cpu = statistics.median(r["pipeline"]["cpu_s"].get(name) or 0 for r in rounds)
        rows.append(_row(f"pipeline: {name}", total, total / rate, rate, floor[name], cpu, rates))
    e2e = [r["pipeline"]["end_to_end_s"] for r in rounds]
    rows.append(
        _row(
            "pipeline: end-to-end (from process start)",
            total,
            statistics.median(e2e),
            total / statistics.median(e2e),
            floor["end-to-end"],
            None,
            [total / s for s in e2e],
        )
    )
    per_round = {"producer": "produce_s", "consume": "consume_s", "copy": "copy_s", "copy2": f"copy{SINK_WRITERS}_s"}
    rows += [
        _row(what, total, med[key], floor[name], runs=[total / r[per_round[name]] for r in rounds])
        for what, name, key in (
            ("floor: bare aiokafka produce (send_batch)", "producer", "produce_s"),
            ("floor: bare aiokafka consume (no parsing)", "consume", "consume_s"),
            (f"floor: bare COPY, 1 connection ({total:,} rows of readings)", "copy", "copy_s"),
            (f"floor: bare COPY, {SINK_WRITERS} connections at once (the sink's)", "copy2", "copy2_s"),
        )
    ]
    return rows, {
        "floor_readings_per_s": {k: round(v) for k, v in floor.items()},
        "checks": [r["checks"] for r in rounds],
        "profile": result["profile"],
        "cores_busy": [round(r["pipeline"]["cores_busy"], 2) for r in rounds],
        "size": {"robots": args.robots, "readings_per_robot": args.readings, "rounds": args.rounds},
    }


def _row(
    what: str,
    readings: int,
    seconds: float,
    rate: float,
    floor: float | None = None,
    cpu: float | None = None,
    runs: list[float] | None = None,
) -> dict:
    """``rate``: readings/s from the stage's first progress to its last (see ``bench._kafka.stage``), the
    median of the rounds (``runs``: each round's)."""
    return {
        "what": what,
        "readings": readings,
        "seconds": round(seconds, 2),
        "readings/s": round(rate),
        "rounds": ", ".join(f"{r:,.0f}" for r in runs or []),
        "rows/s": round(rate * AXES),
        "floor readings/s": round(floor) if floor else None,
        "floor / pipeline": round(floor / rate, 2) if floor else None,
        "process CPU s": round(cpu, 1) if cpu is not None else None,
    }


def notes(result: dict, args, extensions: dict) -> str:
    rounds, prof = result["rounds"], result["profile"]
    rate = {name: statistics.median(r["pipeline"]["stages"][name]["rate"] for r in rounds) for name in STAGES}
    slowest = min(STAGES, key=rate.get)
    busy = ", ".join(f"{r['pipeline']['cores_busy']:.2f}" for r in rounds)
    lines = [
        f"Command: `.venv/bin/python -m bench.pipeline_throughput --robots {args.robots} --readings {args.readings} "
        f"--rounds {args.rounds} --profile-readings {args.profile_readings}`. {args.robots} robots x "
        f"{args.readings:,} readings = {result['total']:,} readings ({result['total'] * AXES:,} rows), 6 partitions, "
        "every service its own process, all on one 2-core machine with the broker and PostgreSQL, shared with other "
        f"work (cores busy during each pipeline round: {busy}; 1-min load average at the end "
        f"{__import__('os').getloadavg()[0]:.1f}).",
        f"aiokafka {extensions['aiokafka']}, C extensions in use: **{extensions['c_extensions']}**.",
        "Floor: a stage's bare equivalent, alternating with the pipeline in each round, median of the rounds "
        f"(consumer_db: the slower of bare consume and bare COPY over {SINK_WRITERS} connections at once, the sink's "
        "parallelism; end-to-end: the slowest of the floor steps, as if they overlapped perfectly). "
        "`floor / pipeline` = how many times faster the floor is (aim: <= 2).",
        "consumer_alerts runs with SNAPSHOT_INTERVAL_S=1 (its offsets are committed with each checkpoint; at the "
        "default 30 s its progress could not be read from Kafka).",
        "Checks: readings_fact held robots x readings x 14 rows, exactly the (robot, ts) pairs sent, in every round: "
        f"{all(r['checks']['readings_match'] for r in rounds)}.",
        f"Limiting stage: **{slowest}** ({rate[slowest]:,.0f} readings/s).",
    ]
    if prof:
        top = "; ".join(f"{h['function']} ({h['file']}) {h['share']:.0%}" for h in prof["hotspots"][:8])
        lines.append(
            f"Profile of {prof['stage']} alone over {prof['readings']:,} readings (pyinstrument, "
            f"{prof['file']}), self time: {top}."
        )
    return "\n\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
