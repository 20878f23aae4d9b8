"""Snapshots (format v3, windows as float64) taken robot by robot, and the commit that follows them."""

import json
import logging

from common.wire.bus import InProcessBus
from common.wire.schemas import Reading
from consumer_alerts.checkpoint import Checkpoints, Snapshot
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.engine_state import load_snapshot, snapshot
from consumer_alerts.recovery import read_snapshot
from tests.alerts_fixtures import cycle_readings

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


def fed_engine(n: int = 400) -> DetectorEngine:
    engine = DetectorEngine(CONFIG)
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


def test_a_version_2_snapshot_is_not_used_and_the_detectors_warm_up_again(tmp_path, caplog):
    data = snapshot(fed_engine())
    data["version"] = 2
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data))
    engine = DetectorEngine(CONFIG)
    with caplog.at_level(logging.WARNING):
        assert read_snapshot(engine, path) is False
    assert "not used" in caplog.text and engine.robots == {}


def test_a_window_that_is_not_float64_is_refused_cleanly(tmp_path):
    data = snapshot(fed_engine())
    data["robots"]["r1"]["axes"]["1"]["zscore"]["baseline"] = {"f64": "AAAA"}  # 3 bytes, not a multiple of 8
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data))
    assert read_snapshot(DetectorEngine(CONFIG), path) is False


def test_a_snapshot_taken_robot_by_robot_is_the_state_at_its_start():
    engine = fed_engine()
    at_start = json.loads(json.dumps(snapshot(engine)))
    taking = Snapshot(engine, [])
    assert taking.advance(0) is False  # nothing serialised yet
    later = cycle_readings(600, robot_id="r2", seed=9)[400:]  # newer readings for one robot
    for reading in later:
        taking.before_reading(reading.robot_id)
        engine.process(reading)
    assert taking.advance(float("inf")) is True
    assert json.loads(taking.text()) == at_start
    assert json.loads(json.dumps(snapshot(engine))) != at_start  # the readings did change r2


async def test_the_commit_covers_the_readings_before_the_snapshot_and_comes_after_the_file(tmp_path):
    bus = InProcessBus()
    readings = [r for robot in ROBOTS for r in cycle_readings(300, robot_id=robot)]
    for r in readings:
        await bus.publish("readings", r.robot_id, r.to_bytes())
    sub = await bus.subscribe(["readings"], group_id="g")
    engine, path = DetectorEngine(CONFIG), tmp_path / "state.json"
    checkpoints = Checkpoints(engine, sub, path, interval_s=0)
    first = await sub.getmany(max_records=500)
    for m in first:
        engine.process(reading_of(m))
    await checkpoints.after_batch(first)
    assert checkpoints.busy and not path.exists()
    second = await sub.getmany(max_records=400)
    for m in second:
        checkpoints.before_reading(reading_of(m).robot_id)
        engine.process(reading_of(m))
    await checkpoints.after_batch(second)
    while checkpoints.busy:
        await checkpoints.after_batch([])
    await checkpoints.saving
    assert committed(bus) == len(first)
    restored = DetectorEngine(CONFIG)
    assert read_snapshot(restored, path)
    assert restored.robots["r2"].last_ts == max(r.ts for r in readings[:500] if r.robot_id == "r2").timestamp()
    await checkpoints.close()
    assert committed(bus) == len(first) + len(second)
    assert json.loads(path.read_text()) == json.loads(json.dumps(snapshot(engine)))


def reading_of(message) -> Reading:
    return Reading.from_bytes(message.value)


def committed(bus: InProcessBus) -> int:
    return bus._committed[("g", "readings", 0)]


async def test_without_a_state_path_every_batch_is_committed_at_once():
    bus = InProcessBus()
    for r in cycle_readings(50):
        await bus.publish("readings", r.robot_id, r.to_bytes())
    sub = await bus.subscribe(["readings"], group_id="g")
    checkpoints = Checkpoints(DetectorEngine(CONFIG), sub, None, interval_s=3600)
    await checkpoints.after_batch(await sub.getmany(max_records=20))
    assert committed(bus) == 20 and not checkpoints.busy
