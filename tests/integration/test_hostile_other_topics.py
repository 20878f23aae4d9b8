"""Absurd but valid messages an outside client writes into the topics besides the readings: alert events, dead
letters and health events whose time is valid ISO-8601 with an offset (+23:59, -23:59) at the calendar's edge, so
that their instant in UTC lies before its first day or past its last, and alert events of an axis no robot has
(10**400, 63). Written by Kafka's own console producer into the topics of consumer_db, consumer_alerts and the
dashboard as processes; each is a dead letter with the reason, the readings written after them are stored, and
the dashboard's page, opened by Bokeh's own client, shows the alerts that make sense."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from common.store.tables import alerts, readings_fact, rejected_readings
from tests.dashboard_support import open_page, pump_until
from tests.fault_support import poll
from tests.integration.test_hostile_outside_client import at, console_fed_services, console_producer, normal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BEFORE_DAY_ONE = "0001-01-01T00:00:00+23:59"  # 23:59 before midnight of 1 January of year 1, in UTC
AFTER_LAST_DAY = "9999-12-31T23:59:59-23:59"  # past 31 December 9999, in UTC
OFF_CALENDAR = "is out of the representable range in UTC"


def alert(event_id: str, robot: str, **fields) -> str:
    event = {
        "schema_version": 1,
        "event_id": event_id,
        "robot_id": robot,
        "axis": 1,
        "detector": "zscore",
        "severity": "ALERT",
        "state": "open",
        "opened_at": at(0),
    }
    return json.dumps(event | fields)


def test_times_past_the_calendar_in_utc_are_dead_letters_and_the_sink_goes_on(pg_url, kafka_env, unique, tmp_path):
    """Before: pydantic took such a time (it is a valid datetime with its offset), and the database driver could
    not turn it into UTC (OverflowError, wrapped by SQLAlchemy): consumer_db took it for a database refusing
    the work and retried the batch for ever, storing nothing more of any topic. Now each is refused when read,
    a dead letter naming the field, the first day of the calendar itself (UTC) is stored, and so are the
    readings written after."""
    robot = f"w{unique[:6]}"
    bad_alerts = [
        alert(f"{robot}-opened", robot, opened_at=BEFORE_DAY_ONE),
        alert(f"{robot}-closed", robot, state="closed", closed_at=AFTER_LAST_DAY),
        alert(f"{robot}-acked", robot, acknowledged_by="mallory", acknowledged_at=AFTER_LAST_DAY),
    ]
    no_such_axis = [alert(f"{robot}-huge", robot, axis=10**400), alert(f"{robot}-63", robot, axis=63)]
    day_one = alert(f"{robot}-day-one", robot, opened_at="0001-01-01T00:00:00Z")
    bad_letter = json.dumps(
        {"schema_version": 1, "source": "x", "line": 1, "raw": "x", "reason": "y", "received_at": BEFORE_DAY_ONE}
    )
    bad_cycle = json.dumps(
        {"schema_version": 1, "robot_id": robot, "kind": "cycle", "start": AFTER_LAST_DAY, "end": AFTER_LAST_DAY}
    )
    sign_in_off = {"dashboard_sign_in": "false"}  # the page opened by Bokeh's client, not through the login page
    with console_fed_services(kafka_env, pg_url, unique, tmp_path, **sign_in_off) as (port, engine, services):
        bootstrap = kafka_env["kafka_bootstrap_servers"]
        written = [(robot, a) for a in (*bad_alerts, *no_such_axis, day_one)]
        console_producer(bootstrap, kafka_env["alerts_topic"], written, tmp_path / "a.cp")
        console_producer(bootstrap, kafka_env["dead_letter_topic"], [(robot, bad_letter)], tmp_path / "d.cp")
        console_producer(bootstrap, kafka_env["health_topic"], [(robot, bad_cycle)], tmp_path / "h.cp")
        lines = normal(robot, 0, 30)
        console_producer(bootstrap, kafka_env["readings_topic"], lines, tmp_path / "r.cp")

        def stored() -> int:
            with engine.connect() as conn:
                return len(set(conn.execute(select(readings_fact.c.ts).where(readings_fact.c.robot_id == robot))))

        poll(lambda: stored() == len(lines), "the readings written after the odd times stored", services=services)
        # The dashboard: its page is built (Bokeh's own client opens it as a tab does) with the event of day one,
        # and it skipped the others, each with the reason logged
        poll(lambda: "dashboard feed: skipped" in services[2].tail(100_000), "the dashboard to skip", services=services)
        page = open_page(f"http://127.0.0.1:{port}/", timeout=60)
        try:
            table = page.document.get_model_by_name("alert_table").source
            pump_until(page, lambda: list(table.data["event_id"]) == [f"{robot}-day-one"], 60, "the event of day one")
        finally:
            page.close()
        dashboard_log = services[2].tail(100_000)
        assert dashboard_log.count("dashboard feed: skipped") == len(bad_alerts + no_such_axis), dashboard_log
        assert dashboard_log.count(OFF_CALENDAR) == len(bad_alerts)
        with engine.connect() as conn:
            refused = {
                (source, raw): reason
                for source, raw, reason in conn.execute(
                    select(rejected_readings.c.source, rejected_readings.c.raw, rejected_readings.c.reason)
                )
            }
            events = set(conn.execute(select(alerts.c.event_id).where(alerts.c.robot_id == robot)).scalars())
        expected = {
            **{(kafka_env["alerts_topic"], a): "Alert: " for a in bad_alerts},
            (kafka_env["dead_letter_topic"], bad_letter): "DeadLetter: ",
            (kafka_env["health_topic"], bad_cycle): "HealthEvent: ",
        }
        assert set(expected) <= set(refused), refused
        for message, kind in expected.items():
            assert refused[message].startswith(kind) and OFF_CALENDAR in refused[message], refused[message]
        for message in no_such_axis:
            assert "Alert: axis: Input should be" in refused[(kafka_env["alerts_topic"], message)]
        assert events == {f"{robot}-day-one"}
