"""The engine across a restart: its detectors' state and open events as a snapshot, or (without one) its
open events from the alerts topic."""

from __future__ import annotations

import base64
import dataclasses
from array import array
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from common.wire.schemas import Alert, AlertState, Severity
from consumer_alerts.detectors.registry import ROBOT_DETECTORS
from consumer_alerts.engine import DetectorEngine, RobotState
from consumer_alerts.lifecycle import OpenEvent

# 2: with the open events, so that replaying from the snapshot re-derives the same ones.
# 3: the detectors' windows as base64 float64 arrays: as JSON numbers a snapshot of 200 robots took ~0.7 s of
#    json.dumps, all of it holding the service's loop up (bench/results/alerts_snapshot.md).
SNAPSHOT_VERSION = 3


def snapshot(engine: DetectorEngine) -> dict[str, Any]:
    """The detectors' state and the events open at this point, as JSON-ready data."""
    return {"version": SNAPSHOT_VERSION, "robots": {rid: robot_snapshot(r) for rid, r in engine.robots.items()}}


def robot_snapshot(r: RobotState) -> dict[str, Any]:
    """One robot's part of :func:`snapshot` (a robot's state only changes with its own readings)."""
    return {
        "last_ts": r.last_ts,
        "last_active": r.last_active.isoformat() if r.last_active else None,
        "last_values": {str(a): v for a, v in r.last_values.items()},
        "learner": r.learner.state() if r.learner is not None else None,
        "axes": {str(a): {d.name: _pack(d.state()) for d in s.detectors} for a, s in r.axes.items()},
        "events": {
            str(a): {life.detector: _event(life.event) for life in s.lifecycles if life.event}
            for a, s in r.axes.items()
            if s.has_open()
        },
    }


def _pack(state: dict[str, Any]) -> dict[str, Any]:
    """A detector's state with its windows (its lists: every one is a window of floats) as float64."""
    return {
        k: {"f64": base64.b64encode(array("d", v)).decode("ascii")} if isinstance(v, list) else v
        for k, v in state.items()
    }


def _unpack(state: dict[str, Any]) -> dict[str, Any]:
    return {
        k: array("d", base64.b64decode(v["f64"], validate=True)).tolist() if isinstance(v, dict) else v
        for k, v in state.items()
    }


def _event(event: OpenEvent) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dataclasses.asdict(event).items()}


def _open_event(raw: dict[str, Any]) -> OpenEvent:
    times = {k: datetime.fromisoformat(raw[k]) for k in ("opened_at", "clear_since", "acknowledged_at") if raw.get(k)}
    return OpenEvent(**{**raw, **times, "severity": Severity(raw["severity"])})


def load_snapshot(engine: DetectorEngine, data: dict[str, Any]) -> None:
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {data.get('version')!r} is not {SNAPSHOT_VERSION}")
    engine.robots.clear()
    for rid, raw in data["robots"].items():
        robot = engine.robot(rid)
        robot.last_values = {int(a): v for a, v in raw["last_values"].items()}
        robot.last_ts = raw["last_ts"]
        robot.last_active = datetime.fromisoformat(raw["last_active"]) if raw["last_active"] else None
        if robot.learner is not None and raw.get("learner"):
            robot.learner.load(raw["learner"])  # before the axes: their residual detectors are made on its model
        for axis, states in raw["axes"].items():
            for detector in engine.axis_state(rid, int(axis)).detectors:
                if detector.name in states:
                    detector.load(_unpack(states[detector.name]))
        for axis, events in raw["events"].items():
            for life in engine.axis_state(rid, int(axis)).lifecycles:
                if life.detector in events:
                    life.event = _open_event(events[life.detector])


def restore_events(engine: DetectorEngine, latest: Iterable[Alert]) -> int:
    """Make the lifecycles agree with the alerts topic after a restart: events open there stay open (same
    id), events the topic does not show as open are not open here. Returns how many were taken over."""
    open_on_topic = {(a.robot_id, a.axis, a.detector): a for a in latest if a.state is AlertState.OPEN}
    # a robot-level detector's event is filed under the axis it blamed; its lifecycle is the robot's (axis 0)
    robot_level = {(a.robot_id, a.detector): a for a in open_on_topic.values() if a.detector in ROBOT_DETECTORS}
    for robot_id, axis, detector in open_on_topic:
        engine.axis_state(robot_id, 0 if detector in ROBOT_DETECTORS else axis)  # one the snapshot did not know
    restored = 0
    for robot_id, robot in engine.robots.items():
        for axis, state in robot.axes.items():
            for life in state.lifecycles:
                alert = open_on_topic.get((robot_id, axis, life.detector))
                if axis == 0 and alert is None:
                    alert = robot_level.get((robot_id, life.detector))
                life.event = None
                if alert is not None:
                    life.restore(alert)
                    restored += 1
    return restored
