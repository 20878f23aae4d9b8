"""/metrics, /livez and /readyz: the shared endpoint, and each service's series moving with the messages it
handles (in-process bus, SQLite)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

import common.metrics
from common.metrics import Health, MetricsServer, reason_class, serving
from common.wire.bus import InProcessBus
from common.wire.schemas import DEFAULT_POLICY, Alert, DeadLetter, Reading
from consumer_db.retry import retry
from tests.alerts_fixtures import cycle_readings
from tests.dashboard_support import ServerThread, wait_for
from tests.dashboard_support import reading as dashboard_reading


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# -- the shared endpoint --------------------------------------------------------------------------------


def test_the_endpoint_answers_metrics_liveness_and_readiness_as_the_service_says(monkeypatch):
    # The liveness clock moves only by hand: on the real one a slow machine can let 0.3 s pass between a beat
    # and the request that should find the loop alive.
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(common.metrics, "time", SimpleNamespace(monotonic=lambda: clock.now))
    health = Health(live_within_s=0.3)
    server = MetricsServer(health, 0, "127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(base + "/readyz") == (503, "starting\n")
        health.ready(True, "subscribed")
        assert get(base + "/readyz") == (200, "subscribed\n")
        assert get(base + "/livez")[0] == 200
        clock.now += 0.4  # no beat for longer than live_within_s: stuck
        status, text = get(base + "/livez")
        assert status == 503 and "loop last turned 0.4 s ago" in text
        health.beat()
        assert get(base + "/livez")[0] == 200
        health.beat(waiting_s=5.0)  # a wait on purpose (pacing) is not being stuck
        clock.now += 0.4
        assert get(base + "/livez")[0] == 200
        clock.now += 5.0  # but longer than the wait it announced is
        assert get(base + "/livez")[0] == 503
        status, text = get(base + "/metrics")
        assert status == 200 and "# TYPE python_info gauge" in text
    finally:
        server.close()


def test_a_port_in_use_is_logged_and_the_service_runs_without_the_endpoint(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="common.metrics"), serving(Health(), port, "127.0.0.1") as server:
            assert server is None
    assert f"not started on 127.0.0.1:{port}" in caplog.text
    with serving(Health(), 0) as off:
        assert off is None


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (DEFAULT_POLICY.problem("bad id\n", datetime.now(UTC), {1: 1.0}), "robot_id"),
        (DEFAULT_POLICY.problem("r1", datetime.now(UTC), {1: 1e9}), "current_out_of_range"),
        (DEFAULT_POLICY.problem("r1", datetime(1980, 1, 1, tzinfo=UTC), {1: 1.0}), "time_out_of_range"),
        (DEFAULT_POLICY.problem("r1", datetime.now(UTC) + timedelta(days=2), {1: 1.0}), "time_out_of_range"),
        ("Axis #1: 'oops' is not a number", "not_a_number"),
        ("Reading: not JSON (Expecting value)", "not_json"),
        ("Reading: the message has no value (empty, or a Kafka tombstone)", "not_json"),
        ("something nobody foresaw", "other"),
    ],
)
def test_a_dead_letter_reason_falls_into_a_class_without_its_data(reason, expected):
    assert reason_class(reason) == expected


async def test_retry_makes_the_service_unready_while_the_database_fails_and_ready_when_it_answers():
    health, seen, calls = Health(), [], iter([OperationalError("select", {}, Exception("refused")), None, "done"])
    health.ready(True)

    def call():
        seen.append(health.is_ready()[0])
        outcome = next(calls) or next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await retry(call, stop=asyncio.Event(), what="t", initial_s=0.01, health=health) == "done"
    assert seen == [True, False] and health.is_ready() == (True, "database back")


# -- each service's series ------------------------------------------------------------------------------


async def test_producer_counts_rows_messages_and_dead_letters_by_reason(tmp_path):
    from producer.service import run
    from producer.settings import ProducerSettings

    path = tmp_path / "feed.csv"
    rows = [f'"current",{i},2,,"2022-10-17T12:00:{2 * i:02d}Z"' for i in range(5)] + ['"current",x,2,,"2022-1"']
    path.write_text('"Trait","Axis #1","Axis #2","Axis #3","Time"\n' + "\n".join(rows) + "\n")
    config = ProducerSettings(
        _env_file=None, bus="memory", axes_from_db=False, axes="1-3", max_speed=True, csv_path=path
    )
    before = (
        sample("axiswatch_producer_rows_in_total"),
        sample("axiswatch_producer_messages_out_total", topic=config.readings_topic),
        sample("axiswatch_producer_dead_letters_total", reason="not_a_number"),
    )
    health = Health()
    await run(config, bus=InProcessBus(), stop=asyncio.Event(), health=health)
    after = (
        sample("axiswatch_producer_rows_in_total"),
        sample("axiswatch_producer_messages_out_total", topic=config.readings_topic),
        sample("axiswatch_producer_dead_letters_total", reason="not_a_number"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [6, 5, 1]
    assert health.is_ready() == (False, "stopping")  # the feed ended


async def test_consumer_db_counts_messages_rows_and_times_its_transactions(sqlite_url):
    from consumer_db.service import run
    from consumer_db.settings import ConsumerDbSettings

    settings = ConsumerDbSettings(_env_file=None, database_url=sqlite_url, bus="memory", axes="1-3", sink_batch_ms=5)
    bus, stop, health = InProcessBus(), asyncio.Event(), Health()
    t0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
    for i in range(20):
        reading = Reading(robot_id="r1", ts=t0 + timedelta(seconds=2 * i), row=i, currents={1: 1.0, 2: None, 3: 0.0})
        await bus.publish(settings.readings_topic, reading.robot_id, reading.to_bytes())
    await bus.publish(settings.readings_topic, "r1", b"not json")
    topic = settings.readings_topic
    before_in = sample("axiswatch_consumer_db_messages_in_total", topic=topic)
    before_new = sample("axiswatch_consumer_db_written_total", kind="readings_new")
    before_rejected = sample("axiswatch_consumer_db_written_total", kind="rejected")
    before_tx = sample("axiswatch_consumer_db_transaction_seconds_count")
    before_not_json = sample("axiswatch_consumer_db_dead_letters_total", reason="not_json")
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, health=health))
    await asyncio.wait_for(
        _until(lambda: sample("axiswatch_consumer_db_written_total", kind="rejected") > before_rejected), 20
    )
    assert health.is_ready()[0]
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sample("axiswatch_consumer_db_messages_in_total", topic=topic) - before_in == 21
    assert sample("axiswatch_consumer_db_written_total", kind="readings_new") - before_new == 60
    assert sample("axiswatch_consumer_db_written_total", kind="rejected") - before_rejected == 1
    assert sample("axiswatch_consumer_db_transaction_seconds_count") > before_tx
    assert sample("axiswatch_consumer_db_dead_letters_total", reason="not_json") - before_not_json == 1
    assert sample("axiswatch_consumer_db_batch_seconds_count") >= 1


class ReadinessLog(Health):
    """A Health that keeps every readiness it was told, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.said: list[tuple[bool, str]] = []

    def ready(self, ready: bool, why: str = "") -> None:
        super().ready(ready, why)
        self.said.append((ready, why))


async def test_consumer_alerts_counts_events_by_severity_dead_letters_and_snapshots(tmp_path):
    from consumer_alerts.service import run
    from consumer_alerts.settings import AlertsSettings

    settings = AlertsSettings(
        _env_file=None,
        bus="memory",
        readings_topic="readings",
        alerts_topic="alerts",
        state_path=tmp_path / "state.json",
        z_window=200,
        z_min_samples=50,
        poll_timeout_ms=50,
        snapshot_interval_s=0.01,
        detectors=["zscore", "stuck"],
        max_robots=1,
    )
    bus, stop, health = InProcessBus(), asyncio.Event(), ReadinessLog()
    readings = cycle_readings(700, fault=lambda i, axis, amps: amps + 60.0 if axis == 1 and i >= 600 else amps)
    for reading in readings:
        await bus.publish("readings", reading.robot_id, reading.to_bytes())
    await bus.publish("readings", "other", readings[-1].model_copy(update={"robot_id": "other"}).to_bytes())
    await bus.publish("readings", "r1", b"not json")

    def counts():
        return (
            sample("axiswatch_consumer_alerts_messages_in_total"),
            sum(sample("axiswatch_consumer_alerts_alert_events_total", severity=s, state="open") for s in SEVERITIES),
            sample("axiswatch_consumer_alerts_dead_letters_total", reason="too_many_robots"),
            sample("axiswatch_consumer_alerts_snapshot_write_seconds_count"),
            sample("axiswatch_consumer_alerts_skipped_total", reason="not_json"),
        )

    before = counts()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, health=health))
    await asyncio.wait_for(_until(lambda: counts()[0] - before[0] == 702 and counts()[1] > before[1]), 20)
    # ready once the partitions handed over are restored, not merely subscribed (docs/consumer_alerts.md)
    assert health.said == [
        (False, "waiting for consumer group axiswatch-alerts to hand this instance its partitions"),
        (False, "restoring the state of partitions [0] handed over"),
        (True, "holding partitions [0] of readings, their state restored"),
    ]
    stop.set()
    await asyncio.wait_for(task, 10)
    after = counts()
    sent = [Alert.from_bytes(m.value) for log in bus._log("alerts") for m in log]
    opened = [a for a in sent if a.state == "open"]
    assert after[1] - before[1] == len(opened) >= 1
    assert after[2] - before[2] == 1 and DeadLetter.from_bytes(bus._log(settings.dead_letter_topic)[0][0].value)
    assert (
        after[3] > before[3] and sample("axiswatch_consumer_alerts_last_snapshot_timestamp_seconds") > time.time() - 60
    )


SEVERITIES = ("WARNING", "ALERT", "ERROR")


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.02)


def test_dashboard_serves_metrics_and_checks_on_its_own_port_and_counts_sessions():
    from bokeh.client import pull_session

    from dashboard.settings import DashboardSettings

    settings = DashboardSettings(
        _env_file=None, bus="memory", window_rows=30, dashboard_push_ms=20, dashboard_sign_in=False
    )
    with ServerThread(settings) as server:
        wait_for(lambda: get(server.url + "readyz")[0] == 200, what="/readyz to say ready")
        assert get(server.url + "livez")[0] == 200
        before = sample("axiswatch_dashboard_messages_in_total", topic=settings.readings_topic)
        server.publish_readings([dashboard_reading(i) for i in range(3)])
        wait_for(
            lambda: sample("axiswatch_dashboard_messages_in_total", topic=settings.readings_topic) - before == 3,
            what="the readings to be counted",
        )
        with pull_session(url=server.url):
            wait_for(lambda: sample("axiswatch_dashboard_sessions") == 1, what="the session to be counted")
            status, text = get(server.url + "metrics")
        assert status == 200 and "axiswatch_dashboard_sessions 1.0" in text
        assert "axiswatch_dashboard_ingest_seconds_count" in text
