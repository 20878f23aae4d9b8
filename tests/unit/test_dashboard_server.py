"""The server without a browser: many sessions through Bokeh's client API share one feed, late sessions
start full, closed sessions are let go, and /health answers."""

import json
import math
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest

from dashboard.cli import build_parser, main
from dashboard.live import ALERTS_EVERY_S
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, alert, open_page, pump_until, reading, wait_for

SESSIONS = 8
HANG_S = 120  # a ceiling against a hang only: how fast an answer comes is a benchmark's business


@pytest.fixture
def server():
    settings = DashboardSettings(
        _env_file=None,
        bus="memory",
        window_rows=30,
        dashboard_push_ms=20,
        dashboard_session_expiry_ms=500,
        dashboard_sign_in=False,
    )
    with ServerThread(settings) as running:
        yield running


def source_length(session) -> int:
    return len(session.document.get_model_by_name("live_source").data["ts"])


def newest_ts(session) -> float:
    ts = session.document.get_model_by_name("live_source").data["ts"]
    return ts[-1] if len(ts) else 0.0


def test_many_sessions_share_one_consumer_and_all_see_new_points(server):
    server.publish_readings([reading(i) for i in range(5)])
    wait_for(lambda: len(server.feed.window("RMBR4-2")) == 5, what="the feed to take the first readings")
    sessions = [open_page(server.url) for _ in range(SESSIONS)]
    try:
        assert server.feed.listener_count == SESSIONS
        assert all(source_length(s) == 5 for s in sessions)  # the window they opened on
        server.publish_readings([reading(i) for i in range(5, 40)])
        last = reading(39).ts.timestamp() * 1000
        for s in sessions:
            pump_until(s, lambda s=s: newest_ts(s) == last, what="every session to get the newest point")
            assert source_length(s) == 30  # rolled over at WINDOW_ROWS
    finally:
        for s in sessions:
            s.close()
    wait_for(lambda: server.feed.listener_count == 0, timeout=20, what="closed sessions to be let go")
    assert len(server.feed._listeners) == 0


def test_a_late_session_starts_with_the_full_window_and_the_alerts(server):
    server.publish_readings([reading(i) for i in range(100)])
    server.publish(server.settings.alerts_topic, alert("e-late"))
    wait_for(lambda: "e-late" in server.feed.alerts and len(server.feed.window("RMBR4-2")) == 30, what="the feed")
    session = open_page(server.url)
    try:
        doc = session.document
        assert source_length(session) == 30
        assert doc.get_model_by_name("alert_source").data["event_id"] == ["e-late"]
        assert doc.get_model_by_name("chart_alerts").data["event_id"] == ["e-late"]
        table = doc.get_model_by_name("alert_table")
        data = table.source.data  # the table's source carries what its columns show (and only the table's)
        assert {c.field for c in table.columns} | {"event_id", "blink"} == set(data)
        assert list(data["opened"]) == [alert("e-late").opened_at.timestamp() * 1000]
    finally:
        session.close()


class ThrottleClock:
    """The clock a tab times its alert table's refreshes by (``dashboard.live``), moved by hand: it stands still
    except when the tab waits for its next refresh, which it then passes at once (the wait runs on the next turn
    of the server's loop). The refreshes are then spaced by the throttle's rule alone, however slow the machine."""

    def __init__(self, monkeypatch, doc) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []
        monkeypatch.setattr("dashboard.live.time", SimpleNamespace(monotonic=lambda: self.now))
        monkeypatch.setattr(doc, "add_timeout_callback", self.wait)
        self.doc = doc

    def wait(self, callback, milliseconds):
        self.waits.append(milliseconds / 1000)
        self.now += milliseconds / 1000
        return self.doc.add_next_tick_callback(callback)


def test_an_alert_storm_refreshes_a_sessions_table_at_most_every_quarter_second_and_ends_complete(server, monkeypatch):
    session = open_page(server.url)
    [view] = list(server.feed._listeners)
    clock = ThrottleClock(monkeypatch, view.doc)
    table = session.document.get_model_by_name("alert_source")
    refreshes = []
    ids = [f"storm-{i}" for i in range(40)]

    def refreshed(_attr, _old, new):  # the storm's refreshes, as the server sets them (the page's fill is none)
        if set(ids) & set(new["event_id"]):
            refreshes.append(clock.now)

    wait_for(lambda: view.drawn, what="the page to be drawn")
    view.table_alerts.on_change("data", refreshed)

    def storm():
        for event_id in ids:  # one event at a time, as consumer_alerts sends them
            server.publish(server.settings.alerts_topic, alert(event_id))
            time.sleep(0.01)

    publisher = threading.Thread(target=storm)
    publisher.start()
    try:
        pump_until(session, lambda: set(ids) <= set(table.data["event_id"]), what="every event in the table")
    finally:
        publisher.join(30)
        session.close()
    assert len(server.feed.alerts) == len(ids)
    # the first refresh at once, each later one ALERTS_EVERY_S after the one before it on the tab's clock
    assert refreshes and all(w == pytest.approx(ALERTS_EVERY_S) for w in clock.waits), clock.waits
    gaps = [b - a for a, b in zip(refreshes, refreshes[1:], strict=False)]
    assert all(gap >= ALERTS_EVERY_S - 1e-9 for gap in gaps), gaps


def test_the_charts_events_are_sent_only_when_the_watched_robots_events_change(server):
    from bokeh.document.events import ColumnDataChangedEvent

    session = open_page(server.url)  # watches RMBR4-2
    table, chart = (session.document.get_model_by_name(name) for name in ("alert_source", "chart_alerts"))
    [view] = list(server.feed._listeners)
    sent = []  # what the server sends this tab for the chart's events (it sends a data change even if equal)
    view.doc.on_change(
        lambda event: (
            sent.append(list(event.model.data["event_id"]))
            if isinstance(event, ColumnDataChangedEvent) and event.model is view.chart_alerts
            else None
        )
    )
    try:
        server.publish(server.settings.alerts_topic, alert("other-robot", robot="RMBR4-9"))
        pump_until(
            session, lambda: "other-robot" in table.data["event_id"], what="the other robot's event in the table"
        )
        server.publish(server.settings.alerts_topic, alert("mine"))
        pump_until(session, lambda: chart.data["event_id"] == ["mine"], what="the watched robot's event on the chart")
        for i in range(5):
            server.publish(server.settings.alerts_topic, alert(f"other-{i}", robot="RMBR4-9"))
            time.sleep(ALERTS_EVERY_S)
        # Beyond DASHBOARD_ALERT_ROWS (200), the oldest event leaves the table and the chart alike.
        for i in range(200):
            server.publish(server.settings.alerts_topic, alert(f"flood-{i}", robot="RMBR4-9"))
        pump_until(
            session,
            lambda: "flood-199" in table.data["event_id"] and "mine" not in table.data["event_id"],
            what="the table to drop the oldest events",
        )
        pump_until(session, lambda: chart.data["event_id"] == [], what="the chart to drop the watched robot's event")
    finally:
        session.close()
    assert sent == [["mine"], []]


def test_a_streamed_point_goes_inline_in_the_message_without_binary_buffers(server):
    from bokeh.core.serialization import Serializer
    from bokeh.document.events import ColumnsStreamedEvent

    server.publish_readings([reading(i) for i in range(3)])
    wait_for(lambda: len(server.feed.window("RMBR4-2")) == 3, what="the feed to take the readings")
    session = open_page(server.url)
    try:
        [view] = list(server.feed._listeners)
        streamed = []
        view.doc.on_change(lambda event: streamed.append(event) if isinstance(event, ColumnsStreamedEvent) else None)
        server.publish_readings([reading(3)])
        wait_for(lambda: streamed, what="the point to be streamed into the session's document")
    finally:
        session.close()
    serializer = Serializer(deferred=True)  # as the server encodes a PATCH-DOC for the websocket
    serializer.encode(streamed[0])
    # each array would be a binary buffer of its own: two more websocket frames per column, per tab
    assert serializer.buffers == []
    assert streamed[0].data["ts"] == [reading(3).ts.timestamp() * 1000] and math.isnan(streamed[0].data["a9"][0])


def test_health_reports_connection_lag_and_newest_reading(server):
    def health():
        with urllib.request.urlopen(server.url + "health", timeout=HANG_S) as response:
            return json.loads(response.read())

    assert health()["newest_reading"] is None
    server.publish_readings([reading(i) for i in range(3)])
    newest = reading(2).ts.isoformat()

    def caught_up():  # the lag is measured apart from the readings taken: it may say 3 for a moment
        h = health()
        return h["connected"] and h["newest_reading"] == newest and h["lag"] in (0, None) and h

    body = wait_for(caught_up, what="/health to say connected, caught up, with the newest reading")
    assert body["error"] is None


def test_cli_help_documents_every_option_and_refuses_bad_values(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for option in (
        "--port",
        "--address",
        "--allow-websocket-origin",
        "--window-rows",
        "--x-axis-ticks",
        "--stacked",
        "--no-database",
    ):
        assert option in out
    assert main(["--window-rows", "3"]) == 2  # below the minimum: refused with a clear message
    assert "window_rows" in capsys.readouterr().err
    # Past the maximum: it passed, and every reading was skipped (MemoryError) while the page showed nothing.
    assert main(["--window-rows", "1000000000000"]) == 2
    assert "window_rows" in capsys.readouterr().err
