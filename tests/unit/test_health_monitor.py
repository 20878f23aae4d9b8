"""The health pipeline in the stream (consumer_alerts.health.monitor): events per cycle and hour, and the
maintenance_due lifecycle on a worn axis, none on a healthy robot."""

import itertools
from datetime import UTC, datetime

import pytest

from common.wire.schemas import AlertState, HealthEvent, Severity
from consumer_alerts.health.monitor import DETECTOR, HealthConfig, HealthMonitor
from producer.synthetic import SyntheticRobot
from producer.wear import DAY_S, RobotWear, WearSpec

START = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = HealthConfig(min_hours=12)


def feed(robot_id: str, days: float, wear: RobotWear | None = None):
    robot = SyntheticRobot(robot_id, seed=3, tick_seconds=2.0, start=START, axes=range(1, 15), wear=wear)
    return list(itertools.islice(robot, int(days * DAY_S / 2)))


@pytest.fixture(scope="module")
def worn_run():
    wear = RobotWear("worn", 3, [WearSpec("worn", 2, "linear", 0.5 * DAY_S, 3.5 * DAY_S)])
    readings = feed("worn", 2.5, wear)
    monitor = HealthMonitor(CONFIG)
    alerts, events = [], []
    for reading in readings:
        alerts += monitor.process(reading)
        events += monitor.take_events()
    return readings, monitor, alerts, events


def test_a_worn_axis_gets_one_maintenance_due_event_before_its_crossing(worn_run):
    _, _, alerts, _ = worn_run
    assert alerts, "no maintenance_due on an axis 1 day from its limit"
    assert {(a.robot_id, a.axis, a.detector) for a in alerts} == {("worn", 2, DETECTOR)}
    assert len({a.event_id for a in alerts}) == 1  # one event, updated: no storm
    opened = alerts[0].opened_at
    assert opened < START.replace(day=4, hour=12)  # before the true crossing (3.5 days)
    assert all(a.state is AlertState.OPEN and a.severity is Severity.ALERT for a in alerts)
    assert alerts[-1].score >= alerts[0].score >= 0.5


def test_cycle_events_carry_indicators_and_forecasts_the_days_left(worn_run):
    _, _, _, events = worn_run
    cycles = [e for e in events if e.kind == "cycle"]
    forecasts = [f for e in events if e.kind == "forecast" for f in e.forecasts if f.axis == 2]
    assert len(cycles) > 1000
    judged = [a for e in cycles for a in e.axes if a.axis == 2 and a.deviation is not None]
    assert judged and all(a.rms_amps > 0 and a.energy_a2s >= a.energy_as * 0 for a in judged)
    a = judged[-1]
    assert a.peak_amps >= a.rms_amps and a.energy_a2s == pytest.approx(a.rms_amps**2 * a.covered_s, rel=1e-6)
    late = forecasts[-1]
    assert late.days_left is not None and late.low_days <= late.days_left <= (late.high_days or float("inf"))
    # the wear crosses 1 day after the feed's end: the forecast sees it within a few days
    assert 0.2 < late.days_left < 3
    assert HealthEvent.from_bytes(events[-1].to_bytes()) == events[-1]


def test_a_redelivered_reading_changes_nothing(worn_run):
    readings, monitor, _, _ = worn_run
    for reading in readings[-500:]:
        assert monitor.process(reading) == []
    assert monitor.take_events() == []


def test_a_robot_without_wear_gets_no_maintenance_due():
    monitor = HealthMonitor(CONFIG)
    alerts = [a for reading in feed("healthy", 2.5) for a in monitor.process(reading)]
    assert alerts == []
    assert monitor.take_events()  # it was judged all along, and found nothing due


def test_part_replaced_closes_the_due_event_and_restarts_the_axis(worn_run):
    readings, monitor, alerts, _ = worn_run
    closed = monitor.restart("worn", 2, readings[-1].ts)
    assert closed is not None and closed.state is AlertState.CLOSED and closed.event_id == alerts[0].event_id
    assert 2 not in monitor.robots["worn"].axes


def test_maintenance_due_opens_only_after_hold_hours_of_due_forecasts_in_a_row():
    from consumer_alerts.health.forecast import HourValue
    from consumer_alerts.health.monitor import AxisHealth

    rising = [HourValue(h + 0.5, 0.004 * h, 0.005, 40) for h in range(80)]  # crosses 0.30 at hour 75

    def opened_at(hold: int) -> float:
        health, config = AxisHealth(), HealthConfig(hold_hours=hold)
        for obs in rising:
            _, alert = health.take_hour("r", 1, obs, config)
            if alert is not None:
                return obs.hour
        raise AssertionError("never due")

    assert opened_at(12) - opened_at(1) == 11


def test_each_hour_goes_to_the_trend_less_what_all_the_robots_axes_show():
    from consumer_alerts.health.forecast import HourValue
    from consumer_alerts.health.monitor import AxisHealth

    monitor = HealthMonitor(CONFIG)
    robot = monitor._robot("r")
    robot.axes = {axis: AxisHealth() for axis in range(1, 8)}
    # the hall is warmer: every axis reads +0.05; axis 1 is also worn by 0.20
    done = {axis: HourValue(0.5, 0.05 + (0.20 if axis == 1 else 0.0), 0.005, 40) for axis in range(1, 7)}
    levels = {f.axis: f.level for f in monitor._hours("r", robot, done, [])}
    assert levels[1] == pytest.approx(0.20, abs=1e-6)
    assert all(levels[axis] == pytest.approx(0.0, abs=1e-6) for axis in range(2, 7))
    # an axis whose hour closes a cycle later is compared with the others' values of that same hour
    late = monitor._hours("r", robot, {7: HourValue(0.5, 0.06, 0.005, 40)}, [])
    assert late[0].level == pytest.approx(0.01, abs=1e-6)
