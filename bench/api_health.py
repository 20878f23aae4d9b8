"""The API's health reads at fleet scale: GET /v1/health/forecasts (every axis's forecast, ordered by
urgency in Python) and GET /v1/robots/{id}/health (a month of cycles of one robot) over HTTP (aiohttp, token
checked) on PostgreSQL. Needs DATABASE_URL on PostgreSQL
(`scripts/with-services.sh .venv/bin/python -m bench api_health`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from bench._api import ApiClient
from bench._postgres import postgres_url, scratch_database
from bench.results import write_results
from common.store.tables import health_cycles, health_forecast, health_rollup

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CYCLE_S = 90  # a work cycle every 90 s, 960 a day


def forecasts(robots: int, axes: int) -> list[dict]:
    rows = []
    for r in range(robots):
        for a in range(1, axes + 1):
            i = r * axes + a
            days = None if i % 3 == 0 else 5.0 + i % 97  # a third forecast not to cross
            rows.append(
                {
                    "robot_id": f"robot-{r:03d}", "axis": a, "level": 0.1, "slope_per_day": 0.002, "limit_level": 0.3,
                    "days_left": days, "low_days": days and days * 0.7, "high_days": days and days * 1.4,
                    "updated_at": T0 + timedelta(days=30, hours=-(i % 48)),
                }
            )  # fmt: skip
    return rows


def cycles(robot: str, days: int, axes: int) -> list[dict]:
    rows = []
    for n in range(days * 86_400 // CYCLE_S):
        start = T0 + timedelta(seconds=CYCLE_S * n)
        for a in range(1, axes + 1):
            rows.append(
                {
                    "robot_id": robot, "axis": a, "cycle_start": start, "cycle_end": start + timedelta(seconds=60),
                    "duration_s": 60.0, "energy_as": 120.0, "energy_a2s": 300.0, "peak_amps": 6.0, "rms_amps": 2.2,
                    "covered_s": 60.0, "deviation": 0.001 * n / 960, "cold": False, "cut": False,
                }
            )  # fmt: skip
    return rows


def rollup(robot: str, days: int, axes: int) -> list[dict]:
    rows = []
    for period, step, count in (("hour", timedelta(hours=1), days * 24), ("day", timedelta(days=1), days)):
        for n in range(count):
            for a in range(1, axes + 1):
                rows.append(
                    {
                        "robot_id": robot, "axis": a, "period": period, "bucket_start": T0 + n * step, "cycles": 40,
                        "judged": 40, "duration_s": 2400.0, "energy_as": 4800.0, "energy_a2s": 12000.0,
                        "covered_s": 2400.0, "peak_amps": 6.0, "rms_amps": 2.2, "deviation_median": 0.01,
                        "deviation_max": 0.02,
                    }
                )  # fmt: skip
    return rows


async def measure(engine, robots: int, repeats: int) -> list[dict]:
    async with ApiClient(engine) as api:
        first = await api.get("/v1/health/forecasts")
        cases = [
            ("forecasts, first page of 100", "/v1/health/forecasts", {}),
            ("forecasts, second page (cursor)", "/v1/health/forecasts", {"cursor": first["next_cursor"]}),
            ("forecasts due within 10 days of the forecast", "/v1/health/forecasts", {"max_days_left": 10}),
            ("forecasts of one robot", "/v1/health/forecasts", {"robot": f"robot-{robots // 2:03d}"}),
            ("one robot's health, 30 days of cycles", "/v1/robots/robot-000/health", {}),
            ("one robot's health, 7 days of trend", "/v1/robots/robot-000/health", {"days": 7}),
            ("a robot with forecasts only", "/v1/robots/robot-001/health", {}),
        ]
        return await api.timed(cases, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=200)
    parser.add_argument("--axes", type=int, default=14)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    url = postgres_url("api_health")
    if url is None:
        return 1
    with scratch_database(url, prefix="bench_api_health") as engine:
        with engine.begin() as conn:
            conn.execute(insert(health_forecast), forecasts(args.robots, args.axes))
            rows = cycles("robot-000", args.days, 8)
            for start in range(0, len(rows), 20_000):
                conn.execute(insert(health_cycles), rows[start : start + 20_000])
            conn.execute(insert(health_rollup), rollup("robot-000", args.days, 8))
            for table in ("health_forecast", "health_cycles", "health_rollup"):
                conn.exec_driver_sql(f"ANALYZE {table}")
        results = asyncio.run(measure(engine, args.robots, args.repeats))
    write_results(
        "api_health",
        results,
        notes=f"{args.robots * args.axes:,} forecasts ({args.robots} robots x {args.axes} axes) and one robot's "
        f"{args.days} days of cycles (8 axes, one every {CYCLE_S} s) on PostgreSQL; median of {args.repeats} "
        "requests over HTTP on this machine (token checked each time), 100 forecasts a page.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
