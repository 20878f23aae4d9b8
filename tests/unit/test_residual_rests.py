"""The residual detector's ALERT across a robot's rest: judged on the samples from after it, not on its memory."""

from datetime import timedelta

import pytest

from common.wire.schemas import AlertState, Reading
from consumer_alerts.detectors.residual import ResidualDetector
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.training import TrainingOptions, train
from tests.alerts_fixtures import T0, cycle_readings

WORK, PAUSE = 16, 10  # the fixture's cycle: busy rows, then idle rows (a 22-s gap: no rest)
CYCLE = WORK + PAUSE
REST_START = 40 * CYCLE + WORK  # the first idle row of a pause, lengthened into a rest
REST_ROWS = 250  # 500 s at rest: longer than the hold-off, so a quiet first judged row closes the event at once
CONFIG = EngineConfig(detectors=("residual",), holdoff_s=300.0, holdoff_readings=0, stoppage_s=3600.0)


@pytest.fixture(scope="module")
def model():
    return train(cycle_readings(3000, seed=5), TrainingOptions(window=80), robot_id="r1")


def overload_then_rest(fault_rows: range) -> list[Reading]:
    """Axis 2 drawing twice its current on ``fault_rows``, and the robot at rest (every axis at 0) for
    ``REST_ROWS`` rows from ``REST_START``."""
    rest = range(REST_START, REST_START + REST_ROWS)
    readings = cycle_readings(
        REST_START + REST_ROWS + 60 * CYCLE,
        seed=6,
        start=T0 + timedelta(days=1),
        fault=lambda i, axis, amps: amps * 2 if axis == 2 and i in fault_rows else amps,
    )
    return [
        r.model_copy(update={"currents": {a: None if v is None else 0.0 for a, v in r.currents.items()}})
        if i in rest
        else r
        for i, r in enumerate(readings)
    ]


def residual_events(model, readings: list[Reading]) -> dict:
    engine = DetectorEngine(CONFIG, model)
    events = {}
    for reading in readings:
        for alert in engine.process(reading):
            if alert.detector == "residual" and alert.axis == 2:
                events[alert.event_id] = alert
    return events


def test_an_alert_whose_fault_ended_at_the_rest_closes_as_of_the_rests_start(model):
    # Judged on the samples from before the rest, the first reading after it fired on the fault's memory: the event
    # went on until its recent part drained and closed after the whole rest. Now it closes as of the rest's start.
    readings = overload_then_rest(range(20 * CYCLE, REST_START))
    events = residual_events(model, readings)
    fault_start, fault_end = readings[20 * CYCLE].ts, readings[REST_START].ts
    assert len(events) == 1
    (event,) = events.values()
    assert fault_start <= event.opened_at < fault_end and event.state is AlertState.CLOSED
    assert event.closed_at <= fault_end


def test_an_alert_whose_fault_goes_on_after_the_rest_stays_one_event(model):
    fault_end_row = REST_START + REST_ROWS + 20 * CYCLE
    readings = overload_then_rest(range(20 * CYCLE, fault_end_row))
    events = residual_events(model, readings)
    assert len(events) == 1
    (event,) = events.values()
    rest_end = readings[REST_START + REST_ROWS].ts
    assert event.opened_at < readings[REST_START].ts and event.closed_at > rest_end + timedelta(seconds=60)
    assert event.closed_at <= readings[fault_end_row].ts + timedelta(seconds=60)  # within its recent part's lag


def test_a_detector_restored_while_its_recent_part_refills_judges_as_the_uninterrupted_one(model):
    readings = overload_then_rest(range(20 * CYCLE, REST_START))
    one = ResidualDetector(model.axes[2])
    resumed_at = REST_START + REST_ROWS + 5  # a few samples into the refill
    for reading in readings[:resumed_at]:
        one.update(reading.ts.timestamp(), reading.currents[2], idle=not reading.currents[2])
    assert one.refill > 0
    two = ResidualDetector(model.axes[2])
    two.load(one.state())
    for reading in readings[resumed_at:]:
        ts, value, idle = reading.ts.timestamp(), reading.currents[2], not reading.currents[2]
        assert (two.update(ts, value, idle=idle), two.observed) == (one.update(ts, value, idle=idle), one.observed)
