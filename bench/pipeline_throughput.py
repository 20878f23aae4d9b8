"""End-to-end throughput: the synthetic fleet at max speed through producer -> Kafka -> consumer_db ->
PostgreSQL and -> consumer_alerts, each service a process of its own, against the floor measured in the
same run on the same broker and database.

    .venv/bin/python -m bench.pipeline_throughput [--robots 100] [--readings 10000] [--profile-readings 100000]

1. Floor: the same payloads (serialised beforehand) sent by a bare aiokafka producer (create_batch/send_batch,
   the producer's own way), fetched back by a bare consumer (no parsing, no commit), and the rows the
   pipeline stored COPied back into the emptied readings (the stored form, its partitions kept): once over
   one connection, once over two at once, the parallelism of the sink (it overlaps two transactions). And
   consumer_db's own floor, the same work bare: every message fetched again with aiokafka, parsed
   (``json.loads``) into its readings row and COPied, a batch a transaction, over two connections with a
   transaction in flight on each while the next batch is fetched (``consume_and_copy``).
2. Pipeline: consumer_db and consumer_alerts start (fresh groups, 6 partitions, an emptied database), then
   ``python -m producer --synthetic --max-speed``; until both groups have committed every reading. Progress
   comes from Kafka every 0.25 s: the readings topic's high watermark (producer: confirmed), each group's
   committed offset (consumer_db commits after its transaction). A stage's rate runs from its first
   progress to its last (start-up and group join left out); end-to-end runs from the start of the processes.
   Floor and pipeline alternate, --rounds times (floor, pipeline, COPY floor, floor, pipeline, ...), so the
   shared machine's load falls on both; each figure is the median of its rounds. ``--against REF``: in each
   round the pipeline also runs from the tree of git commit REF (its services, same topics' shape, same
   database), right after this tree's, so a change is compared with its base in one run.
3. Checks: readings_fact holds robots x readings x 14 rows, exactly the (robot, ts) pairs sent.
4. Profile: the slowest stage again, alone, under pyinstrument (bench._profiled), over --profile-readings.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from sqlalchemy import Engine, text

from bench._kafka import T0, Progress, bare_consume, bare_produce, create_topics, fleet, partitions_of, stage
from bench._services import REPO, Names, Service, machine_cpu, stop_all, with_services
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
    parser.add_argument("--against", metavar="REF", help="also run the pipeline from git commit REF's tree, in turn")
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
    if not args.against:
        return await _measure(engine, servers, args, log_dir, None)
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tree:
        base = _checkout(args.against, Path(tree))
        return await _measure(engine, servers, args, log_dir, base)


def _checkout(ref: str, into: Path) -> dict:
    """REF's tree (``git archive``) in ``into``; the services then run from it: ``PYTHONSAFEPATH`` keeps the
    working directory off ``sys.path`` and ``PYTHONPATH`` puts the tree before this one's editable install.
    Its sink does not migrate: the database is at this tree's schema, which REF's scripts may not know (a
    revision this tree adds), and REF's code reads and writes the tables it knows of it."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True, capture_output=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(into), "MIGRATE_ON_START": "false"}
    return {"ref": commit.stdout.decode().strip(), "env": env}


async def _measure(engine: Engine, servers: str, args, log_dir: Path, base: dict | None) -> dict:
    total = args.robots * args.readings
    started = time.perf_counter()
    payloads, keys = [], set()
    for r in fleet(args.robots, args.readings):
        payloads.append((r.robot_id.encode(), r.to_bytes()))
        keys.add((r.robot_id, round(r.ts.timestamp() * 1e6)))
    print(f"{total:,} readings generated and serialised in {time.perf_counter() - started:.1f} s", flush=True)
    out: dict = {"total": total, "rounds": [], "against": base["ref"] if base else None}
    for round_no in range(args.rounds):
        floor_topic = Names.fresh("bench-floor").readings
        await create_topics(servers, [floor_topic])
        this = {"produce_s": await bare_produce(servers, floor_topic, payloads)}
        this["consume_s"] = await bare_consume(servers, floor_topic, total)
        runs = [("pipeline", {})] + ([("against", base["env"])] if base else [])
        for run, extra_env in runs if round_no % 2 == 0 else runs[::-1]:  # which tree goes first alternates
            await asyncio.to_thread(fresh, engine)
            this[run] = await pipeline(engine, servers, args, total, log_dir, extra_env=extra_env)
            this[f"{run}_checks"] = await asyncio.to_thread(check, engine, total, keys)
        this["copy_s"] = await asyncio.to_thread(bare_copy, engine, total, 1)
        this[f"copy{SINK_WRITERS}_s"] = await asyncio.to_thread(bare_copy, engine, total, SINK_WRITERS)
        await asyncio.to_thread(empty, engine)
        this["sink_floor_s"] = await consume_and_copy(servers, floor_topic, total, engine, SINK_WRITERS)
        if stored(engine) != total * AXES:
            raise AssertionError("the consume-and-COPY floor did not store every row")
        print(f"round {round_no + 1}: {json.dumps(_brief(this))}", flush=True)
        out["rounds"].append(this)
    last = out["rounds"][-1]["pipeline"]
    out["profile"] = await profile(engine, servers, args, last, payloads, log_dir) if args.profile_readings else None
    return out


def _brief(one: dict) -> dict:
    brief = {k: round(v, 2) for k, v in one.items() if k.endswith("_s")}
    for run in ("pipeline", "against"):
        if run in one:
            brief[f"{run} rates"] = {k: round(v["rate"]) for k, v in one[run]["stages"].items()}
    return brief


def fresh(engine: Engine) -> None:
    """Every table the pipeline writes emptied, so each run starts alike: with the rollup of a previous run
    left, every minute would be refolded as a late one."""
    tables = (
        "readings, readings_minute, readings_hour, reading_stamps_minute, reading_stamps_hour, fleet_minute, "
        "rollup_progress, rejected_readings, alerts"
    )
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables}"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE readings"))


async def consume_and_copy(servers: str, topic: str, total: int, engine: Engine, connections: int) -> float:
    """consumer_db's floor: its work without its checks, rollup and offsets. Every message of ``topic``
    fetched as ``bare_consume`` does, parsed with ``json.loads`` into its ``readings`` row (the stored form:
    axes as bits, currents as an array) and COPied, each fetched batch one transaction over one of
    ``connections`` connections, a transaction in flight on each while the next batch is fetched and parsed,
    as the sink overlaps two. Seconds from the first fetch to the last commit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    links = [engine.raw_connection() for _ in range(connections)]
    idle: asyncio.Queue = asyncio.Queue()
    for link in links:
        idle.put_nowait(link)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(connections)

    def copy(link, data: str) -> None:
        link.cursor().copy_expert("COPY readings (robot_id, ts, axes, amps) FROM STDIN", io.StringIO(data), 1 << 18)
        link.commit()

    async def write(link, data: str) -> None:
        try:
            await loop.run_in_executor(pool, copy, link, data)
        finally:
            idle.put_nowait(link)

    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, writes, started = 0, [], time.perf_counter()
        async with asyncio.timeout(600):
            while seen < total:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                values = [record.value for records in batches.values() for record in records]
                if values:
                    seen += len(values)
                    data = reading_rows(values)
                    writes.append(asyncio.create_task(write(await idle.get(), data)))
            await asyncio.gather(*writes)
        return time.perf_counter() - started
    finally:
        pool.shutdown()
        for link in links:
            link.close()
        await consumer.stop()


def reading_rows(values: list[bytes]) -> str:
    """COPY text of ``readings`` rows from reading messages, trusted (the floor checks nothing)."""
    lines = []
    for value in values:
        reading = json.loads(value)
        axes, amps = 0, []
        for key, amp in reading["currents"].items():
            axis = int(key)
            axes |= 1 << axis
            amps.extend(["NULL"] * (axis - len(amps)))
            amps[axis - 1] = "NULL" if amp is None else repr(amp)
        lines.append(f"{reading['robot_id']}\t{reading['ts']}\t{axes}\t{{{','.join(amps)}}}\n")
    return "".join(lines)


async def pipeline(
    engine: Engine, servers: str, args, total: int, log_dir: Path, extra_env: dict | None = None
) -> dict:
    """``extra_env``: added to every service's environment (``--against``: the other tree)."""
    names = Names.fresh("bench-pipe")
    await create_topics(servers, [names.readings, names.alerts, names.dead_letters])
    env = names.env(servers, engine.url.render_as_string(hide_password=False)) | own_topics(names) | (extra_env or {})
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


def own_topics(names: Names) -> dict[str, str]:
    """The health and maintenance topics of this run alone: on the defaults every run's consumer_db would also
    store the health events of every consumer_alerts before it on the broker, more work run after run."""
    return {"HEALTH_TOPIC": f"{names.tag}-health", "MAINTENANCE_TOPIC": f"{names.tag}-maintenance"}


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
    env = names.env(servers, engine.url.render_as_string(hide_password=False), LOG_LEVEL="WARNING") | own_topics(names)
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
    steps = {
        "producer": "produce_s",
        "consume": "consume_s",
        "copy": "copy_s",
        "copy2": f"copy{SINK_WRITERS}_s",
        "sink": "sink_floor_s",
    }
    med = {name: statistics.median(r[key] for r in rounds) for name, key in steps.items()}
    floor = {name: total / seconds for name, seconds in med.items()}
    # consumer_db is judged against its own work done bare (fetch, parse, COPY over its 2 connections): the
    # bare COPY alone leaves out the fetching and parsing that no sink can skip
    floor["consumer_db"] = floor["sink"]
    floor["consumer_alerts"] = floor["consume"]
    floor["end-to-end"] = total / max(med["producer"], med["consume"], med["sink"])
    rows = []
    for run, label in (("pipeline", "pipeline"), ("against", f"pipeline at {result['against']}")):
        if run not in rounds[0]:
            continue
        for name in STAGES:
            rates = [r[run]["stages"][name]["rate"] for r in rounds]
            rate = statistics.median(rates)
            cpu = statistics.median(r[run]["cpu_s"].get(name) or 0 for r in rounds)
            rows.append(_row(f"{label}: {name}", total, total / rate, rate, floor[name], cpu, rates))
            if name == "consumer_db":
                rows.append(
                    _row(
                        f"{label}: consumer_db against the bare COPY alone",
                        total,
                        total / rate,
                        rate,
                        floor["copy2"],
                        None,
                        rates,
                    )
                )
        e2e = [r[run]["end_to_end_s"] for r in rounds]
        median_e2e = statistics.median(e2e)
        rows.append(
            _row(
                f"{label}: end-to-end (from process start)",
                total,
                median_e2e,
                total / median_e2e,
                floor["end-to-end"],
                None,
                [total / s for s in e2e],
            )
        )
    rows += [
        _row(what, total, med[name], floor[name], runs=[total / r[steps[name]] for r in rounds])
        for what, name in (
            ("floor: bare aiokafka produce (send_batch)", "producer"),
            ("floor: bare aiokafka consume (no parsing)", "consume"),
            (f"floor: bare COPY, 1 connection ({total:,} rows of readings)", "copy"),
            (f"floor: bare COPY, {SINK_WRITERS} connections at once", "copy2"),
            (f"floor: consume + json.loads + COPY, {SINK_WRITERS} connections (consumer_db's own work)", "sink"),
        )
    ]
    extra = {
        "floor_readings_per_s": {k: round(v) for k, v in floor.items()},
        "checks": [r["pipeline_checks"] for r in rounds],
        "profile": result["profile"],
        "cores_busy": [round(r["pipeline"]["cores_busy"], 2) for r in rounds],
        "size": {"robots": args.robots, "readings_per_robot": args.readings, "rounds": args.rounds},
    }
    if result["against"]:
        extra["against"] = result["against"]
        extra["after_over_before"] = {
            name: [
                round(r["pipeline"]["stages"][name]["rate"] / r["against"]["stages"][name]["rate"], 2) for r in rounds
            ]
            for name in STAGES
        } | {"end-to-end": [round(r["against"]["end_to_end_s"] / r["pipeline"]["end_to_end_s"], 2) for r in rounds]}
    return rows, extra


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
        f"--rounds {args.rounds} --profile-readings {args.profile_readings}"
        f"{f' --against {args.against}' if args.against else ''}`. {args.robots} robots x "
        f"{args.readings:,} readings = {result['total']:,} readings ({result['total'] * AXES:,} rows), 6 partitions, "
        "every service its own process, all on one 2-core machine with the broker and PostgreSQL, shared with other "
        f"work (cores busy during each pipeline round: {busy}; 1-min load average at the end "
        f"{__import__('os').getloadavg()[0]:.1f}).",
        f"aiokafka {extensions['aiokafka']}, C extensions in use: **{extensions['c_extensions']}**.",
        "Floor: a stage's bare equivalent, alternating with the pipeline in each round, median of the rounds "
        f"(consumer_db: its own work bare, consume + json.loads + COPY over {SINK_WRITERS} connections, the sink's "
        "parallelism, with the bare COPY alone beside; end-to-end: the slowest of the floor steps, as if they "
        "overlapped perfectly). `floor / pipeline` = how many times faster the floor is (aim: <= 2).",
        "consumer_alerts runs with SNAPSHOT_INTERVAL_S=1 (its offsets are committed with each checkpoint; at the "
        "default 30 s its progress could not be read from Kafka).",
        "Checks: readings_fact held robots x readings x 14 rows, exactly the (robot, ts) pairs sent, in every round: "
        f"{all(r[k]['readings_match'] for r in rounds for k in r if k.endswith('_checks'))}.",
        f"Limiting stage: **{slowest}** ({rate[slowest]:,.0f} readings/s).",
    ]
    if result["against"]:
        ratios = report(result, args)[1]["after_over_before"]
        shown = "; ".join(f"{name} {', '.join(map(str, per_round))}" for name, per_round in ratios.items())
        lines.append(
            f"Against {result['against']} (its tree's services, in turn with this tree's, the first alternating): "
            f"this tree's rate over {result['against']}'s, per round: {shown}."
        )
    if prof:
        top = "; ".join(f"{h['function']} ({h['file']}) {h['share']:.0%}" for h in prof["hotspots"][:8])
        lines.append(
            f"Profile of {prof['stage']} alone over {prof['readings']:,} readings (pyinstrument, "
            f"{prof['file']}), self time: {top}."
        )
    return "\n\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
