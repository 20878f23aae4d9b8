"""The shared feed: window, fan-out, alert merging, staleness and reconnection, without a browser."""

import asyncio
import gc
import math
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import dashboard
from common.wire.bus import InProcessBus, Message
from common.wire.schemas import Alert
from dashboard.columns import alert_columns, chart_keys, chart_row, to_columns
from dashboard.feed import LiveFeed
from dashboard.settings import DashboardSettings
from dashboard.stats import one_minute_peak, peak_of
from tests.dashboard_support import T0, alert, reading


def settings(**kw) -> DashboardSettings:
    return DashboardSettings(_env_file=None, bus="memory", **{"window_rows": 10, **kw})


def as_messages(topic: str, items) -> list[Message]:
    return [Message(topic, 0, i, x.robot_id.encode(), x.to_bytes()) for i, x in enumerate(items)]


class Recorder:
    def __init__(self):
        self.batches = []

    def deliver(self, rows, alerts):
        self.batches.append((rows, alerts))


def test_null_is_a_gap_not_a_zero_in_lines_and_stacked_bands():
    row = chart_row(reading(0, live_axes=2, axes=4), [1, 2, 3, 4])
    assert row["a1"] > 0 and math.isnan(row["a3"]) and math.isnan(row["a4"])
    assert row["lo1"] == 0 and row["hi1"] == row["a1"] and row["lo2"] == row["hi1"]
    assert math.isnan(row["lo3"]) and math.isnan(row["hi3"])
    cols = to_columns([row], chart_keys([1, 2, 3, 4], stacked=False))
    assert set(cols) == {"ts", "a1", "a2", "a3", "a4"} and math.isnan(cols["a3"][0])


def test_only_the_schema_lock_axes_are_charted():
    row = chart_row(reading(0, axes=14), [1, 2, 3])
    assert {k for k in row if k.startswith("a")} == {"a1", "a2", "a3"}


def test_window_keeps_the_last_rows_per_robot_and_fans_out_once_per_batch():
    feed = LiveFeed(settings(), InProcessBus())
    listener = Recorder()
    feed.register(listener)
    batch = [reading(i) for i in range(25)] + [reading(i, robot="R2") for i in range(3)]
    feed.ingest(as_messages(feed.settings.readings_topic, batch))
    assert len(listener.batches) == 1
    rows, alerts = listener.batches[0]
    assert len(rows["RMBR4-2"]) == 25 and len(rows["R2"]) == 3 and alerts == []
    window = feed.window("RMBR4-2")
    assert len(window) == 10 and window[-1]["ts"] == reading(24).ts.timestamp() * 1000
    assert feed.status.newest_ts == reading(24).ts
    feed.unregister(listener)
    feed.ingest(as_messages(feed.settings.readings_topic, [reading(30)]))
    assert len(listener.batches) == 1 and feed.listener_count == 0


def test_latest_per_axis_and_recent_minute_follow_the_readings():
    feed = LiveFeed(settings(), InProcessBus())
    feed.ingest(as_messages(feed.settings.readings_topic, [reading(i) for i in range(60)]))
    robot = feed.robots["RMBR4-2"]
    assert robot.latest[1].ts == reading(59).ts and robot.latest[9].amps is None
    assert all(reading(59).ts - r.ts <= timedelta(seconds=60) for r in robot.recent)
    assert len(robot.recent) == 31  # 60 s at 2 s, both ends included
    assert peak_of(robot.recent) == one_minute_peak(reading(i) for i in range(60))  # what the page shows


def test_an_acknowledgement_survives_a_later_state_without_it():
    feed = LiveFeed(settings(), InProcessBus())
    topic = feed.settings.alerts_topic
    acked = alert("e1").model_copy(update={"acknowledged_by": "ana", "acknowledged_at": T0 + timedelta(seconds=5)})
    closed = alert("e1", state="closed")
    feed.ingest(as_messages(topic, [alert("e1"), acked, closed]))
    merged = feed.alerts["e1"]
    assert merged.state == "closed" and merged.acknowledged_by == "ana"
    cols = alert_columns([merged])
    assert cols["blink"] == [""] and "ana" in cols["ack"][0]
    assert alert_columns([alert("e2")])["blink"] == ["blink"]


def test_alert_memory_is_bounded():
    feed = LiveFeed(settings(dashboard_alert_rows=5), InProcessBus())
    feed.ingest(as_messages(feed.settings.alerts_topic, [alert(f"e{i}") for i in range(12)]))
    assert list(feed.alerts) == [f"e{i}" for i in range(7, 12)]


def test_the_alert_table_is_made_once_per_change_for_every_tab_newest_first():
    feed = LiveFeed(settings(dashboard_alert_rows=3), InProcessBus())
    topic = feed.settings.alerts_topic
    feed.ingest(as_messages(topic, [alert(f"e{i}", at=T0 + timedelta(minutes=i)) for i in range(3)]))
    alerts, table = feed.alert_table()
    assert [a.event_id for a in alerts] == table["event_id"] == ["e2", "e1", "e0"]
    assert list(table["opened"]) == [(T0 + timedelta(minutes=i)).timestamp() * 1000 for i in (2, 1, 0)]
    feed.ingest(as_messages(feed.settings.readings_topic, [reading(0)]))
    assert feed.alert_table()[1] is table  # readings alone: every tab gets the same columns, not made again
    feed.ingest(as_messages(topic, [alert("e3", at=T0 + timedelta(minutes=3))]))
    assert feed.alert_table()[1]["event_id"] == ["e3", "e2", "e1"]  # e0 left the table (3 rows kept)


def test_a_bad_message_is_skipped_and_counted():
    feed = LiveFeed(settings(), InProcessBus())
    good = as_messages(feed.settings.readings_topic, [reading(0)])
    feed.ingest([Message(feed.settings.readings_topic, 0, 9, b"x", b"{not json"), *good])
    assert feed.status.rejected == 1 and len(feed.window("RMBR4-2")) == 1


def test_live_only_while_fresh_data_arrives():
    feed = LiveFeed(settings(dashboard_stale_seconds=5), InProcessBus())
    assert not feed.connected(now=100.0)
    feed.status.subscribed, feed.status.last_message = True, 100.0
    assert feed.connected(now=104.0)
    assert not feed.connected(now=105.5)
    feed.status.error = "broker gone"
    assert not feed.connected(now=100.5)


async def test_the_feed_task_reads_new_messages_and_acknowledges_through_the_bus():
    bus = InProcessBus()
    feed = LiveFeed(settings(dashboard_push_ms=20), bus)
    await bus.publish(feed.settings.readings_topic, "RMBR4-2", reading(0).to_bytes())  # before start: not shown
    feed.start()
    try:
        async with asyncio.timeout(10):
            while not feed.status.subscribed:
                await asyncio.sleep(0.01)
            await bus.publish(feed.settings.readings_topic, "RMBR4-2", reading(1).to_bytes())
            await bus.publish(feed.settings.alerts_topic, "RMBR4-2", alert("e1").to_bytes())
            while "e1" not in feed.alerts:
                await asyncio.sleep(0.01)
            at = datetime.now(UTC)
            await feed.acknowledge("e1", "ana", at)
            while feed.alerts["e1"].acknowledged_at is None:
                await asyncio.sleep(0.01)
            assert feed.connected()
    finally:
        await feed.stop()
    assert [row["ts"] for row in feed.window("RMBR4-2")] == [reading(1).ts.timestamp() * 1000]
    published = [Alert.from_bytes(m.value) for log in bus._log(feed.settings.alerts_topic) for m in log]
    assert published[-1].event_id == "e1" and published[-1].acknowledged_by == "ana"
    assert published[-1].acknowledged_at == at and not feed.connected()  # stopped: not live any more


class FlakyBus(InProcessBus):
    """A bus whose first subscriptions fail, like a broker that is not up yet."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    async def subscribe(self, topics, *, group_id, from_beginning=True):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker not reachable")
        return await super().subscribe(topics, group_id=group_id, from_beginning=from_beginning)


async def test_the_feed_says_why_it_is_down_and_reconnects_by_itself(monkeypatch):
    monkeypatch.setattr("dashboard.feed.asyncio", _FastAsyncio())
    bus = FlakyBus(failures=2)
    feed = LiveFeed(settings(dashboard_push_ms=20), bus)
    feed.start()
    try:
        async with asyncio.timeout(10):
            while feed.status.error is None:
                await asyncio.sleep(0.005)
            assert "broker not reachable" in feed.status.error and not feed.connected()
            while not feed.status.subscribed:
                await asyncio.sleep(0.005)
    finally:
        await feed.stop()
    assert feed.status.error is None and bus.failures == 0


class _FastAsyncio:
    """``asyncio`` as the feed module sees it, with the reconnect back-off cut to 50 ms for the test."""

    def __getattr__(self, name):
        return getattr(asyncio, name)

    @staticmethod
    async def wait_for(awaitable, timeout):
        return await asyncio.wait_for(awaitable, min(timeout, 0.05))


async def test_in_process_subscription_lag_counts_unread_messages():
    bus = InProcessBus(partitions=2)
    sub = await bus.subscribe(["t"], group_id="g")
    for i in range(5):
        await bus.publish("t", f"k{i}", b"x")
    assert await sub.lag() == 5
    await sub.getmany(max_records=3)
    assert await sub.lag() == 2


def test_settings_parse_origins_and_validate_ticks():
    s = DashboardSettings(_env_file=None, dashboard_allow_websocket_origins="a.example:5006, b:80")
    assert s.websocket_origins(5006) == ["a.example:5006", "b:80"]
    assert DashboardSettings(_env_file=None).websocket_origins(7000) == ["localhost:7000", "127.0.0.1:7000"]
    with pytest.raises(ValueError):
        DashboardSettings(_env_file=None, x_axis_ticks="sometimes")


def test_the_window_turns_over_keeping_the_newest_rows_oldest_first():
    feed = LiveFeed(settings(window_rows=10), InProcessBus())
    for start in (0, 7, 14):  # filling, full, and wrapped past the array's end twice
        feed.ingest(as_messages(feed.settings.readings_topic, [reading(i) for i in range(start, start + 7)]))
    expected = [chart_row(reading(i), feed.axes) for i in range(11, 21)]
    window = feed.window("RMBR4-2")
    keys = sorted(expected[0])
    assert all(sorted(row) == keys for row in window)
    as_array = [[row[k] for k in keys] for row in window], [[row[k] for k in keys] for row in expected]
    assert np.array_equal(*as_array, equal_nan=True)  # an "OK null" is still a gap (NaN)
    keys = chart_keys(feed.axes, stacked=False)
    columns = feed.window_columns("RMBR4-2", keys, 4)
    assert columns["ts"].tolist() == [row["ts"] for row in expected[-4:]]
    assert columns["a1"].tolist() == [row["a1"] for row in expected[-4:]]
    columns["ts"][:] = 0  # a tab's copy: changing it leaves the feed's window as it was
    assert feed.window("RMBR4-2")[-1]["ts"] == expected[-1]["ts"]
    assert feed.window_columns("nobody", keys, 4)["ts"].tolist() == []


def test_the_largest_window_takes_readings_and_a_larger_one_is_refused_at_start():
    feed = LiveFeed(settings(window_rows=100_000), InProcessBus())
    feed.ingest(as_messages(feed.settings.readings_topic, [reading(i) for i in range(3)]))
    assert len(feed.window("RMBR4-2")) == 3
    with pytest.raises(ValueError, match="window_rows"):
        settings(window_rows=10**8)  # it passed, and each reading was skipped: the array did not fit


def window_blocks(window_rows: int) -> int:
    """Heap blocks the dashboard's own code made that are still alive after its window turned over twice."""
    tracemalloc.start()
    try:
        feed = LiveFeed(settings(window_rows=window_rows), InProcessBus())
        readings = as_messages(feed.settings.readings_topic, [reading(i) for i in range(2 * window_rows)])
        feed.ingest(readings)
        del readings
        gc.collect()
        mine = tracemalloc.Filter(True, str(Path(dashboard.__file__).parent / "*"))
        blocks = sum(stat.count for stat in tracemalloc.take_snapshot().filter_traces([mine]).statistics("filename"))
    finally:
        tracemalloc.stop()
    assert len(feed.window("RMBR4-2")) == window_rows
    return blocks


def test_a_robots_window_is_a_few_blocks_of_memory_however_many_rows_it_holds():
    # Small blocks that live ~100 s, made while pages come and go, keep the heap's pages from being handed
    # back after the pages are freed (docs/dashboard.md, "Memory"): the rows are one array, not 44 per row.
    assert window_blocks(200) - window_blocks(10) < 20
