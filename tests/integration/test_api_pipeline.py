"""The API with real parts: Kafka's alerts topic, PostgreSQL with the least-privilege roles of
scripts/postgres-roles.sql, and consumer_db's service storing what the API publishes.

An event published as the detectors do is listed by the API; a viewer's acknowledgement is refused; an
operator's goes over the topic, and consumer_db stores it with the operator's name, the outcome and the note;
the audit has the row and the services' role cannot change it."""

import asyncio
import socket
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import ProgrammingError

from api import service as api_service
from api import users
from api.settings import ApiSettings
from common.store import users as accounts
from common.store.tables import alerts, api_audit
from common.wire.kafka import KafkaBus
from common.wire.schemas import Alert
from consumer_db import service as sink_service
from consumer_db.migrate import migrate
from consumer_db.settings import ConsumerDbSettings
from tests.integration.test_hostile_outside_client import least_privilege_urls

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(condition, what: str, timeout: float = 60.0):
    async with asyncio.timeout(timeout):
        while not (found := await asyncio.to_thread(condition)):
            await asyncio.sleep(0.1)
    assert found, what
    return found


def stored_event(engine, event_id: str):
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.event_id == event_id)).mappings().first()


async def test_an_acknowledgement_through_the_api_reaches_the_topic_and_consumer_db(
    pg_url, postgres_admin_url, kafka_env, unique
):
    owner_url, app_url, roles = least_privilege_urls(pg_url, postgres_admin_url, f"t{unique[:6]}")
    owner = create_engine(owner_url)
    migrate(owner)
    owner.dispose()
    app = create_engine(app_url)
    now = datetime.now(UTC)
    with app.begin() as conn:  # the user commands run as the services' role
        accounts.add_user(conn, "vera", "viewer", "vera-password", now)
        accounts.add_user(conn, "otto", "operator", "otto-password", now)
        viewer, operator = users.issue_token(conn, "vera", 1, now), users.issue_token(conn, "otto", 1, now)

    port = free_port()
    api_settings = ApiSettings(
        _env_file=None, **kafka_env, database_url=app_url, api_host="127.0.0.1", api_port=port, api_metrics_port=0
    )
    sink_settings = ConsumerDbSettings(
        _env_file=None, **kafka_env, database_url=app_url, migration_database_url=owner_url,
        sink_group_id=f"sink-{unique}", sink_metrics_port=0,
    )  # fmt: skip
    stop = asyncio.Event()
    buses = [KafkaBus(api_settings), KafkaBus(sink_settings), KafkaBus(api_settings)]
    for bus in buses:
        await bus.start()
    api_bus, sink_bus, detector_bus = buses
    tasks = [
        asyncio.create_task(api_service.run(api_settings, bus=api_bus, stop=stop)),
        asyncio.create_task(sink_service.run(sink_settings, bus=sink_bus, stop=stop)),
    ]
    opened = Alert(
        event_id=f"r-{unique}:2:zscore:1", robot_id=f"r-{unique}", axis=2, detector="zscore", severity="ERROR",
        state="open", opened_at=now.replace(microsecond=0), peak_amps=12.5,
    )  # fmt: skip
    try:
        await detector_bus.ensure_topics([kafka_env["alerts_topic"]])
        await detector_bus.publish(kafka_env["alerts_topic"], opened.robot_id, opened.to_bytes())
        await until(lambda: stored_event(app, opened.event_id), "consumer_db stored the opened event")
        base, path = f"http://127.0.0.1:{port}", f"/v1/alerts/{opened.event_id}/acknowledge"
        async with aiohttp.ClientSession(base) as http:
            listed = await http.get("/v1/alerts", params={"robot": opened.robot_id}, headers=_bearer(viewer))
            assert listed.status == 200
            assert [a["event_id"] for a in (await listed.json())["alerts"]] == [opened.event_id]
            body = {"outcome": "false_alarm", "note": "tool change, not wear"}
            assert (await http.post(path, json=body, headers=_bearer(viewer))).status == 403
            assert (await http.post(path, json=body)).status == 401
            answer = await http.post(path, json=body, headers=_bearer(operator))
            assert answer.status == 200, await answer.text()

        row = await until(
            lambda: (r := stored_event(app, opened.event_id)) is not None and r["acknowledged_by"] is not None and r,
            "consumer_db stored the acknowledgement",
        )
        assert (row["acknowledged_by"], row["ack_outcome"], row["ack_note"]) == (
            "otto", "false_alarm", "tool change, not wear"
        )  # fmt: skip
        assert (row["severity"], row["state"], row["peak_amps"]) == ("ERROR", "open", 12.5)
        with app.connect() as conn:
            audit = conn.execute(select(api_audit.c.user_name, api_audit.c.event_id, api_audit.c.outcome)).all()
        assert [tuple(a) for a in audit] == [("otto", opened.event_id, "false_alarm")]
        with app.begin() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("DELETE FROM api_audit"))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for bus in buses:
            await bus.stop()
        app.dispose()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
