"""Synthetic wear: shapes meet the limit at the labelled crossing, stoppages stop, offline cycles are the feed's."""

import csv
import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from producer.synthetic import SyntheticRobot, synthetic_fleet
from producer.wear import DAY_S, SHAPES, RobotWear, WearSpec, wear_plan, write_wear_labels
from producer.wear_offline import offline_cycles

START = datetime(2026, 1, 1, tzinfo=UTC)
PARAMS = {"linear": 0.0, "exponential": 2.5, "step_linear": 0.3, "knee": 0.5, "decelerating": 0.0}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_zero_before_onset_rises_and_meets_the_limit_at_the_crossing(shape):
    spec = WearSpec("r", 2, shape, onset_s=DAY_S, crossing_s=11 * DAY_S, limit=0.3, param=PARAMS[shape])
    assert spec.level(0.5 * DAY_S) == 0.0
    assert spec.level(11 * DAY_S) == pytest.approx(0.3)
    levels = [spec.level(t * DAY_S) for t in np.linspace(1.01, 11, 50)]
    assert all(b > a for a, b in itertools.pairwise(levels))
    assert levels[0] < 0.3


def test_exponential_wear_is_behind_linear_wear_halfway_and_decelerating_is_ahead():
    def half(shape):
        return WearSpec("r", 2, shape, 0.0, 10 * DAY_S, 0.3, PARAMS[shape]).level(5 * DAY_S)

    assert half("linear") == pytest.approx(0.15)
    assert half("exponential") < half("linear") < half("decelerating")


def test_worn_axis_draws_its_wear_more_than_an_unworn_axis_of_the_same_robot():
    spec = WearSpec("r", 2, "linear", onset_s=0.0, crossing_s=10 * DAY_S, limit=0.3)
    wear = RobotWear("r", seed=1, specs=[spec])
    for day in (2, 5, 10):
        worn, healthy = wear.factors(day * DAY_S, [2, 3])
        # Same ambient and warm-up on both axes, so their ratio is the wear (with its daily wobble).
        assert worn / healthy == pytest.approx(1 + 0.03 * day, abs=0.3 * 0.02 * 4)


def test_a_robot_reads_idle_through_a_stoppage_and_works_before_and_after():
    wear = RobotWear("robot-001", seed=3, stoppages=[(3600.0, 7200.0)])
    robot = SyntheticRobot("robot-001", seed=3, tick_seconds=2.0, start=START, axes=range(1, 15), wear=wear)
    readings = list(itertools.islice(robot, 3 * 1800))
    during = [r for r in readings if 3600 <= (r.ts - START).total_seconds() < 7200]
    assert during and all(r.is_idle for r in during)
    before = [r for r in readings if (r.ts - START).total_seconds() < 3600]
    after = [r for r in readings if (r.ts - START).total_seconds() >= 7200]
    assert any(not r.is_idle for r in before) and any(not r.is_idle for r in after)


def test_a_program_change_gives_the_robot_new_cycles():
    wear = RobotWear("robot-001", seed=3, program_changes=[3600.0])
    robot = SyntheticRobot("robot-001", seed=3, tick_seconds=2.0, start=START, axes=range(1, 9), wear=wear)
    assert robot._programs_at(0) is robot._programs
    later = robot._programs_at(1800)
    assert later is not robot._programs
    assert not any(a.shape == b.shape and np.allclose(a, b) for a in later for b in robot._programs)


def test_the_plan_wears_the_asked_number_of_robots_and_its_labels_say_when_they_cross(tmp_path):
    ids = [f"robot-{i:03d}" for i in range(1, 11)]
    plan = wear_plan(ids, seed=5, worn=4, axes=[2, 3], days=(12, 30))
    labels = plan.labels()
    assert len({s.robot_id for s in labels}) == 4
    assert all(s.axis in (2, 3) and 12 * DAY_S <= s.crossing_s <= 30 * DAY_S for s in labels)
    assert all(r.stoppages and r.program_changes for r in plan.robots.values())
    assert wear_plan(ids, seed=5, worn=4, axes=[2, 3]).labels() == labels
    path = tmp_path / "wear.csv"
    write_wear_labels(labels, path, start=START)
    rows = list(csv.DictReader(path.open()))
    assert [(r["robot_id"], int(r["axis"]), r["shape"]) for r in rows] == [
        (s.robot_id, s.axis, s.shape) for s in labels
    ]
    crossing = datetime.fromisoformat(rows[0]["crossing"].replace("Z", "+00:00"))
    assert (crossing - START).total_seconds() == pytest.approx(labels[0].crossing_s, abs=1e-3)


def test_without_a_plan_the_fleet_is_what_it_was():
    plain = synthetic_fleet(2, seed=9, start=START)
    none = synthetic_fleet(2, seed=9, start=START, wear=None)
    assert [r.currents for r in itertools.islice(plain, 4000)] == [r.currents for r in itertools.islice(none, 4000)]


def test_offline_cycles_are_the_live_robots_working_ticks():
    plan = wear_plan(["robot-001"], seed=4, worn=1, axes=[2], days=(6, 8))
    live = SyntheticRobot(
        "robot-001", seed=4, tick_seconds=2.0, start=START, axes=range(1, 15), wear=plan.robots["robot-001"]
    )
    readings = list(itertools.islice(live, 43200))  # one day
    working = [[r.currents[a] for a in range(1, 9)] for r in readings if not r.is_idle]
    cycles = list(offline_cycles("robot-001", seed=4, days=1.0, wear=plan.robots["robot-001"]))
    assert cycles and cycles[0].axes == tuple(range(1, 9))
    offline = np.concatenate([c.currents for c in cycles])
    np.testing.assert_allclose(offline, np.asarray(working[: len(offline)]))
    assert all(c.end > c.times[-1] for c in cycles)


def test_the_producer_settings_turn_wear_on_and_write_its_labels(tmp_path):
    from producer.feed import open_feed
    from producer.settings import ProducerSettings

    path = tmp_path / "wear.csv"
    settings = ProducerSettings(
        robots=4, wear_robots=2, wear_labels_out=path, axes_from_db=False, start_time=START, limit=40
    )
    feed = open_feed(settings)
    assert "wear on 2" in feed.description
    assert len(list(feed.items)) == 40
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 and all(int(r["axis"]) in range(1, 8) for r in rows)


def test_a_plan_may_wear_several_distinct_axes_of_a_robot_each_crossing_at_its_own_time():
    ids = [f"robot-{i:03d}" for i in range(1, 11)]
    axes = list(range(1, 8))
    one = wear_plan(ids, seed=5, worn=4, axes=axes)
    three = wear_plan(ids, seed=5, worn=4, axes=axes, axes_per_robot=3)
    worn = [r for r in three.robots.values() if r.specs]
    assert len(worn) == 4 and len(three.labels()) == 12
    for robot in worn:
        assert len({s.axis for s in robot.specs}) == 3
        for spec in robot.specs:
            assert robot.wear_level(spec.axis, spec.crossing_s) == pytest.approx(spec.limit, rel=0.15)
            assert robot.wear_level(spec.axis, spec.onset_s - 1) == 0
        # the first worn axis is where a one-axis plan puts its wear, onset and crossing
        first, only = robot.specs[0], one.robots[robot.robot_id].specs[0]
        assert (first.axis, first.onset_s, first.crossing_s) == (only.axis, only.onset_s, only.crossing_s)
    with pytest.raises(ValueError, match="worn axes"):
        wear_plan(ids, seed=5, worn=4, axes=[2, 3], axes_per_robot=3)
