"""The health pipeline in the stream: readings in, health events and "maintenance due" alert events out.

Per robot: readings -> :class:`CycleSplitter` -> work cycle -> :class:`AxisBaseline` (deviation per axis)
-> one :class:`HourlyMedian` per axis -> the hour's value less the robot's common mode (``common_mode``:
what all its axes show at once) -> one :class:`WearTrend` per axis -> a forecast of the crossing of the
limit, once an hour. Each finished cycle is a health event ("cycle"), each hour's forecasts of a robot another
("forecast"); both go to the health topic, from which consumer_db stores them.

"Maintenance due" goes through the alert lifecycle of every other event (:class:`Lifecycle`, detector
``maintenance_due``): it opens when the forecast crossing is at most ``due_days`` ahead (ERROR once the
level has crossed the limit), is updated when it grows more urgent, and closes once the forecast has stayed
beyond ``due_days`` for ``holdoff_h`` hours (the forecast receded), or when the axis's part is replaced
(:meth:`HealthMonitor.restart`). Its ``peak_amps`` is the health level (relative excess of current over the
learned normal, not amps), its ``score`` the urgency 1 - days_left / (2 · due_days): 0.5 at the due
horizon, 1 at the crossing, like the detectors' scores.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.wire.schemas import MAINTENANCE_DUE_DETECTOR, Alert, AxisForecast, HealthEvent, Reading, Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.health.baseline import AxisBaseline
from consumer_alerts.health.cycles import Cycle, CycleSplitter
from consumer_alerts.health.forecast import HOUR_S, Forecast, HourlyMedian, HourValue, WearTrend, common_mode
from consumer_alerts.lifecycle import Lifecycle

DETECTOR = MAINTENANCE_DUE_DETECTOR


@dataclass(frozen=True)
class HealthConfig:
    """What the pipeline needs of the settings (consumer_alerts.settings: HEALTH_*)."""

    limit: float = 0.30  # the deviation at which an axis needs a visit (relative excess of RMS current)
    due_days: float = 7.0
    holdoff_h: float = 24.0
    min_hours: int = 24  # hourly values an axis's trend needs before it may call maintenance due
    min_level: float = 0.10  # the level the trend must show before it may: wear seen, not only a slope
    hold_hours: int = 12  # hourly forecasts in a row that must say "due" before it opens: one jump of the trend is not

    @classmethod
    def from_settings(cls, s) -> HealthConfig:
        return cls(
            s.health_limit,
            s.health_due_days,
            s.health_holdoff_h,
            s.health_min_hours,
            s.health_min_level,
            s.health_hold_hours,
        )


@dataclass
class AxisHealth:
    hourly: HourlyMedian = field(default_factory=HourlyMedian)
    trend: WearTrend = field(default_factory=WearTrend)
    hours: int = 0  # hourly values the trend has taken
    due: Lifecycle | None = None
    due_hours: int = 0  # hourly forecasts in a row that said "due"

    def take_hour(
        self, robot_id: str, axis: int, hour: HourValue, config: HealthConfig
    ) -> tuple[Forecast, Alert | None]:
        """The trend takes the hour's value; its forecast, and the maintenance_due event it changed (if any).
        The one rule for the stream and bench/forecast_quality."""
        self.trend.update(hour)
        self.hours += 1
        forecast = self.trend.forecast(config.limit)
        if self.due is None:
            self.due = Lifecycle(robot_id, axis, DETECTOR, holdoff_s=config.holdoff_h * HOUR_S)
        at = datetime.fromtimestamp(forecast.now * HOUR_S, UTC)
        finding = _finding(forecast, self.hours, config)
        self.due_hours = self.due_hours + 1 if finding is not None else 0
        if self.due.event is None and self.due_hours < config.hold_hours:
            finding = None  # not yet: it has to say so for hold_hours in a row
        return forecast, self.due.step(at, finding, observed=True)


@dataclass
class RobotHealth:
    splitter: CycleSplitter
    baseline: AxisBaseline = field(default_factory=AxisBaseline)
    axes: dict[int, AxisHealth] = field(default_factory=dict)
    latest: dict[int, HourValue] = field(default_factory=dict)  # each axis's last hour, for the common mode


class HealthMonitor:
    """Health of every robot's axes. ``process(reading)`` returns the maintenance-due alert events the
    reading caused; the health events wait in ``outbox`` until ``take_events()``."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self.robots: dict[str, RobotHealth] = {}
        self.outbox: list[HealthEvent] = []

    def process(self, reading: Reading, *, clock_went_back: bool = False) -> list[Alert]:
        """``clock_went_back``: the detectors followed the robot's clock back at it (``CycleSplitter.push``)."""
        robot = self._robot(reading.robot_id)
        alerts: list[Alert] = []
        for cycle in robot.splitter.push(reading.ts.timestamp(), reading.currents, clock_went_back=clock_went_back):
            alerts += self._cycle(reading.robot_id, robot, cycle)
        return alerts

    def flush(self) -> list[Alert]:
        """End of a feed (backfill): the cycles in progress and the last hour of every axis."""
        alerts: list[Alert] = []
        for robot_id, robot in self.robots.items():
            for cycle in robot.splitter.flush():
                alerts += self._cycle(robot_id, robot, cycle)
            done = {axis: hour for axis, health in robot.axes.items() if (hour := health.hourly.flush()) is not None}
            if forecasts := self._hours(robot_id, robot, done, alerts):
                at = datetime.fromtimestamp(max(hour.hour for hour in done.values()) * HOUR_S, UTC)
                self.outbox.append(HealthEvent(robot_id=robot_id, kind="forecast", start=at, forecasts=forecasts))
        return alerts

    def take_events(self) -> list[HealthEvent]:
        events, self.outbox = self.outbox, []
        return events

    def restart(self, robot_id: str, axis: int, at: datetime) -> Alert | None:
        """A part was replaced: the axis learns its normal again, its trend starts over, its due event closes."""
        robot = self._robot(robot_id)
        robot.baseline.restart(axis)
        robot.latest.pop(axis, None)
        health = robot.axes.pop(axis, None)
        return health.due.close(at) if health is not None and health.due is not None else None

    def _robot(self, robot_id: str) -> RobotHealth:
        robot = self.robots.get(robot_id)
        if robot is None:
            robot = self.robots[robot_id] = RobotHealth(CycleSplitter(robot_id))
        return robot

    def _cycle(self, robot_id: str, robot: RobotHealth, cycle: Cycle) -> list[Alert]:
        deviations = robot.baseline.deviations(cycle)
        carried = robot.baseline.carried_over
        start = datetime.fromtimestamp(cycle.start, UTC)
        self.outbox.append(
            HealthEvent(
                robot_id=robot_id,
                kind="cycle",
                start=start,
                end=datetime.fromtimestamp(cycle.end, UTC),
                cold=cycle.cold,
                cut=cycle.cut,
                axes=[  # dicts, validated in one go by pydantic's core: a model each costs twice as much
                    {
                        "axis": axis,
                        "energy_as": ind.energy_as,
                        "energy_a2s": ind.energy_a2s,
                        "peak_amps": ind.peak,
                        "rms_amps": ind.rms,
                        "covered_s": ind.covered_s,
                        "deviation": deviations.get(axis),
                    }
                    for axis, ind in sorted(cycle.axes.items())
                ],
            )
        )
        alerts: list[Alert] = []
        done = {}
        for axis in sorted(deviations.keys() | carried):
            health = robot.axes.get(axis) or robot.axes.setdefault(axis, AxisHealth())
            hour = health.hourly.push(cycle.start, deviations.get(axis), program_change=axis in carried)
            if hour is not None:
                done[axis] = hour
        if forecasts := self._hours(robot_id, robot, done, alerts):
            self.outbox.append(HealthEvent(robot_id=robot_id, kind="forecast", start=start, forecasts=forecasts))
        return alerts

    def _hours(
        self, robot_id: str, robot: RobotHealth, done: dict[int, HourValue], alerts: list[Alert]
    ) -> list[AxisForecast]:
        """The hours just closed, each less the robot's common mode of that hour (``common_mode``: what all its
        axes show at once is not one joint's wear). A robot's hours close together, on the first cycle of the
        next hour; one that closes later finds the others' still in ``latest``."""
        robot.latest.update(done)
        common: dict[float, float] = {}  # one per hour closed (nearly always one)
        forecasts = []
        for axis, hour in done.items():
            if hour.hour not in common:
                common[hour.hour] = common_mode([h.value for h in robot.latest.values() if h.hour == hour.hour])
            relative = dataclasses.replace(hour, value=hour.value - common[hour.hour])
            forecasts.append(self._hour(robot_id, axis, robot.axes[axis], relative, alerts))
        return forecasts

    def _hour(self, robot_id: str, axis: int, health: AxisHealth, hour: HourValue, alerts: list[Alert]) -> AxisForecast:
        forecast, alert = health.take_hour(robot_id, axis, hour, self.config)
        if alert is not None:
            alerts.append(alert)
        return AxisForecast(
            axis=axis,
            level=round(forecast.level, 5),
            slope_per_day=round(forecast.slope_per_day, 6),
            limit=self.config.limit,
            days_left=_days(forecast.crossing - forecast.now),
            low_days=_days(forecast.low - forecast.now),
            high_days=_days(forecast.high - forecast.now),
        )


def _finding(forecast: Forecast, hours: int, c: HealthConfig) -> Finding | None:
    days_left = forecast.hours_left() / 24
    if hours < c.min_hours or days_left > c.due_days or forecast.level < c.min_level:
        return None
    crossed = forecast.level >= c.limit
    return Finding(
        Severity.ERROR if crossed else Severity.ALERT,
        forecast.level,
        max(0.0, min(1.0, 1 - days_left / (2 * c.due_days))),
        1.0 if crossed else 0.5,
    )


def _days(hours: float) -> float | None:
    return None if math.isinf(hours) else round(max(hours, 0.0) / 24, 4)
