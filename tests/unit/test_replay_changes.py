"""`replay` writes every change the service would publish: open, escalate, peak, close, one row each."""

import csv
from datetime import datetime

import pytest

from consumer_alerts.cli import main
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.offline import CHANGE_COLUMNS, replay
from tests.alerts_fixtures import cycle_readings, write_export

RAMP = (2200, 2700)  # readings where axis 2's current climbs from 1.5x to about 10x


def ramp(i, axis, amps):
    return amps * (1.5 + (i - RAMP[0]) / 60) if axis == 2 and RAMP[0] <= i < RAMP[1] else amps


def parse(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def replayed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("MODEL_PATH", "STATE_PATH", "DETECTORS", "ROBOT_ID", "AXES"):
        monkeypatch.delenv(name, raising=False)
    write_export(cycle_readings(3500, seed=3, fault=ramp), tmp_path / "export.csv")
    assert main(["replay", "--csv", "export.csv", "--out", "alerts.csv"]) == 0
    with open(tmp_path / "alerts.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CHANGE_COLUMNS
        return list(reader)


def test_an_alert_that_escalates_keeps_its_alert_row_and_its_opening_time(replayed):
    rows = [r for r in replayed if r["axis"] == "2" and r["detector"] == "load_high"]
    assert len({r["event_id"] for r in rows}) == 1
    first, last = rows[0], rows[-1]
    assert (first["change"], first["state"], first["severity"]) == ("open", "open", "ALERT")
    assert first["changed_at"] == first["opened_at"]
    escalations = [r for r in rows if r["change"] == "escalate"]
    assert len(escalations) == 1 and escalations[0]["severity"] == "ERROR"
    assert parse(escalations[0]["changed_at"]) > parse(first["opened_at"])  # later than the ALERT, as it happened
    assert (last["change"], last["state"], last["severity"]) == ("close", "closed", "ERROR")
    assert parse(last["closed_at"]) <= parse(last["changed_at"])  # closed as of when it cleared, sent after hold-off
    assert {r["opened_at"] for r in rows} == {first["opened_at"]}
    times = [parse(r["changed_at"]) for r in rows]
    assert times == sorted(times)
    peaks = [float(r["peak_amps"]) for r in rows]
    assert peaks == sorted(peaks) and "peak" in {r["change"] for r in rows}


def test_the_changes_are_exactly_what_the_engine_publishes():
    readings = cycle_readings(3500, seed=3, fault=ramp)
    published = []
    engine = DetectorEngine(EngineConfig(detectors=("zscore", "stuck")))
    for reading in readings:
        published += [(reading.ts, alert) for alert in engine.process(reading)]
    changes = replay(readings, DetectorEngine(EngineConfig(detectors=("zscore", "stuck"))))
    assert [(c.changed_at, c.alert) for c in changes] == published
    assert len(published) > len({a.event_id for _, a in published})  # several changes per event
