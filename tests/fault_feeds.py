"""The faulty feed of the consumer_alerts restart tests, and the events an uninterrupted run raises on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from common.wire.schemas import Alert, Reading
from consumer_alerts.engine import DetectorEngine, EngineConfig
from producer.faults import FaultKind, FaultSpec, inject_faults
from tests.alerts_fixtures import T0, cycle_readings

# A 30 s spike on axis 1 (a z-score event that opens at reading 601 and closes at 642), then a sensor stuck for
# 300 s on axis 2 (a stuck event that opens at reading ~729 and closes when the fault ends).
SPIKE = FaultSpec(FaultKind.SPIKE, axis=1, start=T0 + timedelta(seconds=2 * 600), duration_s=30.0)
STUCK = FaultSpec(FaultKind.STUCK, axis=2, start=T0 + timedelta(seconds=2 * 700), duration_s=300.0)
DETECTION = {
    "detectors": "zscore,stuck",
    "z_window": 200,
    "z_min_samples": 50,
    "holdoff_s": 30.0,
    "holdoff_readings": 0,
    "stuck_readings": 30,
}


def faulty_feed() -> list[Reading]:
    return list(inject_faults(cycle_readings(1100), [SPIKE, STUCK]))


def uninterrupted(readings: Iterable[Reading]) -> dict[str, list[Alert]]:
    """The events of one run over every reading, per event id, in publication order."""
    engine = DetectorEngine(
        EngineConfig(
            detectors=("zscore", "stuck"),
            z_window=200,
            z_min_samples=50,
            holdoff_s=30.0,
            holdoff_readings=0,
            stuck_readings=30,
        )
    )
    return by_event(a for r in readings for a in engine.process(r))


def by_event(alerts: Iterable[Alert]) -> dict[str, list[Alert]]:
    out: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        out[alert.event_id].append(alert)
    return dict(out)


def check_like_uninterrupted(seen: dict[str, list[Alert]], expected: dict[str, list[Alert]]) -> None:
    """The same events as an uninterrupted run, each change published once, each closed once and last, each
    ending in the same state."""
    assert sorted(seen) == sorted(expected), f"events {sorted(seen)}, an uninterrupted run: {sorted(expected)}"
    for event_id, messages in seen.items():
        changes = [(m.state, m.severity, m.peak_amps) for m in messages]
        assert len(changes) == len(set(changes)), f"{event_id} published the same state twice: {changes}"
        assert [m.state for m in messages].count("closed") == 1 and messages[-1].state == "closed", changes
        final = lambda m: (m[-1].state, m[-1].severity, m[-1].opened_at, m[-1].closed_at, m[-1].peak_amps)  # noqa: E731
        assert final(messages) == final(expected[event_id]), f"{event_id} ends unlike an uninterrupted run"
    stuck = next(m[-1] for e, m in seen.items() if ":stuck:" in e)
    assert STUCK.start < stuck.opened_at and stuck.closed_at == STUCK.end, "closed when the stuck fault ended"
