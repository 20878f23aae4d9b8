"""A robot's clock that jumps ahead and is corrected, and readings keyed by another id, written into the readings
topic by Kafka's own console producer, through the real consumer_db, consumer_alerts and dashboard processes.

The policy lets a reading through up to ``READING_MAX_FUTURE_S`` (a day) ahead. After one (or ten) from ahead,
the robot's later, correct readings were "older than its newest": consumer_alerts judged none (a fault went
unseen), its health pipeline cut no cycle, and the dashboard's latest values stayed the ones from ahead, until
the clock caught up a day later. Each now follows the clock back once it is more than a stoppage behind
(``common.wire.clock``), with a warning. And a reading keyed by another id (Kafka partitions by key: two
instances of consumer_alerts could each judge part of a robot) is a dead letter with its reason.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from common.settings import CommonSettings
from common.store.tables import readings_fact, rejected_readings
from common.wire.schemas import Alert, HealthEvent
from tests.fault_support import TopicReader, apoll
from tests.integration.test_hostile_outside_client import (
    console_fed_services,
    produce_all_accounted,
    reading,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=1)
AHEAD = NOW + timedelta(hours=23)  # inside READING_MAX_FUTURE_S (a day)
IDLE_FROM = 12  # of every 15 readings, the last 3 are idle: a work cycle each, for the health pipeline


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def life(robot: str, first: int, count: int, *, start: datetime = BASE, fault_from: int = 10**9) -> list:
    """A robot's readings every 2 s from ``start``: work cycles (axis 1 at 10-10.6 A, 40 A from ``fault_from`` on)
    with 3 idle readings between them, keyed by its id."""
    lines = []
    for i in range(first, first + count):
        idle = i % 15 >= IDLE_FROM
        amps = 0.0 if idle else 40.0 if i >= fault_from else round(10 + (i % 7) * 0.1, 1)
        currents = {"1": amps, "2": 0.0 if idle else round(5 + (i % 5) * 0.1, 1)}
        lines.append((robot, reading(robot, iso(start + timedelta(seconds=2 * i)), currents)))
    return lines


def leap_lines(tag: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    robots = {n: f"{tag}-{n}" for n in ("lone", "ten", "plain", "key")}
    lines = []
    for name, leap in (("lone", 1), ("ten", 10), ("plain", 0)):
        robot = robots[name]
        lines += life(robot, 0, 30) + life(robot, 0, leap, start=AHEAD) + life(robot, 30, 120, fault_from=130)
    # a robot whose messages are keyed by another id: each a dead letter, whatever else it holds
    lines += [(f"{tag}-other", value) for _, value in life(robots["key"], 0, 10)]
    return lines, robots


async def test_a_clock_that_leaps_ahead_and_comes_back_is_followed_by_every_service(
    pg_url, kafka_env, unique, tmp_path
):
    tag = f"c{unique[:6]}"
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        lines, robots = leap_lines(tag)
        produce_all_accounted(kafka_env, lines, engine, services, tmp_path)
        with engine.connect() as conn:
            stored = dict(
                conn.execute(select(readings_fact.c.robot_id, text("count(distinct ts)")).group_by("robot_id")).all()
            )
            reasons = conn.execute(
                select(rejected_readings.c.reason).where(rejected_readings.c.robot_id == f"{tag}-other")  # its key
            ).scalars()
            reasons = list(reasons)
        # consumer_db stores what passes the policy: the readings from ahead too
        assert [stored.get(robots[n]) for n in ("lone", "ten", "plain", "key")] == [151, 160, 150, None]
        assert len(reasons) == 10
        assert all(f"message key '{tag}-other' is not its robot id '{robots['key']}'" in r for r in reasons)
        settings_for_readers = CommonSettings(_env_file=None, **kafka_env)
        async with TopicReader(settings_for_readers, kafka_env["alerts_topic"]) as alerts:

            async def faults_judged():
                events = [Alert.from_bytes(v) for v in await alerts.read()]
                wanted = {robots[n] for n in ("lone", "ten", "plain")}
                return wanted <= {e.robot_id for e in events if e.axis == 1 and e.opened_at >= BASE}

            await apoll(faults_judged, "an alert event for each robot's fault", timeout=180, services=services)
        corrected_from = BASE + timedelta(seconds=2 * 30)
        async with TopicReader(settings_for_readers, kafka_env["health_topic"]) as health:

            async def cycles_after_the_leap():
                events = [HealthEvent.from_bytes(v) for v in await health.read()]
                after = {
                    e.robot_id
                    for e in events
                    if e.kind == "cycle" and corrected_from <= e.start < NOW and not e.cold and not e.cut
                }
                return {robots[n] for n in ("lone", "ten", "plain")} <= after

            await apoll(
                cycles_after_the_leap, "health cycles after the clock came back", timeout=120, services=services
            )
        alerts_log = (tmp_path / "a.log").read_text()
        for name in ("lone", "ten"):
            assert f"robot '{robots[name]}': its readings from" in alerts_log
        assert f"robot '{robots['plain']}': its readings from" not in alerts_log
        assert f"message key '{tag}-other' is not its robot id" in alerts_log  # skipped, with the reason
        # the dashboard's newest reading is of now, not of the clocks that ran ahead
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            newest = datetime.fromisoformat(json.loads(response.read())["newest_reading"])
        assert newest < NOW + timedelta(minutes=5)
        dashboard_log = (tmp_path / "dashboard.log").read_text()
        assert all(f"robot '{robots[n]}': its readings up to" in dashboard_log for n in ("lone", "ten"))
