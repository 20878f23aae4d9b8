"""The notifier with real parts: Kafka's alerts topic, PostgreSQL, an SMTP server (aiosmtpd, STARTTLS with a
certificate made here, login required) and an HTTP receiver (aiohttp) for the webhook and for Apprise's json://.

A fault's opening and escalation reach every channel exactly once, the webhook's signatures check out, and
restarting the notifier in the middle (once with its offsets, once with a fresh group that reads the whole
topic again) sends nothing twice. A receiver that answers 500 is tried again and every attempt recorded."""

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, select

from common.store.tables import notification_attempts, notification_deliveries, notification_events
from common.wire.kafka import KafkaBus
from common.wire.schemas import Alert, AlertState, Severity
from consumer_db.migrate import migrate
from notifier import service
from notifier.config import load_channels
from notifier.settings import NotifierSettings
from tests.conftest import service_missing
from tests.integration.test_hostile_outside_client import least_privilege_urls

pytestmark = pytest.mark.integration

SECRET = "webhook-signing-secret-for-the-test"
SMTP_PASSWORD = "smtp-password-for-the-test"
OPENED = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1, made with openssl for this test: the client trusts it as its CA."""
    if shutil.which("openssl") is None:
        service_missing("no openssl to make the SMTP server's certificate (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class Mailbox:
    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"axiswatch"
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server(certificate):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True,
        auth_required=True, authenticator=authenticate,
    )  # fmt: skip
    controller.start()
    yield controller, mailbox
    controller.stop()


class Receiver:
    """An HTTP server in the test's loop: records every request; answers with the next scripted status."""

    def __init__(self):
        self.requests: dict[str, list[tuple[dict, bytes]]] = {}
        self.script: dict[str, list[int]] = {}
        self.hang_first: set[str] = set()
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.setdefault(request.path, []).append((dict(request.headers), body))
        if request.path in self.hang_first and len(self.requests[request.path]) == 1:
            await asyncio.Event().wait()  # takes the notice and never answers: the sender dies meanwhile
        statuses = self.script.get(request.path) or [200]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.Response(status=status, text="receiver says no" if status >= 400 else "ok")

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(body) for _, body in self.requests.get(path, [])]


@pytest.fixture
async def receiver():
    r = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", r.port).start()
    yield r
    await runner.cleanup()


@pytest.fixture
def engine(pg_url):
    engine = create_engine(pg_url)
    migrate(engine)
    yield engine
    engine.dispose()


def settings_for(kafka_env, pg_url, group: str, config_path) -> NotifierSettings:
    return NotifierSettings(
        _env_file=None,
        **kafka_env,
        database_url=pg_url,
        notifier_config=config_path,
        notifier_group_id=group,
        notifier_poll_ms=200,
        notifier_send_timeout_s=10,
        notifier_metrics_port=0,
    )


def alert(**change) -> Alert:
    values = {
        "event_id": "RMBR4-2:3:zscore:2026-12-05T08:00:00.000Z",
        "robot_id": "RMBR4-2",
        "axis": 3,
        "detector": "zscore",
        "severity": Severity.ALERT,
        "state": AlertState.OPEN,
        "opened_at": OPENED,
        "peak_amps": 14.0,
        "threshold": 9.0,
    }
    return Alert(**(values | change))


async def publish(kafka_env, *alerts: Alert | bytes) -> None:
    """Alerts, or raw bytes (a message no reader can use), on the test's alerts topic."""
    bus = KafkaBus(NotifierSettings(_env_file=None, **kafka_env))
    await bus.start()
    try:
        await bus.ensure_topics([kafka_env["alerts_topic"]])
        for a in alerts:
            if isinstance(a, bytes):
                await bus.publish(kafka_env["alerts_topic"], "RMBR4-2", a)
            else:
                await bus.publish(kafka_env["alerts_topic"], a.robot_id, a.to_bytes())
    finally:
        await bus.stop()


async def wait_for(check, *, timeout=60.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(every)
    raise AssertionError("condition not met before the deadline")


class Running:
    """The notifier as a task of this loop, on its own Kafka bus; ``stop()`` is a graceful shutdown."""

    def __init__(self, settings, engine):
        self.settings, self.engine, self.stop_event = settings, engine, asyncio.Event()

    async def __aenter__(self):
        self.bus = KafkaBus(self.settings)
        await self.bus.start()
        config = load_channels(self.settings.notifier_config, env_file=None)
        self.task = asyncio.create_task(
            service.run(self.settings, bus=self.bus, stop=self.stop_event, engine=self.engine, config=config)
        )
        return self

    async def __aexit__(self, *exc):
        self.stop_event.set()
        await asyncio.wait_for(self.task, 60)
        await self.bus.stop()


def deliveries(engine):
    with engine.connect() as conn:
        return conn.execute(select(notification_deliveries).order_by(notification_deliveries.c.id)).all()


def attempts_of(engine, delivery_id):
    with engine.connect() as conn:
        return conn.execute(
            select(notification_attempts.c.attempt, notification_attempts.c.outcome, notification_attempts.c.error)
            .where(notification_attempts.c.delivery_id == delivery_id)
            .order_by(notification_attempts.c.attempt)
        ).all()


def signed(headers: dict, body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Axiswatch-Signature", ""), expected)


async def test_a_fault_reaches_every_channel_once_across_restarts(
    kafka_env, pg_url, engine, smtp_server, receiver, certificate, tmp_path, monkeypatch, unique
):
    controller, mailbox = smtp_server
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEST_CHAT_URLS", f"json://127.0.0.1:{receiver.port}/chat")
    config = tmp_path / "channels.yaml"
    config.write_text(
        f"""
channels:
  - {{name: mail, kind: email, host: 127.0.0.1, port: {controller.port}, ca_file: "{certificate[0]}",
      username: axiswatch, password_env: TEST_SMTP_PASSWORD, sender: axiswatch@plant.example,
      to: [maintenance@plant.example]}}
  - {{name: hook, kind: webhook, url: "http://127.0.0.1:{receiver.port}/hook", secret_env: TEST_WEBHOOK_SECRET}}
  - {{name: chat, kind: apprise, urls_env: TEST_CHAT_URLS}}
  - {{name: other-robot, kind: webhook, url: "http://127.0.0.1:{receiver.port}/other", secret_env: TEST_WEBHOOK_SECRET,
      robots: ["press-*"]}}
"""
    )
    settings = settings_for(kafka_env, pg_url, f"notifier-{unique}", config)

    def received(n):
        return lambda: (
            len(mailbox.messages) >= n and len(receiver.bodies("/hook")) >= n and len(receiver.bodies("/chat")) >= n
        )

    skipped = REGISTRY.get_sample_value("axiswatch_notifier_skipped_total", {"reason": "not_json"}) or 0
    await publish(kafka_env, b"{not json at all", alert())  # a bad message first: skipped, the rest goes on
    async with Running(settings, engine):
        await wait_for(received(1))
    assert REGISTRY.get_sample_value("axiswatch_notifier_skipped_total", {"reason": "not_json"}) == skipped + 1
    # the fault goes on while the notifier is down: the peak grows, it escalates, a repeat of the opening
    await publish(
        kafka_env, alert(peak_amps=16.0), alert(severity=Severity.ERROR, peak_amps=25.0), alert(), alert(peak_amps=30.0)
    )
    async with Running(settings, engine):
        await wait_for(received(2))
        await asyncio.sleep(2.0)  # time for a repeat to show, if there were one
    # a third start with a fresh group reads the whole topic again: the records, not the offsets, hold
    fresh = settings.model_copy(update={"notifier_group_id": f"notifier-{unique}-fresh"})
    async with Running(fresh, engine):
        await asyncio.sleep(4.0)

    subjects = [m["Subject"] for m in mailbox.messages]
    assert subjects == [
        "axiswatch alert opened: robot RMBR4-2 axis 3 (ALERT, zscore)",
        "axiswatch alert escalated to ERROR: robot RMBR4-2 axis 3 (ERROR, zscore)",
    ]
    assert all(m["To"] == "maintenance@plant.example" for m in mailbox.messages)
    hooks = receiver.requests["/hook"]
    assert [json.loads(body)["change"] for _, body in hooks] == ["open", "escalate"]
    assert all(signed(headers, body) for headers, body in hooks)
    assert not signed(hooks[0][0], hooks[0][1] + b" ")  # the signature covers the exact body
    assert [json.loads(body)["alert"]["severity"] for _, body in hooks] == ["ALERT", "ERROR"]
    assert [b["title"] for b in receiver.bodies("/chat")] == subjects
    assert "/other" not in receiver.requests  # its robots filter matches no robot of this fault
    rows = deliveries(engine)
    assert sorted((r.channel, r.change, r.status, r.attempts) for r in rows) == sorted(
        (channel, change, "sent", 1) for channel in ("mail", "hook", "chat") for change in ("open", "escalate")
    )


async def test_a_failing_receiver_is_retried_and_each_attempt_recorded(
    kafka_env, pg_url, postgres_admin_url, receiver, tmp_path, monkeypatch, unique
):
    """As deployed: the schema made by its owner's migrations, the notifier connected as the services' role
    (scripts/postgres-roles.sql), which needs nothing more than the default privileges give it."""
    owner_url, app_url, _ = least_privilege_urls(pg_url, postgres_admin_url, f"n{unique[:6]}")
    owner = create_engine(owner_url)
    migrate(owner)
    owner.dispose()
    engine = create_engine(pg_url)  # the superuser, to look at the records
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    receiver.script["/flaky"] = [500, 500, 200]
    receiver.script["/refuses"] = [400]
    receiver.script["/down"] = [500]  # for good
    config = tmp_path / "channels.yaml"
    config.write_text(
        f"""
channels:
  - {{name: flaky, kind: webhook, url: "http://127.0.0.1:{receiver.port}/flaky", secret_env: TEST_WEBHOOK_SECRET,
      retry: {{attempts: 5, initial_s: 0.2, max_s: 1}}}}
  - {{name: refuses, kind: webhook, url: "http://127.0.0.1:{receiver.port}/refuses", secret_env: TEST_WEBHOOK_SECRET,
      retry: {{attempts: 5, initial_s: 0.2, max_s: 1}}}}
  - {{name: down, kind: webhook, url: "http://127.0.0.1:{receiver.port}/down", secret_env: TEST_WEBHOOK_SECRET,
      retry: {{attempts: 3, initial_s: 600, max_s: 600}}}}
"""
    )
    settings = settings_for(kafka_env, app_url, f"notifier-{unique}", config)

    def sample(channel, outcome):
        return (
            REGISTRY.get_sample_value("axiswatch_notifier_deliveries_total", {"channel": channel, "outcome": outcome})
            or 0
        )

    before = {(c, o): sample(c, o) for c in ("flaky", "refuses") for o in ("sent", "retried", "failed")}
    await publish(kafka_env, alert())
    app = create_engine(app_url)
    settled = {"flaky": "sent", "refuses": "failed", "down": "retrying"}
    async with Running(settings, app):
        # the channel whose receiver is down waits 10 minutes before its next attempt; the others go on meanwhile
        await wait_for(lambda: {r.channel: r.status for r in deliveries(engine)} == settled)
    # the stop cut the wait short and freed the row for the next start, its first attempt counted
    by_channel = {r.channel: r for r in deliveries(engine)}
    down = by_channel["down"]
    assert (down.status, down.attempts, down.claimed_until) == ("retrying", 1, None)
    assert [(a, o) for a, o, _ in attempts_of(engine, down.id)] == [(1, "retried")]
    flaky, refuses = by_channel["flaky"], by_channel["refuses"]
    assert (flaky.status, flaky.attempts) == ("sent", 3)
    assert flaky.last_error == "ConnectionError: HTTP 500: 'receiver says no'"
    assert [(a, o) for a, o, _ in attempts_of(engine, flaky.id)] == [(1, "retried"), (2, "retried"), (3, "sent")]
    posts = receiver.requests["/flaky"]
    assert len(posts) == 3 and len({body for _, body in posts}) == 1  # the same notice each time
    assert {h["X-Axiswatch-Delivery"] for h, _ in posts} == {str(flaky.id)}
    assert all(signed(h, b) for h, b in posts)
    # a 4xx will not pass by trying again: failed at once, with the reason
    assert (refuses.status, refuses.attempts) == ("failed", 1)
    assert attempts_of(engine, refuses.id) == [(1, "failed", "Permanent: HTTP 400: 'receiver says no'")]
    assert len(receiver.requests["/refuses"]) == 1
    after = {key: sample(*key) - value for key, value in before.items()}
    assert after == {
        ("flaky", "sent"): 1, ("flaky", "retried"): 2, ("flaky", "failed"): 0,
        ("refuses", "sent"): 0, ("refuses", "retried"): 0, ("refuses", "failed"): 1,
    }  # fmt: skip
    app.dispose()
    engine.dispose()


async def test_reminders_while_unacknowledged_and_none_after_the_acknowledgement(
    kafka_env, pg_url, engine, receiver, tmp_path, monkeypatch, unique
):
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    config = tmp_path / "channels.yaml"
    config.write_text(
        f"""
channels:
  - {{name: hook, kind: webhook, url: "http://127.0.0.1:{receiver.port}/hook", secret_env: TEST_WEBHOOK_SECRET,
      remind_every_min: 0.05}}
"""
    )  # a reminder every 3 s
    settings = settings_for(kafka_env, pg_url, f"notifier-{unique}", config).model_copy(
        update={"notifier_reminder_check_s": 0.5}
    )

    def changes():
        return [b["change"] for b in receiver.bodies("/hook")]

    await publish(kafka_env, alert())
    async with Running(settings, engine):
        await wait_for(lambda: changes()[:3] == ["open", "reminder-1", "reminder-2"], timeout=30)
        await publish(kafka_env, alert(acknowledged_by="ann", acknowledged_at=OPENED + timedelta(minutes=5)))
        await wait_for(lambda: any(r.acknowledged_at for r in events(engine)), timeout=30)
        seen = len(changes())
        await asyncio.sleep(7.0)  # two more intervals: no reminder once acknowledged
    assert changes()[seen:] == []
    assert changes() == ["open"] + [f"reminder-{n}" for n in range(1, seen)]


def events(engine):
    with engine.connect() as conn:
        return conn.execute(select(notification_events)).all()


def process_env(kafka_env, pg_url, receiver, tmp_path, unique, **more) -> dict[str, str]:
    """The environment of ``python -m notifier`` as a process of its own, with one webhook channel /hook."""
    config = tmp_path / "channels.yaml"
    config.write_text(
        f'channels:\n  - {{name: hook, kind: webhook, url: "http://127.0.0.1:{receiver.port}/hook", '
        "secret_env: TEST_WEBHOOK_SECRET}\n"
    )
    return {
        **os.environ,
        **{k.upper(): str(v) for k, v in kafka_env.items()},
        "DATABASE_URL": pg_url,
        "NOTIFIER_CONFIG": str(config),
        "NOTIFIER_GROUP_ID": f"notifier-{unique}",
        "TEST_WEBHOOK_SECRET": SECRET,
        **{k.upper(): str(v) for k, v in more.items()},
    }


def start_notifier(env, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "notifier"], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


async def test_python_m_notifier_serves_metrics_and_stops_on_sigterm(
    kafka_env, pg_url, engine, receiver, tmp_path, unique
):
    """The real entry point, settings from the environment: /readyz, the delivery counted on /metrics."""
    port = free_port()
    env = process_env(kafka_env, pg_url, receiver, tmp_path, unique, notifier_metrics_port=port)
    await publish(kafka_env, alert())
    process = start_notifier(env, tmp_path)
    metrics, status = "", None
    try:
        await wait_for(lambda: len(receiver.bodies("/hook")) == 1 or process.poll() is not None, timeout=60)
        status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz")
        # The receiver holds the body before the notifier has its answer and counts the delivery: wait for it.
        deadline = time.monotonic() + 30
        while SENT_LINE not in metrics and process.poll() is None and time.monotonic() < deadline:
            _, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
            await asyncio.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.to_thread(process.communicate, timeout=60))[0].decode()
    assert len(receiver.bodies("/hook")) == 1, output[-3000:]
    assert status == 200
    assert SENT_LINE in metrics
    assert 'axiswatch_notifier_raised_total{change="open",channel="hook"} 1.0' in metrics
    assert process.returncode == 0, output[-3000:]
    assert SECRET not in output  # the secret is never logged


SENT_LINE = 'axiswatch_notifier_deliveries_total{channel="hook",outcome="sent"} 1.0'


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_a_crash_between_send_and_record_sends_again_at_least_once(
    kafka_env, pg_url, engine, receiver, tmp_path, unique
):
    """The documented choice (docs/notifier.md): killed while the receiver holds the notice, the notifier
    cannot know whether it arrived; the next start sends it again once the claim runs out, with the same
    delivery id and body, so the receiver can tell the repeat."""
    receiver.hang_first.add("/hook")
    env = process_env(kafka_env, pg_url, receiver, tmp_path, unique, notifier_send_timeout_s=2, notifier_metrics_port=0)
    await publish(kafka_env, alert())
    first = start_notifier(env, tmp_path)
    try:
        await wait_for(lambda: len(receiver.bodies("/hook")) == 1 or first.poll() is not None, timeout=60)
    finally:
        first.kill()  # SIGKILL: no clean-up of any kind
        output = (await asyncio.to_thread(first.communicate, timeout=30))[0].decode()
    assert len(receiver.bodies("/hook")) == 1, output[-3000:]
    (row,) = deliveries(engine)
    assert (row.status, row.attempts) == ("sending", 1)

    second = start_notifier(env, tmp_path)
    try:  # the claim lasts the send timeout (2 s) + 30 s
        await wait_for(lambda: len(receiver.bodies("/hook")) == 2 or second.poll() is not None, timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        output = (await asyncio.to_thread(second.communicate, timeout=60))[0].decode()
    (row,) = deliveries(engine)
    assert (row.status, row.attempts) == ("sent", 2), output[-3000:]
    (h1, b1), (h2, b2) = receiver.requests["/hook"]
    assert b1 == b2 and h1["X-Axiswatch-Delivery"] == h2["X-Axiswatch-Delivery"] == str(row.id)
    assert "was being sent when its sender stopped: sending it again" in output
