"""Latency at a paced rate: the synthetic fleet at the real rate (200 robots, one reading each every 2 s =
100 readings/s, faults injected) through the services, each a process of its own, for --seconds.

    .venv/bin/python -m bench.pipeline_latency [--robots 200] [--seconds 240] [--history-s 3600] [--warmup 20]
        [--sessions 5] [--fault-period 60] [--spread] [--alerts-instances 1] [--nice SERVICE=N]

Each reading's clock starts at its production: the Kafka record's CreateTime, stamped when the producer
appends it to a batch (the readings topic is read back for it once the services have stopped: a live reader
decoded every reading of a burst in this process, on the two cores the services judge that burst on). It stops:

(a) committed in PostgreSQL: a trigger on readings (in the scratch database only) NOTIFYs once per
    reading (one row each); PostgreSQL delivers notifications when the transaction commits, and this
    process LISTENs;
(b) alert event on the alerts topic: for each event's first message (state open), the reading that opened
    it is (robot, opened_at); the clock stops when the broker appends the event to the alerts topic (the
    topic is made with message.timestamp.type=LogAppendTime, so the record carries that time). Reported
    beside it: when a plain consumer in this process receives it (that adds the consumer's fetch and this
    busy process's own delays: it also decodes every reading and the dashboard sessions' messages);
(c) delivered into a dashboard session: --sessions websocket clients speaking Bokeh's protocol (as a tab,
    without drawing) on a dashboard process watching robot-001; the clock stops when a streamed point
    arrives.

Reported first: how far apart the producer stamped a tick's rows (first to last CreateTime of a burst):
the part of every clock above that the producer itself adds (none with --spread: the robots are not in step,
each sent at its own phase of the tick, in 0.1-s slices).

The fleet is warm, as a deployed one is: before the measured run, --history-s seconds of its past (no faults,
stamped up to the moment it is sent) go through the services at full speed, and the run starts once both groups
have committed all of it. A cold fleet's default detectors raise nothing for its first hour of feed (the `level`
detector's LEVEL_WARMUP_S, the `load` detector's LOAD_WARMUP active readings), so a run of minutes from cold
measured (b) over no event at all. The live feed (faults on) then starts where the history ended: the robots'
gap of the catch-up's minutes is a stoppage to the detectors, and events found in the history are not counted.
A run whose (b) has no event says so and exits with 1.

Readings produced in the first --warmup seconds (process start, group joins) are left out. Every service
runs with its default settings (--set changes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from aiokafka import AIOKafkaConsumer
from sqlalchemy import Engine, text

from bench._kafka import Progress, create_topics, partitions_of
from bench._services import Names, Service, stop_all, with_services
from bench.dashboard_sessions import bokeh_session, column_values, receive
from bench.query_plans import percentile
from bench.results import write_results
from common.defaults import MAX_ROBOTS
from common.wire.schemas import Alert

WATCHED = "robot-001"
LOG_APPEND_TIME = 1  # a record's timestamp_type
AIMS_MS = {"a": 500, "b": 100, "c": 500}
TRIGGER = """
CREATE FUNCTION bench_notify_committed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('bench_committed', NEW.robot_id || ' ' || round(extract(epoch FROM NEW.ts) * 1000)::bigint);
  RETURN NULL;
END $$;
CREATE TRIGGER bench_committed AFTER INSERT ON readings
  FOR EACH ROW EXECUTE FUNCTION bench_notify_committed();
"""


def key(robot_id: str, ts: datetime) -> tuple[str, int]:
    """(robot, epoch ms): how a reading is named everywhere here (the trigger names it the same way)."""
    return robot_id, round(ts.timestamp() * 1000)


class Watch:
    """Everything this process observes, with the wall-clock time (s) it saw it."""

    def __init__(self) -> None:
        self.produced: dict[tuple[str, int], int] = {}  # reading -> CreateTime (ms)
        self.committed: dict[tuple[str, int], float] = {}
        self.opened: dict[str, tuple[float, Alert, int]] = {}  # event -> first arrival, event, broker append time
        self.dashboard: dict[tuple[int, int], float] = {}  # (session, ts ms) of robot-001's points -> first arrival
        self.stop = asyncio.Event()
        self.listener_pid: int | None = None  # the LISTEN connection's server process (not a service's cost)


async def _from_the_start(servers: str, topic: str) -> tuple[AIOKafkaConsumer, list]:
    """A started consumer outside any group, assigned every partition of ``topic`` from its first record."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
    except BaseException:
        await consumer.stop()
        raise
    return consumer, partitions


async def read_topic(servers: str, topic: str, on_record, stop: asyncio.Event) -> None:
    """Every record of ``topic`` as it comes, with the time this process received it, until ``stop``."""
    consumer, _ = await _from_the_start(servers, topic)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for record in (r for records in batches.values() for r in records):
                on_record(record, now)
    finally:
        await consumer.stop()


async def read_back(servers: str, topic: str, on_record) -> None:
    """Every record of ``topic`` up to its end now, read once the run is over: the readings' CreateTimes
    need no live reader, and one decoding every reading of a burst took the services' cores at the tick."""
    consumer, partitions = await _from_the_start(servers, topic)
    try:
        end = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for record in (r for records in batches.values() for r in records):
                on_record(record, None)
    finally:
        await consumer.stop()


def on_reading(watch: Watch):
    def record(r, _now: float | None) -> None:
        data = json.loads(r.value)
        watch.produced[key(data["robot_id"], datetime.fromisoformat(data["ts"]))] = r.timestamp

    return record


def on_alert(watch: Watch):
    def record(r, now: float) -> None:
        if r.timestamp_type != LOG_APPEND_TIME:
            raise RuntimeError(f"alerts topic record stamped by its producer (type {r.timestamp_type}), not on append")
        alert = Alert.from_bytes(r.value)
        watch.opened.setdefault(alert.event_id, (now, alert, r.timestamp))

    return record


def listen(dsn: str, watch: Watch, stop: threading.Event) -> None:
    """LISTEN in a thread of its own: a notification arrives when its transaction commits."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    conn.cursor().execute("LISTEN bench_committed")
    watch.listener_pid = conn.get_backend_pid()
    try:
        while not stop.is_set():
            if select.select([conn], [], [], 0.2)[0]:
                conn.poll()
                now = time.time()
                while conn.notifies:
                    robot, ms = conn.notifies.pop(0).payload.rsplit(" ", 1)
                    watch.committed.setdefault((robot, int(ms)), now)
    finally:
        conn.close()


async def session(number: int, port: int, watch: Watch, opened: asyncio.Event) -> None:
    """One tab of the dashboard, robot-001's streamed points noted with their arrival time."""
    async with bokeh_session(port) as ws:
        while True:  # until cancelled: a timeout inside receive() would lose part of a message
            header, content, buffers = await receive(ws)
            now = time.time()
            if header["msgtype"] == "PULL-DOC-REPLY":
                opened.set()
            for event in content.get("events", []) if header["msgtype"] == "PATCH-DOC" else []:
                entries = dict(event["data"]["entries"]) if event.get("kind") == "ColumnsStreamed" else {}
                if "ts" in entries and "a1" in entries:  # the chart's source (not the alert table's)
                    for ms in column_values(entries["ts"], buffers):
                        watch.dashboard.setdefault((number, round(ms)), now)


async def all_open(tabs: list[asyncio.Task], opened: list[asyncio.Event], timeout_s: float) -> None:
    """Every session has its document; a session that failed first raises its error here."""
    everyone = asyncio.ensure_future(asyncio.gather(*(o.wait() for o in opened)))
    done, _ = await asyncio.wait([everyone, *tabs], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if everyone not in done:
        everyone.cancel()
        for tab in done:
            tab.result()
        raise TimeoutError(
            f"{sum(not o.is_set() for o in opened)} dashboard session(s) got no document in {timeout_s:g} s"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def hold_for(run: Run) -> dict:
    """The default hold: the producer runs for the warm-up and the measured time, nothing else watched."""
    await asyncio.sleep(run.args.warmup + run.args.seconds)
    return {}


@dataclass
class Run:
    """What a hold can watch while the producer runs (bench.load_curve samples lag, CPU and size through it)."""

    engine: Engine
    servers: str
    names: Names
    args: argparse.Namespace
    watch: Watch
    producer: Service
    consumers: list[Service]
    started: float


async def measure(engine: Engine, servers: str, args, log_dir: Path, hold=hold_for) -> dict:
    """The run: services up, sessions open, the producer for as long as ``hold(run)`` takes (what it returns
    is the result's ``held``), then a drain; readings produced before the warm-up's end are left out later."""
    names = Names.fresh("bench-lat")
    await create_topics(servers, [names.readings, names.alerts, names.dead_letters], append_time=(names.alerts,))
    with engine.begin() as conn:
        conn.execute(text(TRIGGER))
    url = engine.url.render_as_string(hide_password=False)
    port = free_port()
    # consumer_alerts as deployed: its state to its state topic every 30 s, offsets committed with each; the health
    # pipeline's state to a file (STATE_PATH; "" elsewhere in the benchmarks: no health file written)
    env = names.env(
        servers,
        url,
        ROBOT_ID=WATCHED,
        # topics of this run's own: on the shared default, a later run's consumer_db first stores every
        # health event of the runs before it (minutes of backlog at 1,000 robots)
        HEALTH_TOPIC=f"{names.tag}-health",
        MAINTENANCE_TOPIC=f"{names.tag}-maintenance",
        # every robot of the fleet taken on (the producer refuses a fleet past it); --set MAX_ROBOTS=... wins
        MAX_ROBOTS=str(max(args.robots, MAX_ROBOTS)),
        **args.env,
    )
    alerts = [
        "consumer_alerts" if args.alerts_instances == 1 else f"consumer_alerts-{i}"
        for i in range(1, args.alerts_instances + 1)
    ]
    consumers = [
        Service("consumer_db", ["consumer_db", "run"], env, log_dir, profile=profile_of("consumer_db", args, log_dir)),
        *(
            # one group; the health pipeline's file is per instance (docs/consumer_alerts.md)
            Service(
                name,
                ["consumer_alerts", "run"],
                {**env, "STATE_PATH": str(log_dir / f"{name}-state.json")},
                log_dir,
                profile=profile_of("consumer_alerts", args, log_dir, name),
            )
            for name in alerts
        ),
        # no database, so no sign-in (the sessions here are the benchmark's own clients)
        Service(
            "dashboard",
            ["dashboard", "--port", str(port), "--no-database"],
            {**env, "DASHBOARD_SIGN_IN": "false"},
            log_dir,
        ),
    ]
    producer = live_producer(env, log_dir, args)
    watch, listening = Watch(), threading.Event()
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    listener = threading.Thread(target=listen, args=(dsn, watch, listening), daemon=True)
    listener.start()
    readers = [asyncio.create_task(read_topic(servers, names.alerts, on_alert(watch), watch.stop))]
    tabs: list[asyncio.Task] = []
    try:
        for service in consumers:
            service.start()
            if service.name in args.nice:
                os.setpriority(os.PRIO_PROCESS, service.proc.pid, args.nice[service.name])
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health", 90)
        if args.history_s > 0:
            await send_history(servers, names, env, log_dir, args, consumers)
        opened = [asyncio.Event() for _ in range(args.sessions)]
        tabs = [asyncio.create_task(session(n, port, watch, o)) for n, o in enumerate(opened)]
        await all_open(tabs, opened, 60)
        started = time.time()
        producer.start()
        held = await hold(Run(engine, servers, names, args, watch, producer, consumers, started))
        stopped = time.time()
        producer.stop()
        await asyncio.sleep(args.drain)  # what was produced last gets through
    finally:
        watch.stop.set()
        for tab in tabs:
            tab.cancel()
        await asyncio.gather(*readers, *tabs, return_exceptions=True)
        listening.set()
        listener.join(10)
        stop_all([producer, *consumers])
    await read_back(servers, names.readings, on_reading(watch))
    failed = [s for s in (producer, *consumers) if s.returncode != 0]
    if failed:
        raise RuntimeError(f"{failed[0].name} exited with {failed[0].returncode}:\n{failed[0].tail()}")
    return {
        "watch": watch,
        "window": (started + args.warmup, stopped),
        "cpu_s": {s.name: round(s.cpu_s, 1) for s in (producer, *consumers)},
        "held": held,
    }


def fleet_argv(args) -> list[str]:
    """The synthetic fleet the run feeds, live and as history: the same robots, seed and programs."""
    return ["producer", "--synthetic", "--robots", str(args.robots), "--no-axes-from-db"] + (
        ["--spread"] if args.spread else []
    )


def live_producer(env: dict[str, str], log_dir: Path, args) -> Service:
    """The fleet at the real rate, a round of faults per robot every ``--fault-period`` seconds."""
    return Service(
        "producer", fleet_argv(args) + ["--faults", "--fault-period", f"{args.fault_period:g}"], env, log_dir
    )


def history_producer(env: dict[str, str], log_dir: Path, args, now: datetime) -> Service:
    """The fleet's last ``--history-s`` seconds before ``now``, faults off, at full speed."""
    ticks = int(args.history_s // 2)  # the synthetic fleet's tick: TICK_SECONDS
    start = now.replace(microsecond=0) - timedelta(seconds=ticks * 2)
    argv = ["--start-time", start.isoformat(), "--limit", str(ticks * args.robots), "--max-speed"]
    return Service("history", fleet_argv(args) + argv, env, log_dir)


async def send_history(servers: str, names: Names, env: dict[str, str], log_dir: Path, args, consumers) -> None:
    """Warm the fleet: its history through the services, until consumer_db and consumer_alerts committed
    all of it (consumer_alerts commits with its state, every SNAPSHOT_INTERVAL_S)."""
    history = history_producer(env, log_dir, args, datetime.now(UTC)).start()
    readings = int(args.history_s // 2) * args.robots
    try:
        if await asyncio.to_thread(history.wait, 60 + readings / 2_000) != 0:
            raise RuntimeError(f"the history's producer failed ({history.returncode}):\n{history.tail()}")
    finally:
        history.stop()
    groups = {"consumer_db": names.sink_group, "consumer_alerts": names.alerts_group}
    started = time.monotonic()
    async with Progress(servers, names.readings, groups) as progress:
        await progress.until(readings, services=consumers, timeout_s=120 + readings / 500)
    print(f"history: {readings} readings judged and stored {time.monotonic() - started:.0f} s after sent", flush=True)


def no_events(found: dict[str, dict]) -> str | None:
    """What to say when the run raised no alert event it could time: its (b) is then no measurement at all."""
    if found["b"]["samples"]:
        return None
    return (
        "NO ALERT EVENT opened on a reading of the measured window: (b) measured nothing. A cold fleet's default "
        "detectors raise nothing for its first hour of feed: give it --history-s of at least 3600."
    )


def latencies(result: dict, sessions: int, *, spread: bool = False) -> dict[str, dict]:
    watch, (low, high) = result["watch"], result["window"]
    in_window = {k: ms for k, ms in watch.produced.items() if low * 1000 <= ms <= high * 1000}
    committed = [watch.committed[k] * 1000 - ms for k, ms in in_window.items() if k in watch.committed]
    appended, received = [], []
    for seen, alert, appended_ms in watch.opened.values():
        ms = in_window.get(key(alert.robot_id, alert.opened_at))
        if ms is not None:
            appended.append(appended_ms - ms)
            received.append(seen * 1000 - ms)
    watched = {k[1]: ms for k, ms in in_window.items() if k[0] == WATCHED}
    dashboard = [seen * 1000 - watched[ts] for (_, ts), seen in watch.dashboard.items() if ts in watched]
    return {
        "spread": stats(
            "a tick's rows in the producer: first to last CreateTime",
            [] if spread else tick_spreads(in_window.values()),  # a spread fleet has no bursts to find
            None,
        ),
        "a": stats("(a) committed in PostgreSQL", committed, len(in_window)),
        "b": stats("(b) alert event on the alerts topic (appended by the broker)", appended, None),
        "b received": stats("(b) the same, received by a consumer in this process", received, None),
        "c": stats(f"(c) delivered into a dashboard session ({WATCHED})", dashboard, len(watched) * sessions),
    }


def tick_spreads(created_ms, gap_ms: float = 500) -> list[float]:
    """First to last CreateTime of each tick's burst; a tick is a run of rows with less than ``gap_ms``
    between two (the robots' rows of a tick carry time stamps of their own: up to 5 % of a tick apart)."""
    spreads, first, last = [], None, None
    for ms in sorted(created_ms):
        if last is not None and ms - last >= gap_ms:
            spreads.append(last - first)
            first = None
        first = ms if first is None else first
        last = ms
    return spreads + ([last - first] if last is not None else [])


def stats(what: str, samples: list[float], expected: int | None) -> dict:
    row = {
        "latency to": what,
        "samples": len(samples),
        "expected": expected,
        "p50 ms": None,
        "p90 ms": None,
        "p99 ms": None,
        "max ms": None,
    }
    if samples:  # p90 beside p99: with ~460 events, a p99 is the 5th slowest and moves by tens of ms from run to run
        row |= {
            "p50 ms": round(percentile(samples, 50), 1),
            "p90 ms": round(percentile(samples, 90), 1),
            "p99 ms": round(percentile(samples, 99), 1),
            "max ms": round(max(samples), 1),
        }
    return row


def profile_of(service: str, args, log_dir: Path, instance: str | None = None) -> Path | None:
    """Where ``service``'s (or its ``instance``'s) profile goes when --profile names it (bench._profiled)."""
    return log_dir / f"{instance or service}.profile.txt" if service in getattr(args, "profile", []) else None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of one run of the pipeline, shared with bench.load_curve (each of its levels is one)."""
    parser.add_argument(
        "--history-s",
        type=float,
        default=3600,
        help="seconds of the fleet's past (faults off) sent at full speed and judged before the run: the "
        "detectors warm, as a deployed fleet's are (0: a cold fleet, which raises no event for an hour)",
    )
    parser.add_argument("--warmup", type=float, default=20, help="seconds of readings left out at the start")
    parser.add_argument("--drain", type=float, default=10, help="seconds to wait after the producer stopped")
    parser.add_argument("--sessions", type=int, default=5, help="dashboard sessions (each sees robot-001)")
    parser.add_argument(
        "--fault-period",
        type=float,
        default=60,
        help="feed seconds per round of faults per robot (the producer's minimum, 60: the most "
        "alert events, so that (b)'s p99 is not just its slowest sample)",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="the producer's --spread: each robot at a phase of its own, the fleet spread evenly over the 2-s "
        "tick, instead of every robot's reading in one burst at the tick's start",
    )
    parser.add_argument(
        "--alerts-instances",
        type=int,
        default=1,
        help="consumer_alerts instances in one group, sharing the readings topic's 6 partitions (default 1)",
    )
    parser.add_argument(
        "--set",
        dest="env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every service, e.g. SINK_BATCH_MS=100 (repeatable)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=["consumer_db", "consumer_alerts"],
        help="run this service under pyinstrument (bench._profiled): its profile in the logs' folder, kept with "
        "--keep-logs; a profiled service runs slower (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=200, help="robots, one reading each every 2 s")
    parser.add_argument("--seconds", type=float, default=240, help="measured time after the warm-up")
    add_run_arguments(parser)
    parser.add_argument(
        "--nice",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run a service at this nice value, e.g. consumer_alerts=-10 (below 0 needs root; "
        "repeatable): what a CPU share of its own would give it on a machine it shares",
    )
    args = parser.parse_args(argv)
    args.env = dict(item.split("=", 1) for item in args.env)
    args.nice = {name: int(value) for name, value in (item.split("=", 1) for item in args.nice)}
    found = with_services("pipeline_latency", measure, args)
    if found is None:
        return 2
    result, extensions = found
    found = latencies(result, args.sessions, spread=args.spread)
    nothing = no_events(found)
    rows = []
    for name, row in found.items():
        aim = AIMS_MS.get(name)
        met = None if row["p99 ms"] is None or aim is None else ("yes" if row["p99 ms"] < aim else "NO")
        rows.append({**row, "aim p99 ms": f"< {aim}" if aim else "", "met": met})
        if nothing and name.startswith("b"):
            rows[-1]["met"] = "NO EVENTS: not measured"
    settings = " ".join(
        [
            *(["--spread"] if args.spread else []),
            *([f"--alerts-instances {args.alerts_instances}"] if args.alerts_instances != 1 else []),
            *(f"--set {k}={v}" for k, v in args.env.items()),
            *(f"--nice {k}={v}" for k, v in args.nice.items()),
        ]
    )
    notes = (
        (f"**{nothing}**\n\n" if nothing else "")
        + f"Command: `.venv/bin/python -m bench.pipeline_latency --robots {args.robots} --seconds {args.seconds:g} "
        f"--history-s {args.history_s:g} --warmup {args.warmup:g} --sessions {args.sessions} "
        f"--fault-period {args.fault_period:g}{' ' + settings if settings else ''}`: {args.robots} robots x 1 "
        f"reading / 2 s = {args.robots / 2:g} readings/s, faults on (period {args.fault_period:g} s), after "
        f"{args.history_s:g} s of the fleet's clean history judged at full speed (a warm fleet); "
        f"{len(result['watch'].opened)} alert events opened in all (history included); every service its own "
        f"process; settings changed from the defaults: {settings or 'none'} "
        "(STATE_PATH: a file in the run's log directory). "
        f"`expected` = readings produced in the measured window (for (c): those of {WATCHED} "
        f"times {args.sessions} sessions: each session's first arrival of each point). Process CPU s over the "
        f"run, the history's included: {result['cpu_s']}. aiokafka {extensions['aiokafka']}, C extensions in use: "
        f"**{extensions['c_extensions']}**."
    )
    # A run with changed settings gets files of its own, beside the defaults' run.
    name = "_".join(
        [
            "pipeline_latency",
            *(["spread"] if args.spread else []),
            *(f"{k}-{v}".replace("/", "-") for k, v in sorted(args.env.items())),  # a path's value names no folder
            *(f"nice-{k}{v}" for k, v in sorted(args.nice.items())),
        ]
    )
    write_results(name, rows, notes=notes, extra={"aiokafka": extensions, "settings": args.env})
    if nothing:
        print(nothing, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
