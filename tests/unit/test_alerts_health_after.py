"""The health pipeline takes a batch's readings after the detectors (consumer_alerts.service.HealthAfter): no
robot's detectors wait for the health of the robots ahead of it in a burst, and each robot's events keep their
order."""

from datetime import UTC, datetime, timedelta

from common.wire.bus import Message
from common.wire.schemas import Alert, AlertState, Reading, Severity
from consumer_alerts import service
from consumer_alerts.engine import DetectorEngine, EngineConfig

START = datetime(2024, 1, 1, tzinfo=UTC)


def reading(robot_id: str, i: int) -> Message:
    body = Reading(robot_id=robot_id, ts=START + timedelta(seconds=2 * i), currents={1: 1.0 + i % 3, 2: 2.0})
    return Message("readings", 0, i, robot_id.encode(), body.to_bytes())


def alert(robot_id: str, at: datetime, detector: str) -> Alert:
    return Alert(
        event_id=f"{robot_id}-{detector}-{at.timestamp():.0f}",
        robot_id=robot_id,
        axis=1,
        detector=detector,
        severity=Severity.ALERT,
        state=AlertState.OPEN,
        opened_at=at,
        score=1.0,
        threshold=0.5,
    )


class Calls:
    """Records the detectors' and the health pipeline's calls in turn; each raises one event a reading."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, datetime]] = []

    def engine(self) -> DetectorEngine:
        engine = DetectorEngine(EngineConfig(detectors=("level",)))

        def process(r, place=None, record_ts=None):
            self.calls.append(("detectors", r.robot_id, r.ts))
            return [alert(r.robot_id, r.ts, "level")]

        engine.process = process
        return engine

    def process(self, r, *, clock_went_back: bool = False) -> list[Alert]:  # the health monitor's
        self.calls.append(("health", r.robot_id, r.ts))
        return [alert(r.robot_id, r.ts, "maintenance_due")]


def run(batch: list[Message]) -> tuple[Calls, list[Alert]]:
    calls = Calls()
    intake = service.Intake(health=calls)
    found = service.events_per_reading(calls.engine(), batch, intake=intake)
    return calls, [a for events in found if isinstance(events, list) for a in events]


def test_a_burst_is_judged_by_the_detectors_before_any_health_work():
    batch = [reading(robot_id, 0) for robot_id in ("r1", "r2", "r3")]
    calls, events = run(batch)
    assert [kind for kind, _, _ in calls.calls] == ["detectors"] * 3 + ["health"] * 3
    assert [(a.robot_id, a.detector) for a in events] == [(r, "level") for r in ("r1", "r2", "r3")] + [
        (r, "maintenance_due") for r in ("r1", "r2", "r3")
    ]


def test_a_robots_events_keep_the_order_of_its_readings():
    batch = [reading("r1", 0), reading("r2", 0), reading("r1", 1)]
    calls, events = run(batch)
    first, second = START, START + timedelta(seconds=2)
    assert calls.calls == [
        ("detectors", "r1", first),
        ("detectors", "r2", first),
        ("health", "r1", first),  # r1's first reading's health before its second reading is judged
        ("health", "r2", first),
        ("detectors", "r1", second),
        ("health", "r1", second),
    ]
    r1 = [(a.detector, a.opened_at) for a in events if a.robot_id == "r1"]
    assert r1 == [("level", first), ("maintenance_due", first), ("level", second), ("maintenance_due", second)]
