"""The engine across a restart or a move to another instance: each robot's detectors' state and open events,
robot by robot (:func:`robot_snapshot`, :func:`load_robot`; :func:`encode` and :func:`decode` are its bytes
on the state topic, which consumer_alerts.checkpoint writes), or, for tests and the offline tools, the whole
engine at once as JSON-ready data."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any

import msgpack

from common.wire.clock import NO_LEAP
from common.wire.schemas import Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.detectors.scoring import SamplingInterval
from consumer_alerts.engine import DetectorEngine, RobotState
from consumer_alerts.lifecycle import OpenEvent

# 2: with the open events, so that replaying from the snapshot re-derives the same ones.
# 3: the detectors' windows as base64 float64 arrays: as JSON numbers a snapshot of 200 robots took ~0.7 s of
#    json.dumps, all of it holding the service's loop up (bench/results/alerts_snapshot.md).
# 4: one robot's state is a message of its own (the state topic), with its own version; with what the engine
#    keeps around the detectors (the robot's sampling interval, the flat-value rule, the ALERTs held while a
#    change is timed), which a robot moved to another instance mid-run needs as much as its windows.
# 5: a robot's state in MessagePack, its windows as plain lists of floats (float64, exact): base64 per window
#    and JSON took ~4 times the CPU, which at 1,000 robots every 30 s was a quarter of the service's
#    (docs/consumer_alerts.md, "State").
SNAPSHOT_VERSION = 5


def snapshot(engine: DetectorEngine) -> dict[str, Any]:
    """The detectors' state and the events open at this point, as JSON-ready data."""
    return {"version": SNAPSHOT_VERSION, "robots": {rid: robot_snapshot(r) for rid, r in engine.robots.items()}}


def robot_snapshot(r: RobotState) -> dict[str, Any]:
    """One robot's part of :func:`snapshot` (a robot's state only changes with its own readings)."""
    return {
        "version": SNAPSHOT_VERSION,
        "last_ts": r.last_ts,
        # the span the robot's time last leapt over; its start None: it leapt from its first reading
        "leap": [r.leap[0] if r.leap[0] > -math.inf else None, r.leap[1]] if r.leap != NO_LEAP else None,
        # the span of the robot's last silence (never from its first reading), and the newest's Kafka record time
        "silence": list(r.silence) if r.silence != NO_LEAP else None,
        "last_record_ts": r.last_record_ts,
        "last_active": r.last_active.isoformat() if r.last_active else None,
        "last_values": {str(a): v for a, v in r.last_values.items()},
        "interval": r.interval.state(),
        "release_at": r.release_at,
        "held_since": r.held_since,
        "learner": r.learner.state() if r.learner is not None else None,
        "axes": {str(a): {d.name: d.state() for d in s.detectors} for a, s in r.axes.items()},
        "flat": {str(a): [s.flat, s.rested, s.follows, s.raised] for a, s in r.axes.items()},
        "held": {
            str(a): {
                kind: [since.isoformat(), _finding(f), last.isoformat() if last else None]
                for kind, (since, f, last) in s.held.items()
            }
            for a, s in r.axes.items()
            if s.held
        },
        "events": {
            str(a): {life.detector: _event(life.event) for life in s.lifecycles if life.event}
            for a, s in r.axes.items()
            if s.has_open()
        },
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {k: v.value if isinstance(v, Severity) else v for k, v in dataclasses.asdict(f).items()}


def encode(state: dict[str, Any]) -> bytes:
    """A robot's :func:`robot_snapshot` as bytes: MessagePack, whose floats are float64 (a window comes back
    bit for bit) and which packs the nested lists and dicts in C, without a text form of every number."""
    return msgpack.packb(state)


def decode(data: bytes) -> dict[str, Any]:
    """The state :func:`encode` made; ValueError for bytes that are not one."""
    try:
        state = msgpack.unpackb(data)
    except msgpack.UnpackException as exc:  # e.g. cut short; most malformed input raises ValueError itself
        raise ValueError(f"not a robot's state: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"not a robot's state: a {type(state).__name__}")
    return state


def _event(event: OpenEvent) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dataclasses.asdict(event).items()}


def _open_event(raw: dict[str, Any]) -> OpenEvent:
    times = {
        k: datetime.fromisoformat(raw[k])
        for k in ("opened_at", "clear_since", "acknowledged_at", "fired_until", "rest_since")
        if raw.get(k)
    }
    return OpenEvent(**{**raw, **times, "severity": Severity(raw["severity"])})


def load_snapshot(engine: DetectorEngine, data: dict[str, Any]) -> None:
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {data.get('version')!r} is not {SNAPSHOT_VERSION}")
    engine.robots.clear()
    for rid, raw in data["robots"].items():
        load_robot(engine, rid, raw)


def load_robot(engine: DetectorEngine, rid: str, raw: dict[str, Any]) -> None:
    """Put one robot's :func:`robot_snapshot` in place of whatever the engine held for it."""
    if raw.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"robot state version {raw.get('version')!r} is not {SNAPSHOT_VERSION}")
    engine.robots.pop(rid, None)
    robot = engine.robot(rid)
    robot.last_values = {int(a): v for a, v in raw["last_values"].items()}
    robot.last_ts = raw["last_ts"]
    leap = raw.get("leap")
    robot.leap = (-math.inf if leap[0] is None else leap[0], leap[1]) if leap else NO_LEAP
    before = raw.get("before_last_ts")  # a snapshot of the rule for a lone reading from ahead: its leap, if any
    if "leap" not in raw and before is not None and raw["last_ts"] is not None:
        robot.leap = (before, raw["last_ts"])
    silence = raw.get("silence")  # absent from a state saved before record times were kept
    robot.silence = tuple(silence) if silence else NO_LEAP
    robot.last_record_ts = raw.get("last_record_ts")
    robot.last_active = datetime.fromisoformat(raw["last_active"]) if raw["last_active"] else None
    robot.interval = SamplingInterval.from_state(raw["interval"])
    robot.release_at, robot.held_since = raw["release_at"], raw["held_since"]
    if robot.learner is not None and raw.get("learner"):
        robot.learner.load(raw["learner"])  # before the axes: their residual detectors are made on its model
    for axis, states in raw["axes"].items():
        for detector in engine.axis_state(rid, int(axis)).detectors:
            if detector.name in states:
                detector.load(states[detector.name])
    for axis, (flat, rested, follows, raised) in raw["flat"].items():
        state = engine.axis_state(rid, int(axis))
        state.flat, state.rested, state.follows, state.raised = flat, rested, follows, raised
    for axis, held in raw["held"].items():
        engine.axis_state(rid, int(axis)).held = {
            kind: (
                datetime.fromisoformat(entry[0]),
                Finding(**{**entry[1], "severity": Severity(entry[1]["severity"])}),
                datetime.fromisoformat(entry[2]) if len(entry) > 2 and entry[2] else None,  # absent before 'last'
            )
            for kind, entry in held.items()
        }
    for axis, events in raw["events"].items():
        for life in engine.axis_state(rid, int(axis)).lifecycles:
            if life.detector in events:
                life.event = _open_event(events[life.detector])
