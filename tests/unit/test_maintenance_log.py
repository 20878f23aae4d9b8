"""The maintenance log without services (the real broker and PostgreSQL: tests/integration/
test_maintenance_kafka.py): a part replaced restarts the axis's detectors and health in consumer_alerts,
an entry is stored once, hostile entries are dead letters with their reason, outcomes are counted per
detector, and an acknowledgement "part replaced" is an entry of the log too."""

import itertools
import json

import pytest
from sqlalchemy import select

from common.store.maintenance import maintenance_history, outcomes_per_detector, store_entries
from common.store.tables import maintenance_log, rejected_readings
from common.wire.acknowledge import publish_acknowledgement
from common.wire.bus import InProcessBus, Message
from common.wire.schemas import AckOutcome, Alert, AlertState, MaintenanceEntry
from consumer_alerts.engine import DetectorEngine
from consumer_alerts.health.monitor import DETECTOR, HealthConfig, HealthMonitor
from consumer_alerts.maintenance import MaintenanceFollower
from consumer_alerts.service import Intake, events_per_reading
from consumer_db.alert_store import upsert_alerts
from consumer_db.decode import Topics, decode
from consumer_db.store import insert_rejected
from producer.synthetic import SyntheticRobot
from producer.wear import DAY_S, RobotWear, WearSpec
from tests.fuzz_messages import key_of
from tests.maintenance_support import (
    AFTER,
    CONFIG,
    FAULT,
    FAULT_AMPS,
    NORMAL,
    NORMAL_AMPS,
    T0,
    part_replaced,
    readings,
    tick_time,
)
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

MAINTENANCE = "axiswatch.maintenance"
TOPICS = Topics("readings", "alerts", "dead", "health", MAINTENANCE)


OFFSETS = itertools.count()  # offsets go on from one batch to the next, as on Kafka (the engine skips one re-read)


def on_topic(topic: str, values: list[bytes]) -> list[Message]:
    return [Message(topic, 0, next(OFFSETS), key_of(value, b"r1"), value) for value in values]


def judge(engine: DetectorEngine, messages: list[Message], health: HealthMonitor | None = None) -> list[Alert]:
    intake = Intake(maintenance=MaintenanceFollower(MAINTENANCE, engine, Intake().policy, health), health=health)
    found = events_per_reading(engine, messages, intake=intake)
    return [a for events in found if isinstance(events, list) for a in events]  # not the SHIP marks


def reading_messages(robot_id: str, ticks: range, amps: float) -> list[Message]:
    return on_topic("readings", [r.to_bytes() for r in readings(robot_id, ticks, amps)])


@pytest.mark.parametrize("replaced", [True, False])
def test_a_fault_sized_level_is_the_new_normal_once_the_part_is_replaced(replaced):
    engine = DetectorEngine(CONFIG)
    assert judge(engine, reading_messages("r1", NORMAL, NORMAL_AMPS)) == []
    fault = judge(engine, reading_messages("r1", FAULT, FAULT_AMPS))
    assert {(a.axis, a.detector, a.state) for a in fault} == {(2, "load_high", AlertState.OPEN)}
    entry = part_replaced("r1", 2, tick_time(FAULT.stop))
    closed = judge(engine, on_topic(MAINTENANCE, [entry.to_bytes()])) if replaced else []
    after = judge(engine, reading_messages("r1", AFTER, FAULT_AMPS))  # 2 hours at the level that was a fault
    if replaced:
        # closed as of the robot's last reading: the entry is logged 2 s after it, the feed is not there yet
        assert [(a.event_id, a.state, a.closed_at) for a in closed] == [
            (fault[0].event_id, AlertState.CLOSED, tick_time(FAULT.stop - 1))
        ]
        assert after == [] and engine.open_events() == []
    else:  # the control: the old part's baseline holds the level for a fault all along
        assert engine.open_events() == [("r1", 2, "load_high")]


def test_other_actions_and_other_axes_restart_nothing():
    engine = DetectorEngine(CONFIG)
    judge(engine, reading_messages("r1", NORMAL, NORMAL_AMPS) + reading_messages("r1", FAULT, FAULT_AMPS))
    lubricated = MaintenanceEntry.new("r1", 2, "lubricated", "otto", tick_time(FAULT.stop))
    other_axis = part_replaced("r1", 3, tick_time(FAULT.stop))
    unknown_robot = part_replaced("r9", 2, tick_time(FAULT.stop))
    assert judge(engine, on_topic(MAINTENANCE, [e.to_bytes() for e in (lubricated, other_axis, unknown_robot)])) == []
    assert engine.open_events() == [("r1", 2, "load_high")]
    assert "r9" not in engine.robots


@pytest.fixture(scope="module")
def worn_feed():
    wear = RobotWear("worn", 3, [WearSpec("worn", 2, "linear", 0.5 * DAY_S, 3.5 * DAY_S)])
    robot = SyntheticRobot("worn", seed=3, tick_seconds=2.0, start=T0, axes=range(1, 4), wear=wear)
    readings = list(itertools.islice(robot, int(2.75 * DAY_S / 2)))
    cut = int(2.5 * DAY_S / 2)
    return readings[:cut], readings[cut:]


@pytest.mark.parametrize("replaced", [True, False])
def test_part_replaced_closes_maintenance_due_and_the_trend_starts_over(worn_feed, replaced):
    worn, later = worn_feed
    health, engine = HealthMonitor(HealthConfig(min_hours=12)), DetectorEngine(CONFIG)
    due = judge(engine, on_topic("readings", [r.to_bytes() for r in worn]), health)
    due = [a for a in due if a.detector == DETECTOR]
    assert due and {(a.axis, a.state) for a in due} == {(2, AlertState.OPEN)}
    entry = part_replaced("worn", 2, worn[-1].ts)
    closed = judge(engine, on_topic(MAINTENANCE, [entry.to_bytes()]), health) if replaced else []
    after = judge(engine, on_topic("readings", [r.to_bytes() for r in later]), health)  # 6 hours more wear
    axis = health.robots["worn"].axes.get(2)  # None while the new part's normal is being learned
    if replaced:
        assert [(a.event_id, a.state) for a in closed if a.detector == DETECTOR] == [
            (due[0].event_id, AlertState.CLOSED)
        ]
        assert [a for a in after if a.detector == DETECTOR] == []
        assert axis is None or axis.due is None or axis.due.event is None
    else:
        assert axis.due.event is not None


HOSTILE = {
    "unknown action": ({"action": "kicked_it"}, "action"),
    "absurd axis": ({"axis": 10_000}, "axis"),
    "axis as text": ({"axis": "2"}, "axis"),
    "huge note": ({"note": "x" * 100_000}, "note"),
    "robot id off the pattern": ({"robot_id": "r1; DROP TABLE alerts"}, "ROBOT_ID_PATTERN"),
    "naive time": ({"at": "2026-01-01T00:00:00"}, "at"),
    "unknown field": ({"admin": True}, "admin"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_entry_is_a_dead_letter_with_its_reason(migrated_sqlite, case):  # noqa: F811
    change, reason = HOSTILE[case]
    raw = json.loads(part_replaced("r1", 2, T0).to_bytes()) | change
    batch = decode(on_topic(MAINTENANCE, [json.dumps(raw).encode()]), TOPICS)
    assert batch.maintenance == []
    [row] = batch.rejected
    assert row["source"] == MAINTENANCE and reason in row["reason"] and len(row["raw"]) < 3000
    with migrated_sqlite.begin() as conn:
        insert_rejected(conn, batch.rejected)
        insert_rejected(conn, batch.rejected)  # delivered again
    with migrated_sqlite.connect() as conn:
        assert [r.reason for r in conn.execute(select(rejected_readings))] == [row["reason"]]
    engine = DetectorEngine(CONFIG)
    judge(engine, reading_messages("r1", NORMAL, NORMAL_AMPS))
    assert judge(engine, on_topic(MAINTENANCE, [json.dumps(raw).encode()])) == []  # skipped, the stream goes on
    assert judge(engine, reading_messages("r1", FAULT, FAULT_AMPS))


def test_an_entry_delivered_twice_is_stored_once(migrated_sqlite):  # noqa: F811
    entry = MaintenanceEntry.new("r1", 4, "inspected_ok", "otto", T0, "no play <script>")
    twice = decode(on_topic(MAINTENANCE, [entry.to_bytes(), entry.to_bytes()]), TOPICS)
    with migrated_sqlite.begin() as conn:
        assert store_entries(conn, twice.maintenance) == 1
    with migrated_sqlite.begin() as conn:
        assert store_entries(conn, [entry]) == 0  # a later redelivery
    with migrated_sqlite.connect() as conn:
        assert conn.execute(select(maintenance_log.c.entry_id)).scalars().all() == [entry.entry_id]
        [row] = maintenance_history(conn, robot_id="r1", axis=4)
    assert (row["action"], row["note"], row["user_name"], row["at"]) == ("inspected_ok", entry.note, "otto", T0)


def alert(n: int, detector: str, outcome: str | None, robot: str = "r1") -> Alert:
    return Alert(
        event_id=f"{robot}:{n}:{detector}",
        robot_id=robot,
        axis=1,
        detector=detector,
        severity="ALERT",
        state="closed",
        opened_at=tick_time(n),
        closed_at=tick_time(n + 1),
        acknowledged_by=None if outcome is None else "otto",
        acknowledged_at=None if outcome is None else tick_time(n + 2),
        ack_outcome=outcome,
    )


def test_outcomes_are_counted_per_detector(migrated_sqlite):  # noqa: F811
    events = [
        alert(1, "load_high", "real_fault"),
        alert(2, "load_high", "part_replaced"),
        alert(3, "load_high", "false_alarm"),
        alert(4, "load_high", None),
        alert(5, "level_high", "inspected_ok"),
        alert(6, "level_high", "false_alarm"),
        alert(7, "stuck", None),
        alert(8, "load_high", "real_fault", robot="r2"),
    ]
    with migrated_sqlite.begin() as conn:
        upsert_alerts(conn, events)
    with migrated_sqlite.connect() as conn:
        every = {r["detector"]: r for r in outcomes_per_detector(conn)}
        r1 = {r["detector"]: r for r in outcomes_per_detector(conn, robot_id="r1")}
        late = {r["detector"]: r for r in outcomes_per_detector(conn, start=tick_time(5))}
    picked = ("alerts", "judged", "real", "false_alarm", "inspected_ok", "real_share")
    assert {d: tuple(r[k] for k in picked) for d, r in every.items()} == {
        "level_high": (2, 2, 0, 1, 1, 0.0),
        "load_high": (5, 4, 3, 1, 0, 0.75),
        "stuck": (1, 0, 0, 0, 0, None),
    }
    assert r1["load_high"]["real"] == 2 and r1["load_high"]["real_share"] == round(2 / 3, 4)
    assert set(late) == {"level_high", "stuck", "load_high"} and late["load_high"]["alerts"] == 1


@pytest.mark.parametrize("outcome", list(AckOutcome))
async def test_only_an_acknowledgement_part_replaced_logs_maintenance(outcome):
    bus = InProcessBus()
    await bus.start()
    try:
        event = alert(1, "load_high", None)
        await publish_acknowledgement(
            bus, "alerts", event, "otto", tick_time(9), outcome, "swapped", maintenance_topic=MAINTENANCE
        )
        acked = [Alert.from_bytes(m.value) for m in await bus.read_to_end("alerts")]
        entries = [MaintenanceEntry.from_bytes(m.value) for m in await bus.read_to_end(MAINTENANCE)]
    finally:
        await bus.stop()
    assert [(a.event_id, a.ack_outcome) for a in acked] == [(event.event_id, outcome)]
    if outcome is AckOutcome.PART_REPLACED:
        assert [(e.robot_id, e.axis, e.action, e.event_id, e.user_name, e.note, e.at) for e in entries] == [
            ("r1", 1, "part_replaced", event.event_id, "otto", "swapped", tick_time(9))
        ]
    else:
        assert entries == []
