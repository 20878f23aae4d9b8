"""A residual ALERT is one axis's fault only while the robot's other axes keep their load."""

import math
from datetime import timedelta
from types import SimpleNamespace

import pytest

from common.wire.schemas import Reading, Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.detectors.registry import AXIS_DETECTORS
from consumer_alerts.engine import MOVED_LOAD, ROBOT_MOVED_AXES, ROBOT_MOVED_S, DetectorEngine, EngineConfig
from tests.alerts_fixtures import T0

LINE = 50.0  # the residual stand-in fires while the value is above it
NORMAL = 10.0  # the load stand-in's normal level
MOVED = NORMAL * math.exp(MOVED_LOAD + 0.05)  # a load off its normal by more than MOVED_LOAD
AXES = range(1, ROBOT_MOVED_AXES + 2)  # one axis and enough others to make the robot move as a whole


class AboveLine:
    """A ``residual`` stand-in: an ALERT above ``LINE``."""

    name, kinds, takes_repeats = "residual", ("residual",), False

    def __init__(self, ctx):
        self.observed, self.normalized = False, 0.0

    def update(self, ts, value, *, idle=False):
        self.observed = value is not None and not idle
        return Finding(Severity.ALERT, value, value, LINE) if self.observed and value > LINE else None

    def state(self):
        return {}

    def load(self, state):
        pass


class LoadLevel:
    """A ``load`` stand-in that raises nothing: its scorer's window level is the last value over ``NORMAL``."""

    name, kinds, takes_repeats = "load", ("load",), False

    def __init__(self, ctx):
        self.observed, self.normalized = False, 0.0
        self.scorer = SimpleNamespace(ratio=1.0, full=False, flat_now=False, flat_recently=False)

    def update(self, ts, value, *, idle=False):
        self.observed = value is not None and not idle
        if self.observed:
            self.scorer.ratio = value / NORMAL
        return None

    def state(self):
        return {}

    def load(self, state):
        pass


@pytest.fixture(autouse=True)
def stand_in(monkeypatch):
    monkeypatch.setitem(AXIS_DETECTORS, "residual", AboveLine)
    monkeypatch.setitem(AXIS_DETECTORS, "load", LoadLevel)


def row_of(when):
    return round((when - T0).total_seconds() / 2)


def opened(rows):
    """(axis, row opened at, row published at) of every event opened over ``rows`` (one reading every 2 s, each a
    list of the axes' values)."""
    config = EngineConfig(detectors=("residual", "load"), model_learn_readings=0, holdoff_s=10.0, holdoff_readings=0)
    engine = DetectorEngine(config)
    out = []
    for i, values in enumerate(rows):
        currents = {axis: value + 0.001 * i for axis, value in zip(AXES, values, strict=True)}  # no exact repeats
        reading = Reading(robot_id="r1", ts=T0 + timedelta(seconds=2 * i), currents=currents)
        out += [
            (alert.axis, row_of(alert.opened_at), i) for alert in engine.process(reading) if alert.closed_at is None
        ]
    return sorted(set(out))


def test_one_axis_past_its_line_while_the_others_keep_their_load_is_raised_at_once():
    others = [NORMAL] * ROBOT_MOVED_AXES
    assert opened([[NORMAL, *others]] * 5 + [[LINE + 10, *others]] * 5) == [(1, 5, 5)]


def test_one_axis_past_its_line_while_the_others_moved_with_it_is_held_until_they_are_steady():
    # The other axes' loads move, one axis goes past its residual line: a new program, or a fault while the robot's
    # load moves. Nothing is raised while they have moved within ROBOT_MOVED_S; once they are back and stay so, the
    # ALERT is raised as an event opened when it was first held (a fault is reported late, never lost).
    moved, steady = [MOVED] * ROBOT_MOVED_AXES, [NORMAL] * ROBOT_MOVED_AXES
    settle = int(ROBOT_MOVED_S / 2)  # rows of 2 s
    rows = [[NORMAL, *steady]] * 5 + [[NORMAL, *moved]] + [[LINE + 10, *moved]] * 99
    rows += [[LINE + 10, *steady]] * (settle + 5)
    assert opened(rows) == [(1, 6, 105 + settle)]


def test_fewer_other_axes_moving_than_a_program_does_not_hold_a_fault_back():
    # A fault on a few axes at once: the other axes that moved with it are not the robot as a whole.
    others = [MOVED] * (ROBOT_MOVED_AXES - 1) + [NORMAL]
    assert opened([[NORMAL] * len(AXES)] * 5 + [[LINE + 10, *others]] * 5) == [(1, 5, 5)]


def test_a_load_that_dropped_counts_as_moved_as_much_as_one_that_rose():
    low = [NORMAL * NORMAL / MOVED] * ROBOT_MOVED_AXES
    assert opened([[NORMAL, *low]] * 5 + [[LINE + 10, *low]] * 20) == []
