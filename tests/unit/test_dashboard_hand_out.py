"""The feed hands each batch to its sessions a few per turn of the loop (dashboard.feed.HAND_OUT_PER_TURN), in
order, and a page drawn while a batch is being handed out does not get that batch twice."""

from __future__ import annotations

import asyncio

from bokeh.document import Document
from bokeh.events import DocumentReady

from common.wire.bus import InProcessBus, Message
from dashboard.app import _add_piece, build
from dashboard.feed import HAND_OUT_PER_TURN, LiveFeed
from dashboard.settings import DashboardSettings
from tests.dashboard_support import reading


class Recorder:
    def __init__(self, feed: LiveFeed) -> None:
        self.feed, self.batches = feed, []

    def deliver(self, rows, alerts) -> None:
        self.batches.append((self.feed.handing_out, [r["ts"] for r in rows.get("RMBR4-2", [])]))


def readings(feed: LiveFeed, first: int, n: int = 1) -> list[Message]:
    topic = feed.settings.readings_topic
    return [Message(topic, 0, i, b"k", reading(i).to_bytes()) for i in range(first, first + n)]


def new_feed() -> LiveFeed:
    return LiveFeed(DashboardSettings(_env_file=None, bus="memory", window_rows=50), InProcessBus())


def test_a_batch_reaches_a_few_sessions_per_turn_every_one_once_and_each_in_order():
    async def run() -> None:
        feed = new_feed()
        sessions = [Recorder(feed) for _ in range(3 * HAND_OUT_PER_TURN + 2)]
        for s in sessions:
            feed.register(s)
        feed.ingest(readings(feed, 0))
        reached = [sum(1 for s in sessions if s.batches)]
        feed.ingest(readings(feed, 1))  # while the first is being handed out
        closed = sessions[-1]
        feed.unregister(closed)
        while feed._hand_outs:
            await asyncio.sleep(0)
            reached.append(sum(1 for s in sessions if s.batches))
        assert reached[:4] == [HAND_OUT_PER_TURN, 2 * HAND_OUT_PER_TURN, 3 * HAND_OUT_PER_TURN, len(sessions) - 1]
        for s in sessions[:-1]:
            assert [batch for batch, _ in s.batches] == [1, 2]
        assert closed.batches == []

    asyncio.run(run())


def test_without_a_loop_every_session_gets_the_batch_at_once():
    feed = new_feed()
    sessions = [Recorder(feed) for _ in range(2 * HAND_OUT_PER_TURN)]
    for s in sessions:
        feed.register(s)
    feed.ingest(readings(feed, 0))
    assert all(s.batches == [(1, s.batches[0][1])] for s in sessions)


def test_a_page_drawn_while_a_batch_is_handed_out_streams_it_once():
    async def run() -> None:
        feed = new_feed()
        feed.ingest(readings(feed, 0, 10))
        earlier = [Recorder(feed) for _ in range(HAND_OUT_PER_TURN)]
        for s in earlier:
            feed.register(s)
        doc, pieces = Document(), []
        view = build(doc, feed, None, later=lambda _doc, more: pieces.extend(more))
        feed.register(view)  # after the others: the batch reaches it one turn later
        doc.callbacks.trigger_event(DocumentReady())
        feed.ingest(readings(feed, 10))  # in the window now, handed to the first sessions now
        for piece in pieces:  # the page is drawn before the batch reaches it
            _add_piece(doc, piece)
        assert list(view.source.data["ts"])[-1] == reading(10).ts.timestamp() * 1000
        streams = len(doc.session_callbacks)
        await asyncio.sleep(0)
        assert not feed._hand_outs
        assert len(doc.session_callbacks) == streams  # reading 10 was in its window: not streamed again
        feed.ingest(readings(feed, 11))
        await asyncio.sleep(0)
        assert len(doc.session_callbacks) == streams + 1  # the next one is

    asyncio.run(run())
