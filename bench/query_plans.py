"""The shared queries (common.store.queries) on a big readings_fact: latency and the plans where an index matters.

    .venv/bin/python -m bench.query_plans [--robots 100] [--readings 7143] [--runs 20] [--keep DBNAME]

Fills a scratch database on the PostgreSQL server of DATABASE_URL with a synthetic fleet generated on the
server (robots x readings x 14 axes; the defaults make 10 million rows, axes 9-14 NULL), then times each
query function for one robot and for the whole fleet (p50/p99 over --runs) and keeps the EXPLAIN of the
robot queries. ``--keep NAME`` reuses (or leaves) a database of that name, so the slow fill runs once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from functools import partial

from sqlalchemy import Engine, event, text

from bench._postgres import postgres_url, scratch_database
from bench.results import write_results
from common.store import queries
from common.store.tables import axes_dim
from consumer_db.rollup_writer import rebuild

PARTITIONS = """
SELECT ensure_readings_partitions(
    timestamptz '2022-10-17 00:00:00+00', timestamptz '2022-10-17 00:00:00+00' + :readings * interval '2 seconds')
"""
# One row per reading (the stored form, migration 0012): axes 1-14 stored (bits 1-14), 9-14 NULL.
FILL = """
INSERT INTO readings (robot_id, ts, axes, amps)
SELECT 'robot-' || lpad(r::text, 3, '0'), timestamptz '2022-10-17 00:00:00+00' + i * interval '2 seconds', 32766,
       ARRAY(SELECT CASE WHEN a <= 8 THEN round((random() * 20)::numeric, 2)::float8 END
             FROM generate_series(1, 14) a WHERE i >= 0 ORDER BY a)
FROM generate_series(0, :readings - 1) i, generate_series(1, :robots) r
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=100)
    parser.add_argument("--readings", type=int, default=7143, help="readings per robot")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", metavar="DBNAME", help="database to reuse or leave behind")
    args = parser.parse_args(argv)
    url = postgres_url("query_plans")
    if url is None:
        return 2
    with scratch_database(url, prefix="bench_plans", name=args.keep, keep=bool(args.keep)) as engine:
        fill_seconds = fill(engine, args)
        rows, plans = measure(engine, args.runs)
    notes = (
        f"{args.robots} robots x {args.readings} readings x 14 axes = {args.robots * args.readings * 14:,} rows; "
        + (
            f"fill (server-side INSERT ... SELECT with the indexes in place): {fill_seconds:.0f} s. "
            if fill_seconds
            else "kept database reused (not filled in this run). "
        )
        + f"ms over {args.runs} runs.\n\n"
        + "\n".join(f"### {q}\n```\n{p}\n```" for q, p in plans.items())
    )
    write_results("query_plans", rows, notes=notes)
    return 0


def fill(engine: Engine, args) -> float:
    """The synthetic fleet, unless a kept database has it already; returns the seconds it took."""
    with engine.connect() as conn:
        if conn.execute(text("SELECT EXISTS (SELECT 1 FROM readings_fact)")).scalar():
            return 0.0
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            axes_dim.insert(),
            [
                {"robot_id": f"robot-{r:03d}", "axis_id": a, "label": f"Axis #{a}", "unit": "A", "active": True}
                for r in range(1, args.robots + 1)
                for a in range(1, 15)
            ],
        )
        conn.execute(text(PARTITIONS), {"readings": args.readings})
        conn.execute(text(FILL), {"readings": args.readings, "robots": args.robots})
        rebuild(conn)  # the fill bypasses the writers that keep the per-minute rollup
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def measure(engine: Engine, runs: int) -> tuple[list[dict], dict[str, str]]:
    with engine.connect() as conn:
        newest = queries.newest_ts(conn)
        robot = conn.execute(text("SELECT min(robot_id) FROM axes_dim")).scalar()
    hour = {"start": newest - timedelta(hours=1), "end": newest}
    cases = {
        "latest_per_axis": lambda c, r: queries.latest_per_axis(c, robot_id=r),
        "one_minute_peak": lambda c, r: queries.one_minute_peak(c, robot_id=r),
        "latest_rows(20)": lambda c, r: queries.latest_rows(c, n=20, robot_id=r),
        "window_peaks(1 h)": lambda c, r: queries.window_peaks(c, robot_id=r, **hour),
        "resample_1min(1 h)": lambda c, r: queries.resample_1min(c, robot_id=r, **hour),
        "axis_summary(1 h)": lambda c, r: queries.axis_summary(c, robot_id=r, **hour),
        "data_health(1 h)": lambda c, r: queries.data_health(c, robot_id=r, **hour),
        "alert_history(1 h)": lambda c, r: queries.alert_history(c, robot_id=r, **hour),
    }
    rows, plans = [], {}
    with engine.connect() as conn:
        for name, call in cases.items():
            row = {"query": name}
            for scope, robot_id in (("one robot", robot), ("fleet", None)):
                samples = timed(conn, partial(call, conn, robot_id), runs)
                row[f"{scope} p50 ms"] = round(statistics.median(samples), 1)
                row[f"{scope} p99 ms"] = round(percentile(samples, 99), 1)
            rows.append(row)
        plans["latest_rows(20), one robot"] = explain(conn, lambda: queries.latest_rows(conn, n=20, robot_id=robot))
        plans["one_minute_peak, fleet"] = explain(conn, lambda: queries.one_minute_peak(conn))
    return rows, plans


def timed(conn, call, runs: int) -> list[float]:
    call()  # warm the cache: the dashboard asks the same questions again and again
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def explain(conn, call) -> str:
    """The plan of the last statement ``call`` runs, via auto_explain-like capture: run it under EXPLAIN."""
    captured: list[str] = []

    def before(_conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and "readings_fact" in statement:
            with _conn.connection.dbapi_connection.cursor() as plain:  # a streamed query's cursor is a named one
                plain.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters)
                captured.append("\n".join(r[0] for r in plain.fetchall()))

    event.listen(conn, "before_cursor_execute", before)
    try:
        call()
    finally:
        event.remove(conn, "before_cursor_execute", before)
    return "\n\n".join(captured)


if __name__ == "__main__":
    sys.exit(main())
