"""The HTTP API against a migrated SQLite database and the in-process bus: filters and pages, 401 and 403, an
acknowledgement published the dashboard's way and stored by consumer_db's upsert with the user and outcome,
the audit row, and an OpenAPI document that validates."""

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from sqlalchemy import insert, select

from api import users
from api.app import make_app
from api.openapi import document
from api.settings import ApiSettings
from common.metrics import Health
from common.store import users as accounts
from common.store.tables import api_audit, api_tokens, api_users, axes_dim, readings_fact
from common.wire.bus import InProcessBus
from common.wire.schemas import Alert
from consumer_db.alert_store import upsert_alerts
from dashboard.feed import LiveFeed
from dashboard.settings import DashboardSettings
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
NOW = datetime.now(UTC)


def event(n: int, robot: str, axis: int, *, severity="ALERT", closed: int | None = None) -> Alert:
    return Alert(
        event_id=f"{robot}:{axis}:zscore:{n}",
        robot_id=robot,
        axis=axis,
        detector="zscore",
        severity=severity,
        state="open" if closed is None else "closed",
        opened_at=T0 + timedelta(minutes=n),
        closed_at=None if closed is None else T0 + timedelta(minutes=closed),
        peak_amps=5.0 + n,
    )


EVENTS = [
    event(0, "r1", 1, closed=3),
    event(1, "r1", 2, severity="ERROR"),
    event(2, "r2", 1),
    event(2, "r1", 1),  # the same opening time as the one before: the event id orders them
    event(5, "r2", 3, severity="ERROR", closed=9),
    event(7, "r1", 1),
]


@pytest.fixture
def engine(migrated_sqlite):  # noqa: F811
    with migrated_sqlite.begin() as conn:
        upsert_alerts(conn, EVENTS)
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
            accounts.add_user(conn, name, role, f"{name}-secret", NOW)
    return migrated_sqlite


def token_of(engine, name: str, days: int = 1, now: datetime = NOW) -> str:
    with engine.begin() as conn:
        return users.issue_token(conn, name, days, now)


@pytest.fixture
async def api(engine):
    bus = InProcessBus()
    await bus.start()
    settings = ApiSettings(_env_file=None, bus="memory", api_page_size=2, api_max_page_size=50)
    client = TestClient(TestServer(make_app(settings, engine, bus, Health())))
    await client.start_server()
    yield client, bus, settings
    await client.close()
    await bus.stop()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def get_ids(client, token, **params) -> list[str]:
    response = await client.get("/v1/alerts", params=params, headers=bearer(token))
    assert response.status == 200, await response.text()
    return [a["event_id"] for a in (await response.json())["alerts"]]


def expected(keep) -> list[str]:
    chosen = [e for e in EVENTS if keep(e)]
    return [e.event_id for e in sorted(chosen, key=lambda e: (-e.opened_at.timestamp(), e.event_id))]


async def test_filters_select_the_events_they_name(api, engine):
    client, _, _ = api
    token = token_of(engine, "vera")
    assert await get_ids(client, token, limit=50) == expected(lambda e: True)
    assert await get_ids(client, token, robot="r1", limit=50) == expected(lambda e: e.robot_id == "r1")
    assert await get_ids(client, token, robot="r1", axis=1, limit=50) == expected(
        lambda e: e.robot_id == "r1" and e.axis == 1
    )
    assert await get_ids(client, token, state="closed", limit=50) == expected(lambda e: e.state == "closed")
    assert await get_ids(client, token, severity="ERROR", limit=50) == expected(lambda e: e.severity == "ERROR")
    since, until = T0 + timedelta(minutes=4), T0 + timedelta(minutes=6)
    in_range = await get_ids(client, token, since=since.isoformat(), until=until.isoformat(), limit=50)
    assert in_range == expected(lambda e: e.opened_at <= until and (e.closed_at is None or e.closed_at >= since))
    assert "r1:1:zscore:0" not in in_range  # closed before the range


async def test_pages_follow_the_cursor_without_repeating_or_skipping(api, engine):
    client, _, _ = api
    token, seen, cursor = token_of(engine, "vera"), [], None
    for _ in range(10):
        params = {} if cursor is None else {"cursor": cursor}
        body = await (await client.get("/v1/alerts", params=params, headers=bearer(token))).json()
        assert len(body["alerts"]) <= 2  # API_PAGE_SIZE
        seen += [a["event_id"] for a in body["alerts"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected(lambda e: True)


@pytest.mark.parametrize(
    "params", [{"limit": "51"}, {"state": "ajar"}, {"since": "2026-03-01T08:00:00"}, {"cursor": "bm9wZQ"}, {"x": "1"}]
)
async def test_a_bad_query_is_a_400_that_says_why(api, engine, params):
    client, _, _ = api
    response = await client.get("/v1/alerts", params=params, headers=bearer(token_of(engine, "vera")))
    assert response.status == 400
    assert (await response.json())["error"]


@pytest.mark.parametrize("route", ["/v1/alerts", "/v1/maintenance", "/v1/health/forecasts"])
async def test_a_limit_of_any_length_over_the_largest_page_is_told_the_largest(api, engine, route):
    """Past 4,300 digits pydantic refused a limit as "exceeded maximum size"; it reads as every count does
    (common/counts.py), so the answer is the one of any limit over API_MAX_PAGE_SIZE."""
    client, _, _ = api
    headers = bearer(token_of(engine, "vera"))
    for limit in ("51", "9" * 25, "9" * 5000):
        response = await client.get(route, params={"limit": limit}, headers=headers)
        assert response.status == 400
        assert await response.json() == {"error": "limit: at most 50"}
    response = await client.get(route, params={"limit": "0" * 5000 + "3"}, headers=headers)
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/v1/alerts", {"since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/alerts", {"until": "9999-12-31T23:59:59-05:00"}),
        ("/v1/alerts", {"since": "0001-01-01T00:00:00+05:00", "until": "9999-12-31T23:59:59-05:00"}),
        ("/v1/maintenance", {"since": "0001-01-01T00:00:00+05:00", "until": "9999-12-31T23:59:59-05:00"}),
        ("/v1/detectors/outcomes", {"since": "0001-01-01T00:00:00+05:00", "until": "9999-12-31T23:59:59-05:00"}),
        ("/v1/health/forecasts", {"due_before": "9999-12-31T23:59:59-05:00"}),
    ],
)
async def test_a_time_whose_utc_falls_off_the_calendar_answers_as_the_calendars_end(api, engine, route, params):
    """Year 1 at +05:00 is in year 0 in UTC, which no datetime holds: a 500 before; now the range is the
    calendar's inner days, which every event lies inside, so the answer is the one without the bound."""
    client, _, _ = api
    headers = bearer(token_of(engine, "vera"))
    plain = await client.get(route, headers=headers)
    assert plain.status == 200, await plain.text()
    response = await client.get(route, params=params, headers=headers)
    assert response.status == 200, await response.text()
    assert await response.json() == await plain.json()


async def test_no_token_a_bad_one_an_expired_one_and_a_revoked_one_are_401(api, engine):
    client, _, _ = api
    expired = token_of(engine, "otto", days=1, now=NOW - timedelta(days=2))
    revoked = token_of(engine, "otto")
    with engine.begin() as conn:
        conn.execute(
            api_tokens.update().where(api_tokens.c.token_hash == users.hash_token(revoked)).values(revoked_at=NOW)
        )
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic b3R0bzp4"}, bearer(expired), bearer(revoked)):
        for method, path in (("GET", "/v1/alerts"), ("GET", "/v1/robots"), ("POST", "/v1/alerts/x/acknowledge")):
            response = await client.request(method, path, headers=headers, json={"outcome": "real_fault"})
            assert response.status == 401, (headers, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/v1/alerts", headers=bearer(token_of(engine, "otto")))).status == 200


async def test_a_viewer_may_not_acknowledge_and_nothing_is_published(api, engine):
    client, bus, settings = api
    response = await client.post(
        f"/v1/alerts/{EVENTS[1].event_id}/acknowledge",
        json={"outcome": "real_fault", "note": "x"},
        headers=bearer(token_of(engine, "vera")),
    )
    assert response.status == 403
    assert await bus.read_to_end(settings.alerts_topic) == []


@pytest.mark.parametrize("who", ["otto", "ada"])
async def test_an_acknowledgement_is_published_stored_with_user_and_outcome_and_audited(api, engine, who):
    client, bus, settings = api
    target = EVENTS[1]
    note = "bearing noise\nconfirmed; <b>replaced</b>"
    response = await client.post(
        f"/v1/alerts/{target.event_id}/acknowledge",
        json={"outcome": "part_replaced", "note": note},
        headers=bearer(token_of(engine, who)),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["acknowledged_by"], body["ack_outcome"], body["ack_note"]) == (who, "part_replaced", note)

    published = [Alert.from_bytes(m.value) for m in await bus.read_to_end(settings.alerts_topic)]
    assert [(a.event_id, a.acknowledged_by, a.ack_outcome) for a in published] == [
        (target.event_id, who, "part_replaced")
    ]
    assert published[0].severity == target.severity and published[0].opened_at == target.opened_at
    with engine.begin() as conn:  # what consumer_db does with the message
        upsert_alerts(conn, published)
    token = token_of(engine, "vera")
    stored = await (await client.get("/v1/alerts", params={"robot": "r1", "axis": 2}, headers=bearer(token))).json()
    assert [(a["acknowledged_by"], a["ack_outcome"], a["ack_note"]) for a in stored["alerts"]] == [
        (who, "part_replaced", note)
    ]
    with engine.connect() as conn:
        audit = conn.execute(select(api_audit)).mappings().all()
    assert [(r["user_name"], r["event_id"], r["outcome"], r["note"]) for r in audit] == [
        (who, target.event_id, "part_replaced", note)
    ]


@pytest.mark.parametrize(
    "body", [{"outcome": "fixed_it"}, {"note": "no outcome"}, {"outcome": "real_fault", "who": "mallory"}]
)
async def test_a_body_that_is_not_an_outcome_and_a_note_is_refused(api, engine, body):
    client, bus, settings = api
    response = await client.post(
        f"/v1/alerts/{EVENTS[1].event_id}/acknowledge", json=body, headers=bearer(token_of(engine, "otto"))
    )
    assert response.status == 400
    assert await bus.read_to_end(settings.alerts_topic) == []


async def test_an_unknown_event_is_404(api, engine):
    client, _, _ = api
    response = await client.post(
        "/v1/alerts/nope/acknowledge", json={"outcome": "false_alarm"}, headers=bearer(token_of(engine, "otto"))
    )
    assert response.status == 404


async def test_robots_show_their_latest_reading_per_axis(api, engine):
    client, _, _ = api
    with engine.begin() as conn:
        conn.execute(insert(axes_dim), [{"robot_id": "r1", "axis_id": a, "label": f"A{a}"} for a in (1, 2)])
        conn.execute(
            insert(readings_fact),
            [
                {"robot_id": "r1", "axis_id": a, "ts": T0 + timedelta(seconds=s), "amps": a * 10.0 + s}
                for a in (1, 2)
                for s in (0, 2, 4)
                if not (a == 2 and s == 4)
            ],
        )
    body = await (await client.get("/v1/robots", headers=bearer(token_of(engine, "vera")))).json()
    assert body == {
        "robots": [
            {
                "robot_id": "r1",
                "latest_ts": (T0 + timedelta(seconds=4)).isoformat(),
                "axes": [
                    {"axis": 1, "label": "A1", "ts": (T0 + timedelta(seconds=4)).isoformat(), "amps": 14.0},
                    {"axis": 2, "label": "A2", "ts": (T0 + timedelta(seconds=2)).isoformat(), "amps": 22.0},
                ],
            }
        ]
    }


async def test_the_openapi_document_validates_and_is_served_without_a_token(api):
    client, _, _ = api
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    validate(served)
    assert served == document()
    routes = {(r.method.lower(), r.resource.canonical) for r in client.app.router.routes() if r.method != "HEAD"}
    documented = {(method, path) for path, ops in served["paths"].items() for method in ops}
    assert routes == documented  # every route documented, nothing documented that is not served


def test_a_password_is_stored_as_an_argon2_hash_and_checked(engine):
    with engine.connect() as conn:
        stored = conn.execute(select(api_users.c.password_hash).where(api_users.c.name == "otto")).scalar()
        assert stored.startswith("$argon2id$") and "otto-secret" not in stored
        assert accounts.check_password(conn, "otto", "otto-secret")
        assert not accounts.check_password(conn, "otto", "otto-secreT")
        assert not accounts.check_password(conn, "nobody", "otto-secret")


def test_a_token_is_stored_only_as_its_hash(engine):
    token = token_of(engine, "ada")
    with engine.connect() as conn:
        hashes = conn.execute(select(api_tokens.c.token_hash)).scalars().all()
    assert hashes == [users.hash_token(token)] and token not in hashes


async def test_an_acknowledgement_through_the_api_shows_on_the_dashboards_table(api, engine):
    """The dashboard's live feed reads the alerts topic: the event as the detector published it, then the
    API's acknowledgement, folded by the one merge rule into the row the page shows."""
    client, bus, settings = api
    target = EVENTS[4]
    await bus.publish(settings.alerts_topic, target.robot_id, target.to_bytes())
    response = await client.post(
        f"/v1/alerts/{target.event_id}/acknowledge",
        json={"outcome": "real_fault"},
        headers=bearer(token_of(engine, "otto")),
    )
    assert response.status == 200
    feed = LiveFeed(DashboardSettings(_env_file=None, bus="memory", alerts_topic=settings.alerts_topic), bus)
    feed.ingest(await bus.read_to_end(settings.alerts_topic))
    shown, table = feed.alert_table()
    assert [a.event_id for a in shown] == [target.event_id]
    assert table["ack"][0].startswith("otto at ") and table["blink"][0] == ""
    assert (shown[0].ack_outcome, shown[0].severity, shown[0].closed_at) == ("real_fault", "ERROR", target.closed_at)


async def test_only_an_admin_manages_users_and_every_change_is_audited(api, engine):
    client, _, _ = api
    new = {"name": "nina", "role": "viewer", "password": "nina-long-password"}
    for who in ("vera", "otto"):  # a viewer and an operator may not
        headers = bearer(token_of(engine, who))
        assert (await client.get("/v1/users", headers=headers)).status == 403
        assert (await client.post("/v1/users", json=new, headers=headers)).status == 403
    admin = bearer(token_of(engine, "ada"))
    assert (await client.post("/v1/users", json={**new, "role": "root"}, headers=admin)).status == 400
    assert (await client.post("/v1/users", json={**new, "password": "short"}, headers=admin)).status == 400
    assert (await client.post("/v1/users", json=new, headers=admin)).status == 200
    assert (await client.post("/v1/users", json=new, headers=admin)).status == 400  # the name is taken
    nina = token_of(engine, "nina")
    answer = await client.post(f"/v1/alerts/{EVENTS[1].event_id}/acknowledge", json={"outcome": "real_fault"},
                               headers=bearer(nina))  # fmt: skip
    assert answer.status == 403  # a viewer
    assert (await client.put("/v1/users/nina/role", json={"role": "operator"}, headers=admin)).status == 200
    assert (await client.put("/v1/users/nobody/role", json={"role": "operator"}, headers=admin)).status == 404
    answer = await client.post(f"/v1/alerts/{EVENTS[1].event_id}/acknowledge", json={"outcome": "real_fault"},
                               headers=bearer(nina))  # fmt: skip
    assert answer.status == 200  # the same token, the new role at once
    listed = await (await client.get("/v1/users", headers=admin)).json()
    assert [(u["name"], u["role"]) for u in listed["users"]] == [
        ("ada", "admin"), ("nina", "operator"), ("otto", "operator"), ("vera", "viewer")
    ]  # fmt: skip
    with engine.connect() as conn:
        audit = conn.execute(
            select(api_audit.c.user_name, api_audit.c.action, api_audit.c.event_id, api_audit.c.note)
            .where(api_audit.c.action != "acknowledge")
            .order_by(api_audit.c.id)
        ).all()
    assert [tuple(a) for a in audit] == [
        ("ada", "add_user", "user:nina", "role viewer"), ("ada", "set_role", "user:nina", "role operator")
    ]  # fmt: skip
    with engine.connect() as conn:  # the password is kept as its hash only
        stored = conn.execute(select(api_users.c.password_hash).where(api_users.c.name == "nina")).scalar_one()
    assert new["password"] not in stored and stored.startswith("$argon2id$")
