"""The synthetic fleet: repeatable, shaped like the real robot, and its fault labels tell the truth."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import producer.synthetic as synthetic
from producer.faults import FaultKind, faulty_value
from producer.synthetic import SyntheticRobot, synthetic_fleet

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AXES = list(range(1, 15))


def take(n, **kw):
    options = {"seed": 1, "tick_seconds": 2.0, "start": T0, "axes": AXES, "faults": False, **kw}
    return list(itertools.islice(synthetic_fleet(options.pop("robots", 1), **options), n))


def matrix(readings, axes=range(1, 9)):
    return np.array([[r.currents[a] for a in axes] for r in readings], dtype=float)


def test_same_seed_same_feed_other_seed_other_feed():
    assert take(500, robots=2) == take(500, robots=2)
    assert take(500, robots=2) != take(500, robots=2, seed=2)


def test_idle_share_and_current_ranges_look_like_the_real_robot():
    readings = take(30_000)
    currents = matrix(readings)
    idle = (currents == 0).all(axis=1)
    assert 0.55 <= idle.mean() <= 0.68, "the real robot is idle 64 % of the time"
    working = currents[~idle]
    assert (working >= 0).all()
    assert 35 <= working[:, 1].max() <= 50.0 and 25 <= working[:, 2].max() <= 50.0, "two heavy axes"
    assert working[:, [0, 3, 4, 5, 6, 7]].max() < 10.0, "light axes under 10 A"
    assert 15 <= np.percentile(working[:, 1], 95) <= 35
    assert all(r.currents[a] is None for r in readings for a in range(9, 15))


def test_work_comes_in_cycles_separated_by_pauses():
    idle = (matrix(take(20_000)) == 0).all(axis=1)
    runs = [(state, len(list(group))) for state, group in itertools.groupby(idle)]
    working_runs = [n for state, n in runs if not state]
    assert 12 <= np.median(working_runs) <= 20, "cycles of ~16 ticks, like the export"


def test_fleet_is_interleaved_per_tick_in_robot_order():
    readings = take(3 * 100, robots=3)
    assert [r.robot_id for r in readings[:6]] == ["robot-001", "robot-002", "robot-003"] * 2
    for robot in ("robot-001", "robot-002", "robot-003"):
        stamps = [r.ts for r in readings if r.robot_id == robot]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        assert all(1.8 <= g <= 2.2 for g in gaps)
        assert stamps[0] - T0 < timedelta(seconds=0.2)


def test_axis_list_is_the_schema_lock():
    readings = take(100, axes=[2, 3, 12])
    assert {tuple(r.currents) for r in readings} == {(2, 3, 12)}
    assert all(r.currents[12] is None for r in readings)


def test_fault_labels_match_the_injected_data(monkeypatch):
    """The same robot with and without injection (identical schedule and random draws): readings differ
    exactly inside the labelled windows, on the labelled axis, as the fault kind says."""
    n = 7300  # two whole fault periods of 2 h at 2 s
    faulty_robot = SyntheticRobot("robot-001", seed=5, tick_seconds=2.0, start=T0, axes=AXES, faults=True)
    faulty = list(itertools.islice(faulty_robot, n))
    monkeypatch.setattr(synthetic, "inject_faults", lambda readings, specs: readings)
    clean = list(
        itertools.islice(SyntheticRobot("robot-001", seed=5, tick_seconds=2.0, start=T0, axes=AXES, faults=True), n)
    )
    labels = faulty_robot.labels(faulty[-1].ts)  # up to the end of the period that has begun
    specs = {(s.kind, s.axis, s.start): s for p in (0, 1, 2) for s in faulty_robot.fault_specs(p)}
    for before, after in zip(clean, faulty, strict=True):
        assert before.ts == after.ts
        covering = [lab for lab in labels if lab.start <= after.ts < lab.end]
        for axis in AXES:
            on_axis = [lab for lab in covering if lab.axis == axis]
            if not on_axis:
                assert after.currents[axis] == before.currents[axis]
                continue
            spec = specs[(on_axis[0].kind, axis, on_axis[0].start)]
            assert after.currents[axis] == faulty_value(spec, before.currents[axis], after.ts, not before.is_idle)
    complete = [lab for lab in labels if lab.end <= faulty[-1].ts]
    assert len(complete) == 10 and {lab.kind for lab in complete} == set(FaultKind)
    for lab in complete:
        inside = [(b, a) for b, a in zip(clean, faulty, strict=True) if lab.start <= a.ts < lab.end]
        assert any(b.currents[lab.axis] != a.currents[lab.axis] for b, a in inside), f"{lab.kind} left no trace"
        assert not inside[0][0].is_idle, "a fault window opens on working time"


def test_fleet_labels_cover_every_robot():
    fleet = synthetic_fleet(3, seed=1, tick_seconds=2.0, start=T0, axes=AXES, faults=True)
    labels = fleet.labels(T0 + timedelta(hours=1))
    assert sorted({lab.robot_id for lab in labels}) == ["robot-001", "robot-002", "robot-003"]
    assert len(labels) == 15


def test_a_fleet_needs_a_robot():
    with pytest.raises(ValueError):
        synthetic_fleet(0, seed=1, tick_seconds=2.0, start=T0, axes=AXES)


def test_a_spread_fleet_reads_the_same_currents_each_robot_at_its_own_phase():
    burst, spread = take(4 * 50, robots=4), take(4 * 50, robots=4, spread=True)
    assert [(r.robot_id, r.currents) for r in spread] == [(r.robot_id, r.currents) for r in burst]
    for index, (b, s) in enumerate(zip(burst, spread, strict=True)):
        assert s.ts - b.ts == timedelta(seconds=(index % 4) * 0.5), "robot k reads k/4 of a tick after robot 1"
