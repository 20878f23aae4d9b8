"""Readings that pass the schema but are absurd (a date in year 1 or in 2100), or that fail while being
shown: the feed skips them without losing its place, and the page is built for everybody."""

import asyncio
import urllib.request
from datetime import UTC, datetime, timedelta

from bokeh.document import Document
from sqlalchemy import create_engine

from common.store.tables import seed_axes
from common.wire.bus import InProcessBus, Message
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings
from dashboard.feed import LiveFeed
from dashboard.history import HistoryView
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, open_page, pump_until, reading, wait_for

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)
YEAR_2100 = datetime(2100, 1, 1, tzinfo=UTC)


def settings(**kw) -> DashboardSettings:
    return DashboardSettings(
        _env_file=None, bus="memory", dashboard_sign_in=False, **{"window_rows": 50, "dashboard_push_ms": 20, **kw}
    )


def now_readings(n: int, robot: str = "RMBR4-2") -> list:
    t0 = datetime.now(UTC) - timedelta(seconds=2 * n)
    return [reading(i, robot=robot, t0=t0) for i in range(n)]


class CountingBus(InProcessBus):
    def __init__(self):
        super().__init__()
        self.subscriptions = 0

    async def subscribe(self, topics, *, group_id, from_beginning=True):
        self.subscriptions += 1
        return await super().subscribe(topics, group_id=group_id, from_beginning=from_beginning)


async def test_a_year_one_reading_is_skipped_and_the_feed_keeps_its_place_in_the_topic():
    bus = CountingBus()
    feed = LiveFeed(settings(), bus)
    feed.start()
    try:
        async with asyncio.timeout(10):
            while not feed.status.subscribed:
                await asyncio.sleep(0.01)
            topic = feed.settings.readings_topic
            await bus.publish(topic, "AAA-new", reading(0, robot="AAA-new", t0=YEAR_ONE).to_bytes())
            for r in now_readings(20):
                await bus.publish(topic, r.robot_id, r.to_bytes())
            while len(feed.window("RMBR4-2")) < 20 and feed.status.error is None:
                await asyncio.sleep(0.01)
    finally:
        await feed.stop()
    assert feed.status.error is None and bus.subscriptions == 1  # never resubscribed (at the topic's end)
    assert len(feed.window("RMBR4-2")) == 20 and feed.status.rejected == 1
    assert "AAA-new" not in feed.robots and feed.default_robot() == "RMBR4-2"


def test_a_reading_that_fails_while_being_shown_leaves_no_trace_and_the_batch_goes_on(monkeypatch, caplog):
    import dashboard.feed

    real = dashboard.feed.chart_row

    def fails_for_one_robot(r, axes):
        if r.robot_id.startswith("boom"):
            raise ArithmeticError("cannot chart this")
        return real(r, axes)

    monkeypatch.setattr(dashboard.feed, "chart_row", fails_for_one_robot)
    feed = LiveFeed(settings(), InProcessBus())
    batch = [reading(0, robot="boom-1"), *now_readings(3)]  # a valid id: the policy passes it
    feed.ingest(
        [Message(feed.settings.readings_topic, 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(batch)]
    )
    assert len(feed.window("RMBR4-2")) == 3 and feed.status.rejected == 1
    assert not any(robot.startswith("boom") for robot in feed.robots)
    assert "cannot chart this" in caplog.text


def test_a_reading_from_the_future_pins_neither_the_newest_reading_nor_the_robot_list():
    feed = LiveFeed(settings(), InProcessBus())
    real = now_readings(3)
    batch = [reading(0, robot="ZZ-future", t0=YEAR_2100), *real, reading(1, t0=datetime.now(UTC) + timedelta(days=1))]
    feed.ingest(
        [Message(feed.settings.readings_topic, 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(batch)]
    )
    assert feed.status.newest_ts == real[-1].ts and feed.status.rejected == 2
    assert list(feed.robots) == ["RMBR4-2"] and len(feed.window("RMBR4-2")) == 3
    # a few seconds of clock difference between producer and dashboard are not "the future"
    soon = reading(0, robot="R-soon", t0=datetime.now(UTC) + timedelta(seconds=30))
    feed.ingest([Message(feed.settings.readings_topic, 0, 9, soon.robot_id.encode(), soon.to_bytes())])
    assert feed.status.newest_ts == soon.ts


def page_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return response.status


def whole_page_peak(url: str) -> str:
    """Open the page as a tab does (every piece of it) and return its side panel's peak text."""
    session = open_page(url)
    try:
        peak = session.document.get_model_by_name("peak")
        pump_until(session, lambda: peak.text, what="the side panel's 1-minute peak")
        return peak.text
    finally:
        session.close()


def test_the_page_is_built_for_everybody_after_a_year_one_reading_of_a_new_robot():
    # the earliest date in year 1: the reading reaches the window, the robot sorts first and is shown first
    with ServerThread(settings(reading_earliest=YEAR_ONE, robot_id="none-yet")) as server:
        server.publish_readings([reading(0, robot="AAA-new", t0=YEAR_ONE), *now_readings(5)])
        wait_for(lambda: len(server.feed.window("RMBR4-2")) == 5, what="the feed to take the readings")
        assert server.feed.default_robot() == "AAA-new"
        assert page_status(server.url) == 200
        assert "1-minute peak" in whole_page_peak(server.url)


def test_a_robot_whose_side_panel_cannot_be_shown_does_not_stop_the_page(monkeypatch):
    def broken(_recent):
        raise OverflowError("date value out of range")

    monkeypatch.setattr("dashboard.live.peak_text", broken)
    with ServerThread(settings()) as server:
        server.publish_readings(now_readings(5))
        wait_for(lambda: len(server.feed.window("RMBR4-2")) == 5, what="the feed to take the readings")
        assert page_status(server.url) == 200
        assert "this robot's data cannot be shown" in whole_page_peak(server.url)


def test_the_history_range_ends_at_the_newest_reading_the_server_clock_believes(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine)
    newest = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    rows = [("R1", 1, newest - timedelta(seconds=2 * i), 5.0) for i in range(300)]
    rows += [("R2", 1, YEAR_2100, 7.0)]
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1", "R2"], axes=[1])
        insert_readings(conn, rows)
    view = HistoryView(Document(), engine, settings(axes=[1], database_url=sqlite_url))
    data = view._query(None, timedelta(days=1))
    assert data.end == newest and data.start == (newest - timedelta(days=1)).replace(second=0)
    assert data.smooth and max(r["minute"] for r in data.smooth) < newest
    [r1] = [h["readings"] for h in data.health if h["robot_id"] == "R1"]
    assert r1 > 250  # the whole minutes of its 10 minutes (the 2100 range showed 0)
    engine.dispose()
