"""A residual ALERT is not an event of its own while the robot's other axes have moved too (a new program's first
minutes, before the learner times the change); one axis's overload still is."""

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from common.wire.schemas import Reading
from consumer_alerts.detectors import residual
from consumer_alerts.engine import DetectorEngine, EngineConfig
from tests.alerts_fixtures import T0

AXES = {1: 6.0, 2: 2.0, 3: 4.0, 4: 1.0, 5: 3.0}
CONFIG = EngineConfig(detectors=("residual",), model_learn_readings=1000)
LEARN_ROWS = 1650  # 16 busy rows of every 26: 1000 active rows and some


def feed(n, *, start_row=0, seed=1, factor=None):
    """``n`` rows of a five-axis work cycle (16 busy rows, 10 idle) from ``start_row``; ``factor[axis]`` scales
    that axis's busy current."""
    rng = random.Random(seed)
    rows = []
    for i in range(start_row, start_row + n):
        busy = i % 26 < 16
        currents = {
            axis: round(level * rng.lognormvariate(0, 0.5) * (factor or {}).get(axis, 1.0), 4) if busy else 0.0
            for axis, level in AXES.items()
        }
        rows.append(Reading(robot_id="r1", ts=T0 + timedelta(seconds=2 * i), row=i + 2, currents=currents))
    return rows


def long_rule_events(factor, rows=800):
    """The axes whose residual long rule (MinC held) opens an event once ``factor`` applies. The learner does not
    time changes here (as MODEL_RELEARN_S=0): what is measured is the residual's own rule."""
    engine = DetectorEngine(CONFIG)
    for reading in feed(LEARN_ROWS) + feed(600, start_row=LEARN_ROWS, seed=3):  # learnt, then its windows full
        engine.process(reading)
    learner = engine.robots["r1"].learner
    learner.relearn_s = 0
    model = learner.model
    assert all(m.long_median is not None and m.long_median < m.min_c for m in model.axes.values())
    changed = feed(rows, start_row=LEARN_ROWS + 600, seed=2, factor=factor)
    events = [a for r in changed for a in engine.process(r) if a.detector == "residual"]
    return {a.axis for a in events if a.threshold == pytest.approx(model.axes[a.axis].min_c, abs=1e-4)}  # rounded


ONE_AXIS = {1: 1.3}  # a +30 % overload: what the long rule is for (the short rule needs more than 1.4x)
PROGRAM = {1: 1.3, 2: 1.3, 3: 1.25, 4: 0.7, 5: 1.3}  # most axes change at once, some up, some down


def test_one_axis_overload_is_raised():
    assert long_rule_events(ONE_AXIS) == {1}


def test_a_program_s_first_minutes_raise_no_residual_event(monkeypatch):
    assert long_rule_events(PROGRAM) == set()
    monkeypatch.setattr(residual, "MOVED_AXES", len(AXES))  # never met: the same change raises its axes
    assert long_rule_events(PROGRAM)


@pytest.mark.parametrize("long_stat, moved", [(-0.3, 0.0), (-0.2, 0.5), (-0.1, 1.0), (-0.4, -0.5)])
def test_moved_is_the_share_of_the_way_from_the_training_median_to_min_c(long_stat, moved):
    engine = DetectorEngine(CONFIG)
    for reading in feed(LEARN_ROWS):
        engine.process(reading)
    detector = next(d for d in engine.robots["r1"].axes[1].detectors if d.name == "residual")
    detector.model.long_median, detector.model.min_c, detector.long_stat = -0.3, -0.1, long_stat
    assert detector.moved == pytest.approx(moved)


def load_events(factor, rows=800):
    """The axes whose ``load`` detector opens an event once ``factor`` applies, beside the residual detector (whose
    statistics say whether the robot's other axes have moved); the learner times no change, as above."""
    engine = DetectorEngine(replace(CONFIG, detectors=("residual", "load")))
    for reading in feed(LEARN_ROWS) + feed(600, start_row=LEARN_ROWS, seed=3):
        engine.process(reading)
    engine.robots["r1"].learner.relearn_s = 0
    changed = feed(rows, start_row=LEARN_ROWS + 600, seed=2, factor=factor)
    return {a.axis for r in changed for a in engine.process(r) if a.detector.startswith("load")}


def test_a_program_s_load_alerts_open_no_event_while_the_other_axes_have_moved(monkeypatch):
    program = {1: 1.6, 2: 1.6, 3: 0.6, 4: 0.6, 5: 1.6}
    assert load_events(program) == set()
    monkeypatch.setattr(residual, "MOVED_AXES", len(AXES))  # never met: the same change raises its axes' load
    assert load_events(program)


def test_one_axis_s_lost_load_is_raised():
    assert load_events({1: 0.4}) == {1}


def learnt_detectors():
    engine = DetectorEngine(CONFIG)
    for reading in feed(LEARN_ROWS):
        engine.process(reading)
    return [d for state in engine.robots["r1"].axes.values() for d in state.detectors if d.name == "residual"]


@pytest.mark.parametrize(
    "moved, recent, counts",
    [(0.3, 0.0, True), (-0.3, 0.0, True), (0.3, 0.3, False), (0.6, 0.6, True), (0.1, -0.2, True), (0.1, 0.0, False)],
)
def test_an_axis_counts_once_it_has_moved_or_is_moving(moved, recent, counts):
    """Moved: far enough from the training median (``MOVED``); moving: far enough from where it has been lately
    (``MOVING``), so a program's weaker axes count before their long statistics are half way."""
    detectors = learnt_detectors()[: residual.MOVED_AXES]
    for detector in detectors:
        detector.model.long_median, detector.model.min_c = -0.3, -0.1
        detector.long_stat, detector.recent_moved = -0.3 + 0.2 * moved, recent
    assert residual.moved_together(detectors) is counts


def test_where_an_axis_has_been_lately_is_kept_in_its_state():
    engine = DetectorEngine(CONFIG)
    for reading in feed(LEARN_ROWS + 600):
        engine.process(reading)
    detector = next(d for d in engine.robots["r1"].axes[1].detectors if d.name == "residual")
    assert detector.recent_moved == detector.recent_moved  # known (not NaN) once the window is full
    again = type(detector)(detector.model)
    again.load(detector.state())
    assert again.recent_moved == detector.recent_moved
