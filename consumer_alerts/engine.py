"""The one code path from a reading to alert events, shared by the service and the offline twin.

Per robot and axis, :class:`DetectorEngine` keeps the detectors (made by name from
:mod:`consumer_alerts.detectors.registry`) and one lifecycle per kind of event they raise (a finding of a
detector's other kind goes on in its event open on the axis: ``lifecycle.lifecycle_for``). Around them it
keeps the domain's rules:

- **Idle** (``idle_rule``, on for robots): a row where no axis has a fresh non-zero value is idle; its zeros
  feed no baseline and fire nothing. ("Fresh" leaves out an axis repeating its previous non-zero value to the
  last digit: a sensor stuck high must not make an idle robot look busy, nor feed the other axes' baselines
  with zeros.) A non-zero value on an idle row is still judged by the detectors that take repeats: a level
  far from normal is never hidden by the rule.
- **Repeats** of the previous non-zero value reach only the detectors that take them (``stuck``, ``level``:
  a value clamped far from normal is an over- or under-load as well as a stuck sensor); what they raise on a
  repeat is at most an ALERT, since a stuck sensor reads the same.
- **None** ("OK null") is nobody's evidence; an axis that has read only None (an export's columns for axes the
  robot lacks) gets its detectors and lifecycles with its first value.
- A **stoppage** (no active row for ``stoppage_s`` and ``stoppage_readings`` of the robot's own sampling
  intervals) closes the robot's open events of the statistical detectors at the last active reading.
- An event closes after ``holdoff_s`` and ``holdoff_readings`` of the robot's sampling intervals of quiet.
- A reading not newer than the robot's last one is skipped: a redelivery after a restart changes nothing.
  ``SET_BACK_RUN`` in a row more than a stoppage older, each later than the one before and none a redelivery,
  are the robot's clock going back (``common.wire.clock``): inside a leap ahead of the robot's time, its clock
  coming back, judged on from the reading before the leap (``_came_back``); elsewhere its clock set back, its
  time starting again from the run's last (``_set_back``). Given the reading's place on Kafka
  (``process(reading, place)``), a reading before the place the robot's state reflects is a redelivery whatever
  its time; offline, only readings inside a leap or before the robot's first are known not to be. Given the
  time of the reading's Kafka record (``process(reading, place, record_ts)``), a leap its record's time leapt with
  is a silence (an outage), and readings later stamped inside it are late ones sent from a buffer, skipped however
  many come in a row (``common.wire.clock.next_silence``).
- **The model**: a robot without a model file learns its own after ``model_learn_readings`` active rows, and
  any robot's model is learned again after a lasting, broad change (``model_relearn_s``; see
  :mod:`consumer_alerts.learning`), announced by one ``model`` event (INFO) on axis 0, open until the new
  model is in use. The residual detector is off while a robot has no model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from common.wire.clock import (
    NO_LEAP,
    SET_BACK_RUN,
    before_first,
    comes_back,
    far_behind_run,
    late,
    longer,
    next_leap,
    next_silence,
)
from common.wire.schemas import Alert, Reading, ReadingValues, Severity, iso_utc
from consumer_alerts.detectors import Detector, Finding
from consumer_alerts.detectors.load import FLAT_RUN
from consumer_alerts.detectors.registry import AXIS_DETECTORS, ROBOT_DETECTORS, AxisContext, RobotContext
from consumer_alerts.detectors.residual import moved_together
from consumer_alerts.detectors.scoring import ALERT_SCORE, SamplingInterval
from consumer_alerts.detectors.severity import GrossChange, flat_ratio, level_ratio
from consumer_alerts.lifecycle import Lifecycle, OpenCount, lifecycle_for
from consumer_alerts.model import AlertModel
from consumer_alerts.settings import AlertsSettings

if TYPE_CHECKING:
    from consumer_alerts.learning import ModelLearner

logger = logging.getLogger(__name__)
MODEL_EVENT = "model"  # the kind of the event that says a robot's model is being learned again
# Detectors whose ALERTs wait while a broad change is timed: a new program moves their levels (the residual's
# model and the load's normal level are the old program's), and they learn it again once it is confirmed.
HELD_DETECTORS = ("residual", "load")
# The share of MODEL_RELEARN_S held ALERTs still wait after a change being timed goes away: near the limit the
# running means dip under it and come back within minutes, and releasing at every dip let bursts of the new
# program's ALERTs out (tuning seeds: most of the events after a program change).
RELEASE_AFTER = 1 / 6
# A timing that keeps going away and coming back never confirms: an ALERT held this many MODEL_RELEARN_S is raised.
HOLD_AT_MOST = 2
CONTINUED_SCORE = 0.3  # ``scores`` of a reading whose axis already has its event open: below the alert level


# EngineConfig's names that differ from the setting they come from; every other field has its setting's name.
_SETTING_OF = {"stoppage_s": "stoppage_reset_s"}


def _default(name: str):
    value = AlertsSettings.model_fields[_SETTING_OF.get(name, name)].default
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs of the settings; each default is the setting's own (one place for each)."""

    detectors: tuple[str, ...] = _default("detectors")
    z_window: int = _default("z_window")
    z_min_samples: int = _default("z_min_samples")
    z_test_samples: int = _default("z_test_samples")
    z_threshold: float = _default("z_threshold")
    z_error_threshold: float = _default("z_error_threshold")
    z_hold_s: float = _default("z_hold_s")
    stoppage_s: float = _default("stoppage_s")
    stoppage_readings: float = _default("stoppage_readings")
    holdoff_s: float = _default("holdoff_s")
    holdoff_readings: int = _default("holdoff_readings")
    stuck_readings: int = _default("stuck_readings")
    idle_rule: bool = _default("idle_rule")
    level_warmup: int = _default("level_warmup")
    level_warmup_s: float = _default("level_warmup_s")
    level_short: int = _default("level_short")
    level_average: int = _default("level_average")
    level_history: int = _default("level_history")
    level_alpha: float = _default("level_alpha")
    level_alert_tail: float = _default("level_alert_tail")
    level_extreme_tolerance: float = _default("level_extreme_tolerance")
    level_extreme_absorb: int = _default("level_extreme_absorb")
    level_novelty_levels: int = _default("level_novelty_levels")
    level_novelty_order: int = _default("level_novelty_order")
    level_novelty_quiet: int = _default("level_novelty_quiet")
    level_error_score: float = _default("level_error_score")
    level_low_error_score: float = _default("level_low_error_score")
    level_hold_s: float = _default("level_hold_s")
    load_window: int = _default("load_window")
    load_warmup: int = _default("load_warmup")
    load_alpha: float = _default("load_alpha")
    load_sigmas: float = _default("load_sigmas")
    load_min_ratio: float = _default("load_min_ratio")
    load_absorb: int = _default("load_absorb")
    load_hold_s: float = _default("load_hold_s")
    gross_high: float = _default("gross_high")
    gross_low: float = _default("gross_low")
    multivariate_halflife_rows: float = _default("multivariate_halflife_rows")
    multivariate_alpha: float = _default("multivariate_alpha")
    multivariate_window: int = _default("multivariate_window")
    multivariate_stride: int = _default("multivariate_stride")
    model_learn_readings: int = _default("model_learn_readings")
    model_relearn_s: float = _default("model_relearn_s")
    model_relearn_shift: float = _default("model_relearn_shift")
    model_relearn_axes: float = _default("model_relearn_axes")
    skip_repeats: bool = True  # off for outside data (``score``), where repeated values are normal

    @classmethod
    def from_settings(cls, s: AlertsSettings) -> EngineConfig:
        values = {f.name: getattr(s, _SETTING_OF.get(f.name, f.name)) for f in fields(cls) if f.name != "skip_repeats"}
        return cls(**{**values, "detectors": tuple(s.detectors)})


@dataclass
class AxisState:
    detectors: list[Detector]
    lifecycles: list[Lifecycle]
    groups: list[tuple[Detector, tuple[Lifecycle, ...]]]  # each detector with the lifecycles of its kinds
    opened: OpenCount  # how many of ``lifecycles`` have an event open
    stuck: Detector | None = None
    load: object | None = None  # the load detector's scorer: the axis's level over normal, for every severity
    model: object | None = None  # the axis's model, if any
    median: float | None = None  # its median current: the normal level until ``load`` has learnt it
    raised: bool = False  # the last reading opened an event on this axis
    zeroed: bool = False  # every detector's ``normalized`` is 0 already (skipped rows need not set it again)
    # A flat value that went to 0 while the robot rested and came back exactly is the joint's current held at a
    # limit (a clamp), sized like any level; one that stays while the robot rests is the sensor's.
    flat: float = 0.0  # the axis's last non-zero value
    rested: bool = False  # it read 0 on an idle row since
    follows: bool = False  # its flat value came back after a rest
    # Per kind of event: an ALERT held while a broad change is timed (when it was first held, the strongest, and
    # the last reading it fired on: released after its condition ended, the event closes as of then).
    held: dict[str, tuple[datetime, Finding, datetime | None]] = field(default_factory=dict)
    # A rise sized past the gross line (``_sized``): readings in a row so far, and the last one's time.
    gross_run: int = 0
    gross_ts: float | None = None

    def has_open(self) -> bool:
        return self.opened.open > 0  # counted by the lifecycles: asked for every axis of every reading


def load_scorers(state: AxisState | None) -> list:
    """The scorers of an axis's `load` detectors (none for an axis not seen yet): what a re-learn re-levels or
    restarts (``DetectorEngine._relevel``, ``DetectorEngine._restart_load``)."""
    return [detector.scorer for detector in state.detectors if detector.name == "load"] if state is not None else []


@dataclass
class RobotState:
    axes: dict[int, AxisState] = field(default_factory=dict)
    last_values: dict[int, float] = field(default_factory=dict)
    last_ts: float | None = None
    # the span the robot's time last leapt over by more than a stoppage (``common.wire.clock``): readings back
    # inside it are its clock coming back from ahead (``_came_back``), never redeliveries
    leap: tuple[float, float] = NO_LEAP
    # the span of the robot's last silence, a leap its Kafka records' times leapt with (``common.wire.clock``):
    # readings inside it are late ones sent from a buffer, never its clock coming back nor set back
    silence: tuple[float, float] = NO_LEAP
    last_record_ts: float | None = None  # the time of the newest reading's Kafka record (None: not known)
    last_active: datetime | None = None
    interval: SamplingInterval = field(default_factory=SamplingInterval)
    learner: ModelLearner | None = None  # the robot's model, learned or watched (None: fixed, or no residual)
    release_at: float | None = None  # a change being timed went away: what is held is raised then, if it stays away
    held_since: float | None = None  # when the oldest ALERT still held was held
    resting: bool = False  # the reading being judged is idle: the lifecycles count it as rest
    # the robot's newest when a reading far behind it was last warned of: warned again once the newest has moved
    # by more than a stoppage (old readings sent between live ones would otherwise be warned of one by one)
    said_behind: float | None = None
    # (partition, offset) on the readings topic: the robot's readings there before the offset are in its state (the
    # state topic's record says it after a restart); None: not known (offline, or a state without it)
    read_to: tuple[int, int] | None = None
    # readings in a row from new places (or inside the leap), each more than a stoppage behind the newest: (how many,
    # the last one's time)
    set_back_run: tuple[int, float] | None = None
    # readings in a row from places before read_to, each newer than the newest: (how many, the last one's time)
    offsets_back_run: tuple[int, float] | None = None

    def holding(self) -> bool:
        return self.learner is not None and (self.learner.pending or self.release_at is not None)


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
        if value == 0:
            fresh[axis] = True
        elif not skip_repeats or value != last.get(axis):
            fresh[axis], idle = True, False
        else:
            fresh[axis] = False
        last[axis] = value
    return fresh, idle


class DetectorEngine:
    def __init__(self, config: EngineConfig | None = None, model: AlertModel | None = None) -> None:
        self.config = config or EngineConfig()
        self.model = model
        self.robots: dict[str, RobotState] = {}
        self._robot_detectors = any(name in ROBOT_DETECTORS for name in self.config.detectors)
        self.gross = GrossChange(self.config.gross_high, self.config.gross_low)
        self._learns = "residual" in self.config.detectors

    def robot(self, robot_id: str) -> RobotState:
        """The robot's state, made on first sight (with its model learner when the service learns it)."""
        robot = self.robots.get(robot_id)
        if robot is None:
            robot = self.robots[robot_id] = RobotState(learner=self._new_learner(robot_id))
        return robot

    def _new_learner(self, robot_id: str) -> ModelLearner | None:
        c = self.config
        given = self.model if self._model_applies(robot_id) else None
        if not self._learns or (given is None and c.model_learn_readings <= 0) or (given and c.model_relearn_s <= 0):
            return None  # a fixed model (or none): nothing to learn or watch
        from consumer_alerts.learning import ModelLearner  # here: training imports this module's freshness rule

        return ModelLearner(
            robot_id,
            readings=c.model_learn_readings,
            relearn_s=c.model_relearn_s,
            relearn_shift=c.model_relearn_shift,
            relearn_axes=c.model_relearn_axes,
            model=given,
        )

    def newest(self, robot_id: str) -> float | None:
        """The time of the robot's newest reading judged (epoch seconds); None for a robot not seen yet."""
        robot = self.robots.get(robot_id)
        return robot.last_ts if robot is not None else None

    def process(
        self, reading: Reading | ReadingValues, place: tuple[int, int] | None = None, record_ts: float | None = None
    ) -> list[Alert]:
        """The alert events this reading opens, escalates, updates or closes. ``place``: the reading's
        (partition, offset) on Kafka, when it came from there: what tells a redelivery from a clock set back;
        ``record_ts``: its Kafka record's time (epoch seconds): what tells an outage from a clock leaping ahead."""
        robot = self.robots.get(reading.robot_id) or self.robot(reading.robot_id)
        ts = reading.ts.timestamp()
        c = self.config
        last_ts = robot.last_ts
        out: list[Alert] = []
        new = False  # the reading is past what the robot's state reflects (False: not known to be)
        if place is not None:
            read_to = robot.read_to
            if read_to is not None and read_to[0] == place[0]:  # on another partition, offsets do not compare
                if place[1] >= read_to[1]:
                    new = True
                elif not self._offsets_started_again(robot, reading, place):
                    return []  # redelivered: its state has judged it already, whatever its time
            robot.read_to = (place[0], place[1] + 1)
        if last_ts is not None and ts <= last_ts:
            if late(robot.silence, last_ts, ts, self._stoppage(robot)):
                self._say_behind(robot, reading, new, in_silence=True)
                return []  # sent late from a buffer, however many in a row: too late to judge
            from_ahead = comes_back(robot.leap, last_ts, ts, self._stoppage(robot))
            # nothing was judged inside a leap's span nor before the robot's first reading: no redelivery falls there
            new = new or from_ahead or before_first(robot.leap, ts)
            if not (new and self._went_back(robot, ts)):
                self._say_behind(robot, reading, new)
                return []  # redelivered, or a little out of order: judged already, or too late to judge
            if from_ahead:
                self._came_back(robot, reading, out)
                last_ts = robot.leap[0]  # judged on from the robot's reading before the leap
                robot.leap = NO_LEAP
            else:
                self._set_back(robot, reading, out)
                last_ts = None  # judged on as the robot's first reading, its leap from the beginning of time
                robot.leap = next_leap(robot.leap, None, ts, c.stoppage_s)
                robot.silence = NO_LEAP
        else:
            # any step over STOPPAGE_RESET_S is kept (the robot's own bound is at least that, and is asked
            # only when a reading comes back: cheaper than asking it at every reading)
            robot.leap = next_leap(robot.leap, last_ts, ts, c.stoppage_s)
            if record_ts is not None:
                robot.silence = next_silence(robot.silence, last_ts, robot.last_record_ts, ts, record_ts, c.stoppage_s)
        if last_ts is not None:
            robot.interval.push(ts - last_ts)
        robot.last_ts, robot.last_record_ts = ts, record_ts
        robot.set_back_run = robot.offsets_back_run = None
        fresh, idle = freshness(robot.last_values, reading.currents, skip_repeats=c.skip_repeats)
        idle = robot.resting = idle and c.idle_rule
        if not idle:
            rested = (reading.ts - robot.last_active).total_seconds() if robot.last_active is not None else 0.0
            if rested > self._stoppage(robot):
                out += self._close_all(robot, robot.last_active, stoppage=True)
                if robot.learner is not None:
                    self._stopped(robot, rested)
            robot.last_active = reading.ts
            if robot.learner is not None:
                pending = robot.learner.pending
                learnt = robot.learner.observe(ts, reading.ts, reading.currents, fresh)
                if learnt:
                    robot.release_at = None
                    self._model_changed(robot, reading.robot_id, reading.ts, learnt, out)
                elif robot.learner.pending:
                    robot.release_at = None  # timed again: what was held waits for this verdict
                elif pending and self._held_axes(robot) >= 2:
                    robot.release_at = ts + c.model_relearn_s * RELEASE_AFTER  # looks like a program: wait
                elif pending:
                    self._release(robot, out)  # one axis's fault: raised at once
                elif robot.release_at is not None and ts >= robot.release_at:
                    self._release(robot, out)
                if robot.held_since is not None and ts - robot.held_since >= HOLD_AT_MOST * c.model_relearn_s:
                    self._release(robot, out)
        axes = robot.axes
        for axis, value in reading.currents.items():
            state = axes.get(axis)
            if state is None:
                if value is None:
                    continue  # no value yet: nothing to judge, nothing open (see the module's docstring)
                state = self._new_axis(robot, reading.robot_id, axis)
            state.raised = False
            # Without a finding, a detector's step only ages open events: with none open (most readings), none is
            # taken. (A step changes only its own detector's events: what was open before the loop is what counts.)
            aging = state.opened.open > 0  # ``has_open()``, read directly: asked for every axis of every reading
            if not aging and (value is None or (idle and value == 0)):
                # Nothing to judge and no event to age (most rows: idle, or an axis without a channel).
                if not state.zeroed:
                    for detector in state.detectors:
                        detector.normalized = 0.0
                    state.zeroed = True
                if value == 0:
                    state.rested = True
                continue
            state.zeroed = False
            clean = value if fresh.get(axis) else None
            if value:
                if idle:
                    state.follows = state.rested = False  # read while the robot rests: the sensor's value
                else:
                    state.follows = value == state.flat and (state.follows or state.rested)
                    state.flat, state.rested = value, False
            elif value == 0 and idle:
                state.rested = True
            for detector, lives in state.groups:
                finding = detector.update(ts, value if detector.takes_repeats else clean, idle=idle)
                if finding is not None and self._moved_together(robot, state, detector, finding, lives):
                    finding = None  # not an event of its own: a program moves most axes (docs: "A broad move")
                if finding is None:
                    if aging:
                        self._step(robot, state, lives, reading.ts, None, detector.observed, out)
                    continue
                if detector.name in HELD_DETECTORS and robot.holding():
                    # held on the detector's own verdict: its ERRORs (spikes) are never held; a surge that may be
                    # a heavier load's peak is an ALERT, held like the others. One whose event is open goes on
                    # (still noted as held): held, the event would age as quiet, close, and come back when released.
                    kind = finding.kind or detector.name
                    taker = lifecycle_for(lives, kind, finding.axis)
                    going_on = taker is not None and taker.event is not None
                    if self._hold(state, reading.ts, finding, kind, going_on=going_on) is None and not going_on:
                        finding = None
                        robot.held_since = robot.held_since or ts
                if finding is not None and clean is None and finding.severity is Severity.ERROR:
                    # An exact repeat is no proof that the joint draws that much (a stuck sensor reads the
                    # same): a level far from normal on repeats is raised, as a maintenance ALERT.
                    finding = replace(finding, severity=Severity.ALERT, threshold=ALERT_SCORE)
                # the stuck rule's finding is sized only for a clamp (its flat value follows the rests)
                if finding is not None and not finding.instant and (detector is not state.stuck or state.follows):
                    finding = self._sized(robot, state, finding, ts, repeat=clean is None)
                if finding is not None or aging:
                    self._step(robot, state, lives, reading.ts, finding, detector.observed, out)
        if self._robot_detectors:
            state = axes.get(0) or self._new_axis(robot, reading.robot_id, 0)
            state.raised = False
            if idle and not state.has_open():  # a robot detector judges no idle row: nothing to judge or age
                if not state.zeroed:
                    for detector in state.detectors:
                        detector.normalized = 0.0
                    state.zeroed = True
                return out
            state.zeroed = False
            aging = state.has_open()  # as for an axis: without a finding or an open event, a step does nothing
            if aging:
                self._sensor_back(robot, state, reading.ts)
            for detector, lives in state.groups:
                finding = detector.update(ts, reading.currents, idle=idle)
                if finding is None and not aging:
                    continue
                if finding is not None and finding.axis is not None:
                    flat = self._blame_flat(robot, lives, finding, reading.currents)
                    if flat is finding:
                        shares = getattr(detector, "shares", {})
                        flat = self._blame_open(robot, lives, finding, reading.currents, shares)
                    finding = flat
                    if getattr(detector, "sized_by_axis", False) and finding.axis in axes:  # the one rule
                        finding = self._sized(
                            robot, axes[finding.axis], finding, ts, repeat=not fresh.get(finding.axis, True)
                        )
                repeat = finding is not None and self._on_repeat(lives, finding, fresh)
                if repeat and finding.severity is Severity.ERROR:
                    finding = replace(finding, severity=Severity.ALERT, threshold=ALERT_SCORE)  # as for an axis
                self._step(robot, state, lives, reading.ts, finding, detector.observed, out)
                for life in lives if repeat else ():
                    if life.event is not None:
                        life.event.on_repeat = True  # its window still holds the repeats after they end
        return out

    def _sized(self, robot: RobotState, state: AxisState, finding: Finding, ts: float, *, repeat: bool) -> Finding:
        """The one severity rule (``detectors/severity.py``): ERROR for a gross change of the axis's level.
        A flat value (a repeat, or one still in the load's window) proves a gross level only when it is high
        and follows the robot's rests (a clamp); otherwise it may be a stuck sensor's, a maintenance ALERT.
        A rise is an ERROR once its level has stayed past the line for ``load_hold_s`` (``_held_gross``)."""
        ratio = level_ratio(state.load, state.median)
        load = state.load
        clamp = state.follows and load is not None and load.flat_now
        if clamp:  # the joint's current held flat: its value is its level, whatever the window still holds
            held = flat_ratio(load, state.flat, state.median)
            if held is not None and held > 1 and (ratio is None or held > ratio):
                ratio = held
        if ratio is None:
            return finding  # no normal level known yet: the detector's own severity
        gross = self.gross.severity(ratio) is Severity.ERROR
        if gross and (repeat or load.flat_recently) and not (clamp and ratio > 1):
            gross = False
        if ratio > 1 and not self._held_gross(robot, state, ts, gross):
            gross = False
        if not gross:
            return finding if finding.severity is Severity.ALERT else replace(finding, severity=Severity.ALERT)
        return replace(
            finding, severity=Severity.ERROR, score=ratio, threshold=self.gross.high if ratio > 1 else self.gross.low
        )

    def _held_gross(self, robot: RobotState, state: AxisState, ts: float, gross: bool) -> bool:
        """A rise past the gross line has held over readings in a row covering ``load_hold_s`` (each covering one
        of the robot's sampling intervals), as a load out of its band must before it fires. The window's level
        swings by a tenth around a fault's own level as the work goes on, so a fault at 1.9x touches 2x for a
        reading or a few in a long event, and one touch made the whole event an ERROR (docs/benchmarks.md,
        "A rise's ERROR"). A new event on the axis counts afresh."""
        if not gross or not state.has_open():
            state.gross_run, state.gross_ts = 0, None
            if not gross:
                return False
        if ts != state.gross_ts:
            state.gross_run, state.gross_ts = state.gross_run + 1, ts
        return state.gross_run * robot.interval.seconds >= self.config.load_hold_s

    @staticmethod
    def _blame_flat(robot: RobotState, lives: tuple[Lifecycle, ...], finding: Finding, currents) -> Finding:
        """A robot-level finding that opens an event while an axis of the robot reads one value over and over
        (its stuck rule's run at ``FLAT_RUN`` or more) is filed under that axis: a sensor stuck there explains a
        broken relation between the axes better than any share of the statistic."""
        if any(life.event is not None for life in lives):
            return finding  # the open event stays under the axis it was filed under
        flat, longest = None, FLAT_RUN - 1
        for axis, state in robot.axes.items():
            stuck = state.stuck
            if stuck is not None and stuck.run > longest and currents.get(axis):
                flat, longest = axis, stuck.run
        if flat is None or flat == finding.axis:
            return finding
        return replace(finding, axis=flat, value=float(currents[flat]))

    @staticmethod
    def _blame_open(
        robot: RobotState, lives: tuple[Lifecycle, ...], finding: Finding, currents, shares: dict[int, float]
    ) -> Finding:
        """A robot-level finding that opens an event while a per-axis event of the robot is open (or opened on
        this reading), none of them on the axis it blames, is filed under the open one with the largest share
        (``shares``: the detector's, on this reading): the per-axis detector has found where the change is, and
        a share of a broken relation can fall on an axis the change only unsettles (a healthy axis near its own
        limit)."""
        if any(life.event is not None for life in lives):
            return finding  # the open event stays under the axis it was filed under
        axes = robot.axes
        blamed = axes.get(finding.axis)
        if blamed is not None and blamed.has_open():
            return finding
        taken = [a for a, state in axes.items() if a and state.has_open() and currents.get(a) is not None]
        if not taken:
            return finding
        axis = max(taken, key=lambda a: (shares.get(a, 0.0), -a))
        return replace(finding, axis=axis, value=float(currents[axis]))

    @staticmethod
    def _sensor_back(robot: RobotState, state: AxisState, when: datetime) -> None:
        """A robot-level event raised on a stuck sensor's repeats, filed under its axis, is quiet from the
        reading that axis's ``stuck`` event goes quiet (the sensor reads live values again), and the detector
        forgets what it kept of the flat rows (``forget_flat``: the multivariate window): only live readings can
        keep the event open, since the lifecycle counts quiet only on judged rows."""
        for detector, lives in state.groups:
            forget = getattr(detector, "forget_flat", None)
            if forget is None:
                continue  # it would judge the flat rows again (a cycle holding them): its event drains as before
            for life in lives:
                event = life.event
                if event is None or not event.on_repeat or event.axis is None:
                    continue
                axis = robot.axes.get(event.axis)
                stuck = next((ls[0] for d, ls in axis.groups if d is axis.stuck), None) if axis is not None else None
                if stuck is None or stuck.event is None or stuck.event.clear_since != when:
                    continue
                if event.clear_since is None:
                    event.clear_since = when
                forget()

    @staticmethod
    def _on_repeat(lives: tuple[Lifecycle, ...], finding: Finding, fresh: dict[int, bool]) -> bool:
        """The axis a robot-level finding blames, or its open event is filed under, reads a repeat, or did
        while the event was open: such an event stays a maintenance ALERT (a stuck sensor reads the same)."""
        events = [life.event for life in lives if life.event is not None]
        if any(event.on_repeat for event in events):
            return True
        return any(a is not None and not fresh.get(a, True) for a in (finding.axis, *(e.axis for e in events)))

    def _step(
        self, robot: RobotState, state: AxisState, lives: tuple[Lifecycle, ...], when: datetime, finding, observed, out
    ) -> None:
        """Hand one detector's outcome to its lifecycles: the finding to the one that takes it (its kind's, or the
        other direction's event open on its axis: ``lifecycle_for``), "quiet" to the others."""
        if finding is None:
            for life in lives:
                if life.event is not None:
                    self._age(robot, state, life, when, None, observed, out)
            return
        taker = lifecycle_for(lives, finding.kind or lives[0].detector, finding.axis)
        for life in lives:
            if life is taker:
                self._age(robot, state, life, when, finding, observed, out)
            elif life.event is not None:
                self._age(robot, state, life, when, None, observed, out)

    def _age(
        self, robot: RobotState, state: AxisState, life: Lifecycle, when: datetime, finding, observed, out
    ) -> None:
        life.holdoff_s = max(self.config.holdoff_s, self.config.holdoff_readings * robot.interval.seconds)
        opened = life.event is None
        alert = life.step(when, finding, observed, robot.resting)
        if alert is not None:
            out.append(alert)
            state.raised = state.raised or (opened and life.event is not None)

    def restart_axis(self, robot_id: str, axis: int, at: datetime) -> list[Alert]:
        """A part was replaced (consumer_alerts.maintenance): the axis's detectors are dropped and made afresh
        on its next reading, learning the new part as on first sight; its open events close at ``at``."""
        robot = self.robots.get(robot_id)
        state = robot.axes.pop(axis, None) if robot is not None else None
        if state is None:
            return []
        robot.last_values.pop(axis, None)
        return [alert for life in state.lifecycles if (alert := life.close(at)) is not None]

    def axis_state(self, robot_id: str, axis: int) -> AxisState:
        """The detectors and lifecycles of one robot's axis (axis 0: the robot's own), made on first sight."""
        robot = self.robot(robot_id)
        return robot.axes.get(axis) or self._new_axis(robot, robot_id, axis)

    def _model_changed(self, robot: RobotState, robot_id: str, when: datetime, what: str, out: list[Alert]) -> None:
        """A model was just learned (the residual detectors start on it, and a re-learn's event closes) or
        dropped for a lasting change (the residual detectors stop, the ``model`` event opens, and the held
        residual ALERTs were the new program's). The held load ALERTs are the new program's too when they are
        on two axes or more: dropped, and the load detectors learn the new level again, keeping their spread
        (:meth:`_restart_load`); else the load detectors saw no program (one axis's fault, with the others'
        swings, can last as long) and what they held is raised."""
        from consumer_alerts.learning import CHANGED

        model = robot.learner.model
        relearn_load = what == CHANGED and "load" in self.config.detectors and self._load_moved(robot)
        for axis, state in robot.axes.items():
            if axis == 0:
                continue
            axis_model = model.axes.get(axis) if model is not None else None
            self._renew(robot_id, axis, state, "residual", axis_model, when, out)
            if relearn_load:
                self._restart_load(state, when, out)
        if what == CHANGED:
            self._release(robot, out)  # what is left held: load ALERTs on too few axes to be a program
            if not relearn_load:
                self._relevel(robot)
        life = next(life for life in self.axis_state(robot_id, 0).lifecycles if life.detector == MODEL_EVENT)
        if what == CHANGED:
            learner = robot.learner
            finding = Finding(Severity.INFO, 0.0, learner.share, self.config.model_relearn_axes)
            logger.info(
                "robot %r: lasting change on %.0f %% of its axes; learning its model again",
                robot_id,
                100 * learner.share,
            )
            alert = life.step(when, finding, True)
        else:
            logger.info("robot %r: model learned on axes %s", robot_id, ",".join(map(str, model.axes)))
            alert = life.close(when)
        if alert is not None:
            out.append(alert)

    @staticmethod
    def _stopped(robot: RobotState, rested: float) -> None:
        """The re-learn's clocks count work, not rest: the timing of a change, and how long what it holds has
        waited (``HOLD_AT_MOST``, ``RELEASE_AFTER``), move by the stoppage. Counted in feed time, a change seen
        before a long stoppage was confirmed on the first readings after it (a fault that had ended: 13 re-learns
        in the tuning seeds' fault runs), and ALERTs held since before it were raised by ``HOLD_AT_MOST`` before
        the re-learn came (docs/benchmarks.md section 5)."""
        robot.learner.stopped(rested)
        if robot.held_since is not None:
            robot.held_since += rested
        if robot.release_at is not None:
            robot.release_at += rested

    @staticmethod
    def _moved_together(robot: RobotState, state: AxisState, detector, finding: Finding, lives) -> bool:
        """An ALERT that would open an event while the robot's other axes have moved too: a new program's first
        minutes, before the learner's running means time it (``residual.moved_together``). The residual's long
        rule, and ``load``'s ALERTs while nothing is held (held, they are what tells the re-learn that ``load``
        saw the program too: :meth:`_load_moved`)."""
        if any(life.event is not None for life in lives):
            return False
        if detector.name == "residual":
            if not detector.long_alert:
                return False
        elif detector.name != "load" or finding.severity is not Severity.ALERT or robot.holding():
            return False
        return DetectorEngine._others_moved(robot, state)

    @staticmethod
    def _others_moved(robot: RobotState, state: AxisState) -> bool:
        """The robot's axes other than ``state``'s have moved together (``residual.moved_together``)."""
        others = (d for other in robot.axes.values() if other is not state for d in other.detectors)
        return moved_together(d for d in others if d.name == "residual")

    @staticmethod
    def _held_axes(robot: RobotState) -> int:
        return sum(1 for state in robot.axes.values() if state.held)

    @staticmethod
    def _load_moved(robot: RobotState) -> bool:
        """Load ALERTs are held on two axes or more: the load detectors too saw a program, not one axis's
        fault, taken for a program with the other axes' swings: a 20-minute drop was, on a tuning seed)."""
        moved = sum(1 for state in robot.axes.values() if any(kind.startswith("load") for kind in state.held))
        return moved >= 2

    @staticmethod
    def _relevel(robot: RobotState) -> None:
        """A re-learn the load detectors did not see as a program (:meth:`_load_moved`): what they held has been
        raised, and on the axes the change moved (``ModelLearner.moved``) `load` judges against the window's level
        from now on (:meth:`LoadScorer.relevel`). Left on the old program's level, such an axis sat at its band's
        edge for hours and alerted again and again (tuning seeds 1-40: 11 of the 87 events after a program
        change, five of them seed 28's axis 2 at 0.64x, 1.7-3.7 h after the re-learn)."""
        for axis in robot.learner.moved:
            for scorer in load_scorers(robot.axes.get(axis)):
                scorer.relevel()

    @staticmethod
    def _hold(state: AxisState, when: datetime, finding: Finding, kind: str, *, going_on: bool) -> Finding | None:
        """While a broad change is timed the levels learnt may be the old program's: ALERTs wait for the
        verdict (a spike, an ERROR, does not). Kept per kind: when the first was held, the strongest, and the last.
        One that goes on in its open event (``going_on``) is only noted, with no last (the axis counts as held
        while the change is timed); what was noted before it is its event's, so it is dropped."""
        if finding.severity is Severity.ERROR:
            return finding
        if going_on:
            state.held[kind] = (when, finding, None)
            return None
        held = state.held.get(kind)
        if held is None or held[2] is None:  # the first held since the change was timed, or since its event's last
            held = (when, finding, when)
        strongest = finding if finding.score > held[1].score else held[1]
        state.held[kind] = (held[0], strongest, when)
        return None

    def _release(self, robot: RobotState, out: list[Alert]) -> None:
        """The broad change went away before it lasted (a fault, not a program): the held ALERTs are raised,
        opened when they were first held. If it closes without firing again, it closes as of ``last``, the last
        reading its rule fired on while held: the condition cleared then, not at the release. The hold-off still
        runs from the release, so a rule that fires again soon goes on in the same event. An entry without
        ``last`` only noted findings that went on in their open event: that event had them (raised again, they
        made a second event inside the first, closed or not), so there is nothing to raise. Nor is a held ``load``
        ALERT while the robot's other axes have moved together (:meth:`_moved_together`: what was timed was a
        program after all); its detector raises it later if it goes on once they have not."""
        robot.release_at = robot.held_since = None
        for state in robot.axes.values():
            broad = any(kind.startswith("load") for kind in state.held) and self._others_moved(robot, state)
            for kind, (since, finding, last) in state.held.items():
                lives = next((lives for _, lives in state.groups if any(life.detector == kind for life in lives)), ())
                life = lifecycle_for(lives, kind, finding.axis)
                if broad and kind.startswith("load"):
                    continue
                if life is not None and life.event is None and last is not None:
                    alert = life.step(since, finding, True)
                    if alert is not None:
                        out.append(alert)
                    if life.event is not None:
                        life.event.fired_until = last
            state.held.clear()

    def _restart_load(self, state: AxisState, when: datetime, out: list[Alert]) -> None:
        """The axis's load detector learns the new program's level and keeps the spread it learnt
        (:meth:`LoadScorer.restart`); what it held and its open events were judged against the old level."""
        self._forget(state, "load", when, out)
        for scorer in load_scorers(state):
            scorer.restart()

    @staticmethod
    def _forget(state: AxisState, name: str, when: datetime, out: list[Alert]) -> None:
        """Drop what the axis's detector ``name`` holds and close its open events: both were judged against what
        it learnt, which is about to go (:meth:`_renew`) or change (:meth:`_restart_load`)."""
        for kind in [kind for kind in state.held if kind == name or kind.startswith(name + "_")]:
            del state.held[kind]
        for detector, lives in state.groups:
            if detector.name == name:
                out.extend(alert for life in lives if (alert := life.close(when)) is not None)

    def _renew(
        self, robot_id: str, axis: int, state: AxisState, name: str, axis_model, when: datetime, out: list[Alert]
    ) -> None:
        """Swap the axis's detector ``name`` for a new one (on ``axis_model``; none if it needs one and there is
        none): what it learnt is gone, and its open events close."""
        self._forget(state, name, when, out)
        kept = [(d, lives) for d, lives in state.groups if d.name != name]
        detector = AXIS_DETECTORS[name](AxisContext(robot_id, axis, self.config, axis_model))
        if detector is not None:
            kept.append((detector, self._lifecycles(robot_id, axis, detector, state.opened)))
        state.groups = kept
        state.detectors = [d for d, _ in kept]
        state.lifecycles = [life for _, lives in kept for life in lives]
        self._measures(state, axis_model if name == "residual" else state.model)

    def _new_axis(self, robot: RobotState, robot_id: str, axis: int) -> AxisState:
        c = self.config
        made: list = []
        if axis == 0:  # the robot-level detectors raise their events on axis 0
            robot_ctx = RobotContext(robot_id, c)
            made = [ROBOT_DETECTORS[name](robot_ctx) for name in c.detectors if name in ROBOT_DETECTORS]
        else:
            model = robot.learner.model if robot.learner is not None else self.model
            axis_model = model.axes.get(axis) if model is not None and self._model_applies(robot_id, model) else None
            ctx = AxisContext(robot_id, axis, c, axis_model)
            made = [AXIS_DETECTORS[name](ctx) for name in c.detectors if name in AXIS_DETECTORS]
        detectors = [d for d in made if d is not None]
        opened = OpenCount()
        groups = [(d, self._lifecycles(robot_id, axis, d, opened)) for d in detectors]
        lifecycles = [life for _, lives in groups for life in lives]
        if axis == 0 and self._learns:
            lifecycles.append(Lifecycle(robot_id, 0, MODEL_EVENT, count=opened))
        stuck = next((d for d in detectors if d.name == "stuck"), None)
        state = robot.axes[axis] = AxisState(detectors, lifecycles, groups, opened, stuck)
        if axis != 0:
            self._measures(state, axis_model)
        return state

    @staticmethod
    def _measures(state: AxisState, axis_model) -> None:
        """What the severity rule measures the axis's level with: the load scorer, and the model's median."""
        state.load = next((d.scorer for d in state.detectors if d.name == "load"), None)
        state.model = axis_model
        state.median = axis_model.median if axis_model is not None else None

    def _lifecycles(self, robot_id: str, axis: int, detector: Detector, opened: OpenCount) -> tuple[Lifecycle, ...]:
        """One lifecycle per kind of event the detector raises, counted in the axis's ``opened``."""
        holdoff_s = self.config.holdoff_s
        return tuple(
            Lifecycle(robot_id, axis, k, holdoff_s=holdoff_s, low=k.endswith("_low"), count=opened)
            for k in detector.kinds
        )

    def _model_applies(self, robot_id: str, model: AlertModel | None = None) -> bool:
        model = model or self.model
        return model is not None and model.robot_id in (None, robot_id)

    def _stoppage(self, robot: RobotState) -> float:
        """The seconds without work that make a stoppage for this robot: ``stoppage_s``, and ``stoppage_readings``
        of its own sampling interval."""
        c = self.config
        return max(c.stoppage_s, c.stoppage_readings * robot.interval.seconds)

    def _went_back(self, robot: RobotState, ts: float) -> bool:
        """Whether a reading at ``ts``, not a redelivery and no later than the robot's newest, ends a run of
        ``SET_BACK_RUN`` readings in a row more than a stoppage behind the newest, each later than the one before
        (``common.wire.clock.far_behind_run``): the robot's clock went back, from a leap ahead or set back to stay.
        One reading never says it: late readings stamped inside a past gap (a gateway's buffer sent between live
        readings) each took the clock back and closed the robot's open events, which its next live reading
        opened again."""
        robot.set_back_run, went_back = far_behind_run(robot.set_back_run, robot.last_ts, ts, self._stoppage(robot))
        return went_back

    def _came_back(self, robot: RobotState, reading: Reading | ReadingValues, out: list[Alert]) -> None:
        """The robot's clock came back from a leap ahead (``common.wire.clock.comes_back``, with the robot's stoppage
        as the bound): the policy lets readings through up to ``READING_MAX_FUTURE_S`` (a day) ahead, and skipped
        as older, every later reading of the robot went unjudged, without a dead letter, until the clock caught up.
        The events opened from ahead close into ``out`` (``Lifecycle.back_from_ahead``)."""
        newest = robot.last_ts
        logger.warning(
            "robot %r: its readings from %s to %s came from ahead of its clock (the next is at %s); judged on "
            "from there",
            reading.robot_id,
            iso_utc(datetime.fromtimestamp(robot.leap[1], UTC)),
            iso_utc(datetime.fromtimestamp(newest, UTC)),
            iso_utc(reading.ts),
        )
        self._back_from_ahead(robot, reading.ts, newest, out)

    @staticmethod
    def _back_from_ahead(robot: RobotState, to: datetime, newest: float, out: list[Alert]) -> None:
        """The robot's clock went back to ``to`` (from a leap ahead, or set back): each event opened after it
        closes as of the robot's newest reading, into ``out`` (``Lifecycle.back_from_ahead``)."""
        newest_at = datetime.fromtimestamp(newest, UTC)
        for state in robot.axes.values():
            for life in state.lifecycles:
                if (alert := life.back_from_ahead(to, newest_at)) is not None:
                    out.append(alert)

    def _set_back(self, robot: RobotState, reading: Reading | ReadingValues, out: list[Alert]) -> None:
        """The robot's clock was set back to stay (``_went_back`` outside any leap ahead: after a stoppage, days
        back, or a robot's first readings came from ahead), and skipped as older, every later reading went unjudged
        until the clock passed the newest again. The robot's time starts again from ``reading``, as after a
        stoppage that keeps what the detectors and the model learned: the statistical events close at the last
        active reading (as a stoppage closes them), the others opened after ``reading`` close as of the newest
        (``Lifecycle.back_from_ahead``), and the re-learn's clocks move back with the robot's."""
        newest = robot.last_ts
        step = newest - reading.ts.timestamp()
        logger.warning(
            "robot %r: its clock went back from %s to %s (a run of readings past those judged); judged on from it",
            reading.robot_id,
            iso_utc(datetime.fromtimestamp(newest, UTC)),
            iso_utc(reading.ts),
        )
        if robot.last_active is not None:
            out += self._close_all(robot, robot.last_active, stoppage=True)
        self._back_from_ahead(robot, reading.ts, newest, out)
        if robot.learner is not None:
            self._stopped(robot, -step)
        back = timedelta(seconds=step)
        for state in robot.axes.values():  # ALERTs held while a change is timed: raised on the robot's new clock
            state.held = {
                kind: (since - back, finding, last - back if last else None)
                for kind, (since, finding, last) in state.held.items()
            }
        robot.last_active = None

    def _offsets_started_again(
        self, robot: RobotState, reading: Reading | ReadingValues, place: tuple[int, int]
    ) -> bool:
        """Whether ``reading``, from a place on Kafka before the one the robot's state reflects, shows that the
        partition's offsets started again (the readings topic made anew, a log truncated): the ``SET_BACK_RUN``-th
        such reading in a row, each newer than the robot's newest and than the one before. Skipped as redeliveries,
        the robot's readings would go unjudged until the offsets passed the old ones, without a word. A redelivery
        is no newer than the newest; one that is (readings from before a clock set back, re-read after a restart)
        is judged again by time, as without offsets (its events re-derive the same ids)."""
        ts = reading.ts.timestamp()
        if robot.last_ts is not None and ts <= robot.last_ts:
            robot.offsets_back_run = None
            return False
        robot.offsets_back_run = longer(robot.offsets_back_run, ts)
        if robot.offsets_back_run[0] < SET_BACK_RUN:
            return False
        logger.warning(
            "robot %r: readings at offsets before %d on partition %d are newer than its newest: the partition's "
            "offsets started again (the readings topic made anew?); judged by time from offset %d",
            reading.robot_id,
            robot.read_to[1],
            place[0],
            place[1],
        )
        return True

    def _say_behind(
        self, robot: RobotState, reading: Reading | ReadingValues, new: bool, *, in_silence: bool = False
    ) -> None:
        """Warn of a reading skipped more than a stoppage behind the robot's newest and outside any leap ahead,
        once until the newest has moved by more than a stoppage. Inside the robot's last silence (``in_silence``): a
        late reading, sent from a buffer after an outage. Its place on Kafka new (``new``): a stray
        reading, or the first of a clock set back, followed after ``SET_BACK_RUN`` in a row. Not known to be
        new: a redelivery of that much (a restart whose saved state is ahead of its committed offsets), or,
        offline, a clock set back to stay, whose readings go unjudged until it passes the newest again
        (docs/consumer_alerts.md)."""
        behind = robot.last_ts - reading.ts.timestamp()
        stoppage = self._stoppage(robot)
        if behind <= stoppage or (robot.said_behind is not None and abs(robot.last_ts - robot.said_behind) <= stoppage):
            return
        robot.said_behind = robot.last_ts
        newest = iso_utc(datetime.fromtimestamp(robot.last_ts, UTC))
        if in_silence:
            silence = [iso_utc(datetime.fromtimestamp(t, UTC)) for t in robot.silence]
            why = f"a late reading, stamped inside its silence from {silence[0]} to {silence[1]} (an outage)"
        elif new:
            why = f"a stray or late reading, or its clock going back: followed once {SET_BACK_RUN} such come in a row"
        else:
            why = f"a redelivery, or its clock was set back, and then none is judged until its clock passes {newest}"
        logger.warning(
            "robot %r: a reading at %s is %.0f s behind its newest and is not judged: %s",
            reading.robot_id,
            iso_utc(reading.ts),
            behind,
            why,
        )

    @staticmethod
    def _close_all(robot: RobotState, at: datetime, *, stoppage: bool = False) -> list[Alert]:
        out = []
        for state in robot.axes.values():
            for life in state.lifecycles:
                if stoppage and life.detector in ("stuck", MODEL_EVENT):
                    continue  # a stuck sensor shows idle or not, and a re-learn lasts: a stoppage ends neither
                alert = life.close(at)
                if alert is not None:
                    out.append(alert)
        return out

    def scores(self, robot_id: str, axis: int) -> float | None:
        """The axis's last anomaly score in [0, 1] (the highest over its detectors), for ``score``: at or
        above 0.5 exactly on a reading that raised an event; a reading whose event was already open, or
        that did not hold long enough yet, scores at most 0.3 (flag once per episode)."""
        robot = self.robots.get(robot_id)
        state = robot.axes.get(axis) if robot else None
        if state is None or not state.detectors:
            return None
        score = max(d.normalized for d in state.detectors)
        if score >= ALERT_SCORE and not state.raised:
            return CONTINUED_SCORE
        return score

    def open_events(self) -> list[tuple[str, int, str]]:
        return [
            (life.robot_id, life.axis, life.detector)
            for robot in self.robots.values()
            for state in robot.axes.values()
            for life in state.lifecycles
            if life.event is not None
        ]
