"""Bulk ingest of the real export, each method timed as a user runs it: a whole process, in turn.

    .venv/bin/python -m bench.ingest [--rounds 3] [--csv PATH] [--against TREE]...

Every run writes the same rows (39,672 readings x 14 axes of the real export) into a fresh scratch
database on the PostgreSQL server of DATABASE_URL. The methods run interleaved, every other round
backwards (A B C D, D C B A, ...), so a busy moment of the shared machine falls on all of them alike and no
method always runs right after the same neighbour; each row reports the median and the range of its rounds,
the whole command's wall time first and the work inside it beside, and the process's
CPU time (user + system: the client's alone, steadier than wall time when the machine is busy):

- ``consumer_db ingest``: ``python -m consumer_db ingest --csv FILE`` on an empty, migrated database, as
  every other method's: process start, the check that the schema is up to date, parse, COPY with its 2
  writers and the rollup's folds, the summary line. Inner: the command's own figure (parse + COPY + folds).
- ``consumer_db ingest (TREE)`` with ``--against TREE`` (repeatable): the same command run from another checkout
  (e.g. ``git worktree add /tmp/main main``), in turn with this one's: the code of TREE, this environment's Python.
- ``consumer_db ingest, again`` (and ``(TREE)``): the same command on a database that holds the export already,
  stored by the same command before the clock starts (a user re-running an ingest after a crash, or twice by
  mistake): nothing is added, every reading is found stored alike.
- ``consumer_db ingest, migrations included``: the same on an empty, unmigrated database (a user's very
  first command): the migrations' own cost, shown beside, not the ingest's.
- ``consumer_db ingest, header only``: the same command on a file that holds the export's header line and no
  reading: what every ingest pays before its first line (process start, imports, settings, the migrations
  check, the robot's axes) and after its last (the summary, exit); and ``(TREE)``: the same from each other
  checkout, in turn. The bare COPY's own process start is in its ``outside`` share.
- ``pandas to_sql``: a process that does what the notebook does: ``read_csv``, melt to the long table,
  ``to_sql(chunksize=5000)`` into a table of its own (``notebook_readings``, as the notebook made it; not
  the view readings_fact, whose per-row trigger is for psql). Inner: ``to_sql`` alone.
- ``bare COPY xN``: a process that COPYs the rows, already formatted in a file, into the migrated
  ``readings`` (the same stored form: one row per reading) over N connections at once (1, and 2 = the
  ingest's writers): the floor of ``readings`` alone. Its day partition is made before the clock starts.
  Inner: COPY and commit.
- ``bare COPY x2 + rollups by bare SQL``: the same over 2 connections, cut at a minute's start, each then
  folding its part's minutes into ``readings_minute`` and ``reading_stamps_minute`` in its transaction, and
  one the hours and ``fleet_minute`` after both: the rollup's own ``INSERT ... SELECT ... GROUP BY``
  statements once each over the whole file (``write_rollup_plan``), no chunks, no turns, no checks. The
  floor of the whole stored form the ingest leaves (what ``bytes per reading`` counts; a test holds its
  rows to one ingest's). Its connections run with JIT off, as the project's engines do. Inner: COPY, folds
  and commits.

Each ingest row also shows where the command's time went, median seconds: ``outside`` the work (process
start, imports, settings, the migrations check, the summary, exit: the command's wall time less its own
figure) and the phases the ingest logs (``consumer_db.ingest.PHASES``: the main thread's start, parse,
partitions and waits for a free writer; the writers' COPY, fold, conflicts and commit, summed over both
writers, so they overlap the main thread's and each other's). A tree whose ingest logs no phases shows none.

Beside the process's CPU, the server's (``server CPU s``, when PostgreSQL runs on this machine: its processes'
user + system time from /proc over the command, the exited backends included): the two cores are shared by
both, and a method's wall time cannot go below their sum over two, whatever the load.

After each ingest run the database's size (every table with its indexes and TOAST, the rollups included)
per stored reading is taken: ``bytes per reading``.

Every process reads the project's modules compiled once before the rounds, as a user's Python keeps them
(``bench._trees.compile_bytecode``), though this machine sets ``PYTHONDONTWRITEBYTECODE=1``.

Every method but the second starts on the same state: a fresh database with the schema migrated before its
clock starts (the floors' day partitions made too; the ingest makes its own, and folds the rollup, which
the first two floors do not).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._trees import compile_bytecode

REAL_EXPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "RMBR4-2_export_test.csv"
REPO = Path(__file__).resolve().parents[1]
ROBOT = "RMBR4-2"
AXES = list(range(1, 15))
WRITERS = 2  # consumer_db ingest's default --workers: the floor's same parallelism
ROLLUP_FLOOR = f"bare COPY x{WRITERS} + rollups by bare SQL"  # the floor with the stored form's rollup tables
HEADER_ONLY = "consumer_db ingest, header only"  # the command's fixed cost: no reading to store
URL_ENV = "BENCH_INGEST_URL"  # the child processes' database (env, so the password is not on a command line)
INNER_PREFIX = "inner seconds: "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=REAL_EXPORT, help="controller export (default: the real one)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every method, interleaved (default 3)")
    parser.add_argument(
        "--against", type=Path, action="append", default=[], help="another checkout whose ingest runs in turn"
    )
    parser.add_argument("--child", choices=["to_sql", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rollups", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "to_sql":
        return child_to_sql(os.environ[URL_ENV], args.csv)
    if args.child == "copy":
        return child_copy(os.environ[URL_ENV], args.data, args.connections, args.rollups)
    return run(args.csv, args.rounds, args.against)


def run(csv: Path, rounds: int, against: Sequence[Path] = ()) -> int:
    from bench._postgres import postgres_url
    from bench.results import write_results

    url = postgres_url("ingest")
    if url is None:
        return 2
    if not csv.exists():
        print(f"no export at {csv}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        data = Path(tmp) / "rows.copy"
        rows, readings = format_rows(csv, data)
        plan = Path(tmp) / "rollups.json"
        write_rollup_plan(data, plan)
        ingest = ["-m", "consumer_db", "ingest", "--csv", str(csv), "--no-progress"]
        header = Path(tmp) / "header.csv"
        header.write_text(csv.open(encoding="utf-8-sig").readline())
        header_only = ["-m", "consumer_db", "ingest", "--csv", str(header), "--no-progress"]
        for tree in {REPO, *(tree.resolve() for tree in against)}:
            compile_bytecode(tree, sys.executable)
        methods = {
            "consumer_db ingest": (True, ingest, REPO),
            **{f"consumer_db ingest ({tree})": (True, ingest, tree.resolve()) for tree in against},
            "consumer_db ingest, again": (True, ingest, REPO),
            **{f"consumer_db ingest, again ({tree})": (True, ingest, tree.resolve()) for tree in against},
            "consumer_db ingest, migrations included": (False, ingest, REPO),
            HEADER_ONLY: (True, header_only, REPO),
            **{f"{HEADER_ONLY} ({tree})": (True, header_only, tree.resolve()) for tree in against},
            "pandas to_sql": (True, ["-m", "bench.ingest", "--child", "to_sql", "--csv", str(csv)], REPO),
            "bare COPY x1": (True, ["-m", "bench.ingest", "--child", "copy", "--data", str(data)], REPO),
            f"bare COPY x{WRITERS}": (
                True,
                ["-m", "bench.ingest", "--child", "copy", "--data", str(data), "--connections", str(WRITERS)],
                REPO,
            ),
            ROLLUP_FLOOR: (
                True,
                ["-m", "bench.ingest", "--child", "copy", "--data", str(data), "--connections", str(WRITERS)]
                + ["--rollups", str(plan)],
                REPO,
            ),
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        cpu: dict[str, list[float]] = {name: [] for name in methods}
        server_cpu: dict[str, list[float | None]] = {name: [] for name in methods}
        phases: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
        sizes: list[float] = []
        # Every other round backwards: what runs right after a method (a cold page cache, the server's
        # checkpoint of the run before) is not always the same neighbour.
        order = list(methods.items())
        for round_no in range(rounds):
            for name, (migrated, argv, tree) in order if round_no % 2 == 0 else reversed(order):
                table = "notebook_readings" if name == "pandas to_sql" else "readings_fact"
                again = ", again" in name
                expected = 0 if name.startswith(HEADER_ONLY) else rows
                seconds, inner, size, used, server, said = whole_command(
                    url, argv, migrated, expected, table, tree, again=again
                )
                samples[name].append((seconds, inner))
                cpu[name].append(used)
                server_cpu[name].append(server)
                phases[name].append(said)
                header_only_run = name.startswith(HEADER_ONLY)
                if tree == REPO and name.startswith("consumer_db ingest") and not again and not header_only_run:
                    sizes.append(size / readings)
                print(f"round {round_no + 1}: {name} {samples[name][-1][0]:.2f} s", file=sys.stderr, flush=True)
    results = [
        summary(name, runs, 0 if name.startswith(HEADER_ONLY) else rows)
        | {"process CPU s": round(statistics.median(cpu[name]), 2)}
        | server_cpu_median(server_cpu[name])
        | phase_medians(runs, phases[name])
        for name, runs in samples.items()
    ]
    results[0]["bytes per reading"] = round(statistics.median(sizes))
    to_sql = next(r["command s"] for r in results if r["method"] == "pandas to_sql")
    floors = {r["method"]: r["command s"] for r in results if r["method"].startswith("bare COPY")}
    for r in results:
        r["x faster than to_sql"] = round(to_sql / r["command s"], 2)
        for floor, seconds in floors.items():
            r[f"x {floor} time"] = round(r["command s"] / seconds, 2)
        # The same ratios taken within each round (neighbours in time share the machine's load), median.
        own = [c for c, _ in samples[r["method"]]]
        paired = [t / c for (t, _), c in zip(samples["pandas to_sql"], own, strict=True)]
        r["x to_sql, per round"] = round(statistics.median(paired), 2)
        for floor in (f"bare COPY x{WRITERS}", ROLLUP_FLOOR):
            times = [f / c for (f, _), c in zip(samples[floor], own, strict=True)]
            r[f"x {floor} time, per round"] = round(1 / statistics.median(times), 2)
    load_after = os.getloadavg()[0]
    notes = NOTES.format(file=csv.name, rounds=rounds, before=load_before, after=load_after)
    write_results("ingest", results, notes=notes)
    return 0


NOTES = (
    "{file}; each run a fresh scratch database; methods interleaved, {rounds} rounds, every other round "
    "backwards; command s = median wall time of the whole process (range beside), inner s = the work inside it "
    "(see bench/ingest.py). "
    "1-min load average {before:.1f} before, {after:.1f} after, on {cpus} cores. "
    "Targets (issue 23): ingest >= 8x faster than to_sql and <= 1.5x a bare COPY, both as whole commands; "
    "the bare COPY floors store readings alone, the '+ rollups' floor the whole stored form (readings and rollups)."
).replace("{cpus}", str(os.cpu_count()))


def whole_command(
    url: str, argv: list[str], migrated: bool, rows: int, table: str, tree: Path = REPO, *, again: bool = False
) -> tuple[float, float, int, float, float | None, dict[str, float]]:
    """(wall seconds of ``python ARGV`` from start to exit in ``tree``, the inner seconds it reports, the
    database's bytes after it, the process's CPU seconds: the client's, steadier than its wall time on a busy
    machine; the server's CPU seconds over the same span (``ServerCpu``, None when not on this machine); the
    phases it logged) on a fresh database; ``table``: where the child's rows are counted; ``again``: the
    command run once before the clock starts, so that it is timed on its own rows."""
    from sqlalchemy import text

    from bench._postgres import scratch_database

    with scratch_database(url, prefix="bench_ingest", migrated=migrated) as engine:
        child_url = scratch_url(engine)
        # INFO: the ingest's phases are on its summary log line (stderr); the other children log nothing.
        env = {**os.environ, "DATABASE_URL": child_url, URL_ENV: child_url, "LOG_LEVEL": "INFO"}
        server = ServerCpu(engine)
        if again:
            subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, check=True)
        server_before = server.seconds()
        started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True)
        seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        server_after = server.seconds()
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        with engine.connect() as conn:
            stored = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            size = conn.execute(text(DATABASE_BYTES)).scalar_one()
    if stored != rows:
        raise RuntimeError(f"{' '.join(argv)} stored {stored} rows, expected {rows}")
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    server_used = None if server_before is None or server_after is None else server_after - server_before
    return seconds, inner_seconds(done.stdout), size, used, server_used, logged_phases(done.stderr)


class ServerCpu:
    """The CPU seconds (user + system) of the PostgreSQL server behind ``engine``, read from /proc when it
    runs on this machine: its postmaster's reaped children (every backend that exited: the child's
    connections) and its live ones (the background writers, the WAL writer, autovacuum). The client's CPU
    alone leaves out the server's share of a command, which differs by method (the folds are the server's
    work); both share the machine's two cores."""

    def __init__(self, engine) -> None:
        from sqlalchemy import text

        self.engine = engine
        with engine.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        self.postmaster = _parent_pid(backend)

    def seconds(self) -> float | None:
        """The server's CPU so far, once no other connection to this database is open (the child's backends
        have exited, so their time is in the postmaster's reaped children); None when not readable."""
        from sqlalchemy import text

        if self.postmaster is None:
            return None
        with self.engine.connect() as conn:
            for _ in range(200):  # a backend exits a moment after its client
                if not conn.execute(text(OTHER_CONNECTIONS)).scalar_one():
                    break
                time.sleep(0.01)
            own = Path(f"/proc/{conn.execute(text('SELECT pg_backend_pid()')).scalar_one()}")
        # A child reaped between the postmaster's read and the children's would count nowhere (once in both if
        # the reads ran the other way): read the postmaster again and keep the sum only if nothing changed.
        for _ in range(50):
            try:
                reaped = _own_and_reaped(self.postmaster)
                live = sum(_own(child) for child in _children(self.postmaster) if Path(f"/proc/{child}") != own)
                if _own_and_reaped(self.postmaster) == reaped:
                    return (reaped + live) / os.sysconf("SC_CLK_TCK")
            except OSError:  # a live child (an autovacuum worker, a backend) exited while it was read
                continue
        return None


OTHER_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def _parent_pid(pid: int) -> int | None:
    try:
        return int(_stat_fields(Path(f"/proc/{pid}"))[3])
    except OSError:
        return None


def _stat_fields(proc: Path) -> list[int]:
    """/proc/PID/stat's fields, numbered as proc(5) numbers them less one; the name (field 2) read past
    whatever it holds."""
    raw = (proc / "stat").read_text()
    return [0, 0, 0, *map(int, raw[raw.rindex(")") + 2 :].split()[1:])]


def _own(pid: int) -> int:
    """A process's user + system clock ticks."""
    stat = _stat_fields(Path(f"/proc/{pid}"))
    return stat[13] + stat[14]


def _own_and_reaped(pid: int) -> int:
    """A process's user + system clock ticks and those of its children it has reaped."""
    stat = _stat_fields(Path(f"/proc/{pid}"))
    return stat[13] + stat[14] + stat[15] + stat[16]


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += map(int, (task / "children").read_text().split())
    return children


def server_cpu_median(samples: list[float | None]) -> dict:
    if not samples or None in samples:
        return {}
    return {"server CPU s": round(statistics.median(samples), 2)}


# Every table of the schema with its indexes and TOAST (partitions are tables; their parent holds nothing).
DATABASE_BYTES = (
    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
)


def scratch_url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def inner_seconds(stdout: str) -> float:
    """The child's own figure: our children print it; the ingest command's summary ends with '; N s (...)'."""
    for line in stdout.splitlines():
        if line.startswith(INNER_PREFIX):
            return float(line.removeprefix(INNER_PREFIX))
        if " readings -> " in line:
            return float(line.rsplit("; ", 1)[1].split(" s ", 1)[0])
    raise RuntimeError(f"no inner time in the output:\n{stdout}")


def logged_phases(stderr: str) -> dict[str, float]:
    """The phases on the ingest's summary log line (``consumer_db.ingest.phases_text``), or none."""
    for line in stderr.splitlines():
        if " consumer_db.ingest: ingested " in line:
            said = line.partition(" rows/s); ")[2]
            return {name: float(seconds) for name, seconds in PHASE.findall(said)}
    return {}


PHASE = re.compile(r"([a-zA-Z][a-zA-Z ]*): ([0-9.]+) s")


def phase_medians(runs: list[tuple[float, float]], phases: list[dict[str, float]]) -> dict:
    """``outside`` the work and each logged phase, median seconds, as one column (none for a method that
    logs no phases)."""
    if not all(phases):
        return {}
    outside = statistics.median(command - inner for command, inner in runs)
    medians = {name: statistics.median(said[name] for said in phases) for name in phases[0]}
    shown = [f"outside {outside:.2f}"] + [f"{name} {seconds:.2f}" for name, seconds in medians.items() if seconds]
    return {"phases, median s": "; ".join(shown)}


def summary(method: str, runs: list[tuple[float, float]], rows: int) -> dict:
    command = [c for c, _ in runs]
    inner = [i for _, i in runs]
    median = statistics.median(command)
    return {
        "method": method,
        "command s": round(median, 2),
        "range": f"{min(command):.2f}–{max(command):.2f}",
        "inner s": round(statistics.median(inner), 2),
        "outside the work": f"{1 - statistics.median(inner) / median:.0%}",
        "rows/s (command)": round(rows / median),
        "runs": ", ".join(f"{c:.2f}" for c in command),
    }


def format_rows(csv: Path, out: Path) -> tuple[int, int]:
    """The export's readings in COPY's text format for ``readings``, written once for the floor (its
    formatting is not timed); returns (long rows, readings)."""
    from common.csvio.controller_csv import CsvOptions, read_export_rows
    from consumer_db.axislock import RobotAxes
    from consumer_db.store import copy_text

    lock = RobotAxes(frozenset(AXES), tuple(AXES))
    records = read_export_rows(csv, CsvOptions(ROBOT, AXES), log_columns=False)
    rows = [r for rec in records for r in lock.rows(rec.robot_id, rec.ts, rec.currents)]
    text = copy_text(rows)
    out.write_text(text)
    return len(rows), text.count("\n")


def child_to_sql(url: str, csv: Path) -> int:
    """The notebook's way, as one process: read the export, melt it to the long table, ``to_sql``."""
    import pandas as pd
    from sqlalchemy import create_engine

    wide = pd.read_csv(csv)
    wide["ts"] = pd.to_datetime(wide["Time"], utc=True)
    long = wide.drop(columns=["Trait", "Time"]).melt(id_vars=["ts"], var_name="axis", value_name="amps")
    long["axis_id"] = long["axis"].str.extract(r"(\d+)", expand=False).astype(int)
    long["robot_id"] = ROBOT
    engine = create_engine(url)
    started = time.perf_counter()
    long[["robot_id", "axis_id", "ts", "amps"]].to_sql(
        "notebook_readings", engine, if_exists="append", index=False, chunksize=5000
    )
    print(f"{INNER_PREFIX}{time.perf_counter() - started:.3f}")
    return 0


def write_rollup_plan(data: Path, out: Path) -> None:
    """What ``ROLLUP_FLOOR`` runs after its COPY, as JSON (made before the clock, as the COPY text): the rows'
    parts, one per connection, cut at a minute's start; the rollup's own INSERT ... SELECT ... GROUP BY
    statements (``rollup_writer.span_fold_sql``, and ``fleet_minute``'s) with the ranges each folds; the
    robot's progress. The ranges are the ingest's: every minute before ``folded_until``, which it leaves where
    the ingest's last fold does (``fold_delay``), and the hours those minutes are in."""
    from datetime import datetime

    from sqlalchemy import bindparam
    from sqlalchemy.dialects.postgresql import psycopg2 as postgres

    from common.store.rollup import HOUR, MINUTE, F, M, fleet_stats_of, floor_hour, floor_minute
    from common.store.tables import UtcDateTime
    from consumer_db.rollup_writer import _upsert_statement, fold_delay, span_fold_sql

    dialect = postgres.dialect()
    lines = data.read_text().splitlines()
    minute_of = [line.split("\t", 2)[1][:16] for line in lines]
    cuts = [0]
    for part in range(1, WRITERS):  # about equal parts, each from the start of a minute
        cut = len(lines) * part // WRITERS
        while cut < len(lines) and minute_of[cut] == minute_of[cut - 1]:
            cut += 1
        cuts.append(cut)
    first, last = (datetime.fromisoformat(lines[i].split("\t", 2)[1]) for i in (0, -1))
    folded_until = floor_minute(last - fold_delay(ROBOT))
    lows = [floor_minute(datetime.fromisoformat(lines[cut].split("\t", 2)[1])) for cut in cuts]
    highs = [*lows[1:], folded_until]
    fleet = fleet_stats_of([M.c.minute >= bindparam("low", type_=UtcDateTime), M.c.minute < bindparam("high")])
    compiled = _upsert_statement("postgresql", F, fleet, hashed=False).compile(dialect=dialect)
    statements = {name: span_fold_sql(dialect, name) for name in ("minutes", "stamps", "stamp_hours", "hours")}
    plan = {
        "cuts": cuts,
        "spans": [[ROBOT, low.isoformat(), high.isoformat()] for low, high in zip(lows, highs, strict=True)],
        "hours": [ROBOT, floor_hour(first).isoformat(), (floor_hour(folded_until - MINUTE) + HOUR).isoformat()],
        "progress": [ROBOT, folded_until.isoformat()],
        "statements": statements | {"fleet": (compiled.string, dict(compiled.params), False)},
    }
    out.write_text(json.dumps(plan))


def child_copy(url: str, data: Path, connections: int, rollups: Path | None = None) -> int:
    """The floor: COPY of ready-made text over ``connections`` connections at once, one transaction each;
    with ``rollups`` (``write_rollup_plan``) each connection folds the minutes of its part in the same
    transaction, then one folds the hours and the fleet's minutes: no chunks, no turns, each statement once."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg2
    from sqlalchemy import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    lines = data.read_text().splitlines(keepends=True)
    plan = json.loads(rollups.read_text()) if rollups else None
    size = -(-len(lines) // connections)
    cuts = plan["cuts"] if plan else list(range(0, len(lines), size))
    parts = ["".join(lines[low:high]) for low, high in zip(cuts, [*cuts[1:], len(lines)], strict=True)]
    # JIT off, as every engine of the project connects (common.store.db): the folds run with sorts off, whose
    # cost estimate turns JIT on, and compiling them took most of this floor's time (~0.7 s a statement).
    links = [psycopg2.connect(dsn, options="-c jit=off") for _ in parts]
    days = sorted({line.split("\t", 2)[1][:10] for line in lines})
    with links[0].cursor() as cursor:  # the day partitions, before the clock (the ingest makes its own)
        cursor.execute(
            "SELECT ensure_readings_partitions(CAST(d AS timestamptz), CAST(d AS timestamptz)) FROM unnest(%s) d",
            (days,),
        )
    links[0].commit()

    def fold(cursor, name: str, params: dict) -> None:
        sql, constants, hashed = plan["statements"][name]
        if hashed:  # as the writers run it (rollup_writer._sorts_off)
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(sql, constants | params)
        if hashed:
            cursor.execute("SET LOCAL enable_sort TO DEFAULT")

    def spans(robot: str, low: str, high: str) -> dict:
        return {"robots": [robot], "lows": [low], "highs": [high]}

    def copy(work) -> None:
        link, part, span = work
        with link.cursor() as cursor:
            cursor.copy_expert("COPY readings (robot_id, ts, axes, amps) FROM STDIN", io.StringIO(part))
            if span:
                fold(cursor, "minutes", spans(*span))
                fold(cursor, "stamps", spans(*span))
        link.commit()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(copy, zip(links, parts, plan["spans"] if plan else [None] * len(parts), strict=True)))
    if plan:
        with links[0].cursor() as cursor:
            cursor.execute("INSERT INTO rollup_progress (robot_id, folded_until) VALUES (%s, %s)", plan["progress"])
            fold(cursor, "stamp_hours", spans(*plan["hours"]))
            fold(cursor, "hours", spans(*plan["hours"]))
            fold(cursor, "fleet", {"low": plan["spans"][0][1], "high": plan["progress"][1]})
        links[0].commit()
    print(f"{INNER_PREFIX}{time.perf_counter() - started:.3f}")
    for link in links:
        link.close()
    return 0


def empty(engine) -> None:
    """The stored readings emptied and vacuumed (the end-to-end benchmarks reuse their scratch database)."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE readings"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE readings"))


def stored(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM readings_fact")).scalar_one()


if __name__ == "__main__":
    sys.exit(main())
