"""The Fleet tab in a real browser (Debian's headless Chromium through Playwright): built when first opened,
the worn robot on the top row with its days left, and a click on its worn axis opens the trend with the
forecast cone and limit, its alerts with the acknowledgement outcome and note, and its maintenance history
(acknowledged alerts and the maintenance log, notes shown as text).
Screenshots in test-artifacts/."""

from __future__ import annotations

import pytest

from common.store.db import make_engine
from consumer_db.migrate import migrate
from dashboard.fleet_data import COLOURS
from dashboard.settings import DashboardSettings
from tests.browser.test_dashboard_browser import LIVE, js, open_dashboard
from tests.dashboard_support import ServerThread
from tests.fleet_fixtures import DAYS, DUE_THIS_MONTH, LOG_NOTE, NOTE, WORN, WORN_AXIS, seed_fleet

pytestmark = pytest.mark.browser


@pytest.fixture
def server(sqlite_url):
    engine = make_engine(sqlite_url, log_version=False)
    migrate(engine)
    seed_fleet(engine)
    settings = DashboardSettings(
        _env_file=None,
        bus="memory",
        database_url=sqlite_url,
        dashboard_fleet_refresh_s=1,
        dashboard_sign_in=False,  # the tab's features here; sign-in is test_dashboard_signin.py's
    )
    with ServerThread(settings, engine=engine) as running:
        yield running
    engine.dispose()


@pytest.fixture
def page(page):
    page.set_viewport_size({"width": 1400, "height": 1300})  # the grid and an opened axis, one screen
    return page


def cell_centre(page, robot: str, axis: int) -> tuple[float, float]:
    """Where the browser drew a cell of the grid, in page pixels (from the plot's own scales)."""
    return tuple(
        page.evaluate(
            """([robot, axis]) => {
                const plot = Bokeh.documents[0].get_model_by_name('fleet_grid');
                const view = Bokeh.index.find_one(plot);
                const sx = view.frame.x_scale.compute(plot.x_range.synthetic(axis));
                const sy = view.frame.y_scale.compute(plot.y_range.synthetic(robot));
                const box = view.canvas_view.el.getBoundingClientRect();
                return [box.left + sx, box.top + sy];
            }""",
            [robot, str(axis)],
        )
    )


def test_the_fleet_tab_shows_the_worn_axis_first_and_a_click_opens_its_trend_cone_and_alerts(server, page):
    open_dashboard(page, server.url)
    assert js(page, LIVE.format("fleet_grid")) is None  # built when the tab is first opened, not before
    page.get_by_text("Fleet", exact=True).click()
    page.wait_for_function(
        f"() => {LIVE.format('fleet_cells')} && {LIVE.format('fleet_cells')}.data.robot_id.length == 32",
        timeout=30_000,
    )
    factors = js(page, LIVE.format("fleet_grid") + ".y_range.factors")
    assert factors[-1] == WORN and factors[-2] == DUE_THIS_MONTH  # the top rows: the most urgent
    cells = js(page, LIVE.format("fleet_cells") + ".data")
    worn = list(zip(cells["robot_id"], cells["axis"], strict=True)).index((WORN, str(WORN_AXIS)))
    assert cells["label"][worn] == "3.5 d" and cells["colour"][worn] == COLOURS["week"]
    page.get_by_text("alerts judged real per detector").wait_for(timeout=10_000)
    assert js(page, LIVE.format("fleet_outcomes") + ".data.detector") == ["maintenance_due", "residual", "zscore"]

    x, y = cell_centre(page, WORN, WORN_AXIS)
    page.mouse.click(x, y)
    page.get_by_text(f"{WORN} · axis {WORN_AXIS}").wait_for(timeout=20_000)
    page.wait_for_function(f"() => {LIVE.format('fleet_cone')}.data.x.length == 3", timeout=20_000)
    assert js(page, LIVE.format("fleet_cone") + ".data.y")[1:] == [0.30, 0.30]  # the interval, on the limit
    assert js(page, LIVE.format("fleet_forecast") + ".data.y") == [0.25, 0.30]
    assert len(js(page, LIVE.format("fleet_days") + ".data.ts")) == DAYS
    assert len(js(page, LIVE.format("fleet_hours") + ".data.ts")) == 30 * 24
    assert "days left: <b>3.5 d</b>" in js(page, LIVE.format("fleet_detail") + ".text")
    alerts = js(page, LIVE.format("fleet_alerts") + ".data")
    assert alerts["detector"] == ["maintenance_due", "zscore", "zscore"]
    assert alerts["outcome"] == ["", "", "real_fault"]
    # The note is shown as the text it is (the table does not read it as HTML), in the alerts and the history.
    assert page.get_by_text(NOTE, exact=True).count() == 2
    # The history: the two acknowledged alerts and, between them, the lubrication logged without an alert.
    history = js(page, LIVE.format("fleet_maintenance") + ".data")
    assert history["action"] == ["", "lubricated", ""] and history["outcome"] == ["", "", "real_fault"]
    assert history["by"] == ["maria", "jonas", "maria"]
    assert page.get_by_text(LOG_NOTE, exact=True).count() == 1  # its note as the text it is
    assert page.errors == []


HOSTILE = "<img src=x onerror=window.__pwned='{}';alert(1)>"


@pytest.fixture
def hostile_server(sqlite_url):
    """A robot id, a detector, notes and names (an alert's and a log entry's) that would run as markup: the
    robot is the most urgent."""
    from common.store.joint_health import store_health
    from common.store.maintenance import store_entries
    from common.wire.schemas import (
        AckOutcome,
        Alert,
        AlertState,
        AxisForecast,
        HealthEvent,
        MaintenanceAction,
        MaintenanceEntry,
        Severity,
    )
    from consumer_db.alert_store import upsert_alerts
    from tests.fleet_fixtures import END

    engine = make_engine(sqlite_url, log_version=False)
    migrate(engine)
    seed_fleet(engine)
    robot = HOSTILE.format("robot")
    forecast = AxisForecast(axis=2, level=0.2, slope_per_day=0.02, limit=0.3, days_left=0.5, low_days=0.2, high_days=1)
    event = Alert(
        event_id="hostile",
        robot_id=robot,
        axis=2,
        detector=HOSTILE.format("detector"),
        severity=Severity.ALERT,
        state=AlertState.CLOSED,
        opened_at=END,
        closed_at=END,
        acknowledged_by=HOSTILE.format("who"),
        acknowledged_at=END,
        ack_outcome=AckOutcome.REAL_FAULT,
        ack_note=HOSTILE.format("note"),
    )
    logged = MaintenanceEntry.new(
        robot, 2, MaintenanceAction.OTHER, HOSTILE.format("logger"), END, note=HOSTILE.format("log")
    )
    with engine.begin() as conn:
        store_health(conn, [HealthEvent(robot_id=robot, kind="forecast", start=END, forecasts=[forecast])])
        upsert_alerts(conn, [event])
        store_entries(conn, [logged])
    settings = DashboardSettings(_env_file=None, bus="memory", database_url=sqlite_url, dashboard_sign_in=False)
    with ServerThread(settings, engine=engine) as running:
        yield running
    engine.dispose()


def test_text_from_data_is_shown_as_text_in_the_grid_hover_detail_and_tables(hostile_server, page):
    robot = HOSTILE.format("robot")
    open_dashboard(page, hostile_server.url)
    page.get_by_text("Fleet", exact=True).click()
    page.wait_for_function(f"() => {LIVE.format('fleet_cells')} && {LIVE.format('fleet_cells')}.data.label.length")
    assert js(page, LIVE.format("fleet_grid") + ".y_range.factors").pop() == robot  # the top row
    x, y = cell_centre(page, robot, 2)
    page.mouse.move(x, y)  # the hover shows the robot id
    page.get_by_text(robot, exact=True).first.wait_for(timeout=10_000)
    page.mouse.click(x, y)
    page.get_by_text(HOSTILE.format("note"), exact=True).first.wait_for(timeout=20_000)
    assert robot in page.get_by_text("· axis 2").first.text_content()  # the detail's title, as text
    for mark in ("detector", "who", "log", "logger"):  # the alert's, and the log entry's in the history
        page.get_by_text(HOSTILE.format(mark)).first.wait_for(timeout=5_000)
    page.get_by_text("alerts judged real per detector").wait_for()
    page.wait_for_timeout(500)
    assert js(page, "window.__pwned") is None and page.dialogs == []
    assert page.errors == []
