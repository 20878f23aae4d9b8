"""Absurd but valid requests to the API, sent by curl as an outside user would, against the API and consumer_db
on the real Kafka and PostgreSQL (the services' role of scripts/postgres-roles.sql): each is answered with a
status and a reason, never a 500, and what is refused publishes and stores nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from api import users
from common.store import users as accounts
from common.store.tables import alerts, api_audit, api_users, axes_dim, maintenance_log
from common.wire.schemas import Alert, Reading
from tests.api_support import api_and_sink, migrated, until
from tests.conftest import service_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def curl(url: str, token: str, *args: str) -> tuple[int, str]:
    """The status and body of one request by the real curl (``-g``: brackets and braces as they are), in a
    thread: the API answers in this test's event loop."""
    return await asyncio.to_thread(_curl, url, token, *args)


def _curl(url: str, token: str, *args: str) -> tuple[int, str]:
    if shutil.which("curl") is None:
        service_missing("no curl")
    done = subprocess.run(
        ["curl", "-sg", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {token}", *args, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


async def test_nul_in_a_url_or_a_stored_text_is_a_400_and_absurd_parameters_are_answered(
    pg_url, postgres_admin_url, kafka_env, unique
):
    """Before: a NUL (%00, or \\u0000 in a body) reached the database's driver, which refuses it: a 500 for
    every route that reads by robot or event, and for a note after the acknowledgement or the maintenance entry
    was published (their audit row could not be written). Now each is a 400 that says why, before anything is
    published; the other absurd parameters were answered already and stay so."""
    owner_url, app = migrated(pg_url, postgres_admin_url, f"t{unique[:6]}")
    now = datetime.now(UTC).replace(microsecond=0)
    robot = f"r-{unique[:8]}"
    with app.begin() as conn:
        accounts.add_user(conn, "otto", "operator", "otto-password", now)
        accounts.add_user(conn, "ada", "admin", "ada-password-long", now)
        operator, admin = users.issue_token(conn, "otto", 1, now), users.issue_token(conn, "ada", 1, now)
    event = Alert(
        event_id=f"{robot}:1:zscore:1", robot_id=robot, axis=1, detector="zscore", severity="ALERT",
        state="open", opened_at=now,
    )  # fmt: skip
    reading = Reading(robot_id=robot, ts=now, currents={1: 5.0})
    try:
        async with api_and_sink(kafka_env, owner_url, app, unique) as running:
            bus = running.publisher
            await bus.ensure_topics([kafka_env["alerts_topic"], kafka_env["readings_topic"]])
            await bus.publish(kafka_env["alerts_topic"], robot, event.to_bytes())
            await bus.publish(kafka_env["readings_topic"], robot, reading.to_bytes())

            def seen() -> bool:
                with app.connect() as conn:
                    known = conn.execute(select(func.count()).where(axes_dim.c.robot_id == robot)).scalar_one()
                    return bool(known and conn.execute(select(alerts.c.event_id)).first())

            await until(seen, "consumer_db stored the event and the robot's axes")
            base = running.base_url
            nul = "holds a NUL character"
            refused = {
                "/v1/alerts?robot=%00": nul,
                "/v1/alerts?robot=a&state=open%00": nul,
                "/v1/alerts?cursor=" + cursor(now.isoformat(), "a\u0000"): "cursor not understood",
                "/v1/robots/%00/health": nul,
                "/v1/health/forecasts?robot=%00": nul,
                "/v1/maintenance?robot=%00": nul,
                "/v1/detectors/outcomes?robot=%00": nul,
            }
            for path, reason in refused.items():
                status, body = await curl(base + path, operator)
                assert (status, reason in body) == (400, True), (path, status, body)
            posted = {
                ("POST", "/v1/alerts/%00/acknowledge", '{"outcome": "real_fault"}', operator): nul,
                ("POST", f"/v1/alerts/{event.event_id}/acknowledge", '{"outcome": "real_fault", "note": "a\\u0000"}', operator): nul,  # noqa: E501
                ("POST", "/v1/maintenance", json.dumps({"robot_id": robot, "axis": 1, "action": "other", "note": "\u0000"}), operator): nul,  # noqa: E501
                ("POST", "/v1/users", json.dumps({"name": "a\u0000", "role": "viewer", "password": "p" * 12}), admin): nul,  # noqa: E501
                ("PUT", "/v1/users/%00/role", '{"role": "admin"}', admin): nul,
            }  # fmt: skip
            for (method, path, body, token), reason in posted.items():
                status, answer = await curl(
                    base + path, token, "-X", method, "-H", "Content-Type: application/json", "-d", body
                )
                assert (status, reason in answer) == (400, True), (path, body, status, answer)
            # Absurd but valid: answered, found fine before and kept so
            answered = {
                "/v1/alerts?limit=99999999999999999999999999": 400,
                "/v1/alerts?limit=-1": 400,
                "/v1/alerts?axis=99999999999999999999999999999": 200,
                f"/v1/alerts?robot={'<script>' * 8}": 200,
                "/v1/alerts?since=9999-12-31T23:59:59Z&until=0001-01-01T00:00:00Z": 200,
                "/v1/alerts?since=9999-12-31T23:59:59-23:59": 200,
                f"/v1/alerts?cursor={cursor('9999-12-31T23:59:59-23:59', 'a')}": 400,
                "/v1/health/forecasts?max_days_left=1e309&due_before=9999-12-31T23:59:59Z": 200,
                "/v1/health/forecasts?max_days_left=nan": 400,
                f"/v1/robots/{robot}/health?days=99999999999999999999": 400,
                "/v1/maintenance?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z": 200,
            }
            for path, expected in answered.items():
                status, body = await curl(base + path, operator)
                assert status == expected, (path, status, body)
            assert (await curl(f"{base}/v1/alerts?robot={robot}", operator))[0] == 200
        with app.connect() as conn:
            assert conn.execute(select(api_audit)).all() == []  # nothing refused was done
            assert conn.execute(select(maintenance_log)).all() == []
            assert conn.execute(select(alerts.c.acknowledged_by)).scalars().all() == [None]
            assert sorted(conn.execute(select(api_users.c.name)).scalars()) == ["ada", "otto"]
    finally:
        app.dispose()
