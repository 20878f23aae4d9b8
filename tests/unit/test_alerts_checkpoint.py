"""Checkpoints of the detectors' state on the state topic: taken robot by robot, committed after, restored
per partition, and exact (a robot moved mid-feed raises what an uninterrupted run raises)."""

import asyncio
import json
import logging
import random
import struct
from datetime import timedelta

from common.metrics import Health
from common.wire.bus import InProcessBus
from common.wire.schemas import Reading
from consumer_alerts import checkpoint, engine_state
from consumer_alerts.checkpoint import (
    Checkpoints,
    PartitionOwnership,
    Snapshot,
    read_record,
    record,
    restore_partitions,
)
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.engine_state import load_snapshot, snapshot
from consumer_alerts.training import TrainingOptions, train
from tests.alerts_fixtures import cycle_readings
from tests.fault_feeds import faulty_feed

CONFIG = EngineConfig(
    detectors=("zscore", "residual", "stuck"),
    z_window=200,
    z_min_samples=50,
    z_test_samples=3,
    holdoff_s=60.0,
    holdoff_readings=0,
    stuck_readings=10,
)
ROBOTS = ("r1", "r2", "r3")
STATE = "state"


def fed_engine(n: int = 400, config: EngineConfig = CONFIG) -> DetectorEngine:
    engine = DetectorEngine(config)
    for robot in ROBOTS:
        for r in cycle_readings(n, robot_id=robot, seed=len(robot) + ord(robot[-1])):
            engine.process(r)
    return engine


def test_windows_survive_the_round_trip_bit_for_bit():
    engine = fed_engine()
    awkward = [0.1 + 0.2, 1e-310, -0.0, 1 / 3, float("inf")]
    engine.robots["r1"].axes[1].detectors[0].baseline.values.extend(awkward)
    restored = DetectorEngine(CONFIG)
    load_snapshot(restored, json.loads(json.dumps(snapshot(engine))))
    for robot in ROBOTS:
        for axis, state in engine.robots[robot].axes.items():
            for before, after in zip(state.detectors, restored.robots[robot].axes[axis].detectors, strict=True):
                assert repr(after.state()) == repr(before.state())
    assert list(restored.robots["r1"].axes[1].detectors[0].baseline.values)[-5:] == awkward


async def put(bus: InProcessBus, robot_id: str, state: dict, partition: int = 0, offset: int = 1) -> None:
    await bus.publish(STATE, robot_id, record(engine_state.encode(state), partition, offset), partition=partition)


async def test_windows_survive_the_state_topic_bit_for_bit():
    engine, bus = fed_engine(), InProcessBus()
    awkward = [0.1 + 0.2, 1e-310, -0.0, 1 / 3, float("inf"), float("nan"), 2.0**-1074]
    engine.robots["r1"].axes[1].detectors[0].baseline.values.extend(awkward)
    checkpoints = checkpoints_on(bus, engine)
    checkpoints.changed, checkpoints.partition_of = set(ROBOTS), dict.fromkeys(ROBOTS, 0)
    await checkpoints.flush()
    restored = DetectorEngine(CONFIG)
    assert await restore_partitions(checkpoints_on(bus, restored), {0}) == len(ROBOTS)
    for robot in ROBOTS:
        for axis, state in engine.robots[robot].axes.items():
            for before, after in zip(state.detectors, restored.robots[robot].axes[axis].detectors, strict=True):
                assert repr(after.state()) == repr(before.state())
    restored_tail = list(restored.robots["r1"].axes[1].detectors[0].baseline.values)[-len(awkward) :]
    assert [struct.pack("<d", v) for v in restored_tail] == [struct.pack("<d", v) for v in awkward]


def checkpoints_on(bus: InProcessBus, engine: DetectorEngine, interval_s: float = 0) -> Checkpoints:
    return Checkpoints(engine, bus, STATE, "readings", interval_s)


async def test_a_robot_state_of_another_version_or_form_is_not_used_and_the_robot_warms_up(caplog):
    engine, bus = fed_engine(), InProcessBus()
    old = {**engine_state.robot_snapshot(engine.robots["r1"]), "version": 4}
    await put(bus, "r1", old)
    whole = engine_state.encode(engine_state.robot_snapshot(engine.robots["r2"]))
    await bus.publish(STATE, "r2", record(whole[: len(whole) // 2], 0, 1), partition=0)  # cut short
    await put(bus, "r3", engine_state.robot_snapshot(engine.robots["r3"]))
    await bus.publish(STATE, "r4", b"no head", partition=0)
    as_json = json.dumps(engine_state.robot_snapshot(engine.robots["r1"])).encode()  # not MessagePack
    await bus.publish(STATE, "r5", record(as_json, 0, 1), partition=0)
    await bus.publish(STATE, "r6", record(engine_state.encode([1.0, 2.0]), 0, 1), partition=0)  # not a dict
    restored = DetectorEngine(CONFIG)
    with caplog.at_level(logging.WARNING):
        assert await restore_partitions(checkpoints_on(bus, restored), {0}) == 1
    assert caplog.text.count("not used") == 5 and list(restored.robots) == ["r3"]


async def test_only_the_robots_of_the_partitions_handed_over_are_restored():
    engine, bus = fed_engine(), InProcessBus(partitions=3)
    for partition, robot in enumerate(ROBOTS):
        await put(bus, robot, engine_state.robot_snapshot(engine.robots[robot]), partition=partition)
    restored = DetectorEngine(CONFIG)
    checkpoints = checkpoints_on(bus, restored)
    assert await restore_partitions(checkpoints, {0, 2}) == 2
    assert sorted(restored.robots) == ["r1", "r3"] and checkpoints.partition_of == {"r1": 0, "r3": 2}
    assert restored.robots["r3"].last_ts == engine.robots["r3"].last_ts


def test_a_checkpoint_taken_robot_by_robot_is_the_state_at_its_start():
    engine = fed_engine()
    at_start = {rid: engine_state.robot_snapshot(r) for rid, r in engine.robots.items()}
    taking = Snapshot(engine, ROBOTS, [])
    assert taking.advance(0) is False  # nothing serialised yet
    later = cycle_readings(600, robot_id="r2", seed=9)[400:]  # newer readings for one robot
    for reading in later:
        taking.before_reading(reading.robot_id)
        engine.process(reading)
    assert taking.advance(float("inf")) is True
    assert {rid: engine_state.decode(part) for rid, part in taking.parts.items()} == {
        rid: engine_state.decode(engine_state.encode(state)) for rid, state in at_start.items()
    }
    assert engine_state.robot_snapshot(engine.robots["r2"]) != at_start["r2"]  # the readings did change r2


async def test_the_commit_covers_the_readings_before_the_checkpoint_and_comes_after_their_state():
    bus = InProcessBus()
    readings = [r for robot in ROBOTS for r in cycle_readings(300, robot_id=robot)]
    for r in readings:
        await bus.publish("readings", r.robot_id, r.to_bytes())
    sub = await bus.subscribe(["readings"], group_id="g")
    engine = DetectorEngine(CONFIG)
    checkpoints = checkpoints_on(bus, engine)
    checkpoints.sub = sub

    def judge(messages):
        for m in messages:
            checkpoints.before_reading(reading_of(m).robot_id, m.partition)
            engine.process(reading_of(m))

    first = await sub.getmany(max_records=500)  # r1's 300 readings, r2's first 200
    judge(first)
    await checkpoints.after_batch(first)
    assert checkpoints.busy and bus.end_offsets(STATE) == [0]
    second = await sub.getmany(max_records=400)
    judge(second)
    await checkpoints.after_batch(second)
    while checkpoints.busy:
        await checkpoints.after_batch([])
    await checkpoints.saving
    assert committed(bus) == len(first) and bus.end_offsets(STATE) == [2], "r1 and r2, as of the first batch"
    restored = DetectorEngine(CONFIG)
    assert await restore_partitions(checkpoints_on(bus, restored), {0}) == 2
    assert restored.robots["r2"].last_ts == max(r.ts for r in readings[:500] if r.robot_id == "r2").timestamp()
    partition, offset, _ = read_record(bus._log(STATE)[0][-1].value)
    assert (partition, offset) == (0, len(first))
    await checkpoints.flush()
    assert committed(bus) == len(first) + len(second)
    assert bus.end_offsets(STATE) == [4], "then r2 and r3, the robots the second batch changed (r1 did not change)"


async def test_a_due_checkpoint_starts_right_after_a_batch_not_late_in_a_quiet_gap(monkeypatch):
    """Started on an empty poll late in a paced feed's gap, the next burst would find its robots pending and
    serialise them on the readings' path; a feed that has gone quiet is checkpointed one interval later."""
    clock = [1000.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: clock[0])
    bus = InProcessBus()
    for r in cycle_readings(20, robot_id="r1"):
        await bus.publish("readings", r.robot_id, r.to_bytes())
    sub = await bus.subscribe(["readings"], group_id="g")
    engine = DetectorEngine(CONFIG)
    checkpoints = checkpoints_on(bus, engine, interval_s=30)
    checkpoints.sub = sub
    batch = await sub.getmany(max_records=10)
    for m in batch:
        checkpoints.before_reading("r1", m.partition)
        engine.process(reading_of(m))
    await checkpoints.after_batch(batch)
    clock[0] += checkpoints.interval_s * 1.5  # due, and the loop polls in the gap before the next burst
    await checkpoints.after_batch([])
    assert not checkpoints.busy, "not started on an empty poll"
    later = await sub.getmany(max_records=10)
    await checkpoints.after_batch(later)
    assert checkpoints.busy, "started right after the next batch"

    quiet = checkpoints_on(bus, DetectorEngine(CONFIG), interval_s=30)
    await quiet.after_batch(batch)
    clock[0] += quiet.interval_s * 1.5
    await quiet.after_batch([])
    assert not quiet.busy
    clock[0] += quiet.interval_s * 0.5  # no reading for two intervals: the feed has gone quiet
    await quiet.after_batch([])
    assert quiet.busy


def reading_of(message) -> Reading:
    return Reading.from_bytes(message.value)


def committed(bus: InProcessBus) -> int:
    return bus._committed[("g", "readings", 0)]


EXACT = EngineConfig(
    detectors=("zscore", "stuck", "multivariate"),
    z_window=200,
    z_min_samples=50,
    holdoff_s=0.0,
    holdoff_readings=20,  # the hold-off in units of the robot's sampling interval: it must come back exact
    stuck_readings=30,
)


async def test_a_robot_moved_at_any_reading_raises_what_an_uninterrupted_run_raises():
    readings = faulty_feed()
    one = DetectorEngine(EXACT)
    expected = [a for r in readings for a in one.process(r)]
    assert {a.detector for a in expected} >= {"zscore", "stuck"}
    for cut in range(550, 1000, 37):  # around and inside both faults
        assert await moved_at(cut, readings, lambda: DetectorEngine(EXACT)) == expected, f"moved at reading {cut}"


async def moved_at(cut: int, readings: list[Reading], new_engine) -> list:
    """The events of a robot judged by one engine up to reading ``cut``, then by another restored from the
    state topic: what a move to another instance gives."""
    bus, here = InProcessBus(), new_engine()
    checkpoints = checkpoints_on(bus, here)
    seen = []
    for r in readings[:cut]:
        checkpoints.before_reading(r.robot_id, 0)
        seen += here.process(r)
    await checkpoints.flush()
    there = new_engine()
    assert await restore_partitions(checkpoints_on(bus, there), {0}) == 1
    return seen + [a for r in readings[cut:] for a in there.process(r)]


async def test_the_default_detectors_moved_at_any_reading_of_an_irregular_feed_raise_what_they_would_have():
    # The default set with a model (level, load, residual, stuck, multivariate), on a feed whose gaps vary
    # (the sampling interval's median moves) and a fault of +50 % on axis 2: what a restored robot carries
    # must include the hold timers and the windows' running sums as they were, not taken afresh.
    clean = cycle_readings(3000, seed=5)
    model = train(clean, TrainingOptions(), robot_id="r1")
    fault = lambda i, a, v: v * 1.5 if a == 2 and 300 <= i < 900 else v  # noqa: E731
    feed = clean[2000:] + cycle_readings(1500, seed=6, start=clean[-1].ts + timedelta(seconds=2), fault=fault)
    rng, ts, readings = random.Random(3), feed[0].ts, []
    for r in feed:
        ts += timedelta(seconds=rng.choice([1.0, 2.0, 2.0, 3.0, 6.0]))
        readings.append(r.model_copy(update={"ts": ts}))
    config = EngineConfig()
    one = DetectorEngine(config, model)
    expected = [a for r in readings for a in one.process(r)]
    assert {"residual", "load_high"} <= {a.detector for a in expected}
    for cut in range(1000, 2500, 37):  # before, inside and after the fault
        moved = await moved_at(cut, readings, lambda: DetectorEngine(config, model))
        assert moved == expected, f"moved at reading {cut}"


async def test_readiness_is_the_partitions_held_with_their_state_restored_or_none_held(caplog):
    # /readyz of an instance: not ready while the state of partitions handed over is read, then ready and naming
    # them; handed none (a group of more instances than partitions), ready all the same, and saying so.
    bus = InProcessBus(partitions=2)
    await put(bus, "r1", engine_state.robot_snapshot(fed_engine().robots["r1"]), partition=1)
    health, during = Health(), []
    engine = DetectorEngine(CONFIG)
    ownership = PartitionOwnership(
        checkpoints_on(bus, engine), asyncio.Lock(), lambda new: during.append(health.is_ready()), health
    )
    with caplog.at_level(logging.INFO):
        await ownership.assigned([("readings", 0), ("readings", 1), ("maintenance", 1)])
    assert "holding partitions [0, 1] of readings, their state restored" in caplog.messages
    assert during == [(False, "restoring the state of partitions [0, 1] handed over")]
    assert health.is_ready() == (True, "holding partitions [0, 1] of readings, their state restored")
    assert list(engine.robots) == ["r1"]
    await ownership.revoked([("readings", 0), ("readings", 1)])
    await ownership.assigned([])
    assert health.is_ready() == (
        True,
        "holding no partition of readings: the group handed this instance none (more instances than partitions?)",
    )
    assert during == [(False, "restoring the state of partitions [0, 1] handed over")] and not engine.robots
