"""The API's reads at scale: GET /v1/alerts and /v1/robots over HTTP (aiohttp, token checked) on PostgreSQL
with many alert events, and why pages are cut by a cursor: a deep page by cursor against the same page by
OFFSET. Needs DATABASE_URL on PostgreSQL (`scripts/with-services.sh .venv/bin/python -m bench api_alerts`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, select

from api import users
from api.app import make_app
from api.queries import encode_cursor
from api.settings import ApiSettings
from bench._postgres import postgres_url, scratch_database
from bench.results import write_results
from common.metrics import Health
from common.store import users as accounts
from common.store.tables import alerts
from common.wire.bus import InProcessBus
from common.wire.schemas import Alert

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def events(n: int, robots: int) -> list[dict]:
    rows = []
    for i in range(n):
        robot = f"robot-{i % robots:03d}"
        opened = T0 + timedelta(seconds=37 * i)
        rows.append(
            {
                "event_id": f"{robot}:{1 + i % 6}:zscore:{i}",
                "robot_id": robot,
                "axis": 1 + i % 6,
                "detector": "zscore",
                "severity": "ERROR" if i % 5 == 0 else "ALERT",
                "state": "open" if i % 50 == 0 else "closed",
                "opened_at": opened,
                "closed_at": None if i % 50 == 0 else opened + timedelta(minutes=5),
                "peak_amps": 10.0,
            }
        )
    return rows


async def median_ms(client: TestClient, path: str, params: dict, headers: dict, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = await client.get(path, params=params, headers=headers)
        await response.read()
        assert response.status == 200, await response.text()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def measure(engine, n: int, repeats: int) -> list[dict]:
    with engine.begin() as conn:
        accounts.add_user(conn, "bench", "viewer", "bench-password", datetime.now(UTC))
        token = users.issue_token(conn, "bench", 1, datetime.now(UTC))
        order = (alerts.c.opened_at.desc(), alerts.c.event_id)
        deep = conn.execute(select(alerts).order_by(*order).offset(n // 2).limit(1)).mappings().one()
    cursor = encode_cursor(Alert.model_validate({k: v for k, v in deep.items() if k in Alert.model_fields}))
    settings = ApiSettings(_env_file=None, bus="memory", api_page_size=100)
    bus = InProcessBus()
    await bus.start()
    client = TestClient(TestServer(make_app(settings, engine, bus, Health())))
    await client.start_server()
    headers = {"Authorization": f"Bearer {token}"}
    cases = [
        ("first page", "/v1/alerts", {}),
        (f"page after {n // 2:,} events (cursor)", "/v1/alerts", {"cursor": cursor}),
        ("one robot, first page", "/v1/alerts", {"robot": "robot-007"}),
        ("open events", "/v1/alerts", {"state": "open"}),
        ("one robot and axis in a 1-day range", "/v1/alerts", {"robot": "robot-007", "axis": 2,
         "since": (T0 + timedelta(days=30)).isoformat(), "until": (T0 + timedelta(days=31)).isoformat()}),
        ("robots (no readings)", "/v1/robots", {}),
    ]  # fmt: skip
    rows = []
    try:
        for name, path, params in cases:
            rows.append({"request": name, "median_ms": await median_ms(client, path, params, headers, repeats)})
    finally:
        await client.close()
        await bus.stop()
    with engine.connect() as conn:  # the same deep page by OFFSET, the database part alone
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            conn.execute(select(alerts).order_by(*order).offset(n // 2).limit(100)).all()
            times.append((time.perf_counter() - started) * 1000)
    rows.append(
        {"request": f"page after {n // 2:,} events (OFFSET, query alone)", "median_ms": statistics.median(times)}
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--robots", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    url = postgres_url("api_alerts")
    if url is None:
        return 1
    with scratch_database(url, prefix="bench_api") as engine:
        rows = events(args.events, args.robots)
        with engine.begin() as conn:
            for start in range(0, len(rows), 20_000):
                conn.execute(insert(alerts), rows[start : start + 20_000])
            conn.exec_driver_sql("ANALYZE alerts")
        results = asyncio.run(measure(engine, args.events, args.repeats))
    write_results(
        "api_alerts",
        results,
        notes=f"{args.events:,} events of {args.robots} robots on PostgreSQL; median of {args.repeats} requests "
        "over HTTP on this machine (token checked each time), 100 events a page.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
