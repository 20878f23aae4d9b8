"""The server without a browser: many sessions through Bokeh's client API share one feed, late sessions
start full, closed sessions are let go, and /health answers."""

import json
import math
import threading
import time
import urllib.request

import pytest

from dashboard.cli import build_parser, main
from dashboard.live import ALERTS_EVERY_S
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, alert, open_page, pump_until, reading, wait_for

SESSIONS = 8


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


def test_an_alert_storm_refreshes_a_sessions_table_at_most_every_quarter_second_and_ends_complete(server):
    session = open_page(server.url)
    table = session.document.get_model_by_name("alert_source")
    refreshes = []
    table.on_change("data", lambda _attr, _old, _new: refreshes.append(time.monotonic()))
    ids = [f"storm-{i}" for i in range(40)]

    def storm():
        for event_id in ids:  # one event at a time, as consumer_alerts sends them
            server.publish(server.settings.alerts_topic, alert(event_id))
            time.sleep(0.01)

    started = time.monotonic()
    publisher = threading.Thread(target=storm)
    publisher.start()
    try:
        pump_until(session, lambda: set(ids) <= set(table.data["event_id"]), what="every event in the table")
        elapsed = time.monotonic() - started
    finally:
        publisher.join(30)
        session.close()
    assert len(server.feed.alerts) == len(ids)
    # at most one refresh right away and one per ALERTS_EVERY_S after it (the storm itself is ~40 publishes)
    assert 1 <= len(refreshes) <= elapsed / ALERTS_EVERY_S + 2, (len(refreshes), elapsed)


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
        with urllib.request.urlopen(server.url + "health", timeout=5) as response:
            return json.loads(response.read())

    assert health()["newest_reading"] is None
    server.publish_readings([reading(i) for i in range(3)])
    body = wait_for(lambda: (h := health())["connected"] and h, what="/health to say connected")
    assert body["newest_reading"] == reading(2).ts.isoformat() and body["lag"] in (0, None) and body["error"] is None


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
