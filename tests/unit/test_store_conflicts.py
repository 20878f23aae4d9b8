"""Conflicts (common.store.conflicts): the one rule that the sink and the bulk ingest share for a reading
whose robot and time are stored already, on SQLite; PostgreSQL's staging-table path is in the integration
tests (test_consumer_db_postgres.py, test_ingest_postgres.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from common.csvio.controller_csv import CsvOptions
from common.store import conflicts as conflicts_module
from common.store.conflicts import conflict_reason, find_conflicts
from common.store.tables import readings_fact, rejected_readings
from common.wire.bus import Message
from consumer_db.axislock import AxisLock
from consumer_db.ingest import IngestOptions, ingest_csv
from consumer_db.sink import Sink
from consumer_db.store import insert_readings
from tests.fuzz_messages import TOPICS
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

T = datetime(2026, 1, 10, 11, 0, tzinfo=UTC)


@pytest.fixture
def engine(migrated_sqlite):
    return migrated_sqlite


def reading(robot_id: str, seconds: int, currents: dict[int, float | None]) -> SimpleNamespace:
    return SimpleNamespace(robot_id=robot_id, ts=T + timedelta(seconds=seconds), currents=currents)


def test_only_readings_stored_with_other_values_are_conflicts_each_with_both_values(engine, monkeypatch):
    monkeypatch.setattr(conflicts_module, "STATEMENT_KEYS", 2)  # the look-up in several statements
    with engine.begin() as conn:
        insert_readings(conn, [("R1", 1, T, 1.5), ("R1", 2, T, 0.0), ("R1", 1, T + timedelta(seconds=2), 3.0)])
    suspects = [
        ("a", reading("R1", 0, {1: 1.5, 2: 0.0})),  # stored alike: a redelivery
        ("b", reading("R1", 0, {1: 7.5, 2: 0.0})),  # axis 1 otherwise
        ("c", reading("R1", 2, {1: 3.0, 2: 9.0})),  # axis 2 was not stored for it: not compared
        ("d", reading("R1", 4, {1: 1.0})),  # nothing stored at that time
        ("e", reading("R2", 0, {1: 1.0})),  # another robot
        ("f", reading("R1", 2, {1: None})),  # a value stored, none now
    ]
    with engine.connect() as conn:
        found = list(find_conflicts(conn, suspects, lambda pair: pair[1]))
    assert [(name, reason) for (name, _), reason in found] == [
        ("b", conflict_reason({1: 1.5, 2: 0.0}, {1: 7.5, 2: 0.0})),
        ("f", conflict_reason({1: 3.0}, {1: None})),
    ]
    assert "axis 1: stored 1.5, this one 7.5" in found[0][1] and "axis 2" not in found[0][1]


def test_a_reason_names_six_axes_at_most_and_counts_the_rest():
    reason = conflict_reason({axis: 1.0 for axis in range(1, 10)}, {axis: 2.0 for axis in range(1, 10)})
    assert reason.startswith("conflict: ") and "axis 6: stored 1.0, this one 2.0" in reason
    assert "axis 7:" not in reason and reason.endswith("(and 3 more axes)")
    assert conflict_reason({1: 1.0}, {1: 1.0, 2: 5.0}) is None


def through_the_ingest(engine, tmp_path, values: list[float]) -> None:
    for n, value in enumerate(values):
        path = tmp_path / f"part{n}.csv"
        path.write_text(f"Trait,Axis #1,Axis #2,Time\ncurrent,{value},0.5,{T.isoformat()}\n")
        ingest_csv(engine, path, IngestOptions(CsvOptions("R9", [1, 2])))


def through_the_sink(engine, _tmp_path, values: list[float]) -> None:
    sink = Sink(engine, AxisLock(engine, [1, 2]), TOPICS)
    for offset, value in enumerate(values):
        raw = {"schema_version": 1, "robot_id": "R9", "ts": T.isoformat(), "currents": {"1": value, "2": 0.5}}
        sink.write([Message(TOPICS.readings, 0, offset, b"R9", json.dumps(raw).encode(), 1_768_000_000_000)])


@pytest.mark.parametrize("write", [through_the_ingest, through_the_sink])
def test_both_writers_keep_a_contradicting_reading_as_the_rules_conflict_and_the_first_values(engine, tmp_path, write):
    write(engine, tmp_path, [1.5, 1.5, 7.5, 8.5])  # a repeat (harmless), then two contradictions
    with engine.connect() as conn:
        stored = conn.execute(select(readings_fact.c.axis_id, readings_fact.c.amps).order_by("axis_id")).all()
        reasons = conn.execute(select(rejected_readings.c.reason).order_by(rejected_readings.c.id)).scalars().all()
    assert [tuple(row) for row in stored] == [(1, 1.5), (2, 0.5)]
    assert reasons == [conflict_reason({1: 1.5, 2: 0.5}, {1: value, 2: 0.5}) for value in (7.5, 8.5)]
