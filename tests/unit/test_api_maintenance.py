"""The maintenance log through the HTTP API (api.maintenance_routes), on a migrated SQLite database and the
in-process bus: an entry logged without an alert is published and audited, only by the roles that may act,
only for a known robot and axis; an acknowledgement "part replaced" logs its entry; the log and the outcomes
per detector are read back."""

from sqlalchemy import insert, select

from common.store.maintenance import store_entries
from common.store.tables import api_audit, axes_dim
from common.wire.schemas import MaintenanceEntry
from consumer_db.alert_store import upsert_alerts
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture
from tests.unit.test_api import EVENTS, api, bearer, engine, token_of  # noqa: F401 - fixtures

NOTE = "belt <b>retensioned</b>\nok"


def seed_axes(engine):  # noqa: F811
    with engine.begin() as conn:
        conn.execute(insert(axes_dim), [{"robot_id": "r1", "axis_id": a, "label": f"A{a}"} for a in (1, 2, 3)])


async def test_an_operator_logs_maintenance_without_an_alert(api, engine):  # noqa: F811
    client, bus, settings = api
    seed_axes(engine)
    response = await client.post(
        "/v1/maintenance",
        json={"robot_id": "r1", "axis": 2, "action": "lubricated", "note": NOTE},
        headers=bearer(token_of(engine, "otto")),
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    [published] = [MaintenanceEntry.from_bytes(m.value) for m in await bus.read_to_end(settings.maintenance_topic)]
    assert (published.robot_id, published.axis, published.action, published.note, published.user_name) == (
        "r1",
        2,
        "lubricated",
        NOTE,
        "otto",
    )
    assert published.event_id is None and body["entry_id"] == published.entry_id
    with engine.connect() as conn:
        audit = conn.execute(select(api_audit)).mappings().all()
    assert [(r["user_name"], r["action"], r["event_id"], r["outcome"], r["note"]) for r in audit] == [
        ("otto", "log_maintenance", published.entry_id, "lubricated", NOTE)
    ]
    with engine.begin() as conn:  # what consumer_db does with the message
        store_entries(conn, [published])
    listed = await client.get("/v1/maintenance", params={"robot": "r1"}, headers=bearer(token_of(engine, "vera")))
    assert [(e["entry_id"], e["note"]) for e in (await listed.json())["entries"]] == [(published.entry_id, NOTE)]


async def test_a_viewer_an_unknown_axis_and_a_bad_body_log_nothing(api, engine):  # noqa: F811
    client, bus, settings = api
    seed_axes(engine)
    cases = [
        ("vera", {"robot_id": "r1", "axis": 2, "action": "other"}, 403),
        ("otto", {"robot_id": "r1", "axis": 9, "action": "other"}, 404),
        ("otto", {"robot_id": "nobody", "axis": 1, "action": "other"}, 404),
        ("otto", {"robot_id": "r1", "axis": 2, "action": "kicked_it"}, 400),
        ("otto", {"robot_id": "r1", "axis": 2, "action": "other", "note": "x" * 5000}, 400),
        ("otto", {"robot_id": "r1", "axis": 2, "action": "other", "user_name": "mallory"}, 400),
        ("otto", {"robot_id": "r1\x00", "axis": 2, "action": "other"}, 400),
    ]
    for who, body, status in cases:
        response = await client.post("/v1/maintenance", json=body, headers=bearer(token_of(engine, who)))
        assert response.status == status, (body, await response.text())
    assert await bus.read_to_end(settings.maintenance_topic) == []
    with engine.connect() as conn:
        assert conn.execute(select(api_audit)).all() == []


async def test_an_acknowledgement_part_replaced_through_the_api_logs_its_entry(api, engine):  # noqa: F811
    client, bus, settings = api
    target = EVENTS[1]
    response = await client.post(
        f"/v1/alerts/{target.event_id}/acknowledge",
        json={"outcome": "part_replaced", "note": "new motor"},
        headers=bearer(token_of(engine, "otto")),
    )
    assert response.status == 200, await response.text()
    entries = [MaintenanceEntry.from_bytes(m.value) for m in await bus.read_to_end(settings.maintenance_topic)]
    assert [(e.robot_id, e.axis, e.action, e.event_id, e.note) for e in entries] == [
        (target.robot_id, target.axis, "part_replaced", target.event_id, "new motor")
    ]


async def test_outcomes_per_detector_through_the_api(api, engine):  # noqa: F811
    client, _, _ = api
    judged = [
        EVENTS[0].acknowledged("otto", EVENTS[0].opened_at, "real_fault"),
        EVENTS[1].acknowledged("otto", EVENTS[1].opened_at, "false_alarm"),
        EVENTS[2].acknowledged("otto", EVENTS[2].opened_at, "part_replaced"),
    ]
    with engine.begin() as conn:
        upsert_alerts(conn, judged)
    token = token_of(engine, "vera")
    body = await (await client.get("/v1/detectors/outcomes", headers=bearer(token))).json()
    [zscore] = body["detectors"]
    assert (zscore["detector"], zscore["alerts"], zscore["judged"], zscore["real"], zscore["real_share"]) == (
        "zscore",
        len(EVENTS),
        3,
        2,
        round(2 / 3, 4),
    )
    r2 = await (await client.get("/v1/detectors/outcomes", params={"robot": "r2"}, headers=bearer(token))).json()
    assert [(d["alerts"], d["judged"], d["real"]) for d in r2["detectors"]] == [(2, 1, 1)]
    bad = await client.get("/v1/detectors/outcomes", params={"since": "yesterday"}, headers=bearer(token))
    assert bad.status == 400
    assert (await client.get("/v1/detectors/outcomes")).status == 401
