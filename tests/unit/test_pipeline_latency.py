"""bench.pipeline_latency's verdicts: a run that raised no alert event on its measured readings says so, rather
than report an empty alert clock beside the others; and the fleet's history before the run ends where it starts."""

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.load_curve import level_row
from bench.pipeline_latency import Watch, history_producer, key, latencies, live_producer, no_events
from common.wire.schemas import Alert, AlertState, Severity

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = (T0.timestamp(), T0.timestamp() + 60)


def watched(*, event_at: datetime | None) -> dict:
    """A run of one robot reading every 2 s for a minute; an event opened on the reading at ``event_at``."""
    watch = Watch()
    for i in range(30):
        ts = T0 + timedelta(seconds=2 * i)
        watch.produced[key("robot-001", ts)] = round(ts.timestamp() * 1000) + 5
        watch.committed[key("robot-001", ts)] = ts.timestamp() + 0.2
    if event_at is not None:
        alert = Alert(
            event_id="robot-001:2:load:x",
            robot_id="robot-001",
            axis=2,
            detector="load",
            severity=Severity.ALERT,
            state=AlertState.OPEN,
            opened_at=event_at,
        )
        watch.opened[alert.event_id] = (event_at.timestamp() + 0.1, alert, round(event_at.timestamp() * 1000) + 40)
    return {"watch": watch, "window": WINDOW}


def test_a_run_without_alert_events_says_its_alert_clock_measured_nothing():
    found = latencies(watched(event_at=None), sessions=1)
    assert found["b"]["samples"] == 0
    assert "NO ALERT EVENT" in no_events(found)


def test_an_event_opened_before_the_window_does_not_count_as_measured():
    found = latencies(watched(event_at=T0 - timedelta(minutes=30)), sessions=1)  # in the history
    assert no_events(found) is not None


def test_a_run_with_an_event_in_its_window_is_measured():
    found = latencies(watched(event_at=T0 + timedelta(seconds=10)), sessions=1)
    assert found["b"]["samples"] == 1
    assert no_events(found) is None


def test_a_load_curve_level_without_events_marks_its_alert_column():
    result = watched(event_at=None) | {
        "held": {
            "verdict": "kept up",
            "held_s": 60.0,
            "produced_per_s": 0.5,
            "stored_per_s": 0.5,
            "lag_s": {},
            "lag_t": [],
            "cpu_percent": {},
            "bytes_per_reading": None,
            "load": None,
        }
    }
    assert level_row(1, result, sessions=1)["alert p50/p99 ms"].startswith("NO EVENTS")


def test_the_history_ends_when_it_is_sent_and_covers_whole_ticks(tmp_path: Path):
    args = argparse.Namespace(robots=3, history_s=3601, spread=False)
    history = history_producer({}, tmp_path, args, T0 + timedelta(microseconds=500))
    argv = history.argv
    start = datetime.fromisoformat(argv[argv.index("--start-time") + 1])
    assert start == T0 - timedelta(seconds=3600)
    assert argv[argv.index("--limit") + 1] == str(1800 * 3)
    assert "--faults" not in argv


def without(argv: list[str], *flags: str, valued: tuple[str, ...] = ()) -> list[str]:
    """``argv`` without ``flags`` and without each option of ``valued`` with its value."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in valued:
            skip = True
        elif arg not in flags:
            kept.append(arg)
    return kept


def test_the_history_is_the_live_fleets_past(tmp_path: Path):
    for spread in (True, False):
        args = argparse.Namespace(robots=7, history_s=60, spread=spread, fault_period=60)
        live = live_producer({}, tmp_path, args).argv
        history = history_producer({}, tmp_path, args, T0).argv
        fleet = without(live, "--faults", valued=("--fault-period",))
        assert fleet == without(history, "--max-speed", valued=("--start-time", "--limit"))
        assert fleet[fleet.index("--robots") + 1] == "7"
        assert ("--spread" in fleet) is spread
