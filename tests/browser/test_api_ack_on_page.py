"""An acknowledgement made through the HTTP API appears on an open dashboard page (issue 24's Must show): the
API as its own process (``python -m api``), the dashboard on the real broker, the page in real Chromium, the
acknowledgement sent by an outside HTTP client with an operator's token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime

import pytest

from api import users as tokens
from common.store import users as accounts
from common.store.db import make_engine
from consumer_db.alert_store import upsert_alerts
from consumer_db.migrate import migrate
from dashboard.settings import DashboardSettings
from tests.api_support import bearer, free_port
from tests.browser.test_dashboard_browser import LIVE, WINDOW, open_dashboard
from tests.conftest import REPO
from tests.dashboard_support import ServerThread, alert

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def answer(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return None


@pytest.fixture
def api_process(kafka_env, pg_url, tmp_path):
    """The API on a migrated database, as a process; yields its base URL, an operator's token and the engine."""
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        accounts.add_user(conn, "otto", "operator", "otto-password", now)
        token = tokens.issue_token(conn, "otto", 1, now)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env |= {key.upper(): str(value) for key, value in kafka_env.items()}
    env |= {"DATABASE_URL": pg_url, "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_METRICS_PORT": "0"}
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "api.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while answer(base + "/readyz") != 200:
            assert process.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, "the API did not become ready: " + (tmp_path / "api.log").read_text()
            time.sleep(0.3)
        yield base, token, engine
    finally:
        process.terminate()
        process.wait(timeout=30)
        engine.dispose()


def test_an_acknowledgement_through_the_api_appears_on_the_page(kafka_env, api_process, page):
    base, token, engine = api_process
    settings = DashboardSettings(
        _env_file=None, window_rows=WINDOW, dashboard_push_ms=100, dashboard_sign_in=False, **kafka_env
    )
    from common.wire.kafka import KafkaBus

    with ServerThread(settings, bus=lambda: KafkaBus(settings)) as server:
        open_dashboard(page, server.url)
        event = alert("api-" + uuid.uuid4().hex[:6], at=datetime.now(UTC))
        shown = f"() => {LIVE.format('alert_source')}.data.event_id.includes('{event.event_id}')"
        deadline = time.monotonic() + 60
        while not page.evaluate(shown):  # until the page's feed has its partitions, publish again
            assert time.monotonic() < deadline, "the event never reached the page"
            server.publish(settings.alerts_topic, event)
            page.wait_for_timeout(1000)
        with engine.begin() as conn:
            upsert_alerts(conn, [event])
        request = urllib.request.Request(
            f"{base}/v1/alerts/{event.event_id}/acknowledge",
            data=json.dumps({"outcome": "inspected_ok", "note": "cable re-seated"}).encode(),
            headers={**bearer(token), "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        row = f"{LIVE.format('alert_source')}.data.event_id.indexOf('{event.event_id}')"
        page.wait_for_function(f"() => ({LIVE.format('alert_source')}.data.ack[{row}] || '').startsWith('otto at')")
    assert page.errors == []
