"""The dashboard's Fleet tab queries on PostgreSQL at fleet scale: a grid refresh (``fleet_forecasts`` + the
maintenance log's ``outcomes_per_detector``) and an opened axis (``axis_detail``), median and worst of
repeated runs, with the plan PostgreSQL chose for each statement.

A scratch database with ``--robots`` robots x 14 axes in ``axes_dim``, a forecast per axis 1-8, ``--days``
days of hourly and daily ``health_rollup`` rows per axis 1-8, and ``--alerts`` alert events (a third of them
acknowledged with an outcome), and a maintenance log entry per axis every ten days. ``health_cycles`` is not
read by the tab, so it is left empty.

    scripts/with-services.sh .venv/bin/python -m bench.fleet_queries [--robots 200 --days 60 --alerts 100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text

from bench._postgres import postgres_url, scratch_database
from bench.results import write_results
from common.store.fleet_health import FLEET_AXES, axis_detail, fleet_forecasts
from common.store.maintenance import outcomes_per_detector
from common.store.tables import alerts, health_forecast, health_rollup, maintenance_log, seed_axes
from common.wire.schemas import AckOutcome

END = datetime(2026, 6, 1, tzinfo=UTC)
DETECTORS = ("level", "load", "residual", "stuck", "multivariate", "maintenance_due")


def fill(engine, robots: list[str], days: int, n_alerts: int) -> int:
    rng = random.Random(7)
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=robots, axes=range(1, 15))
        conn.execute(
            insert(health_forecast),
            [
                {
                    "robot_id": r,
                    "axis": a,
                    "level": 0.05,
                    "slope_per_day": 0.001,
                    "limit_level": 0.3,
                    "days_left": rng.uniform(1, 119),
                    "low_days": 1.0,
                    "high_days": 120.0,
                    "updated_at": END,
                }  # fmt: skip
                for r in robots
                for a in FLEET_AXES
            ],
        )
    rows = 0
    for r in robots:
        batch = [
            {
                "robot_id": r,
                "axis": a,
                "period": period,
                "bucket_start": END - step * i,
                "cycles": 30,
                "judged": 30,
                "duration_s": 1800.0,
                "energy_as": 1.0,
                "energy_a2s": 1.0,
                "covered_s": 1800.0,
                "peak_amps": 20.0,
                "rms_amps": 10.0,
                "deviation_median": 0.01 * i / 24,
                "deviation_max": 0.02,
            }  # fmt: skip
            for a in FLEET_AXES
            for period, step, count in (("hour", timedelta(hours=1), days * 24), ("day", timedelta(days=1), days))
            for i in range(count)
        ]
        with engine.begin() as conn:
            conn.execute(insert(health_rollup), batch)
        rows += len(batch)
    for start in range(0, n_alerts, 20_000):
        batch = []
        for i in range(start, min(start + 20_000, n_alerts)):
            opened = END - timedelta(minutes=rng.uniform(0, days * 1440))
            acked = i % 3 == 0
            batch.append(
                {
                    "event_id": f"e{i}",
                    "robot_id": rng.choice(robots),
                    "axis": rng.randint(1, 8),
                    "detector": rng.choice(DETECTORS),
                    "severity": "ALERT",
                    "state": "closed",
                    "opened_at": opened,
                    "closed_at": opened + timedelta(minutes=5),
                    "peak_amps": 30.0,
                    "threshold": 25.0,
                    "score": 4.0,
                    "acknowledged_by": "m" if acked else None,
                    "acknowledged_at": opened if acked else None,
                    "ack_outcome": str(rng.choice(list(AckOutcome))) if acked else None,
                    "ack_note": "n" if acked else None,
                }  # fmt: skip
            )
        with engine.begin() as conn:
            conn.execute(insert(alerts), batch)
    with engine.begin() as conn:  # a log entry per robot and axis every ten days, as an opened axis reads them
        conn.execute(
            insert(maintenance_log),
            [
                {
                    "entry_id": f"log-{r}-{a}-{d}",
                    "robot_id": r,
                    "axis": a,
                    "at": END - timedelta(days=d),
                    "action": "lubricated",
                    "note": "n",
                    "user_name": "m",
                }  # fmt: skip
                for r in robots
                for a in FLEET_AXES
                for d in range(0, days, 10)
            ],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return rows


def timed(fn, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def plans(engine, robot: str) -> dict[str, str]:
    """The top line of each statement's plan: whether PostgreSQL reads by an index or scans."""
    captured: list[tuple[str, dict]] = []

    def keep(_conn, _cursor, statement, parameters, _context, _many):
        captured.append((statement, parameters))

    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", keep)
    with engine.connect() as conn:
        fleet_forecasts(conn), outcomes_per_detector(conn), axis_detail(conn, robot_id=robot, axis=3)
    event.remove(engine, "before_cursor_execute", keep)
    out = {}
    with engine.connect() as conn:
        for statement, parameters in captured:
            lines = conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
            tables = ("health_rollup", "health_forecast", "maintenance_log", "alerts", "axes_dim")
            table = next(t for t in tables if t in statement)
            out.setdefault(table, " | ".join(line.strip() for line in lines if "Scan" in line)[:300])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", type=int, default=200)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    url = postgres_url("fleet_queries")
    if url is None:
        return 1
    robots = [f"robot-{i:03d}" for i in range(1, args.robots + 1)]
    with scratch_database(url, prefix="bench_fleet") as engine:
        t = time.perf_counter()
        rollup_rows = fill(engine, robots, args.days, args.alerts)
        filled_s = time.perf_counter() - t

        def run(query):
            def once():
                with engine.connect() as conn:
                    query(conn)

            return once

        def grid(conn):
            fleet_forecasts(conn), outcomes_per_detector(conn)

        queries = {
            "grid refresh (both below)": grid,
            "fleet_forecasts": fleet_forecasts,
            "outcomes_per_detector": outcomes_per_detector,
            "axis_detail": lambda conn: axis_detail(conn, robot_id=robots[len(robots) // 2], axis=3),
        }
        for query in queries.values():  # warm the cache and the pool
            run(query)()
        rows = []
        for name, query in queries.items():
            median, worst = timed(run(query), args.runs)
            rows.append({"query": name, "median ms": round(median, 1), "worst ms": round(worst, 1)})
        plan = plans(engine, robots[0])
    notes = (
        f"{args.robots} robots x 8 axes, {rollup_rows:,} health_rollup rows ({args.days} days of hours and days), "
        f"{args.alerts:,} alerts (a third acknowledged); filled in {filled_s:.0f} s; {args.runs} runs each, "
        f"a connection from the pool per run. Plans: " + "; ".join(f"{k}: {v}" for k, v in plan.items())
    )
    write_results("fleet_queries", rows, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
