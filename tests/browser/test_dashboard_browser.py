"""The dashboard in a real browser (Debian's headless Chromium through Playwright): it loads without
JavaScript errors, points arrive while we watch, alerts show and can be acknowledged, a late tab starts full,
and a feed that goes quiet is shown as not live. Each test leaves a screenshot in test-artifacts/."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from common.store.db import make_engine
from common.wire.schemas import Alert
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, alert, reading, wait_for

pytestmark = pytest.mark.browser
WINDOW = 60
LIVE = "Bokeh.documents[0].get_model_by_name('{}')"


def now_fleet(n: int, *, robot: str = "RMBR4-2", start: int = 0) -> list:
    t0 = datetime.now(UTC) - timedelta(seconds=2 * (start + n))
    return [reading(i, robot=robot, t0=t0) for i in range(start, start + n)]


@pytest.fixture
def server(sqlite_url):
    """The dashboard and consumer_db on one in-process bus, consumer_db writing to a SQLite file."""
    from consumer_db.service import run as run_sink
    from consumer_db.settings import ConsumerDbSettings

    settings = DashboardSettings(
        _env_file=None,
        bus="memory",
        window_rows=WINDOW,
        dashboard_push_ms=50,
        dashboard_stale_seconds=3,
        database_url=sqlite_url,
        dashboard_sign_in=False,  # the page's features here; sign-in is test_dashboard_signin.py's
    )
    sink_settings = ConsumerDbSettings(_env_file=None, bus="memory", database_url=sqlite_url, sink_batch_ms=50)
    engine = make_engine(sqlite_url, log_version=False)

    async def sink(bus, stop):
        await run_sink(sink_settings, bus=bus, stop=stop, engine=engine)

    with ServerThread(settings, engine=engine, alongside=sink) as running:
        yield running
    engine.dispose()


def stored_alert(server: ServerThread, event_id: str) -> dict | None:
    from sqlalchemy.exc import OperationalError

    from common.store.tables import alerts

    try:
        with server.engine.connect() as conn:
            row = conn.execute(alerts.select().where(alerts.c.event_id == event_id)).mappings().first()
    except OperationalError:  # consumer_db is still migrating the file: a column of a later migration is missing
        return None
    return dict(row) if row else None


def open_dashboard(page, url: str) -> None:
    """Until the whole page is in: it arrives in pieces once drawn, the alert table last."""
    page.goto(url)
    page.wait_for_function(
        f"() => window.Bokeh && Bokeh.documents.length > 0 && {LIVE.format('alert_table')}", timeout=30_000
    )


def js(page, expression: str):
    return page.evaluate(f"() => {expression}")


def source_len(page) -> int:
    return js(page, LIVE.format("live_source") + ".data.ts.length")


def newest_point(page) -> float:
    return js(page, f"(d => d.ts.length ? d.ts[d.ts.length - 1] : 0)({LIVE.format('live_source')}.data)")


class Streamer:
    """Publishes a reading every ``period`` seconds from a thread until stopped: a feed that keeps going."""

    def __init__(self, server: ServerThread, period: float = 0.1) -> None:
        self.server, self.period, self.i = server, period, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            self.server.publish(
                self.server.settings.readings_topic,
                reading(self.i, t0=datetime.now(UTC) - timedelta(seconds=2 * self.i)),
            )
            self.i += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def test_page_loads_without_errors_and_new_points_arrive_while_we_watch(server, page):
    server.publish_readings(now_fleet(20))
    open_dashboard(page, server.url)
    assert source_len(page) == 20
    with Streamer(server):
        first = newest_point(page)
        page.wait_for_function(f"() => {LIVE.format('live_source')}.data.ts.length >= 30", timeout=20_000)
        assert newest_point(page) > first
        page.get_by_text("LIVE", exact=True).wait_for(timeout=10_000)
    assert page.errors == []


def test_the_page_comes_as_a_skeleton_then_the_chart_side_panel_and_alert_table_in_later_messages(server, page):
    server.publish_readings(now_fleet(20))
    messages = []  # what the server sends the tab over its websocket, in order
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: messages.append(str(frame))))
    open_dashboard(page, server.url)
    pulled = next(i for i, m in enumerate(messages) if '"roots"' in m)  # the document the tab pulled
    assert '"status"' in messages[pulled] and '"live_chart"' not in messages[pulled]
    later = messages[pulled + 1 :]
    added = [name for name in ("live_chart", "latest_table", "alert_table") for m in later if f'"{name}"' in m]
    assert added == ["live_chart", "latest_table", "alert_table"], added  # one each, in this order
    assert js(page, LIVE.format("live_chart") + ".renderers.length") >= 14  # a line per axis and the markers
    assert source_len(page) == 20
    assert page.errors == []


def test_an_alert_shows_in_the_table_and_on_the_chart_and_acknowledging_it_persists(server, page):
    readings = now_fleet(40)
    server.publish_readings(readings)
    open_dashboard(page, server.url)
    event = alert("e-" + uuid.uuid4().hex[:6], at=readings[20].ts, peak=44.5)
    server.publish(server.settings.alerts_topic, event)
    page.wait_for_function(f"() => {LIVE.format('alert_source')}.data.event_id.includes('{event.event_id}')")
    assert js(page, LIVE.format("chart_alerts") + ".data.event_id") == [event.event_id]
    assert js(page, LIVE.format("chart_alerts") + ".data.blink") == ["blink"]
    # The unacknowledged marker blinks: its alpha flips in the browser, and back, with no server round trip.
    alpha = LIVE.format("alert_marks_blinking") + ".glyph.fill_alpha.value"
    first = js(page, alpha)
    page.wait_for_function(f"() => {alpha} !== {first}", timeout=5_000)
    page.wait_for_function(f"() => {alpha} === {first}", timeout=5_000)
    page.locator(".slick-cell", has_text="zscore").first.click()
    page.locator("select", has=page.locator("option", has_text="false alarm")).select_option(label="real fault")
    page.get_by_role("button", name="Acknowledge selected").click()
    page.wait_for_function(f"() => {LIVE.format('chart_alerts')}.data.blink[0] === ''", timeout=20_000)
    page.get_by_text("anonymous at", exact=False).first.wait_for(timeout=10_000)
    published = [Alert.from_bytes(m.value) for log in server.bus._log(server.settings.alerts_topic) for m in log]
    acked = [a for a in published if a.event_id == event.event_id and a.acknowledged_by]
    assert len(acked) == 1 and acked[0].acknowledged_by == "anonymous" and acked[0].acknowledged_at
    assert acked[0].ack_outcome == "real_fault"
    unchanged = {"acknowledged_by", "acknowledged_at", "ack_outcome"}
    assert acked[0].model_dump(exclude=unchanged) == event.model_dump(exclude=unchanged)
    row = wait_for(
        lambda: (r := stored_alert(server, event.event_id)) and r["acknowledged_by"] and r,
        what="consumer_db to store the acknowledgement",
    )
    assert row["acknowledged_by"] == "anonymous" and row["acknowledged_at"] == acked[0].acknowledged_at
    assert page.errors == []


def test_acknowledging_needs_an_outcome_and_a_selection(server, page):
    server.publish(server.settings.alerts_topic, alert("e-noname"))
    open_dashboard(page, server.url)
    page.get_by_role("button", name="Acknowledge selected").click()
    page.get_by_text("Select at least one alert and choose the outcome first.").wait_for(timeout=10_000)
    assert not any(
        a.acknowledged_by
        for log in server.bus._log(server.settings.alerts_topic)
        for a in map(lambda m: Alert.from_bytes(m.value), log)
    )


def test_a_late_session_starts_with_a_full_window(server, page):
    server.publish_readings(now_fleet(3 * WINDOW))
    wait_for(lambda: len(server.feed.window("RMBR4-2")) == WINDOW, what="the server's window to fill")
    open_dashboard(page, server.url)
    assert source_len(page) == WINDOW
    assert newest_point(page) == server.feed.window("RMBR4-2")[-1]["ts"]
    assert page.errors == []


def test_a_quiet_feed_is_marked_disconnected_and_stale_then_live_again(server, page):
    open_dashboard(page, server.url)
    # Fed while the page is open: readings published before it would be 3 s old (stale) by the time a busy
    # machine has drawn the page, and LIVE would never be seen.
    with Streamer(server):
        page.get_by_text("LIVE", exact=True).wait_for(timeout=15_000)
    page.get_by_text("DISCONNECTED", exact=True).wait_for(timeout=15_000)  # 3 s without data
    assert "STALE" in js(page, LIVE.format("live_chart") + ".title.text")
    with Streamer(server):
        page.get_by_text("LIVE", exact=True).wait_for(timeout=15_000)
    assert "STALE" not in js(page, LIVE.format("live_chart") + ".title.text")


def test_stacked_view_and_fleet_robot_selector(server, page):
    server.publish_readings(now_fleet(30) + now_fleet(15, robot="R-7"))
    open_dashboard(page, server.url)
    page.get_by_text("stacked areas").click()
    page.wait_for_function(
        f"() => {LIVE.format('live_chart')}.renderers.filter(r => r.visible && r.glyph.type == 'VArea').length == 14"
    )
    page.locator("select").first.select_option("R-7")
    # The title and the data of the chosen robot, together: the page arrives in pieces, and the default robot's
    # window can pass through 15 rows while it fills.
    page.wait_for_function(
        f"() => {LIVE.format('live_chart')}.title.text.includes('robot R-7')"
        f" && {LIVE.format('live_source')}.data.ts.length == 15"
    )
    assert page.errors == []


@pytest.mark.integration
def test_live_view_on_the_real_kafka_feed(kafka_env, chromium, artifacts_dir):
    from common.wire.kafka import KafkaBus

    settings = DashboardSettings(
        _env_file=None, window_rows=WINDOW, dashboard_push_ms=100, dashboard_sign_in=False, **kafka_env
    )
    with ServerThread(settings, bus=lambda: KafkaBus(settings)) as server:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            open_dashboard(page, server.url)
            with Streamer(server, period=0.2):  # keeps publishing until the group has its partitions
                page.wait_for_function(f"() => {LIVE.format('live_source')}.data.ts.length >= 10", timeout=60_000)
                page.get_by_text("LIVE", exact=True).wait_for(timeout=10_000)
                event = alert("k-" + uuid.uuid4().hex[:6], at=datetime.now(UTC))
                server.publish(settings.alerts_topic, event)
                page.wait_for_function(
                    f"() => {LIVE.format('alert_source')}.data.event_id.includes('{event.event_id}')", timeout=30_000
                )
            assert errors == []
        finally:
            page.screenshot(path=str(artifacts_dir / "dashboard-real-kafka.png"), full_page=True)
            page.close()


def test_history_tab_shows_what_consumer_db_stored(server, page):
    readings = now_fleet(300)  # 10 minutes: the history shows the whole minutes folded, all but the newest one or two
    server.publish_readings(readings)
    server.publish(server.settings.alerts_topic, alert("e-hist", at=readings[50].ts))
    wait_for(lambda: stored_alert(server, "e-hist"), what="consumer_db to store the alert")
    open_dashboard(page, server.url)
    assert js(page, LIVE.format("history_chart")) is None  # built when the tab is first opened, not before
    page.get_by_text("History", exact=True).click()
    page.wait_for_function(
        f"() => {LIVE.format('history_smooth')} && {LIVE.format('history_smooth')}.data.ts.length >= 4", timeout=30_000
    )
    page.get_by_text("history:").wait_for(timeout=10_000)
    assert js(page, LIVE.format("history_alerts") + ".data.severity") == ["ERROR"]
    assert js(page, LIVE.format("history_summary") + ".data.axis") == list(range(1, 15))
    assert "coverage" in js(page, LIVE.format("history_health") + ".text")
    assert page.errors == []


def test_a_database_that_is_down_shows_in_the_history_while_the_live_view_goes_on(page):
    settings = DashboardSettings(
        _env_file=None, bus="memory", window_rows=WINDOW, dashboard_push_ms=50, dashboard_sign_in=False
    )
    nowhere = make_engine("postgresql+psycopg2://nobody:x@127.0.0.1:9/none?connect_timeout=2", log_version=False)
    with ServerThread(settings, engine=nowhere) as server:
        server.publish_readings(now_fleet(10))
        open_dashboard(page, server.url)
        page.get_by_text("History", exact=True).click()
        page.get_by_text("database error").wait_for(timeout=30_000)
        with Streamer(server):
            page.wait_for_function(f"() => {LIVE.format('live_source')}.data.ts.length >= 15", timeout=20_000)
    assert page.errors == []


def models_named(page, name: str) -> int:
    """How many models of the tab's document carry ``name`` (a tab built twice would hold two)."""
    return js(page, f"[...Bokeh.documents[0]._all_models.values()].filter(m => m.name === '{name}').length")


def test_a_tab_not_opened_yet_is_built_on_its_first_selection_once_and_shows_its_rows(server, page):
    readings = now_fleet(300)
    server.publish_readings(readings)
    server.publish(server.settings.alerts_topic, alert("e-lazy", robot="RMBR4-2", at=readings[60].ts))
    wait_for(lambda: stored_alert(server, "e-lazy"), what="consumer_db to store the alert")
    open_dashboard(page, server.url)
    # A page load brings the Live tab whole and, of the others, only their placeholders.
    for name in ("history_page", "history_alert_table", "fleet_page", "fleet_grid"):
        assert models_named(page, name) == 0, name
    assert models_named(page, "history_holder") == 1 and models_named(page, "fleet_holder") == 1

    page.get_by_text("History", exact=True).click()
    page.get_by_text("history:").wait_for(timeout=30_000)
    # The alert history's row is drawn (the table's cells, not only its data source).
    page.locator("div.slick-cell:visible", has_text="ERROR").first.wait_for(timeout=10_000)
    assert js(page, LIVE.format("history_alerts") + ".data.severity") == ["ERROR"]
    assert models_named(page, "fleet_page") == 0  # still not asked for

    # Back to Live, which went on meanwhile; then History again: the same tab, not a second one.
    page.get_by_text("Live", exact=True).click()
    with Streamer(server):
        page.wait_for_function(f"() => {LIVE.format('live_source')}.data.ts.length >= {WINDOW}", timeout=20_000)
        before = newest_point(page)
        page.wait_for_function(f"() => {LIVE.format('live_source')}.data.ts.slice(-1)[0] > {before}", timeout=20_000)
    page.get_by_text("History", exact=True).click()
    page.get_by_text("Fleet", exact=True).click()
    page.get_by_text("robots; days left").wait_for(timeout=30_000)
    for name in ("history_page", "history_alert_table", "fleet_page", "fleet_grid"):
        assert models_named(page, name) == 1, name
    assert page.errors == []


def test_a_reading_days_behind_its_robot_leaves_the_live_chart_on_the_present(server, page):
    """A valid reading stamped days back (a stray, a late one sent after an outage) was drawn: the chart's time axis
    stretched back to it and the robot's live points shrank to a sliver at its right end. It is left out of the live
    view now (consumer_db stores it); the axis spans the live points."""
    live = now_fleet(30)
    server.publish_readings(live[:20])
    open_dashboard(page, server.url)
    stray = reading(0, t0=datetime.now(UTC) - timedelta(days=3))
    server.publish_readings([stray, *live[20:]])
    page.wait_for_function(f"() => {LIVE.format('live_source')}.data.ts.length >= 30", timeout=20_000)
    page.wait_for_timeout(500)  # a stray point would arrive with the last batch: give the chart its render
    shown = js(page, LIVE.format("live_source") + ".data.ts")
    assert len(shown) == 30 and min(shown) == live[0].ts.timestamp() * 1000
    x_start = js(page, LIVE.format("live_chart") + ".x_range.start")
    assert x_start > (live[0].ts - timedelta(minutes=5)).timestamp() * 1000
    assert page.errors == []
