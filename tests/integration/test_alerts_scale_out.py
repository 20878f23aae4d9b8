"""consumer_alerts in a group of real processes on a 6-partition readings topic: three instances share the
robots; one is killed with SIGKILL while every robot's spike event is open (in the middle of the fault); a
fourth joins later, and a fault that starts right after it was handed its partitions still raises its event
there (a robot that came cold would need 50 active readings before its z-score could fire). The alerts
topic must end as one uninterrupted instance leaves it: the same events, each change published once, each
closed once, when its fault is over.

The readings carry faults from producer/faults.py (tests/fault_feeds.py, one feed per robot); the expected
events come from the service's own engine run over them in one go, in the test process.
"""

import re
import signal
from datetime import timedelta

import pytest

from common.wire.kafka import KafkaBus
from common.wire.schemas import Alert, AlertState, Reading
from consumer_alerts.settings import AlertsSettings
from producer.faults import FaultKind, FaultSpec, inject_faults
from tests.alerts_fixtures import T0, cycle_readings
from tests.fault_feeds import DETECTION, SPIKE, STUCK, by_event, check_like_uninterrupted, uninterrupted
from tests.fault_support import Service, TopicReader, apoll, committed, service_env

pytestmark = pytest.mark.integration

ROBOTS = [f"robot-{i:02d}" for i in range(12)]  # enough keys to land on most of the 6 partitions
READINGS = 1150
# A third fault, on axis 1 again, after the fourth instance has joined: the readings from reading 1040 on are
# published only once it holds its partitions.
LATE_SPIKE = FaultSpec(FaultKind.SPIKE, axis=1, start=T0 + timedelta(seconds=2 * 1042), duration_s=30.0)
FIRST, SECOND, LATE = 606, 1040, READINGS  # readings published before each step


def feed() -> list[Reading]:
    """Every robot's readings, interleaved in time as a fleet sends them."""
    per_robot = [
        list(inject_faults(cycle_readings(READINGS, robot_id=robot, seed=n), [SPIKE, STUCK, LATE_SPIKE]))
        for n, robot in enumerate(ROBOTS)
    ]
    return [r for tick in zip(*per_robot, strict=True) for r in tick]


def upto(readings: list[Reading], start: int, end: int) -> list[Reading]:
    return readings[start * len(ROBOTS) : end * len(ROBOTS)]


def handed_over(service: Service) -> int:
    """How many times the group handed the instance partitions (its log)."""
    return service.log.read_text(errors="replace").count(" taken over: ")


def taken_over(service: Service) -> int:
    """Robots the instance restored warm from the state topic so far (its log)."""
    return sum(int(n) for n in re.findall(r"taken over: (\d+) robot", service.log.read_text(errors="replace")))


async def test_three_instances_one_killed_one_added_end_like_one_uninterrupted(kafka_env, unique, tmp_path):
    kafka_env = {**kafka_env, "topic_partitions": 6}
    readings = feed()
    expected = uninterrupted(readings)
    kinds = sorted({e.split(":")[2] for e in expected})
    late = [e for e in expected if ":zscore:" in e and expected[e][0].opened_at >= LATE_SPIKE.start]
    assert kinds == ["stuck", "zscore"] and len(late) == len(ROBOTS), "every robot raises the three faults"
    group = f"alerts-{unique}"
    settings = AlertsSettings(_env_file=None, **kafka_env, alerts_group_id=group)
    env = service_env(
        kafka_env,
        **DETECTION,
        alerts_group_id=group,
        snapshot_interval_s=1,
        poll_timeout_ms=100,
        max_batch=50,
        health=False,
        state_path="",
        alerts_metrics_port="",
        log_level="INFO",
    )
    bus = KafkaBus(settings)
    await bus.start()
    await bus.ensure_topics([settings.readings_topic, settings.maintenance_topic, settings.alerts_topic])

    async def publish(part: list[Reading]) -> None:
        for r in part:
            await bus.send(settings.readings_topic, r.robot_id, r.to_bytes())
        await bus.flush()

    async def events(reader: TopicReader) -> dict[str, list[Alert]]:
        return by_event(Alert.from_bytes(v) for v in await reader.read())

    def every(reader: TopicReader, ids: list[str], state: AlertState):
        async def check():
            seen = await events(reader)
            return all(any(a.state is state for a in seen.get(e, [])) for e in ids)

        return check

    spikes = [e for e in expected if ":zscore:" in e and e not in late]
    stucks = [e for e in expected if ":stuck:" in e]
    instances: dict[str, Service] = {}
    try:
        async with TopicReader(settings, settings.alerts_topic) as reader:
            # 1. Three instances, started one after the other, each holding partitions; every robot's spike opens
            #    (the fault lasts to reading 615).
            for name in "abc":
                instances[name] = Service("consumer_alerts", env, tmp_path / f"{name}.log")
                running = tuple(instances.values())

                async def joined(service=instances[name]) -> bool:
                    return handed_over(service) > 0

                await apoll(joined, f"{name} holding partitions", services=running, timeout=120)
            await publish(upto(readings, 0, FIRST))
            await apoll(every(reader, spikes, AlertState.OPEN), "every spike's OPEN", services=running, timeout=120)

            # 2. SIGKILL one instance mid-fault: its robots move, with their last checkpoint, to the other two,
            #    which replay what it judged since; the spike ends and closes, the stuck sensor opens and closes.
            before_kill = taken_over(instances["a"]) + taken_over(instances["c"])
            instances["b"].stop(signal.SIGKILL)
            running = (instances["a"], instances["c"])
            await publish(upto(readings, FIRST, SECOND))
            await apoll(every(reader, stucks, AlertState.CLOSED), "every stuck CLOSE", services=running, timeout=180)
            assert taken_over(instances["a"]) + taken_over(instances["c"]) > before_kill, "b's robots came over warm"

            async def all_committed() -> bool:
                return await committed(settings, group) == SECOND * len(ROBOTS)

            await apoll(all_committed, "every reading so far judged and committed", services=running, timeout=60)

            # 3. A fourth instance joins; once it holds partitions (restored from the state topic), a new fault
            #    starts at its robots' second reading.
            instances["d"] = Service("consumer_alerts", env, tmp_path / "d.log")
            running = (instances["a"], instances["c"], instances["d"])

            async def d_restored() -> bool:
                return taken_over(instances["d"]) > 0

            await apoll(d_restored, "d restoring robots handed over", services=running, timeout=120)
            await publish(upto(readings, SECOND, LATE))
            await apoll(
                every(reader, late, AlertState.CLOSED), "every late spike's CLOSE", services=running, timeout=180
            )
            for name in "acd":
                assert instances[name].stop(signal.SIGTERM) == 0, instances[name].tail()
            seen = await events(reader)
    finally:
        for service in instances.values():
            if service.process.poll() is None:
                service.stop(signal.SIGKILL)
        await bus.stop()
    check_like_uninterrupted(seen, expected)
    judged_by_d = {e for e in late if e.split(":")[0] in robots_of(instances["d"])}
    assert judged_by_d, "d judged some robots' late fault"


def robots_of(service: Service) -> set[str]:
    """Robots whose events the instance sent (its log)."""
    return set(re.findall(r"event '(robot-\d+):", service.log.read_text(errors="replace")))
