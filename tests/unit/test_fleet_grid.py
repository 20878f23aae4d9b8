"""The Fleet tab's grid: robots in order of urgency, each axis's colour, and its days left counted from the
fleet's newest forecast; the per-detector outcome table; an axis's detail (cone and forecast line)."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from common.store.fleet_health import axis_detail
from common.store.maintenance import outcomes_per_detector, store_entries
from common.store.tables import health_forecast
from common.wire.schemas import AckOutcome, Alert, AlertState, MaintenanceAction, MaintenanceEntry, Severity
from consumer_db.alert_store import upsert_alerts
from dashboard.fleet_data import (
    COLOURS,
    OUTCOMES,
    cell_of,
    detail_of,
    fleet_grid,
    grid_columns,
    maintenance_columns,
    outcome_table,
)
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def forecast(robot, axis, *, days=None, low=None, high=None, level=0.05, limit=0.30, at=NOW, slope=0.001):
    return {
        "robot_id": robot,
        "axis": axis,
        "level": level,
        "slope_per_day": slope,
        "limit_level": limit,
        "days_left": days,
        "low_days": low,
        "high_days": high,
        "updated_at": at,
    }


def learning(robot, axis):
    return {"robot_id": robot, "axis": axis, **dict.fromkeys(("level", "slope_per_day", "limit_level")),
            **dict.fromkeys(("days_left", "low_days", "high_days", "updated_at"))}  # fmt: skip


def test_robots_are_sorted_by_their_fewest_days_left_then_by_wear():
    rows = [
        forecast("a-healthy", 1, level=0.02),
        forecast("b-month", 3, days=20.0, low=15.0, high=28.0),
        forecast("b-month", 5, days=80.0),
        forecast("c-week", 2, days=4.0, low=3.0, high=6.0),
        forecast("d-worn-no-crossing", 4, level=0.2),  # no crossing forecast, but more worn than a-healthy
        learning("e-new", 1),
    ]
    grid = fleet_grid(rows)
    assert grid.robots == ["c-week", "b-month", "d-worn-no-crossing", "a-healthy", "e-new"]
    assert grid.urgency["c-week"] == 4.0 and grid.urgency["b-month"] == 20.0
    assert math.isinf(grid.urgency["a-healthy"])
    # Every robot gets all 8 axes, in order, the ones without a forecast as learning.
    assert [(c.robot_id, c.axis) for c in grid.cells[:8]] == [("c-week", a) for a in range(1, 9)]
    assert len(grid.cells) == 5 * 8
    assert {c.health for c in grid.cells if c.robot_id == "e-new"} == {"learning"}


def test_a_crossed_axis_comes_first_and_reads_now():
    grid = fleet_grid([forecast("x", 1, days=2.0), forecast("y", 6, level=0.31, days=None)])
    assert grid.robots == ["y", "x"]
    crossed = next(c for c in grid.cells if c.robot_id == "y" and c.axis == 6)
    assert crossed.health == "crossed" and crossed.label == "now" and crossed.days_left == 0.0
    no_crossing = cell_of(forecast("z", 1, days=None), NOW)
    assert no_crossing.label == "∞" and cell_of(learning("z", 2), NOW).label == "–"


@pytest.mark.parametrize(
    ("days", "level", "health"),
    [
        (None, 0.02, "healthy"),
        (None, 0.16, "rising"),  # over half the limit, no crossing forecast
        (45.0, 0.16, "rising"),
        (45.0, 0.05, "healthy"),
        (30.0, 0.05, "month"),
        (7.5, 0.05, "month"),
        (7.0, 0.05, "week"),
        (0.5, 0.05, "week"),
        (3.0, 0.30, "crossed"),  # at the limit already
    ],
)
def test_the_colour_follows_the_days_left_and_the_level(days, level, health):
    cell = cell_of(forecast("r", 1, days=days, level=level), NOW)
    assert cell.health == health
    assert grid_columns(fleet_grid([forecast("r", 1, days=days, level=level)]))["colour"][0] == COLOURS[health]


def test_days_left_count_from_the_newest_forecast_of_the_fleet():
    # r-stale's forecast is two days older than the fleet's newest: its crossing is two days nearer now.
    rows = [
        forecast("r-fresh", 1, days=10.0, at=NOW),
        forecast("r-stale", 1, days=9.0, low=5.0, high=14.0, at=NOW - timedelta(days=2)),
        forecast("r-past", 1, days=1.0, low=0.5, high=4.0, at=NOW - timedelta(days=3)),  # its crossing has passed
    ]
    grid = fleet_grid(rows)
    assert grid.reference == NOW
    cells = {c.robot_id: c for c in grid.cells if c.axis == 1}
    assert cells["r-fresh"].days_left == pytest.approx(10.0) and not cells["r-fresh"].stale
    assert cells["r-stale"].days_left == pytest.approx(7.0)
    assert (cells["r-stale"].low_days, cells["r-stale"].high_days) == (pytest.approx(3.0), pytest.approx(12.0))
    assert cells["r-stale"].health == "week" and cells["r-stale"].stale
    assert cells["r-past"].health == "crossed" and cells["r-past"].label == "now"
    assert (cells["r-past"].low_days, cells["r-past"].high_days) == (0.0, pytest.approx(1.0))  # never negative
    assert grid.robots == ["r-past", "r-stale", "r-fresh"]
    columns = grid_columns(grid)
    assert columns["label"][:3] == ["now", "–", "–"]  # r-past's first axis, then its learning axes
    assert columns["colour"][:2] == [COLOURS["crossed"], COLOURS["learning"]]
    stale = columns["robot_id"].index("r-stale")
    assert columns["label"][stale] == "7.0 d" and columns["interval"][stale] == "3.0 – 12.0 d"
    assert columns["updated"][stale].endswith("(stale)")
    assert columns["label"][columns["robot_id"].index("r-fresh")] == "10 d"


def test_axes_beyond_eight_are_not_shown():
    grid = fleet_grid([forecast("r", 1, days=50.0), forecast("r", 12, days=1.0)])
    assert {c.axis for c in grid.cells} == set(range(1, 9))
    assert grid.urgency["r"] == 50.0


def judged(n: int, detector: str, outcome: AckOutcome | None, *, acked: bool = True) -> Alert:
    return Alert(
        event_id=f"e{n}",
        robot_id="r",
        axis=1,
        detector=detector,
        severity=Severity.ALERT,
        state=AlertState.CLOSED,
        opened_at=NOW + timedelta(minutes=n),
        closed_at=NOW + timedelta(minutes=n + 1),
        acknowledged_by="otto" if acked else None,
        acknowledged_at=NOW + timedelta(minutes=n + 2) if acked else None,
        ack_outcome=outcome,
    )


def test_the_outcome_table_counts_per_detector_and_the_share_judged_real_by_the_maintenance_rule(
    migrated_sqlite,  # noqa: F811
):
    events = [
        judged(1, "zscore", AckOutcome.REAL_FAULT),
        judged(2, "zscore", AckOutcome.PART_REPLACED),  # real too: common.store.maintenance.REAL_OUTCOMES
        judged(3, "zscore", AckOutcome.FALSE_ALARM),
        judged(4, "zscore", AckOutcome.INSPECTED_OK),
        judged(5, "zscore", None),  # acknowledged without an outcome: not judged
        judged(6, "zscore", None, acked=False),
        judged(7, "stuck", None, acked=False),  # nothing judged: no share
    ]
    with migrated_sqlite.begin() as conn:
        upsert_alerts(conn, events)
    with migrated_sqlite.connect() as conn:
        table = outcome_table(outcomes_per_detector(conn))
    assert table["detector"] == ["stuck", "zscore"]
    assert table["alerts"] == [1, 6] and table["judged"] == [0, 4]
    assert [table[o] for o in OUTCOMES] == [[0, 1], [0, 1], [0, 1], [0, 1]]
    assert math.isnan(table["real_share"][0]) and table["real_share"][1] == 0.5  # of the alerts given an outcome


def test_the_detail_draws_the_cone_from_the_level_to_the_limit():
    fc = forecast("r<1>", 2, days=6.0, low=4.0, high=9.0, level=0.2, at=NOW)
    trend = [
        {"period": "hour", "bucket_start": NOW - timedelta(hours=2), "deviation_median": 0.19},
        {"period": "hour", "bucket_start": NOW - timedelta(hours=1), "deviation_median": None},  # not judged
        {"period": "day", "bucket_start": NOW - timedelta(days=1), "deviation_median": 0.18},
    ]
    data = {"forecast": fc, "trend": trend, "alerts": [], "maintenance": []}
    detail = detail_of("r<1>", 2, data, NOW)
    ms = NOW.timestamp() * 1000
    day_ms = 86_400_000
    assert detail.forecast == {"x": [ms, ms + 6 * day_ms], "y": [0.2, 0.30]}
    assert detail.cone == {"x": [ms, ms + 4 * day_ms, ms + 9 * day_ms], "y": [0.2, 0.30, 0.30]}
    assert detail.limit == 0.30
    assert detail.hours["median"] == [0.19] and len(detail.days["ts"]) == 1
    assert "r&lt;1&gt;" in detail.title and "<1>" not in detail.title
    assert "6.0 d" in detail.title


def test_the_detail_without_a_crossing_extends_the_slope_and_has_no_cone():
    data = {"forecast": forecast("r", 1, level=0.05, slope=0.002), "trend": [], "alerts": [], "maintenance": []}
    detail = detail_of("r", 1, data, NOW)
    assert detail.cone == {"x": [], "y": []}
    assert detail.forecast["y"] == [0.05, pytest.approx(0.05 + 0.002 * 30)]
    no_forecast = detail_of("r", 1, {"forecast": None, "trend": [], "alerts": [], "maintenance": []}, None)
    assert no_forecast.limit is None and "no forecast yet" in no_forecast.title


def test_the_detail_of_a_forecast_made_late_in_9999_leaves_out_what_falls_past_the_calendar():
    # A valid forecast from an outside client: its crossing and its month ahead have no instant (the API
    # gives them as null); the detail shows the level and the days left, and draws nothing past 9999.
    late = datetime(9999, 12, 30, tzinfo=UTC)
    fc = forecast("r", 1, days=6.0, low=0.5, high=9.0, level=0.2, at=late)
    trend = [{"period": "day", "bucket_start": datetime(9999, 12, 31, tzinfo=UTC), "deviation_median": 0.2}]
    detail = detail_of("r", 1, {"forecast": fc, "trend": trend, "alerts": [], "maintenance": []}, late)
    assert detail.forecast == {"x": [], "y": []} and detail.cone == {"x": [], "y": []}
    assert "6.0 d" in detail.title and "forecast of 9999-12-30" in detail.title
    assert detail.days["ts"] == [datetime(9999, 12, 31, 12, tzinfo=UTC).timestamp() * 1000]


def test_the_detail_of_a_forecast_made_in_year_1_is_read_and_built(migrated_sqlite):  # noqa: F811
    # As valid from an outside client as one of 9999: the 30 days of hour rows before it have no start.
    early = datetime(1, 1, 2, tzinfo=UTC)
    with migrated_sqlite.begin() as conn:
        conn.execute(health_forecast.insert(), [forecast("r", 1, days=6.0, low=4.0, high=9.0, level=0.2, at=early)])
    with migrated_sqlite.connect() as conn:
        data = axis_detail(conn, robot_id="r", axis=1)
    detail = detail_of("r", 1, data, early)
    assert detail.forecast["y"] == [0.2, 0.30] and len(detail.cone["x"]) == 3 and "6.0 d" in detail.title


def test_the_history_merges_the_log_and_shows_an_acknowledgement_part_replaced_once(migrated_sqlite):  # noqa: F811
    replaced_at, logged_at = NOW + timedelta(hours=5), NOW + timedelta(hours=2)
    replaced = judged(1, "load_high", AckOutcome.PART_REPLACED).model_copy(update={"acknowledged_at": replaced_at})
    entries = [
        MaintenanceEntry.new("r", 1, MaintenanceAction.PART_REPLACED, "otto", replaced_at, "new gearbox", "e1"),
        MaintenanceEntry.new("r", 1, MaintenanceAction.LUBRICATED, "jonas", logged_at, "<i>greased</i>"),
        MaintenanceEntry.new("r", 2, MaintenanceAction.OTHER, "jonas", logged_at),  # another axis
    ]
    with migrated_sqlite.begin() as conn:
        upsert_alerts(conn, [replaced, judged(2, "zscore", AckOutcome.FALSE_ALARM)])
        store_entries(conn, entries)
    with migrated_sqlite.connect() as conn:
        history = axis_detail(conn, robot_id="r", axis=1)["maintenance"]
    assert [(h["at"], h["action"], h["outcome"], h["by"]) for h in history] == [
        (replaced_at, "part_replaced", "part_replaced", "otto"),  # the alert and its log entry, once
        (logged_at, "lubricated", None, "jonas"),  # logged without an alert
        (NOW + timedelta(minutes=4), None, "false_alarm", "otto"),
    ]
    columns = maintenance_columns(history)
    assert columns["note"] == ["", "<i>greased</i>", ""] and columns["action"][1] == "lubricated"
