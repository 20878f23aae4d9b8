"""Bulk ingest of the real export: consumer_db's ingest vs the notebook's pandas ``to_sql`` vs a bare COPY.

    .venv/bin/python -m bench.ingest [--repeat 3] [--csv PATH] [--keep]

All three write the same 555,408 rows (39,672 readings x 14 axes) into an empty ``readings_fact`` (with
its primary key and indexes) of a scratch database on the PostgreSQL server of DATABASE_URL, one after
the other, in one run:

- ``consumer_db ingest``: the whole command's work: parse the CSV, schema lock, COPY, commit per chunk.
- ``pandas to_sql``: ``DataFrame.to_sql(chunksize=5000)`` of the long table (robot_id, axis_id, ts, amps);
  the CSV read and melt before it are timed apart and not counted.
- ``bare COPY``: one COPY of the rows, already formatted in memory, into the table: the floor.
- ``consumer_db ingest (re-run)``: the same file again onto the full table; every row is a duplicate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, text

from bench._postgres import postgres_url, scratch_database
from bench.results import write_results
from common.csvio.controller_csv import CsvOptions, read_export_rows
from consumer_db.axislock import RobotAxes
from consumer_db.ingest import IngestOptions, ingest_csv
from consumer_db.store import copy_from, copy_text

REAL_EXPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "RMBR4-2_export_test.csv"
ROBOT = "RMBR4-2"
AXES = list(range(1, 15))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=REAL_EXPORT, help="controller export (default: the real one)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of ingest and bare COPY (median kept); to_sql runs once"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    url = postgres_url("ingest")
    if url is None:
        return 2
    if not args.csv.exists():
        print(f"no export at {args.csv}", file=sys.stderr)
        return 2
    with scratch_database(url, prefix="bench_ingest", keep=args.keep) as engine:
        rows = measure(engine, args.csv, args.repeat)
    floor = next(r for r in rows if r["method"] == "bare COPY")["seconds"]
    to_sql = next(r for r in rows if r["method"] == "pandas to_sql")["seconds"]
    for row in rows:
        row["x faster than to_sql"] = round(to_sql / row["seconds"], 2)
        row["x bare COPY time"] = round(row["seconds"] / floor, 2)
    write_results("ingest", rows, notes=NOTES.format(file=args.csv.name, repeat=args.repeat))
    return 0


NOTES = (
    "{file}, PostgreSQL scratch database, empty readings_fact (PK + indexes) before each run except the re-run; "
    "seconds = median of {repeat} runs (to_sql: one run). Target: ingest >= 8x faster than to_sql."
)


def measure(engine: Engine, path: Path, repeat: int) -> list[dict]:
    options = IngestOptions(CsvOptions(ROBOT, AXES))
    ingest_times, copy_times = [], []
    for _ in range(repeat):
        empty(engine)
        ingest_times.append(timed(lambda: ingest_csv(engine, path, options)))
        empty(engine)
        copy_times.append(bare_copy(engine, path))
    empty(engine)
    ingest_csv(engine, path, options)
    rerun = timed(lambda: ingest_csv(engine, path, options))
    empty(engine)
    started = time.perf_counter()
    frame = long_table(path)
    prep = time.perf_counter() - started
    to_sql = timed(lambda: frame.to_sql("readings_fact", engine, if_exists="append", index=False, chunksize=5000))
    n = stored(engine)
    return [
        row("consumer_db ingest", ingest_times, n),
        row("pandas to_sql", [to_sql], n, note=f"read_csv + melt before it: {prep:.2f} s, not counted"),
        row("bare COPY", copy_times, n, note="COPY only; parsing and formatting not counted"),
        row("consumer_db ingest (re-run)", [rerun], n, note="every row already stored: nothing added"),
    ]


def row(method: str, samples: list[float], rows: int, note: str = "") -> dict:
    seconds = statistics.median(samples)
    return {
        "method": method,
        "seconds": round(seconds, 3),
        "rows": rows,
        "rows/s": round(rows / seconds),
        "runs": ", ".join(f"{s:.2f}" for s in samples),
        "note": note,
    }


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bare_copy(engine: Engine, path: Path) -> float:
    lock = RobotAxes(frozenset(AXES), tuple(AXES))
    rows = [
        r
        for rec in read_export_rows(path, CsvOptions(ROBOT, AXES), log_columns=False)
        for r in lock.rows(rec.robot_id, rec.ts, rec.currents)
    ]
    data = copy_text(rows)
    started = time.perf_counter()
    with engine.begin() as conn:
        copy_from(conn, "COPY readings_fact (robot_id, axis_id, ts, amps) FROM STDIN", data)
    return time.perf_counter() - started


def long_table(path: Path) -> pd.DataFrame:
    """The notebook's long table: one row per timestamp and axis."""
    wide = pd.read_csv(path)
    wide["ts"] = pd.to_datetime(wide["Time"], utc=True)
    long = wide.drop(columns=["Trait", "Time"]).melt(id_vars=["ts"], var_name="axis", value_name="amps")
    long["axis_id"] = long["axis"].str.extract(r"(\d+)", expand=False).astype(int)
    long["robot_id"] = ROBOT
    return long[["robot_id", "axis_id", "ts", "amps"]]


def empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE readings_fact"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE readings_fact"))


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM readings_fact")).scalar_one()


if __name__ == "__main__":
    sys.exit(main())
