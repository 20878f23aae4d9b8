"""The Bokeh application: what one browser session gets (a live tab and a history tab)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import Div, TabPanel, Tabs
from sqlalchemy import Engine
from tornado.web import HTTPError

from dashboard.feed import LiveFeed
from dashboard.history import HistoryView
from dashboard.live import LiveView


class SessionLifecycle(LifecycleHandler):
    """One document built at a time, and each session's clean-ups when Bokeh discards it.

    Building a page holds the event loop (~0.1-0.3 s). Sessions opened together (50 tabs, a reconnect of
    every tab after a restart) were all built in one turn of the loop, which then stalled for their sum
    (seconds); here each waits its turn in ``on_session_created`` (Bokeh awaits it, then builds the
    document at once), so the loop serves /health and the feed between two builds. ``release_turn`` is
    called by the document's builder, whatever happens. Clean-ups are not ``doc.on_session_destroyed``:
    Bokeh follows a document's own callbacks with a full ``gc.collect()`` per session, on the loop."""

    def __init__(self) -> None:
        super().__init__()
        self._cleanups: dict[str, list[Callable[[], None]]] = {}
        self._building = asyncio.Lock()
        self._on_session_destroyed = self._ended

    async def on_session_created(self, session_context) -> None:
        await self._building.acquire()
        # A free lock does not yield: sessions that arrived together would still be built in one turn.
        await asyncio.sleep(0)

    def release_turn(self) -> None:
        if self._building.locked():
            self._building.release()

    def on_end(self, doc: Document, cleanup: Callable[[], None]) -> None:
        self._cleanups.setdefault(doc.session_context.id, []).append(cleanup)

    def _ended(self, session_context) -> None:
        for cleanup in self._cleanups.pop(session_context.id, []):
            cleanup()


class SessionsPerClient:
    """Open sessions per client address, and the limit (``DASHBOARD_SESSIONS_PER_CLIENT``, 0 = none): each
    page load builds a whole document on the event loop, so one client must not be able to hold hundreds."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, Counter()

    def admit(self, doc: Document) -> Callable[[], None]:
        """Count this session for its client and return its release, or refuse the page load (HTTP 429)."""
        client = getattr(doc.session_context.request, "remote_ip", None) or "unknown"
        if self.limit and self.open[client] >= self.limit:
            raise HTTPError(429, reason=f"too many dashboard sessions from this client (limit {self.limit})")
        self.open[client] += 1
        return lambda: self._release(client)

    def _release(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


def application(feed: LiveFeed, engine: Engine | None) -> Application:
    lifecycle = SessionLifecycle()
    sessions = SessionsPerClient(feed.settings.dashboard_sessions_per_client)

    def make_document(doc: Document) -> None:
        try:
            release = sessions.admit(doc)  # first: a refused page costs nothing more
            try:
                live = build(doc, feed, engine)
            except BaseException:
                release()
                raise
        finally:
            lifecycle.release_turn()
        feed.register(live)
        lifecycle.on_end(doc, lambda: feed.unregister(live))
        lifecycle.on_end(doc, release)

    return Application(FunctionHandler(make_document), lifecycle)


def build(doc: Document, feed: LiveFeed, engine: Engine | None) -> LiveView:
    live = LiveView(doc, feed)
    history = HistoryView(doc, engine, feed.settings)
    # The history tab is built, and asks the database, only when somebody opens it: most sessions
    # only watch the live view, and building models is most of what a new session costs.
    holder = column(Div(text="loading…"), sizing_mode="stretch_width", name="history_holder")
    tabs = Tabs(
        tabs=[TabPanel(child=live.layout(), title="Live"), TabPanel(child=holder, title="History")],
        sizing_mode="stretch_width",
        name="tabs",
    )

    def open_history(_attr, _old, new) -> None:
        if new == 1 and not history.loaded:
            holder.children = [history.layout()]
            history.load()

    tabs.on_change("active", open_history)
    doc.add_root(tabs)
    doc.title = "axiswatch"
    doc.add_periodic_callback(live.tick, 1000)
    live.chart.blink_in_browser(doc)
    return live
