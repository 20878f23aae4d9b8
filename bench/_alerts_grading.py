"""Grading for bench.alerts_quality: match events to injected faults, and the original placeholder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from common.wire.schemas import Alert, Reading, Severity
from consumer_alerts.engine import DetectorEngine

RANK = {None: 0, Severity.ALERT: 1, Severity.ERROR: 2}


@dataclass
class Event:
    """One event as the run saw it: when it opened, when it first reached each severity."""

    alert: Alert
    reached: dict[Severity, datetime] = field(default_factory=dict)


def run_engine(readings: Iterable[Reading], engine: DetectorEngine) -> list[Event]:
    events: dict[str, Event] = {}
    for reading in readings:
        for alert in engine.process(reading):
            event = events.setdefault(alert.event_id, Event(alert))
            event.alert = alert
            event.reached.setdefault(alert.severity, reading.ts)
    return list(events.values())


def effect(clean: list[Reading], faulty: list[Reading], axis: int, start: datetime, end: datetime) -> int:
    """How many readings of the window the fault actually changed (a spike over an idle gap changes none)."""
    pairs = zip(clean, faulty, strict=True)
    return sum(1 for c, f in pairs if start <= c.ts < end and c.currents.get(axis) != f.currents.get(axis))


def grade(events: list[Event], labels, *, grace_s: float, changed: dict) -> tuple[list[dict], int]:
    """One row per fault (caught? severity? delay?), and how many events matched no fault."""
    used: set[int] = set()
    rows = []
    for lab in labels:
        until = lab.end + timedelta(seconds=grace_s)
        hits = [i for i, e in enumerate(events) if e.alert.axis == lab.axis and lab.start <= e.alert.opened_at <= until]
        used.update(hits)
        severity = max((events[i].alert.severity for i in hits), key=RANK.get, default=None)
        expected = Severity(lab.expected_severity) if lab.expected_severity else None
        reached = [events[i].reached[expected] for i in hits if expected in events[i].reached]
        rows.append(
            {
                "kind": lab.kind.value,
                "axis": lab.axis,
                "duration_s": round((lab.end - lab.start).total_seconds()),
                "changed_readings": changed[(lab.kind.value, lab.axis)],
                "expected": lab.expected_severity or "none",
                "got": severity.value if severity else "none",
                "ok": severity == expected,
                "delay_s": round((min(reached) - lab.start).total_seconds(), 1) if reached else None,
                "detectors": ",".join(sorted({events[i].alert.detector for i in hits})),
            }
        )
    return rows, sum(1 for i in range(len(events)) if i not in used)


def placeholder_alerts(readings: list[Reading], axes: list[int], window: int = 50, limit: float = 3.0) -> int:
    """The original notebook's rule: per axis, rolling z over the last ``window`` rows INCLUDING the
    current one (idle rows and all), an alert for every row with |z| > ``limit``."""
    total = 0
    for axis in axes:
        x = np.array([np.nan if r.currents.get(axis) is None else r.currents[axis] for r in readings], dtype=float)
        if np.isnan(x).all():
            continue
        windows = np.lib.stride_tricks.sliding_window_view(x, window)
        mean, std = np.nanmean(windows, axis=1), np.nanstd(windows, axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x[window - 1 :] - mean) / std
        total += int(np.sum(np.abs(z) > limit))
    return total
