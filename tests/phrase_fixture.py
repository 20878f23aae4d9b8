"""A small fixed dataset for the phrase tests, on SQLite (unit) and PostgreSQL (integration).

Robot R1 (axes 1-4; axis 4 never carries a value) has 8 readings: 12:00:00 .. 12:00:08 every 2 s, a
62 s gap, then 12:01:10 .. 12:01:14. Robot R2 (axes 1-2) has 2 readings at 12:01:40 and 12:01:42.
Two alert events: e1 (R1, closed) and e2 (R2, still open). Three maintenance entries: m1 (R1 axis 2, part
replaced after e1), m2 (R1 axis 3), m3 (R2 axis 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine

from common.store.maintenance import store_entries
from common.store.tables import seed_axes
from common.wire.schemas import Alert, MaintenanceEntry
from consumer_db.alert_store import upsert_alerts
from consumer_db.axislock import RobotAxes
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings

T0 = datetime(2022, 10, 17, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


R1 = {  # seconds after T0 -> currents of axes 1..4
    0: (0.0, 0.0, 0.0, None),
    2: (1.0, 5.0, None, None),
    4: (2.0, 9.5, 0.0, None),
    6: (0.0, 0.0, 0.0, None),
    8: (3.0, 4.0, 1.0, None),
    70: (1.5, 2.0, 0.0, None),
    72: (4.5, 1.0, 0.5, None),
    74: (0.0, 0.0, 0.0, None),
}
R2 = {100: (7.0, 0.0), 102: (6.0, None)}

ALERTS = [
    Alert(
        event_id="e1",
        robot_id="R1",
        axis=2,
        detector="zscore",
        severity="ERROR",
        state="closed",
        opened_at=at(2),
        closed_at=at(8),
        peak_amps=9.5,
        threshold=6.0,
        score=4.2,
    ),
    Alert(
        event_id="e2",
        robot_id="R2",
        axis=1,
        detector="residual",
        severity="ALERT",
        state="open",
        opened_at=at(100),
        peak_amps=7.0,
        threshold=5.0,
        score=2.5,
    ),
]

MAINTENANCE = [
    MaintenanceEntry(entry_id="m1", robot_id="R1", axis=2, at=at(9), action="part_replaced", user_name="otto",
                     note="after e1", event_id="e1"),
    MaintenanceEntry(entry_id="m2", robot_id="R1", axis=3, at=at(80), action="lubricated", user_name="ada"),
    MaintenanceEntry(entry_id="m3", robot_id="R2", axis=1, at=at(90), action="inspected_ok", user_name="otto"),
]  # fmt: skip


def _entry(entry: MaintenanceEntry) -> dict:
    return entry.model_dump(exclude={"schema_version"}) | {"action": str(entry.action)}


@pytest.fixture
def migrated_sqlite(sqlite_url):
    """An empty SQLite database at the newest schema (import this fixture into a test module)."""
    engine = create_engine(sqlite_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def fixture_sqlite(tmp_path_factory):
    """A SQLite database holding this dataset, shared by the tests of one module."""
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('fixture') / 'fixture.sqlite'}")
    load(engine)
    yield engine
    engine.dispose()


def load(engine: Engine) -> None:
    """Migrate, then store the dataset through the sink's own write functions."""
    migrate(engine)
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2, 3, 4])
        seed_axes(conn, robot_ids=["R2"], axes=[1, 2])
        rows: list[tuple] = []
        for robot, readings, axes in (("R1", R1, (1, 2, 3, 4)), ("R2", R2, (1, 2))):
            lock = RobotAxes(frozenset(axes), axes)
            for seconds, values in readings.items():
                rows += lock.rows(robot, at(seconds), dict(zip(axes, values, strict=True)))
        insert_readings(conn, rows)
        upsert_alerts(conn, ALERTS)
        store_entries(conn, MAINTENANCE)


# --- the phrase cases: phrase, arguments, expected main rows, expected side tables -------------------


def _latest(robot: str, axis: int, seconds: float, amps: float | None) -> dict:
    return {"robot_id": robot, "axis_id": axis, "label": f"Axis #{axis}", "ts": at(seconds), "amps": amps}


def _wide(robot: str, seconds: float, *values: float | None) -> dict:
    return {"robot_id": robot, "ts": at(seconds), **{f"Axis #{i}": v for i, v in enumerate(values, start=1)}}


def _peak(robot: str, axis: int, amps: float, seconds: float, **window) -> dict:
    return {
        "robot_id": robot,
        "axis_id": axis,
        "label": f"Axis #{axis}",
        "peak_amps": amps,
        "ts": at(seconds),
        **window,
    }


def _minute(robot: str, minute: int, axis: int, mean: float | None, peak: float | None, values: int) -> dict:
    return {
        "robot_id": robot,
        "minute": at(60 * minute),
        "axis_id": axis,
        "mean_amps": mean,
        "max_amps": peak,
        "values": values,
    }


def _hour(robot: str, axis: int, mean: float | None, peak: float | None, values: int) -> dict:
    row = _minute(robot, 0, axis, mean, peak, values)
    return {"robot_id": robot, "hour": row.pop("minute"), **{k: v for k, v in row.items() if k != "robot_id"}}


def _summary(robot, axis, rows, non_null, ok_null, idle, mean, peak) -> dict:
    return {
        "robot_id": robot,
        "axis_id": axis,
        "label": f"Axis #{axis}",
        "rows": rows,
        "non_null": non_null,
        "ok_null_share": ok_null,
        "idle_share": idle,
        "mean_active_amps": mean,
        "max_active_amps": peak,
    }


def _alert(event: Alert) -> dict:
    return event.model_dump(exclude={"schema_version"}) | {"severity": str(event.severity), "state": str(event.state)}


CASES = [
    (
        "show latest per axis",
        {},
        [
            _latest("R1", 1, 74, 0.0),
            _latest("R1", 2, 74, 0.0),
            _latest("R1", 3, 74, 0.0),
            _latest("R1", 4, 74, None),
            _latest("R2", 1, 102, 6.0),
            _latest("R2", 2, 102, None),
        ],
        {},
    ),
    ("  Latest   Per AXIS ", {"robot_id": "R2"}, [_latest("R2", 1, 102, 6.0), _latest("R2", 2, 102, None)], {}),
    (
        "show latest per axis",
        {"end": at(8)},
        [
            _latest("R1", 1, 8, 3.0),
            _latest("R1", 2, 8, 4.0),
            _latest("R1", 3, 8, 1.0),
            _latest("R1", 4, 8, None),
        ],
        {},
    ),
    ("show 1-minute peak", {}, [_peak("R2", 1, 7.0, 100, window_start=at(42), window_end=at(102))], {}),
    ("SHOW ONE MINUTE PEAK", {"robot_id": "R1"}, [_peak("R1", 1, 4.5, 72, window_start=at(14), window_end=at(74))], {}),
    (
        "show 1-minute peak",
        {"robot_id": "R1", "at": at(10)},
        [_peak("R1", 2, 9.5, 4, window_start=at(-50), window_end=at(10))],
        {},
    ),
    ("show 1-minute peak", {"robot_id": "R1", "at": at(69)}, [], {}),  # 9..69 s: inside the gap, no reading
    (
        "latest 3 rows",
        {},
        [
            _wide("R2", 102, 6.0, None, None, None),
            _wide("R2", 100, 7.0, 0.0, None, None),
            _wide("R1", 74, 0.0, 0.0, 0.0, None),
        ],
        {},
    ),
    ("show latest rows", {"robot_id": "R2", "n": 1}, [_wide("R2", 102, 6.0, None)], {}),
    (
        "show window peaks",
        {"robot_id": "R1", "start": at(0), "end": at(8)},
        [
            _peak("R1", 2, 9.5, 4),
            _peak("R1", 1, 3.0, 8),
            _peak("R1", 3, 1.0, 8),
        ],
        {},
    ),
    (
        "show 1-minute resample",
        {"robot_id": "R1"},
        [
            _minute("R1", 0, 1, 1.2, 3.0, 5),
            _minute("R1", 0, 2, 3.7, 9.5, 5),
            _minute("R1", 0, 3, 0.25, 1.0, 4),
            _minute("R1", 0, 4, None, None, 0),
            _minute("R1", 1, 1, 2.0, 4.5, 3),
            _minute("R1", 1, 2, 1.0, 2.0, 3),
            _minute("R1", 1, 3, 0.5 / 3, 0.5, 3),
            _minute("R1", 1, 4, None, None, 0),
        ],
        {},
    ),
    ("smoothing", {"robot_id": "R2"}, [_minute("R2", 1, 1, 6.5, 7.0, 2), _minute("R2", 1, 2, 0.0, 0.0, 1)], {}),
    (
        "show hourly resample",
        {"robot_id": "R1"},
        [
            _hour("R1", 1, 12 / 8, 4.5, 8),
            _hour("R1", 2, 21.5 / 8, 9.5, 8),
            _hour("R1", 3, 1.5 / 7, 1.0, 7),
            _hour("R1", 4, None, None, 0),
        ],
        {},
    ),
    (
        "hourly",
        {"start": at(71)},
        [
            _hour("R1", 1, 2.25, 4.5, 2),
            _hour("R1", 2, 0.5, 1.0, 2),
            _hour("R1", 3, 0.25, 0.5, 2),
            _hour("R1", 4, None, None, 0),
            _hour("R2", 1, 6.5, 7.0, 2),
            _hour("R2", 2, 0.0, 0.0, 1),
        ],
        {},
    ),
    (
        "show per-axis summary",
        {},
        [
            _summary("R1", 1, 8, 8, 0.0, 3 / 8, 2.4, 4.5),
            _summary("R1", 2, 8, 8, 0.0, 3 / 8, 4.3, 9.5),
            _summary("R1", 3, 8, 7, 1 / 8, 5 / 7, 0.75, 1.0),
            _summary("R1", 4, 8, 0, 1.0, None, None, None),
            _summary("R2", 1, 2, 2, 0.0, 0.0, 6.5, 7.0),
            _summary("R2", 2, 2, 1, 0.5, 1.0, None, None),
        ],
        {},
    ),
    (
        "show data health",
        {},
        [
            {
                "robot_id": "R1",
                "first_ts": at(0),
                "last_ts": at(74),
                "span_s": 74.0,
                "readings": 8,
                "expected_readings": 38,
                "coverage": 8 / 38,
                "rows": 32,
                "expected_rows": 152,
                "axes": 4,
                "gap_count": 1,
                "gap_total_s": 62.0,
                "axes_never_seen": [4],
            },
            {
                "robot_id": "R2",
                "first_ts": at(100),
                "last_ts": at(102),
                "span_s": 2.0,
                "readings": 2,
                "expected_readings": 2,
                "coverage": 1.0,
                "rows": 4,
                "expected_rows": 4,
                "axes": 2,
                "gap_count": 0,
                "gap_total_s": 0,
                "axes_never_seen": [],
            },
        ],
        {"gaps": [{"robot_id": "R1", "start": at(8), "end": at(70), "length_s": 62.0}]},
    ),
    (
        "gaps",
        {"robot_id": "R1", "gap_threshold_s": 62.0},
        [
            {
                "robot_id": "R1",
                "first_ts": at(0),
                "last_ts": at(74),
                "span_s": 74.0,
                "readings": 8,
                "expected_readings": 38,
                "coverage": 8 / 38,
                "rows": 32,
                "expected_rows": 152,
                "axes": 4,
                "gap_count": 0,
                "gap_total_s": 0,
                "axes_never_seen": [4],
            },
        ],
        {"gaps": []},
    ),
    ("show alert history", {}, [_alert(ALERTS[1]), _alert(ALERTS[0])], {}),
    ("alerts", {"start": at(50)}, [_alert(ALERTS[1])], {}),
    ("show maintenance log", {}, [_entry(MAINTENANCE[i]) for i in (2, 1, 0)], {}),
    ("maintenance log", {"robot_id": "R1", "end": at(50)}, [_entry(MAINTENANCE[0])], {}),
    # No event of the fixture is judged yet (tests/unit/test_maintenance_log.py counts judged ones).
    (
        "show outcomes per detector",
        {"robot_id": "R2"},
        [
            {
                "detector": "residual",
                "alerts": 1,
                "judged": 0,
                "real_fault": 0,
                "part_replaced": 0,
                "inspected_ok": 0,
                "false_alarm": 0,
                "real": 0,
                "real_share": None,
            }
        ],
        {},
    ),
]
