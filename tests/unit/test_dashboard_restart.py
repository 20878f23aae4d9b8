"""After a dashboard restart the Live tab's alert table starts with the events still open in the database
(the feed reads the topics from their end, so it would start empty)."""

from datetime import timedelta

from sqlalchemy import create_engine

from common.wire.bus import InProcessBus, Message
from common.wire.schemas import AlertState
from consumer_db.alert_store import upsert_alerts
from consumer_db.migrate import migrate
from dashboard.feed import LiveFeed
from dashboard.settings import DashboardSettings
from tests.dashboard_support import T0, ServerThread, alert, open_page, wait_for


class Recorder:
    def __init__(self):
        self.batches = []

    def deliver(self, rows, alerts):
        self.batches.append((rows, alerts))


def settings(**kw) -> DashboardSettings:
    return DashboardSettings(_env_file=None, bus="memory", dashboard_sign_in=False, **{"dashboard_push_ms": 20, **kw})


def database_with_events(url: str):
    engine = create_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        upsert_alerts(
            conn,
            [
                alert("open-old", at=T0),
                alert("open-new", at=T0 + timedelta(minutes=5), robot="R2"),
                alert("closed", at=T0 + timedelta(minutes=1), state=AlertState.CLOSED),
                alert("moved-on", at=T0 + timedelta(minutes=2)),
            ],
        )
    return engine


async def test_the_open_events_are_loaded_and_the_topics_newer_state_is_kept(sqlite_url):
    engine = database_with_events(sqlite_url)
    feed = LiveFeed(settings(), InProcessBus(), engine)
    listener = Recorder()
    feed.register(listener)
    # the topic said "moved-on" closed before the database answered: that newer state is kept
    closed = alert("moved-on", at=T0 + timedelta(minutes=2), state=AlertState.CLOSED)
    feed.ingest([Message(feed.settings.alerts_topic, 0, 0, b"k", closed.to_bytes())])
    await feed._load_open_events()
    alerts, table = feed.alert_table()
    assert table["event_id"] == ["open-new", "moved-on", "open-old"] and feed._open_loaded
    assert feed.alerts["moved-on"].state == AlertState.CLOSED and feed.alerts["open-new"].robot_id == "R2"
    assert {a.event_id for a in listener.batches[-1][1]} == {"open-new", "open-old"}  # open tabs are told
    engine.dispose()


def test_a_new_tab_after_a_restart_shows_the_open_events(sqlite_url):
    engine = database_with_events(sqlite_url)
    with ServerThread(settings(), engine=engine) as server:
        wait_for(lambda: len(server.feed.alerts) == 3, what="the open events from the database")
        session = open_page(server.url)
        try:
            shown = session.document.get_model_by_name("alert_source").data["event_id"]
        finally:
            session.close()
    assert shown == ["open-new", "moved-on", "open-old"]
    engine.dispose()


async def test_a_database_that_is_down_at_start_is_asked_again_at_the_next_subscribe():
    engine = create_engine("postgresql+psycopg2://nobody:x@127.0.0.1:9/none?connect_timeout=2")
    feed = LiveFeed(settings(), InProcessBus(), engine)
    await feed._load_open_events()
    assert not feed._open_loaded and feed.alerts == {}
    engine.dispose()
