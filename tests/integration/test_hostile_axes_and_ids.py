"""Readings an outside client may well send, written by Kafka's own console producer into the readings topic of
the real consumer_db, consumer_alerts and dashboard processes: every axis a robot may have (1 to MAX_AXIS) at
once, only an axis past the robot's list, no current at all, every current null, and robot ids at the edge of
ROBOT_ID_PATTERN (64 characters, a slash, '@+:' ...) or off it (an ANSI escape, SQL). Each message is stored
or a dead letter with its reason, and each robot's later fault still raises its event."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from common.defaults import MAX_AXIS, ROBOT_ID_PATTERN
from common.settings import CommonSettings
from common.store.tables import readings_fact, rejected_readings
from common.wire.schemas import Alert
from tests.fault_support import TopicReader, apoll
from tests.integration.test_hostile_absurd_values import at, life
from tests.integration.test_hostile_outside_client import (
    _health,
    console_fed_services,
    produce_all_accounted,
    reading,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def odd_lines(tag: str) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, str]]:
    """(key, value) lines; the robots that live on with a fault; the refused ids."""
    r = {n: f"{tag}-{n}" for n in ("wide", "past", "none", "nulls")}
    r["slash"] = f"line1/{tag}@cell+2:r7"
    r["long"] = f"{tag}-" + "x" * (64 - len(tag) - 1)
    refused = {"ansi": f"\x1b[31m{tag}", "sql": f"{tag}'; drop table readings;--"}
    lines = [
        (r["wide"], reading(r["wide"], at(0), {str(axis): 1.0 + axis / 100 for axis in range(1, MAX_AXIS + 1)})),
        (r["past"], reading(r["past"], at(0), {"40": 5.0})),
        (r["none"], reading(r["none"], at(0), {})),
        (r["nulls"], reading(r["nulls"], at(0), {str(axis): None for axis in range(1, 15)})),
        (r["slash"], reading(r["slash"], at(0), {"1": 5.0})),
        (r["long"], reading(r["long"], at(0), {"1": 5.0})),
        *((key, reading(robot, at(0), {"1": 5.0})) for key, robot in refused.items()),
    ]
    for robot in r.values():
        lines += life(robot, 1, 60, fault_from=54)
    return lines, r, refused


async def test_every_axis_no_axis_and_edge_robot_ids_are_stored_or_refused_and_judged(
    pg_url, kafka_env, unique, tmp_path
):
    tag = f"o{unique[:6]}"
    with console_fed_services(kafka_env, pg_url, unique, tmp_path) as (port, engine, services):
        lines, robots, refused = odd_lines(tag)
        assert len(robots["long"]) == 64
        produce_all_accounted(kafka_env, lines, engine, services, tmp_path)
        with engine.connect() as conn:
            reasons: dict[str, list[str]] = {}
            for robot, reason in conn.execute(select(rejected_readings.c.robot_id, rejected_readings.c.reason)):
                reasons.setdefault(robot, []).append(reason)
            stored = dict(
                conn.execute(select(readings_fact.c.robot_id, text("count(distinct ts)")).group_by("robot_id")).all()
            )
        assert not any("refused by the database" in r for rs in reasons.values() for r in rs), reasons
        # The first reading: axes 15-62 and 40 are off the robot's list (AXES, seeded into axes_dim), the rest stored
        assert {name: stored.get(robot) for name, robot in robots.items()} == {
            "wide": 60,
            "past": 60,
            "none": 61,
            "nulls": 61,
            "slash": 61,
            "long": 61,
        }
        assert reasons[robots["wide"]] == [
            f"axis {', '.join(map(str, range(15, MAX_AXIS + 1)))} not in axes_dim for robot {robots['wide']} "
            f"(schema lock: {', '.join(map(str, range(1, 15)))})"
        ]
        assert len(reasons[robots["past"]]) == 1 and "axis 40 not in axes_dim" in reasons[robots["past"]][0]
        for key, robot in refused.items():
            assert robot not in stored and reasons[key] == [
                f"Reading: robot id {robot!r} does not match ROBOT_ID_PATTERN {ROBOT_ID_PATTERN}"
            ]
        async with TopicReader(CommonSettings(_env_file=None, **kafka_env), kafka_env["alerts_topic"]) as reader:

            async def faults_judged():
                events = [Alert.from_bytes(v) for v in await reader.read()]
                return set(robots.values()) <= {e.robot_id for e in events if e.axis == 1}

            await apoll(faults_judged, "an alert event for each robot's fault", timeout=180, services=services)
        assert _health(port)
