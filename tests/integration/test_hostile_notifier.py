"""An alert event an outside client writes into the alerts topic (Kafka's own console producer) whose id holds a
NUL, then a plain one: the notifier (real Kafka, PostgreSQL, a webhook receiver) skips the first with the
reason and notifies the second."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.wire.schemas import NUL_REFUSED
from tests.integration.test_hostile_outside_client import console_producer
from tests.integration.test_notifier_delivery import (  # noqa: F401 - receiver and engine are fixtures
    SECRET,
    Running,
    alert,
    engine,
    receiver,
    settings_for,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_an_event_id_with_a_nul_is_skipped_and_the_next_event_notified(
    kafka_env, pg_url, engine, receiver, tmp_path, monkeypatch, unique, caplog
):
    """Before: the event was valid to the schema, and the notifier looks each event up by its id, which the
    database's driver refuses with a NUL: it took that for the database being away and retried the batch for
    ever, notifying nothing more. Now such an id is refused when read (as consumer_db's dead letter says too)."""
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    config = tmp_path / "channels.yaml"
    config.write_text(
        f'channels:\n  - {{name: hook, kind: webhook, url: "http://127.0.0.1:{receiver.port}/hook", '
        "secret_env: TEST_WEBHOOK_SECRET}\n"
    )
    settings = settings_for(kafka_env, pg_url, f"notifier-{unique}", config)
    plain = alert()
    poisoned = json.loads(plain.model_dump_json()) | {"event_id": "RMBR4-2:3:zscore:\u0000"}
    async with Running(settings, engine):
        lines = [(plain.robot_id, json.dumps(poisoned)), (plain.robot_id, plain.model_dump_json())]
        await asyncio.to_thread(
            console_producer, kafka_env["kafka_bootstrap_servers"], kafka_env["alerts_topic"], lines, tmp_path / "cp"
        )
        await wait_for(lambda: receiver.bodies("/hook"), timeout=60)
    assert [body["alert"]["event_id"] for body in receiver.bodies("/hook")] == [plain.event_id]
    assert NUL_REFUSED in caplog.text and "notifier: skipped" in caplog.text
