"""The Fleet tab's queries on real PostgreSQL, as the services' role (least privilege): the grid's rows
(every robot's axes 1-8, with or without a forecast), the outcomes per detector, and one axis's detail."""

from datetime import timedelta

import pytest
from sqlalchemy import event

from common.store.db import make_engine
from common.store.fleet_health import axis_detail, fleet_forecasts
from common.store.maintenance import outcomes_per_detector
from consumer_db.migrate import migrate
from dashboard.fleet_data import fleet_grid, outcome_table
from tests.fleet_fixtures import (
    DAYS,
    DUE_THIS_MONTH,
    END,
    HEALTHY,
    LEARNING,
    LOG_NOTE,
    MONTH_AXIS,
    NOTE,
    REPLACED_AT,
    REPLACED_NOTE,
    WORN,
    WORN_AXIS,
    seed_fleet,
)
from tests.integration.test_hostile_outside_client import least_privilege_urls

pytestmark = pytest.mark.integration


@pytest.fixture
def app_engine(pg_url, postgres_admin_url, unique):
    owner_url, app_url, _ = least_privilege_urls(pg_url, postgres_admin_url, f"f{unique}")
    owner = make_engine(owner_url, log_version=False)
    migrate(owner)
    owner.dispose()
    engine = make_engine(app_url, log_version=False)
    seed_fleet(engine)
    yield engine
    engine.dispose()


def statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_the_grid_has_every_robot_and_axis_one_to_eight_in_one_statement(app_engine):
    seen = statements(app_engine)
    with app_engine.connect() as conn:
        rows = fleet_forecasts(conn)
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
    assert {(r["robot_id"], r["axis"]) for r in rows} == {
        (robot, axis) for robot in (WORN, DUE_THIS_MONTH, HEALTHY, LEARNING) for axis in range(1, 9)
    }
    worn = next(r for r in rows if (r["robot_id"], r["axis"]) == (WORN, WORN_AXIS))
    assert (worn["days_left"], worn["low_days"], worn["high_days"]) == (3.5, 2.0, 6.0)
    assert worn["updated_at"] == END
    assert all(r["updated_at"] is None for r in rows if r["robot_id"] == LEARNING)
    grid = fleet_grid(rows)
    assert grid.robots == [WORN, DUE_THIS_MONTH, HEALTHY, LEARNING]


def test_a_robot_with_a_forecast_but_no_axes_row_is_in_the_grid(app_engine):
    from common.store.tables import axes_dim

    with app_engine.begin() as conn:
        conn.execute(axes_dim.delete().where(axes_dim.c.robot_id == WORN))
    with app_engine.connect() as conn:
        rows = [r for r in fleet_forecasts(conn) if r["robot_id"] == WORN]
    assert sorted(r["axis"] for r in rows) == [1, 3, 5]  # the axes it has forecasts for


def test_the_outcome_table_counts_every_alert_and_the_share_of_the_judged_ones_found_real(app_engine):
    with app_engine.connect() as conn:
        table = outcome_table(outcomes_per_detector(conn))
    columns = (table["alerts"], table["judged"], table["real_share"])
    shown = {detector: row for detector, *row in zip(table["detector"], *columns, strict=True)}
    # m-1 part_replaced counts as real, the residual alert inspected OK does not
    assert shown == {"maintenance_due": [2, 1, 1.0], "residual": [2, 1, 0.0], "zscore": [4, 3, round(1 / 3, 4)]}


def test_an_axis_detail_has_its_forecast_recent_hours_every_day_alerts_and_history(app_engine):
    with app_engine.connect() as conn:
        detail = axis_detail(conn, robot_id=WORN, axis=WORN_AXIS)
    assert detail["forecast"]["days_left"] == 3.5 and detail["forecast"]["limit_level"] == 0.30
    hours = [r for r in detail["trend"] if r["period"] == "hour"]
    days = [r for r in detail["trend"] if r["period"] == "day"]
    assert len(days) == DAYS  # every day
    assert len(hours) == 30 * 24 and hours[0]["bucket_start"] == END - timedelta(days=30)  # the last 30 days
    assert [h["bucket_start"] for h in hours] == sorted(h["bucket_start"] for h in hours)
    assert hours[-1]["deviation_median"] > hours[0]["deviation_median"] + 0.15  # the wear shows
    assert [a["event_id"] for a in detail["alerts"]] == ["due-1", "z-2", "z-1"]  # this axis's, newest first
    history = [(h["at"], h["action"], h["outcome"], h["note"], h["by"]) for h in detail["maintenance"]]
    assert history == [  # newest first: two acknowledged alerts and, between them, a logged lubrication
        (END - timedelta(days=9), None, None, None, "maria"),
        (END - timedelta(days=15), "lubricated", None, LOG_NOTE, "jonas"),
        (END - timedelta(days=19), None, "real_fault", NOTE, "maria"),
    ]


def test_an_acknowledgement_part_replaced_is_one_row_of_the_history(app_engine):
    with app_engine.connect() as conn:
        history = axis_detail(conn, robot_id=DUE_THIS_MONTH, axis=MONTH_AXIS)["maintenance"]
    assert [(h["at"], h["action"], h["outcome"], h["note"]) for h in history] == [
        (REPLACED_AT, "part_replaced", "part_replaced", REPLACED_NOTE),  # the alert and its log entry, once
        (END - timedelta(days=7), None, "inspected_ok", None),
    ]
    assert history[0]["what"] == "maintenance_due alert (ALERT) acknowledged"


def test_an_axis_without_health_rows_has_an_empty_trend_and_no_forecast(app_engine):
    with app_engine.connect() as conn:
        detail = axis_detail(conn, robot_id=LEARNING, axis=1)
        healthy = axis_detail(conn, robot_id=HEALTHY, axis=2)  # an axis without health rows
    assert detail == {"forecast": None, "trend": [], "alerts": [], "maintenance": []}
    assert healthy["forecast"] is None and healthy["trend"] == [] and len(healthy["alerts"]) == 1
