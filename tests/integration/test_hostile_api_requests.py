"""Absurd but valid requests to the API, sent by curl as an outside user would, against the API and consumer_db
on the real Kafka and PostgreSQL (the services' role of scripts/postgres-roles.sql): each is answered with a
status and a reason, never a 500, and what is refused publishes and stores nothing. And absurd forecasts an
outside client writes into the health topic with Kafka's console producer: none makes the API answer 500."""

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
from common.store.tables import (
    alerts,
    api_audit,
    api_users,
    axes_dim,
    health_forecast,
    maintenance_log,
    rejected_readings,
)
from common.wire.schemas import Alert, Reading
from tests.api_support import api_and_sink, migrated, until
from tests.conftest import service_missing
from tests.integration.test_hostile_outside_client import console_producer

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


async def test_forecasts_far_ahead_or_made_late_in_9999_are_refused_or_answered(
    pg_url, postgres_admin_url, kafka_env, unique, tmp_path
):
    """Before: a forecast from an outside client on the health topic with 1e7 days left was stored, and every
    GET /v1/health/forecasts answered 500 (PostgreSQL's double overflowed ordering by the crossing instant), as
    did the robot's health for it and for a forecast made late in year 9999 (its crossing past the calendar).
    Now the days of a forecast are finite and within a century, the others dead letters with the reason, and a
    crossing past the calendar is shown without an instant."""
    owner_url, app = migrated(pg_url, postgres_admin_url, f"t{unique[:6]}")
    now = datetime.now(UTC).replace(microsecond=0)
    tag = f"f{unique[:6]}"
    with app.begin() as conn:
        accounts.add_user(conn, "vera", "viewer", "vera-password", now)
        viewer = users.issue_token(conn, "vera", 1, now)

    def forecast(robot: str, start: str, **days) -> tuple[str, str]:
        axis = {"axis": 1, "level": 0.2, "slope_per_day": 0.01, "limit": 0.3, "days_left": 10.0} | days
        event = {"schema_version": 1, "robot_id": robot, "kind": "forecast", "start": start, "forecasts": [axis]}
        return robot, json.dumps(event)

    fine = [forecast(f"{tag}-ok", now.isoformat()), forecast(f"{tag}-late", "9999-12-31T00:00:00Z", days_left=100)]
    refused = [
        forecast(f"{tag}-far", now.isoformat(), days_left=1e7),
        forecast(f"{tag}-huge", now.isoformat(), low_days=1e308),
        forecast(f"{tag}-nan", now.isoformat(), high_days=float("nan")),
    ]
    try:
        async with api_and_sink(kafka_env, owner_url, app, unique) as running:
            await running.publisher.ensure_topics([kafka_env["health_topic"]])
            await asyncio.to_thread(
                console_producer,
                kafka_env["kafka_bootstrap_servers"],
                kafka_env["health_topic"],
                refused + fine,
                tmp_path / "cp.log",
            )

            def accounted() -> dict[str, str]:
                with app.connect() as conn:
                    rows = conn.execute(select(rejected_readings.c.robot_id, rejected_readings.c.reason)).all()
                    forecasts = conn.execute(select(func.count()).select_from(health_forecast)).scalar_one()
                return dict(rows) | {"stored": forecasts} if forecasts + len(rows) == len(fine + refused) else {}

            reasons = await until(accounted, "consumer_db stored or refused every forecast")
            status, body = await curl(f"{running.base_url}/v1/health/forecasts", viewer)
            assert status == 200, body
            assert {f["robot_id"] for f in json.loads(body)["forecasts"]} == {robot for robot, _ in fine}
            status, body = await curl(f"{running.base_url}/v1/robots/{tag}-late/health", viewer)
            assert status == 200, body
            late = json.loads(body)["axes"][0]["forecast"]
            assert (late["days_left"], late["due_at"]) == (100.0, None)
        assert reasons == {
            "stored": len(fine),
            f"{tag}-far": "HealthEvent: forecasts.0.days_left: Input should be less than or equal to 36500",
            f"{tag}-huge": "HealthEvent: forecasts.0.low_days: Input should be less than or equal to 36500",
            f"{tag}-nan": "HealthEvent: forecasts.0.high_days: Input should be a finite number",
        }
    finally:
        app.dispose()
