"""ALERTs held while a broad change is timed: what the release raises when an event of their kind was open."""

from datetime import timedelta

import pytest

from common.wire.schemas import AlertState, Reading, Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.detectors.registry import AXIS_DETECTORS
from consumer_alerts.engine import DetectorEngine, EngineConfig
from tests.alerts_fixtures import T0

LINE = 50.0  # the stand-in detector fires while the value is above it
TIMED = range(5, 26)  # rows while a broad change is being timed: the detector's ALERTs are held


class AboveLine:
    """A ``load`` detector stand-in (one of the detectors whose ALERTs are held): an ALERT above ``LINE``."""

    name, kinds, takes_repeats, scorer = "load", ("load",), False, None

    def __init__(self, ctx):
        self.observed, self.normalized = False, 0.0

    def update(self, ts, value, *, idle=False):
        self.observed = value is not None and not idle
        return Finding(Severity.ALERT, value, value, LINE) if self.observed and value > LINE else None

    def state(self):
        return {}

    def load(self, state):
        pass


class TimedChange:
    """A model learner stand-in: a broad change is timed on rows ``TIMED``, then goes away (not a program)."""

    model = None
    pending = False

    def observe(self, ts, when, currents, fresh):
        self.pending = row_of(when) in TIMED
        return ""


def row_of(when):
    return round((when - T0).total_seconds() / 2)


def run(values):
    engine = DetectorEngine(EngineConfig(detectors=("load",), holdoff_s=10.0, holdoff_readings=0))
    engine.robot("r1").learner = TimedChange()
    events = {}
    for i, amps in enumerate(values):
        reading = Reading(robot_id="r1", ts=T0 + timedelta(seconds=2 * i), currents={1: amps + 0.01 * i})
        for alert in engine.process(reading):
            events[alert.event_id] = alert
    return sorted(events.values(), key=lambda a: a.opened_at)


@pytest.fixture(autouse=True)
def stand_in(monkeypatch):
    monkeypatch.setitem(AXIS_DETECTORS, "load", AboveLine)


def test_findings_that_went_on_in_their_open_event_are_not_raised_again_when_the_change_goes_away():
    # Rows 0-9 above the line: an event opens at row 0; its findings of rows 5-9 go on in it, though the change is
    # being timed. It closes 10 s after row 10. The change goes away at row 26: nothing is left to raise (the
    # release raised those findings again, as a second event opened at row 5, inside the first).
    events = run([60.0] * 10 + [10.0] * 30)
    assert [(row_of(a.opened_at), row_of(a.closed_at), a.state) for a in events] == [(0, 10, AlertState.CLOSED)]


def test_a_finding_held_after_its_event_closed_is_raised_from_then_not_from_the_findings_that_went_on():
    # As above, then rows 20-24 above the line again while the change is still timed: held, and raised when it goes
    # away as an event opened at row 20 that closes as of row 24, its last firing (not one opened at row 5).
    events = run([60.0] * 10 + [10.0] * 10 + [60.0] * 5 + [10.0] * 15)
    assert [(row_of(a.opened_at), row_of(a.closed_at)) for a in events] == [(0, 10), (20, 24)]
