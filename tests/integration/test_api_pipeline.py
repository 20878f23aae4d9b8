"""The API with real parts: Kafka's alerts topic, PostgreSQL with the least-privilege roles of
scripts/postgres-roles.sql, and consumer_db's service storing what the API publishes.

An event published as the detectors do is listed by the API; a viewer's acknowledgement is refused; an
operator's goes over the topic, and consumer_db stores it with the operator's name, the outcome and the note;
the audit has the row and the services' role cannot change it."""

from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from api import users
from common.store import users as accounts
from common.store.tables import alerts, api_audit
from common.wire.schemas import Alert
from tests.api_support import api_and_sink, bearer, migrated, until

pytestmark = pytest.mark.integration


def stored_event(engine, event_id: str):
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.event_id == event_id)).mappings().first()


async def test_an_acknowledgement_through_the_api_reaches_the_topic_and_consumer_db(
    pg_url, postgres_admin_url, kafka_env, unique
):
    owner_url, app = migrated(pg_url, postgres_admin_url, f"t{unique[:6]}")
    now = datetime.now(UTC)
    with app.begin() as conn:  # the user commands run as the services' role
        accounts.add_user(conn, "vera", "viewer", "vera-password", now)
        accounts.add_user(conn, "otto", "operator", "otto-password", now)
        viewer, operator = users.issue_token(conn, "vera", 1, now), users.issue_token(conn, "otto", 1, now)
    opened = Alert(
        event_id=f"r-{unique}:2:zscore:1", robot_id=f"r-{unique}", axis=2, detector="zscore", severity="ERROR",
        state="open", opened_at=now.replace(microsecond=0), peak_amps=12.5,
    )  # fmt: skip
    try:
        async with api_and_sink(kafka_env, owner_url, app, unique) as running:
            detector_bus = running.publisher
            await detector_bus.ensure_topics([kafka_env["alerts_topic"]])
            await detector_bus.publish(kafka_env["alerts_topic"], opened.robot_id, opened.to_bytes())
            await until(lambda: stored_event(app, opened.event_id), "consumer_db stored the opened event")
            path = f"/v1/alerts/{opened.event_id}/acknowledge"
            async with aiohttp.ClientSession(running.base_url) as http:
                listed = await http.get("/v1/alerts", params={"robot": opened.robot_id}, headers=bearer(viewer))
                assert listed.status == 200
                assert [a["event_id"] for a in (await listed.json())["alerts"]] == [opened.event_id]
                body = {"outcome": "false_alarm", "note": "tool change, not wear"}
                assert (await http.post(path, json=body, headers=bearer(viewer))).status == 403
                assert (await http.post(path, json=body)).status == 401
                answer = await http.post(path, json=body, headers=bearer(operator))
                assert answer.status == 200, await answer.text()

            row = await until(
                lambda: (
                    (r := stored_event(app, opened.event_id)) is not None and r["acknowledged_by"] is not None and r
                ),
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
        app.dispose()
