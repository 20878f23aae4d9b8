"""The health and forecast routes with real parts: health events published on a real Kafka topic, stored by
consumer_db's service in PostgreSQL (least-privilege roles of scripts/postgres-roles.sql), read by the API
service over HTTP with a token.

The forecasts are made at different moments, so the order by urgency (the forecast crossing instant) differs
from the order by days left: robot B's axis 1 was forecast three days earlier with more days left, and is due
before robot A's axis 1."""

import contextlib
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import func, select

from api import users
from api.queries import pack_cursor
from common.store import users as accounts
from common.store.tables import health_cycles, health_forecast
from common.wire.schemas import AxisForecast, CycleAxis, HealthEvent
from tests.api_support import api_and_sink, bearer, migrated, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS, CYCLE_HOURS = 5, (8, 9)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def cycle(robot: str, start: datetime, axes: tuple[int, ...]) -> HealthEvent:
    deviation = (start - T0).days * 0.01 + start.hour * 0.001
    return HealthEvent(
        robot_id=robot, kind="cycle", start=start, end=start + timedelta(minutes=3),
        axes=[
            CycleAxis(axis=a, energy_as=100.0 * a, energy_a2s=900.0 * a, peak_amps=7.0 + a, rms_amps=3.0 + deviation,
                      covered_s=180.0, deviation=deviation)
            for a in axes
        ],
    )  # fmt: skip


def forecast(robot: str, made: datetime, axis: int, days_left, low, high) -> HealthEvent:
    made_forecast = AxisForecast(
        axis=axis, level=0.2, slope_per_day=0.01, limit=0.3, days_left=days_left, low_days=low, high_days=high
    )
    return HealthEvent(robot_id=robot, kind="forecast", start=made, forecasts=[made_forecast])


@contextlib.asynccontextmanager
async def api_over_stored_health(pg_url, postgres_admin_url, kafka_env, unique, events: list[HealthEvent]):
    """consumer_db and the API running; ``events`` published on the health topic and stored; yields an HTTP
    session on the API and a viewer's token."""
    owner_url, app = migrated(pg_url, postgres_admin_url, f"h{unique[:6]}")
    with app.begin() as conn:
        accounts.add_user(conn, "vera", "viewer", "vera-password", T0)
        token = users.issue_token(conn, "vera", 1, datetime.now(UTC))
    try:
        async with api_and_sink(kafka_env, owner_url, app, unique, api_page_size=50, api_max_page_size=100) as running:
            await running.publisher.ensure_topics([kafka_env["health_topic"]])
            for event in events:
                await running.publisher.publish(kafka_env["health_topic"], event.robot_id, event.to_bytes())
            wanted = [sum(len(e.axes) for e in events), sum(len(e.forecasts) for e in events)]

            def stored() -> bool:
                with app.connect() as conn:
                    return [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES] == wanted

            await until(stored, "consumer_db stored every health event")
            async with aiohttp.ClientSession(running.base_url) as http:
                yield http, token
    finally:
        app.dispose()


TABLES = (health_cycles, health_forecast)


@pytest.fixture
def robots(unique):
    # The third id has a slash, a quote, a space and SQL in it: it must be an id like any other.
    return f"a-{unique}", f"b-{unique}", f"cell/{unique} '; DROP TABLE health_forecast; --"


@pytest.fixture
def events(robots):
    a, b, odd = robots
    cycles = [cycle(a, day(d).replace(hour=h), (1, 2)) for d in range(DAYS) for h in CYCLE_HOURS]
    return [
        *cycles,
        forecast(a, day(4), 1, 10.0, 6.0, 15.0),  # due day 14
        forecast(a, day(4), 2, None, None, None),  # no crossing within the horizon: last
        forecast(b, day(1), 1, 12.0, 9.0, 16.0),  # made earlier: due day 13, before a's axis 1
        forecast(b, day(4), 3, 3.0, 2.0, None),  # due day 7: the most urgent
        forecast(odd, day(4), 1, 20.0, 14.0, 30.0),  # due day 24
    ]


async def get(http, path: str, token: str | None, **params) -> tuple[int, dict]:
    headers = bearer(token) if token else {}
    async with http.get(path, params=params, headers=headers) as answer:
        return answer.status, await answer.json()


def keys(forecasts: list[dict]) -> list[tuple[str, int]]:
    return [(f["robot_id"], f["axis"]) for f in forecasts]


async def test_forecasts_come_most_urgent_first_filtered_and_paged(
    pg_url, postgres_admin_url, kafka_env, unique, robots, events
):
    a, b, odd = robots
    async with api_over_stored_health(pg_url, postgres_admin_url, kafka_env, unique, events) as (http, token):
        status, everything = await get(http, "/v1/health/forecasts", token)
        assert status == 200
        assert keys(everything["forecasts"]) == [(b, 3), (b, 1), (a, 1), (odd, 1), (a, 2)]
        assert everything["next_cursor"] is None
        first = everything["forecasts"][0]["forecast"]
        assert (when(first["made_at"]), first["days_left"], when(first["due_at"])) == (day(4), 3.0, day(7))
        assert (when(first["due_low_at"]), first["due_high_at"]) == (day(6), None)
        assert everything["forecasts"][-1]["forecast"]["due_at"] is None

        pages, cursor = [], None
        while True:
            status, page = await get(
                http, "/v1/health/forecasts", token, limit=2, **({"cursor": cursor} if cursor else {})
            )
            assert status == 200 and len(page["forecasts"]) <= 2
            pages.append(keys(page["forecasts"]))
            if (cursor := page["next_cursor"]) is None:
                break
        assert pages == [[(b, 3), (b, 1)], [(a, 1), (odd, 1)], [(a, 2)]]

        filters = [
            ({"robot": b}, [(b, 3), (b, 1)]),
            ({"robot": odd}, [(odd, 1)]),
            ({"axis": 1}, [(b, 1), (a, 1), (odd, 1)]),
            ({"max_days_left": 11}, [(b, 3), (a, 1)]),  # days as forecast: b's axis 1 had 12
            ({"due_before": day(13.5).isoformat()}, [(b, 3), (b, 1)]),  # the instant: b's axis 1 is due day 13
            ({"robot": a, "axis": 2}, [(a, 2)]),
        ]
        for params, expected in filters:
            status, page = await get(http, "/v1/health/forecasts", token, **params)
            assert (status, keys(page["forecasts"])) == (200, expected), params

        forged = pack_cursor(["day 7", b, 3])  # valid base64 JSON, not a cursor this API wrote
        for bad in (
            {"cursor": "not-a-cursor"},
            {"cursor": forged},
            {"limit": 101},
            {"axis": 0},
            {"due_before": "2026-03-01T00:00:00"},
        ):
            status, answer = await get(http, "/v1/health/forecasts", token, **bad)
            assert status == 400 and answer["error"], bad
        assert (await get(http, "/v1/health/forecasts", None))[0] == 401
        assert (await get(http, "/v1/health/forecasts", "not-a-token"))[0] == 401


async def test_a_robots_health_per_axis(pg_url, postgres_admin_url, kafka_env, unique, robots, events):
    a, b, odd = robots
    async with api_over_stored_health(pg_url, postgres_admin_url, kafka_env, unique, events) as (http, token):
        status, health = await get(http, f"/v1/robots/{a}/health", token)
        assert status == 200 and health["robot_id"] == a
        assert [x["axis"] for x in health["axes"]] == [1, 2]
        one, two = health["axes"]
        assert (one["forecast"]["days_left"], when(one["forecast"]["due_at"])) == (10.0, day(14))
        assert (when(one["forecast"]["due_low_at"]), when(one["forecast"]["due_high_at"])) == (day(10), day(19))
        assert two["forecast"]["due_at"] is None and two["forecast"]["days_left"] is None
        last = day(DAYS - 1).replace(hour=CYCLE_HOURS[-1])
        assert when(one["latest_cycle"]["cycle_start"]) == last
        assert one["latest_cycle"]["deviation"] == pytest.approx((DAYS - 1) * 0.01 + last.hour * 0.001)
        assert (two["latest_cycle"]["energy_as"], two["latest_cycle"]["cold"]) == (200.0, False)
        assert [when(d["bucket_start"]) for d in one["daily"]] == [day(d) for d in range(DAYS)]
        assert [d["cycles"] for d in one["daily"]] == [len(CYCLE_HOURS)] * DAYS
        medians = [d["deviation_median"] for d in one["daily"]]
        assert medians == sorted(medians) and medians[0] < medians[-1]  # the wear line rises

        status, recent = await get(http, f"/v1/robots/{a}/health", token, days=2)
        assert [when(d["bucket_start"]) for d in recent["axes"][0]["daily"]] == [day(3), day(4)]

        status, only_forecasts = await get(http, f"/v1/robots/{b}/health", token)
        assert status == 200
        assert [(x["axis"], x["latest_cycle"], x["daily"]) for x in only_forecasts["axes"]] == [
            (1, None, []),
            (3, None, []),
        ]
        assert when(only_forecasts["axes"][0]["forecast"]["due_at"]) == day(13)

        status, quoted = await get(http, f"/v1/robots/{quote(odd, safe='')}/health", token)
        assert status == 200 and quoted["robot_id"] == odd
        assert [x["forecast"]["days_left"] for x in quoted["axes"]] == [20.0]

        assert (await get(http, f"/v1/robots/nobody-{unique}/health", token))[0] == 404
        assert (await get(http, f"/v1/robots/{'x' * 65}/health", token))[0] == 404
        assert (await get(http, f"/v1/robots/{a}/health", token, days=0))[0] == 400
        assert (await get(http, f"/v1/robots/{a}/health", None))[0] == 401
        # the forecast table is still there after the third robot's id went through every query
        assert (await get(http, "/v1/health/forecasts", token))[1]["forecasts"]
