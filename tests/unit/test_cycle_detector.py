"""The cycle detector: a slow drift of one axis, judged work cycle by work cycle, against its program's normal."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from common.wire.schemas import Reading, Severity
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.engine_state import load_snapshot, snapshot

AXES = range(1, 9)
PAUSE = 10  # idle readings between two cycles


def programs(axes, seed=7):
    """Three programs: per reading of the cycle and axis, the current it draws (lengths 14, 16, 18)."""
    rng = np.random.default_rng(seed)
    return [rng.lognormal(0.5, 0.7, size=(length, len(axes))) for length in (14, 16, 18)]


def robot_rows(cycles, *, seed=0, factor=lambda cycle, axis: 1.0, axes=AXES):
    """Rows of a robot that runs a random one of its programs per cycle, each reading with its own noise and
    each cycle a little faster or slower (every axis alike), idle between cycles. ``factor(cycle, axis)``
    scales an axis's current in a cycle (a drift, a new program); returns the rows and each cycle's first row."""
    rng = np.random.default_rng(seed)
    shapes = programs(axes)
    rows, starts = [], []
    for c in range(cycles):
        template = shapes[rng.integers(len(shapes))]
        values = template * rng.lognormal(0, 0.12, size=template.shape) * rng.normal(1.0, 0.05)
        starts.append(len(rows))
        for line in values:
            rows.append({a: round(float(v) * factor(c, a), 4) for a, v in zip(axes, line, strict=True)})
        rows.extend({a: 0.0 for a in axes} for _ in range(PAUSE))
    return rows, starts


def readings(rows):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [Reading(robot_id="r1", ts=t0 + timedelta(seconds=2 * i), currents=row) for i, row in enumerate(rows)]


def cycle_alerts(rows, config=None):
    engine = DetectorEngine(config or EngineConfig(detectors=("cycle",)))
    return [a for r in readings(rows) for a in engine.process(r)]


def drift(first, cycles, size, axis):
    """``axis`` draws 0 -> ``size`` more over ``cycles`` cycles from cycle ``first``, then holds it."""

    def factor(cycle, a):
        if a != axis or cycle < first:
            return 1.0
        return 1.0 + size * min((cycle - first + 1) / cycles, 1.0)

    return factor


def test_a_drift_of_15_percent_on_one_axis_is_raised_on_that_axis_while_it_grows():
    rows, starts = robot_rows(140, seed=1, factor=drift(100, 20, 0.15, axis=5))
    alerts = cycle_alerts(rows)
    opened = [a for a in alerts if a.state.value == "open"]
    assert {(a.axis, a.detector) for a in opened} == {(5, "cycle_high")}
    start, full = readings(rows)[starts[100]].ts, readings(rows)[starts[120]].ts
    first = min(a.opened_at for a in opened)
    assert start < first <= full  # before the drift has reached its 15 %
    assert {a.severity for a in alerts} == {Severity.ALERT}  # 15 % is no gross change


def test_a_drop_is_raised_as_cycle_low():
    rows, _ = robot_rows(140, seed=2, factor=drift(100, 20, -0.15, axis=2))
    assert {(a.axis, a.detector) for a in cycle_alerts(rows)} == {(2, "cycle_low")}


def test_steady_cycles_raise_nothing():
    for seed in range(3):
        rows, _ = robot_rows(600, seed=10 + seed)
        assert cycle_alerts(rows) == []


def test_a_program_change_moving_most_axes_is_learned_again_not_raised():
    # from cycle 100 on, each axis draws its own new share of load for good (as producer.broad_faults' program)
    shares = dict(zip(AXES, (0.62, 1.5, 1.3, 0.75, 1.12, 1.58, 0.8, 1.25), strict=True))
    rows, _ = robot_rows(400, seed=3, factor=lambda cycle, axis: shares[axis] if cycle >= 100 else 1.0)
    assert cycle_alerts(rows) == []
    # a robot of three axes, whose programs cannot be told apart by their levels: the cycles stay the old
    # program's, and the axes off together say it is a new one
    shares = {1: 0.7, 2: 1.4, 3: 1.25}
    rows, _ = robot_rows(400, seed=3, factor=lambda cycle, axis: shares[axis] if cycle >= 100 else 1.0, axes=(1, 2, 3))
    assert cycle_alerts(rows) == []
    # the same change on one axis alone is a fault of that axis
    rows, _ = robot_rows(160, seed=3, factor=lambda cycle, axis: 1.5 if cycle >= 100 and axis == 2 else 1.0)
    assert {(a.axis, a.detector) for a in cycle_alerts(rows)} == {(2, "cycle_high")}


def test_its_event_closes_soon_after_the_fault_ends_and_the_next_axis_gets_its_own():
    # +40 % on axis 3 for cycles 100-119, then on axis 6 for cycles 120-139 (back to back, as the demo's faults)
    def factor(cycle, axis):
        return 1.4 if (axis == 3 and 100 <= cycle < 120) or (axis == 6 and 120 <= cycle < 140) else 1.0

    rows, starts = robot_rows(200, seed=4, factor=factor)
    alerts = cycle_alerts(rows)
    closed = {a.axis: a for a in alerts if a.state.value == "closed"}
    assert set(closed) == {3, 6}  # two events, each under its own axis
    ends = {3: readings(rows)[starts[120]].ts, 6: readings(rows)[starts[140]].ts}
    for axis, event in closed.items():
        assert event.closed_at - ends[axis] <= timedelta(minutes=5)


def test_it_survives_the_engines_snapshot_and_judges_the_same():
    rows, _ = robot_rows(160, seed=5, factor=drift(120, 20, 0.3, axis=4))
    config = EngineConfig(detectors=("cycle",))
    running = DetectorEngine(config)
    feed = readings(rows)
    half = len(feed) * 3 // 4 + 5  # inside a cycle
    for reading in feed[:half]:
        running.process(reading)
    restored = DetectorEngine(config)
    load_snapshot(restored, json.loads(json.dumps(snapshot(running))))
    after_running = [a.model_dump() for r in feed[half:] for a in running.process(r)]
    after_restored = [a.model_dump() for r in feed[half:] for a in restored.process(r)]
    assert after_running  # the drift raises: the comparison is not of two empty lists
    assert after_restored == after_running


def test_it_is_in_the_default_set_and_quiet_there_on_steady_cycles():
    assert "cycle" in EngineConfig().detectors
    rows, _ = robot_rows(300, seed=6)
    assert [a for a in cycle_alerts(rows, EngineConfig()) if a.detector.startswith("cycle")] == []


def test_a_gross_change_is_an_error_but_a_flat_value_only_an_alert():
    # axis 2 draws 3x its current for 20 cycles: the severity rule's gross change
    rows, _ = robot_rows(140, seed=8, factor=lambda cycle, axis: 3.0 if axis == 2 and 100 <= cycle < 120 else 1.0)
    assert Severity.ERROR in {a.severity for a in cycle_alerts(rows) if a.axis == 2}
    # the same level read as one flat value while the robot moves (a stuck sensor reads the same): an ALERT
    rows, starts = robot_rows(140, seed=8)
    level = 3.0 * float(np.mean([row[2] for row in rows if row[2]]))
    for row in rows[starts[100] : starts[120]]:
        if row[2]:
            row[2] = round(level, 4)
    alerts = [a for a in cycle_alerts(rows) if a.axis == 2]
    assert alerts and {a.severity for a in alerts} == {Severity.ALERT}
