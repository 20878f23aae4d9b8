"""The health pipeline's state file (consumer_alerts.health.state): saved robot by robot between batches,
restored as it was; a file of the previous version still read."""

import asyncio
import itertools
import pickle
from datetime import UTC, datetime

from consumer_alerts.health import state as health_state
from consumer_alerts.health.monitor import HealthMonitor
from consumer_alerts.health.state import StateSaver, load, pickle_robot
from producer.synthetic import SyntheticRobot

START = datetime(2026, 1, 1, tzinfo=UTC)


def learned_monitor(robots: int = 3, hours: float = 2.0) -> HealthMonitor:
    monitor = HealthMonitor()
    for i in range(robots):
        robot = SyntheticRobot(f"r{i}", seed=i, tick_seconds=2.0, start=START, axes=range(1, 4))
        for reading in itertools.islice(robot, int(hours * 3600 / 2)):
            monitor.process(reading)
    return monitor


def same_state(a: HealthMonitor, b: HealthMonitor) -> bool:
    return a.robots.keys() == b.robots.keys() and all(
        pickle_robot(a.robots[r]) == pickle_robot(b.robots[r]) for r in a.robots
    )


def test_a_due_save_starts_after_a_batch_goes_on_in_slices_and_restores_every_robot(tmp_path, monkeypatch):
    monkeypatch.setattr(health_state, "SLICE_S", 0.0)  # one robot a turn
    monitor, path = learned_monitor(), tmp_path / "s.health.pkl"
    saver = StateSaver(monitor, path, interval_s=0.0)
    asyncio.run(saver.after_batch(after_readings=False))
    assert not saver.busy and not path.exists()  # due, but not started on an empty poll
    turns = 0
    asyncio.run(saver.after_batch())
    while saver.busy:
        turns += 1
        asyncio.run(saver.after_batch(after_readings=False))
    assert turns == len(monitor.robots) - 1 and path.exists()
    restored = HealthMonitor()
    assert load(restored, path)
    assert same_state(restored, monitor)


def test_a_forced_save_takes_every_robot_now_even_during_a_save(tmp_path, monkeypatch):
    monkeypatch.setattr(health_state, "SLICE_S", 0.0)
    monitor, path = learned_monitor(), tmp_path / "s.health.pkl"
    saver = StateSaver(monitor, path, interval_s=0.0)
    asyncio.run(saver.after_batch())
    assert saver.busy
    asyncio.run(saver.after_batch(force=True))
    assert not saver.busy
    restored = HealthMonitor()
    assert load(restored, path) and same_state(restored, monitor)


def test_a_file_of_version_2_is_still_read_and_an_unknown_one_is_not(tmp_path):
    monitor, path = learned_monitor(robots=1, hours=1.0), tmp_path / "s.health.pkl"
    path.write_bytes(pickle.dumps((2, monitor.robots)))
    restored = HealthMonitor()
    assert load(restored, path) and same_state(restored, monitor)
    path.write_bytes(pickle.dumps((1, monitor.robots)))
    assert not load(HealthMonitor(), path)
