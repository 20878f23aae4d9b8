"""Query latency at scale: the phrase queries, data health and the dashboard's history view on a
readings_fact of --rows rows (default 10 million) bulk-ingested from the synthetic fleet.

    .venv/bin/python -m bench.query_scale [--rows 10000000] [--robots 100] [--runs 20] [--budget 10] [--keep DBNAME]

Fill: the synthetic fleet (faults on) through the sink's own write path (consumer_db.store.insert_readings:
COPY, 5,000 readings a transaction) and its alert events (the service's detectors) through
consumer_db.alert_store; then VACUUM ANALYZE. ``--keep NAME`` reuses (or leaves) a filled database.

Timed, p50/p99 over --runs runs after a warm-up run (fewer once a case has taken --budget seconds, at least 3):
- every phrase of ``python -m consumer_db query`` (consumer_db.phrases.ask), for the fleet and for one robot,
  over everything stored (no --start/--end: the CLI's default) and over the last hour;
- the dashboard's history view, what its Refresh runs (HistoryView._query), for the fleet and one robot, per
  --ranges entry, and each query in it apart (the aim: every one < 100 ms p99);
- every phrase for the fleet over everything once more as a user runs it: ``python -m consumer_db query PHRASE
  --format F`` as a process, its output to a file, its bytecode compiled before the timed runs as Python
  keeps it (bench._trees.compile_bytecode), --command-runs times per format; beside it the SQL alone
  (the rows above) and the output's rendering alone (consumer_db.output.render, in this process);
- the cases where the (robot_id, ts) index matters, once more with index scans off, and their plans.
With ``--compare DIR`` (a checkout of another commit) each phrase's SQL is timed from both trees alike, each
in a fresh process of its own interpreter (the tree's ``.venv``, as ``make install`` built it: the interpreter
is part of what a user waits for), this tree's then that one's (``before p50/p99 ms``): a big answer's rows
cost more in this long-lived process (the fleet's whole 1-minute resample before it was bounded: 14 s here,
11 s in a fresh one); and each command is run from it, on its interpreter, in turn with this tree's. Each
command's time to its first byte of output and its peak memory (max RSS) and CPU time (user + system: at the
machine's usual load the wall time of one command moves by a second between rounds, its CPU time by a few
hundredths) are kept.
``--phrases-only``: the phrases' SQL alone; ``--commands-only``: the commands alone
(``bench/results/query_commands.md``), e.g. on the real export: ``--csv FILE`` fills the database with
``python -m consumer_db ingest --csv FILE`` instead of the fleet.
bench.query_plans times the same functions directly on random data made on the server; this one asks them
as users do, on the fleet's data (about 60 % idle rows of exact zeros, axes 9-14 NULL).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from bokeh.document import Document
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from bench._kafka import fleet
from bench._postgres import postgres_url, scratch_database
from bench._services import aiokafka_extensions
from bench._trees import compile_bytecode, described, own_python
from bench.query_plans import explain, percentile
from bench.results import write_results
from common.store import queries
from common.store.tables import axes_dim
from consumer_alerts.engine import DetectorEngine
from consumer_db.alert_store import upsert_alerts
from consumer_db.axislock import RobotAxes
from consumer_db.output import render
from consumer_db.phrases import PHRASES, QueryArgs, ask
from consumer_db.store import insert_readings
from dashboard.history import RANGES, HistoryView
from dashboard.settings import DashboardSettings

HERE = Path(__file__).resolve().parents[1]  # this tree
AXES = tuple(range(1, 15))
CHUNK = 5000
INDEX_OFF_TIMEOUT_S = 10
INDEX_OFF = (
    "SET enable_indexscan = off",
    "SET enable_bitmapscan = off",
    "SET enable_indexonlyscan = off",
    f"SET statement_timeout = '{INDEX_OFF_TIMEOUT_S}s'",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of readings_fact (14 per reading)")
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per case after which it stops (>= 3 runs)")
    parser.add_argument("--ranges", default="last hour,last 24 hours", help=f"history ranges, of: {', '.join(RANGES)}")
    parser.add_argument("--command-runs", type=int, default=3, help="runs of each phrase as a whole command")
    parser.add_argument("--formats", default="table,json", help="output formats the commands are timed with")
    parser.add_argument("--keep", metavar="DBNAME", help="database to reuse or leave behind")
    parser.add_argument(
        "--phrases-only", action="store_true", help="only the phrases' SQL (no index-off runs, dashboard, commands)"
    )
    parser.add_argument(
        "--commands-only", action="store_true", help="only the commands as a user runs them, no SQL timings"
    )
    parser.add_argument("--csv", type=Path, help="fill with this controller export (the ingest command), not the fleet")
    parser.add_argument(
        "--phrases",
        type=lambda names: [name.strip() for name in names.split(",")],
        help="only these phrases (their names, comma-separated; default: every one), for rounds in turn",
    )
    parser.add_argument(
        "--compare",
        metavar="DIR",
        type=Path,
        help="a checkout of another commit: each command also run from it, in turn with this tree's",
    )
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]
    url = postgres_url("query_scale")
    if url is None:
        return 2
    with scratch_database(url, prefix="bench_scale_q", name=args.keep, keep=bool(args.keep)) as engine:
        filled = fill(engine, args)
        if args.commands_only:
            rows, plans, facts = commands(engine, args, []), {}, stored(engine)
        else:
            rows, plans, facts = measure(engine, args)
        if not args.phrases_only and not args.commands_only:
            rows += commands(engine, args, rows)
    if args.commands_only:
        notes = (
            f"Command: `.venv/bin/python -m bench.query_scale --commands-only --command-runs {args.command_runs} "
            f"--formats {args.formats}"
            + (f" --phrases '{','.join(args.phrases)}'" if args.phrases else "")
            + (f" --csv {args.csv}" if args.csv else "")
            + (f" --compare {args.compare}" if args.compare else "")
            + f"`. {facts}; "
            + (f"filled in {filled:.0f} s. " if filled else "kept database reused. ")
            + interpreters(args)
            + COMMAND_COLUMNS.format(runs=args.command_runs, compare=args.compare)
            + f"1-min load average at the start {load_at_start:.1f}, at the end {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores (`load`: as each case ended; `p99 ms`: the slowest run).\n"
        )
    else:
        notes = scale_notes(args, facts, filled, load_at_start, plans)
    name = "query_commands" if args.commands_only else "query_scale"
    write_results(name, rows, notes=notes, extra={"aiokafka": aiokafka_extensions()})
    return 0


COMMAND_COLUMNS = (
    "`command` rows: the whole `python -m consumer_db query` process, median (and max) of {runs} runs, output "
    "to a file; `CPU` = its user + system time (GNU time, 10 ms steps); `render ms` = consumer_db.output.render "
    "of its answer alone; `compared` = the same command from {compare}, run in turn with this tree's. "
)


def interpreters(args) -> str:
    """Which interpreter ran each tree's SQL and commands (each tree's own: ``own_python``)."""
    said = f"This tree ran on {described(own_python(HERE))}"
    if args.compare:
        said += f", {args.compare} on {described(own_python(args.compare))}"
    return said + ". "


def scale_notes(args, facts: str, filled: float, load_at_start: float, plans: dict) -> str:
    """The notes of a whole run: the SQL, the dashboard, the index-off cases with their plans, the commands."""
    return (
        f"Command: `.venv/bin/python -m bench.query_scale --rows {args.rows} --robots {args.robots} --runs {args.runs} "
        f"--budget {args.budget:g} --command-runs {args.command_runs}"
        + (" --phrases-only" if args.phrases_only else "")
        + (f" --phrases '{','.join(args.phrases)}'" if args.phrases else "")
        + (f" --csv {args.csv}" if args.csv else "")
        + (f" --compare {args.compare}" if args.compare else "")
        + f"`. {facts}; "
        + (f"bulk ingest: {filled:.0f} s. " if filled else "kept database reused. ")
        + interpreters(args)
        + "ms; `runs` = timed runs after one warm-up (a warm-up slower than --budget counts as a run). Dashboard "
        "aim: every query < 100 ms p99. `index off` = one run with index scans disabled (enable_indexscan/"
        f"bitmapscan/indexonlyscan = off), cancelled after {INDEX_OFF_TIMEOUT_S} s; "
        "the plans below are with them on. `command` rows: the whole `python -m consumer_db query` process, "
        f"median (and max) of {args.command_runs} runs, output to a file; `CPU` = its user + system time; "
        "`SQL p50 ms` = the same phrase's "
        "p50 above; `render ms` = consumer_db.output.render of its answer alone"
        + (
            f"; `compared` = the same command from {args.compare}, run in turn with this tree's. "
            if args.compare
            else ". "
        )
        + f"1-min load average at the start {load_at_start:.1f}, at the end {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (`load`: as each case ended; `p99 ms` of a command: the slowest of its runs).\n\n"
        + "\n".join(f"### {name}\n```\n{plan}\n```" for name, plan in plans.items())
    )


def fill(engine: Engine, args) -> float:
    """The fleet through the sink's write path (or --csv through the ingest command), unless a kept database
    has readings; returns the seconds it took."""
    with engine.connect() as conn:
        if conn.execute(text("SELECT EXISTS (SELECT 1 FROM readings_fact)")).scalar():
            return 0.0
    if args.csv:
        started = time.perf_counter()
        env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False), "LOG_LEVEL": "WARNING"}
        argv = [sys.executable, "-m", "consumer_db", "ingest", "--csv", str(args.csv), "--no-progress"]
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        return time.perf_counter() - started
    started, lock, detectors = time.perf_counter(), RobotAxes(frozenset(AXES), AXES), DetectorEngine()
    with engine.begin() as conn:
        conn.execute(
            axes_dim.insert(),
            [
                {"robot_id": f"robot-{r:03d}", "axis_id": a, "label": f"Axis #{a}", "unit": "A", "active": True}
                for r in range(1, args.robots + 1)
                for a in AXES
            ],
        )
    rows, events, done = [], [], 0
    for reading in fleet(args.robots, args.rows // 14 // args.robots, faults=True):
        rows += lock.rows(reading.robot_id, reading.ts, reading.currents)
        events += detectors.process(reading)
        if len(rows) >= CHUNK * len(AXES):
            done += store(engine, rows, events)
            rows, events = [], []
            print(f"\r{done:,} rows stored", end="", flush=True)
    store(engine, rows, events)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"\nfilled in {time.perf_counter() - started:.0f} s", flush=True)
    return time.perf_counter() - started


def store(engine: Engine, rows: list[tuple], events: list) -> int:
    with engine.begin() as conn:
        insert_readings(conn, rows)
        upsert_alerts(conn, events)
    return len(rows)


def stored(engine: Engine) -> str:
    """What the database holds, in words."""
    with engine.connect() as conn:
        count, robots, oldest, newest = conn.execute(
            text("SELECT count(*), count(DISTINCT robot_id), min(ts), max(ts) FROM readings_fact")
        ).one()
    return f"readings_fact: {count:,} rows of {robots} robots, {oldest:%Y-%m-%d %H:%M} to {newest:%Y-%m-%d %H:%M} UTC"


def measure(engine: Engine, args) -> tuple[list[dict], dict[str, str], str]:
    with engine.connect() as conn:
        newest = queries.newest_ts(conn)
        robot = conn.execute(text("SELECT min(robot_id) FROM axes_dim")).scalar()
        count, oldest = conn.execute(text("SELECT count(*), min(ts) FROM readings_fact")).one()
        events = conn.execute(text("SELECT count(*) FROM alerts")).scalar()
    facts = (
        f"readings_fact: {count:,} rows of {args.robots} robots, {oldest:%Y-%m-%d %H:%M} to {newest:%H:%M} UTC "
        f"({(newest - oldest).total_seconds() / 3600:.1f} h); alerts: {events:,} events"
    )
    hour = {"start": newest - timedelta(hours=1), "end": newest}
    scopes = {
        "fleet, everything": QueryArgs(),
        f"{robot}, everything": QueryArgs(robot_id=robot),
        "fleet, last hour": QueryArgs(**hour),
        f"{robot}, last hour": QueryArgs(robot_id=robot, **hour),
    }
    rows: list[dict] = []
    with engine.connect() as conn:
        for phrase in chosen(args):
            words = phrase.name.replace("{n}", "20")
            for scope, query_args in scopes.items():
                if args.compare:  # both trees alike: each in a fresh process of its own, one after the other
                    samples = sampled_in(HERE, engine, words, query_args, args)
                else:
                    samples = sample(partial(answered, conn, words, query_args), args)
                rows.append(result(f'query "{words}"', scope, samples))
                if args.compare:
                    before = sampled_in(args.compare, engine, words, query_args, args)
                    rows[-1]["before p50 ms"] = round(statistics.median(before), 1)
                    rows[-1]["before p99 ms"] = round(percentile(before, 99), 1)
                print(rows[-1], flush=True)
        plans = {} if args.phrases_only else index_cases(conn, rows, robot, scopes, args)
    if args.phrases_only:
        return rows, plans, facts
    view = HistoryView(Document(), engine, DashboardSettings(_env_file=None))
    gc.collect()
    gc.freeze()  # as the dashboard process does once it serves (dashboard/service.py)
    for name in args.ranges.split(","):
        for who in (None, robot):
            with recorded() as parts:
                samples = sample(partial(view._query, who, RANGES[name.strip()]), args)
            rows.append(result("dashboard history (Refresh)", f"{who or 'fleet'}, {name.strip()}", samples, parts))
            print(rows[-1], flush=True)
    return rows, plans, facts


def chosen(args) -> list:
    """The phrases ``--phrases`` names (all by default); a name that is none of them is an error."""
    if not args.phrases:
        return list(PHRASES)
    unknown = set(args.phrases) - {p.name for p in PHRASES}
    if unknown:
        raise SystemExit(f"--phrases: unknown {sorted(unknown)}; known: {[p.name for p in PHRASES]}")
    return [p for p in PHRASES if p.name in args.phrases]


def answered(conn, words: str, query_args: QueryArgs) -> tuple[list[dict], dict]:
    """The phrase's whole answer, its rows read (a tree before the bounded resample streamed them)."""
    answer = ask(conn, words, query_args)
    return list(answer.rows), answer.tables


# Run from the other tree's directory: its consumer_db answers (the same sampling as ``sample`` below).
SAMPLED_THERE = """
import gc, json, sys, time
from datetime import datetime
from common.store.db import make_engine
from consumer_db.phrases import QueryArgs, ask
url, words, given = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
runs, budget = int(sys.argv[4]), float(sys.argv[5])
given = {k: datetime.fromisoformat(v) if k in ("start", "end") else v for k, v in given.items()}
engine = make_engine(url, log_version=False)
with engine.connect() as conn:
    def call():
        answer = ask(conn, words, QueryArgs(**given))
        list(answer.rows)
    started = time.perf_counter(); call(); first = time.perf_counter() - started
    gc.collect(); gc.freeze()  # as sample() does
    samples, deadline = ([first * 1000] if first > budget else []), time.monotonic() + budget
    while len(samples) < runs and (len(samples) < 3 or time.monotonic() < deadline):
        started = time.perf_counter(); call(); samples.append((time.perf_counter() - started) * 1000)
print(json.dumps(samples))
"""


def sampled_in(tree: Path, engine: Engine, words: str, query_args: QueryArgs, args) -> list[float]:
    """``sample`` of the phrase as the tree at ``tree`` answers it, in a process of its own (started outside
    the timing) on the tree's own interpreter, on the same database."""
    given = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in vars(query_args).items() if v is not None}
    given = {k: v for k, v in given.items() if k in ("robot_id", "start", "end")}
    url = engine.url.render_as_string(hide_password=False)
    argv = [own_python(tree), "-c", SAMPLED_THERE, url, words, json.dumps(given), str(args.runs), str(args.budget)]
    done = subprocess.run(argv, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{words!r} from {tree} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sample(call, args) -> list[float]:
    """ms of --runs runs after one warm-up (the dashboard asks the same questions again and again);
    fewer once --budget seconds have gone, but at least 3. A warm-up longer than --budget counts as a run:
    a cache does not make such a query fast, and the machine's time is better spent elsewhere.

    What the process made until then is frozen after the warm-up (``gc.freeze``), as every process that asks
    the phrases does once started: the command after its start-up (consumer_db.commands), the dashboard once
    it serves. Unfrozen, a full collection walked the benchmark's own modules and statements in about one run
    of four of the hourly resample (5,600 rows made each run), 26-67 ms each at load 14: the p99 was the
    harness's heap, not the query (docs/benchmarks.md section 3, branch ``hourly17``)."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    gc.collect()
    gc.freeze()
    samples, deadline = ([first * 1000] if first > args.budget else []), time.monotonic() + args.budget
    while len(samples) < args.runs and (len(samples) < 3 or time.monotonic() < deadline):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


@contextmanager
def recorded():
    """Time every common.store.queries function while inside (the history view calls them through the module)."""
    parts: dict[str, list[float]] = defaultdict(list)
    originals = {name: getattr(queries, name) for name in queries.__all__}

    def timed(name, function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name].append((time.perf_counter() - started) * 1000)

        return call

    for name, function in originals.items():
        setattr(queries, name, timed(name, function))
    try:
        yield parts
    finally:
        for name, function in originals.items():
            setattr(queries, name, function)


def result(query: str, scope: str, samples: list[float], parts: dict | None = None) -> dict:
    row = {
        "query": query,
        "scope": scope,
        "runs": len(samples),
        "p50 ms": round(statistics.median(samples), 1),
        "p99 ms": round(percentile(samples, 99), 1),
        "index off ms": None,
        "load": round(os.getloadavg()[0], 1),  # 1-minute load average as the case ends
    }
    if parts is not None:
        p99 = {name: percentile(times[-len(samples) :], 99) for name, times in parts.items()}  # not the warm-up
        row["each query p99 ms"] = ", ".join(f"{n} {v:,.1f}" for n, v in sorted(p99.items(), key=lambda i: -i[1]))
        row["dashboard aim met"] = "yes" if max(p99.values()) < 100 else "NO"
    return row


def index_cases(conn, rows: list[dict], robot: str, scopes: dict, args) -> dict[str, str]:
    """Where the (robot_id, ts) index matters: one run with index scans off, and the plan with them on."""
    cases = [
        ("show latest per axis", f"{robot}, everything"),
        ("show latest 20 rows", "fleet, everything"),
        ("show 1-minute peak", "fleet, everything"),
        ("show 1-minute resample", f"{robot}, last hour"),
        ("show data health", f"{robot}, last hour"),
        ("show window peaks", "fleet, everything"),
        ("show latest per axis", "fleet, last hour"),
    ]
    plans = {}
    for words, scope in cases:
        call = partial(answered, conn, words, scopes[scope])
        if words in ("show latest per axis", "show 1-minute resample", "show data health", "show window peaks"):
            plans[f'"{words}", {scope}'] = explain(conn, call)
        for statement in INDEX_OFF:
            conn.exec_driver_sql(statement)
        try:
            started = time.perf_counter()
            call()
            off = round((time.perf_counter() - started) * 1000, 1)
        except OperationalError:  # cancelled by the statement timeout
            conn.rollback()
            off = f"> {INDEX_OFF_TIMEOUT_S * 1000:,} (cancelled)"
        finally:
            conn.exec_driver_sql("RESET ALL")
        next(r for r in rows if r["query"] == f'query "{words}"' and r["scope"] == scope)["index off ms"] = off
    return plans


def commands(engine: Engine, args, timed: list[dict]) -> list[dict]:
    """Each phrase for the fleet over everything, as a user runs it: the whole process, output to a file."""
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False), "LOG_LEVEL": "WARNING"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp, engine.connect() as conn:
        out = Path(tmp) / "answer"
        for tree in trees(args):
            compile_bytecode(tree, own_python(tree))
        # What every command pays before its first query: the interpreter, the imports, the phrase list.
        for argv, name in (
            (["--help"], "command: consumer_db --help"),
            (["query", "--list"], "command: consumer_db query --list (start-up, no database)"),
        ):
            wall, compared = in_turn(argv, env, out, args)
            rows.append({"query": name, "scope": "", **walls(wall, compared)})
        for phrase in chosen(args):
            words = phrase.name.replace("{n}", "20")
            answer = ask(conn, words, QueryArgs())
            answer_rows = list(answer.rows)
            sql = next((r for r in timed if r["query"] == f'query "{words}"' and r["scope"] == "fleet, everything"), {})
            for fmt in args.formats.split(","):
                started = time.perf_counter()
                render(answer_rows, answer.tables, fmt)
                render_ms = (time.perf_counter() - started) * 1000
                wall, compared = in_turn(["query", words, "--format", fmt], env, out, args)
                rows.append(
                    {
                        "query": f'command: consumer_db query "{words}" --format {fmt}',
                        "scope": "fleet, everything",
                        **walls(wall, compared),
                        "SQL p50 ms": sql.get("p50 ms"),
                        "render ms": round(render_ms, 1),
                        "answer rows": len(answer_rows),
                        "output bytes": out.stat().st_size,
                        "command aim (< 500 ms) met": "yes" if max(r.wall for r in wall) < 500 else "NO",
                    }
                )
                print(rows[-1], flush=True)
    return rows


@dataclass
class Run:
    """One command: ms to its exit and to its first byte of output, its peak memory (MiB) and CPU time (ms)."""

    wall: float
    first_byte: float | None
    max_rss: float | None
    cpu: float | None = None


def trees(args) -> list[Path]:
    """This tree, and the --compare checkout after it."""
    return [HERE, args.compare] if args.compare else [HERE]


def in_turn(argv: list[str], env: dict, out: Path, args) -> tuple[list[Run], list[Run]]:
    """``python -m consumer_db ARGV`` from this tree, --command-runs times; with --compare, each run
    followed by one from that tree: each tree's own interpreter, in the tree's folder (which decides the
    consumer_db it imports)."""
    mine, compared = [], []
    for _ in range(args.command_runs):
        mine.append(run_command([own_python(HERE), "-m", "consumer_db", *argv], env, out, cwd=HERE))
        if args.compare:
            compared.append(
                run_command([own_python(args.compare), "-m", "consumer_db", *argv], env, out, cwd=args.compare)
            )
    if args.compare:  # this tree's output last, for the output bytes
        run_command([own_python(HERE), "-m", "consumer_db", *argv], env, out, cwd=HERE)
    return mine, compared


def walls(mine: list[Run], compared: list[Run]) -> dict:
    wall = [r.wall for r in mine]
    row = {"runs": len(wall), "p50 ms": round(statistics.median(wall), 1), "p99 ms": round(max(wall), 1)}
    row["load"] = round(os.getloadavg()[0], 1)
    firsts = [r.first_byte for r in mine if r.first_byte is not None]
    row["first byte p50 ms"] = round(statistics.median(firsts), 1) if firsts else None
    row["max RSS MiB"] = max((round(r.max_rss, 1) for r in mine if r.max_rss is not None), default=None)
    row["CPU p50 ms"] = _median_cpu(mine)
    if compared:
        row["compared p50 ms"] = round(statistics.median(r.wall for r in compared), 1)
        row["compared max ms"] = round(max(r.wall for r in compared), 1)
        row["compared CPU p50 ms"] = _median_cpu(compared)
        row["compared max RSS MiB"] = max(
            (round(r.max_rss, 1) for r in compared if r.max_rss is not None), default=None
        )
    return row


def _median_cpu(runs: list[Run]) -> float | None:
    cpu = [r.cpu for r in runs if r.cpu is not None]
    return round(statistics.median(cpu), 1) if cpu else None


# GNU time reports the command's own peak memory: wait4's, for a child forked from this process (bokeh,
# the dashboard: ~110 MiB), starts from this process's size before the exec. And its CPU time alone.
TIME = ["/usr/bin/time", "-f", "max RSS KiB %M cpu s %U %S"] if Path("/usr/bin/time").is_file() else []


def run_command(argv: list[str], env: dict, out: Path, cwd: Path | None = None) -> Run:
    """The process's run, from its start to its exit, its output copied to ``out`` as it comes (the time of
    the first byte is when a user sees the answer begin); its peak memory (None without /usr/bin/time)."""
    started = time.perf_counter()
    process = subprocess.Popen([*TIME, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    with process, out.open("wb") as sink:
        first_byte = None
        while chunk := process.stdout.read1(1 << 16):
            if first_byte is None:
                first_byte = (time.perf_counter() - started) * 1000
            sink.write(chunk)
        stderr = process.stderr.read().decode(errors="replace")
        process.wait()
        wall = (time.perf_counter() - started) * 1000
    if process.returncode != 0:
        raise RuntimeError(f"{argv[2:]} failed ({process.returncode}): {stderr[-2000:]}")
    said = [line.split() for line in stderr.splitlines() if line.startswith("max RSS KiB ")]
    if not said:
        return Run(wall, first_byte, None)
    *_, rss, _cpu, _s, user, system = said[-1]
    return Run(wall, first_byte, int(rss) / 1024, (float(user) + float(system)) * 1000)


if __name__ == "__main__":
    sys.exit(main())
