"""The one code path from a reading to alert events, shared by the service and the offline twin.

Per robot and axis, :class:`DetectorEngine` keeps the detectors and one lifecycle per detector. For each
reading it decides what the detectors may see:

- **Idle**: a row where no axis has a fresh non-zero value is idle; idle rows feed no baseline and fire
  nothing. ("Fresh" leaves out an axis repeating its previous non-zero value to the last digit: a sensor
  stuck high must not make an idle robot look busy, nor feed the other axes' baselines with zeros.)
- **Repeats** of the previous non-zero value go to the stuck detector only.
- **None** ("OK null") is nobody's evidence.
- A **stoppage** (no active row for ``stoppage_s``) closes the robot's open events of the statistical
  detectors at the last active reading; the z-score baseline restarts by itself.
- A reading not newer than the robot's last one is skipped: a redelivery after a restart changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from common.wire.schemas import Alert, Reading
from consumer_alerts.detectors import Detector
from consumer_alerts.detectors.residual import ResidualDetector
from consumer_alerts.detectors.stuck import StuckDetector
from consumer_alerts.detectors.zscore import ZScoreDetector
from consumer_alerts.lifecycle import Lifecycle
from consumer_alerts.model import AlertModel
from consumer_alerts.settings import ALL_DETECTORS, AlertsSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    detectors: tuple[str, ...] = ALL_DETECTORS
    z_window: int = 500
    z_min_samples: int = 100
    z_test_samples: int = 8
    z_threshold: float = 7.0
    z_error_threshold: float = 10.0
    z_hold_s: float = 0.0
    stoppage_s: float = 600.0
    holdoff_s: float = 300.0
    stuck_readings: int = 30
    skip_repeats: bool = True  # off for outside data (``score``), where repeated values are normal

    @classmethod
    def from_settings(cls, s: AlertsSettings) -> EngineConfig:
        return cls(
            tuple(s.detectors),
            s.z_window,
            s.z_min_samples,
            s.z_test_samples,
            s.z_threshold,
            s.z_error_threshold,
            s.z_hold_s,
            s.stoppage_reset_s,
            s.holdoff_s,
            s.stuck_readings,
        )


@dataclass
class AxisState:
    detectors: list[Detector]
    lifecycles: list[Lifecycle]
    stuck: Detector | None = None

    def has_open(self) -> bool:
        for life in self.lifecycles:  # a loop, not any() over a generator: asked for most axes of every reading
            if life.event is not None:
                return True
        return False


@dataclass
class RobotState:
    axes: dict[int, AxisState] = field(default_factory=dict)
    last_values: dict[int, float] = field(default_factory=dict)
    last_ts: float | None = None
    last_active: datetime | None = None


def freshness(
    last: dict[int, float], currents: dict[int, float | None], *, skip_repeats: bool = True
) -> tuple[dict[int, bool], bool]:
    """Which axes carry a fresh value (not a repeat of their last non-zero one), and whether the row is
    idle (no fresh non-zero value). Updates ``last``. Training uses the same rule."""
    fresh: dict[int, bool] = {}
    idle = True
    for axis, value in currents.items():
        if value is None:
            continue
        new = value == 0 or not skip_repeats or value != last.get(axis)
        last[axis] = value
        fresh[axis] = new
        if new and value != 0:
            idle = False
    return fresh, idle


class DetectorEngine:
    def __init__(self, config: EngineConfig | None = None, model: AlertModel | None = None) -> None:
        self.config = config or EngineConfig()
        self.model = model
        self.robots: dict[str, RobotState] = {}

    def process(self, reading: Reading) -> list[Alert]:
        """The alert events this reading opens, escalates, updates or closes."""
        robot = self.robots.get(reading.robot_id) or self.robots.setdefault(reading.robot_id, RobotState())
        ts = reading.ts.timestamp()
        if robot.last_ts is not None and ts <= robot.last_ts:
            return []
        robot.last_ts = ts
        fresh, idle = freshness(robot.last_values, reading.currents, skip_repeats=self.config.skip_repeats)
        out: list[Alert] = []
        if not idle:
            if (
                robot.last_active is not None
                and (reading.ts - robot.last_active).total_seconds() > self.config.stoppage_s
            ):
                out += self._close_all(robot, robot.last_active, stoppage=True)
            robot.last_active = reading.ts
        for axis, value in reading.currents.items():
            state = robot.axes.get(axis) or self._new_axis(robot, reading.robot_id, axis)
            if (value is None or (idle and value == 0)) and not state.has_open():
                # Nothing to judge and no event to age (most rows: idle, or an axis without a channel).
                for detector in state.detectors:
                    detector.normalized = 0.0
                if value == 0 and state.stuck is not None:
                    state.stuck.update(ts, 0.0)  # a zero ends a stuck run
                continue
            clean = value if fresh.get(axis) else None
            for detector, life in zip(state.detectors, state.lifecycles):
                finding = detector.update(ts, value if detector is state.stuck else clean, idle=idle)
                if finding is not None or life.event is not None:
                    alert = life.step(reading.ts, finding, detector.observed)
                    if alert is not None:
                        out.append(alert)
        return out

    def axis_state(self, robot_id: str, axis: int) -> AxisState:
        """The detectors and lifecycles of one robot's axis, made on first sight."""
        robot = self.robots.get(robot_id) or self.robots.setdefault(robot_id, RobotState())
        return robot.axes.get(axis) or self._new_axis(robot, robot_id, axis)

    def _new_axis(self, robot: RobotState, robot_id: str, axis: int) -> AxisState:
        c = self.config
        detectors: list[Detector] = []
        axis_model = self.model.axes.get(axis) if self._model_applies(robot_id) else None
        for name in c.detectors:
            if name == "zscore":
                detectors.append(
                    ZScoreDetector(
                        window=c.z_window,
                        test_samples=c.z_test_samples,
                        threshold=c.z_threshold,
                        error_threshold=c.z_error_threshold,
                        min_samples=c.z_min_samples,
                        stoppage_s=c.stoppage_s,
                        hold_s=c.z_hold_s,
                    )
                )
            elif name == "residual" and axis_model is not None:
                detectors.append(ResidualDetector(axis_model, stoppage_s=c.stoppage_s))
            elif name == "stuck":
                run = 2 * axis_model.stuck_run if axis_model is not None else 0
                detectors.append(StuckDetector(readings=max(c.stuck_readings, run)))
        lifecycles = [Lifecycle(robot_id, axis, d.name, holdoff_s=c.holdoff_s) for d in detectors]
        stuck = next((d for d in detectors if d.name == "stuck"), None)
        state = robot.axes[axis] = AxisState(detectors, lifecycles, stuck)
        return state

    def _model_applies(self, robot_id: str) -> bool:
        return self.model is not None and self.model.robot_id in (None, robot_id)

    @staticmethod
    def _close_all(robot: RobotState, at: datetime, *, stoppage: bool = False) -> list[Alert]:
        out = []
        for state in robot.axes.values():
            for detector, life in zip(state.detectors, state.lifecycles):
                if stoppage and detector.name == "stuck":
                    continue  # a stuck sensor shows idle or not: a stoppage does not end it
                alert = life.close(at)
                if alert is not None:
                    out.append(alert)
        return out

    def scores(self, robot_id: str, axis: int) -> float | None:
        """The axis's last anomaly score in [0, 1] (the highest over its detectors), for ``score``."""
        robot = self.robots.get(robot_id)
        state = robot.axes.get(axis) if robot else None
        if state is None or not state.detectors:
            return None
        return max(d.normalized for d in state.detectors)

    def open_events(self) -> list[tuple[str, int, str]]:
        return [
            (life.robot_id, life.axis, life.detector)
            for robot in self.robots.values()
            for state in robot.axes.values()
            for life in state.lifecycles
            if life.event is not None
        ]
