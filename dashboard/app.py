"""The Bokeh application: what one browser session gets (a live tab and a history tab)."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import Counter
from collections.abc import Callable
from functools import partial

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.application.handlers.lifecycle import LifecycleHandler
from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.layouts import column
from bokeh.models import Div, TabPanel, Tabs
from bokeh.util.warnings import BokehUserWarning
from sqlalchemy import Engine
from tornado.web import HTTPError

from dashboard.chart import blink_in_browser
from dashboard.feed import LiveFeed
from dashboard.fleet import add_fleet_tab
from dashboard.history import HistoryView
from dashboard.live import LiveView
from dashboard.memory import DEFERRED, release_view

logger = logging.getLogger(__name__)
BuildLater = Callable[[Document, list[Callable[[], None]]], None]


class SessionLifecycle(LifecycleHandler):
    """One piece of one page built at a time, and each session's clean-ups when Bokeh discards it.

    Building a whole page held the event loop for ~0.1-0.3 s, and sessions opened together (50 tabs, a
    reconnect of every tab after a restart) were all built in one turn of the loop. Here a page load builds
    only the page's skeleton, each waiting its turn in ``on_session_created`` (Bokeh awaits it, then builds
    the document at once; ``release_turn`` is called by the document's builder, whatever happens). Once the
    browser has drawn the skeleton, ``build_later`` adds the rest, one piece per turn, in the same queue:
    the loop serves /health and the feed between two pieces. Clean-ups are not ``doc.on_session_destroyed``:
    Bokeh follows a document's own callbacks with a full ``gc.collect()`` per session, on the loop; and
    sessions are discarded one per turn too (``on_session_destroyed``)."""

    def __init__(self) -> None:
        super().__init__()
        self._cleanups: dict[str, list[Callable[[], None]]] = {}
        self._building = asyncio.Lock()
        self._later: set[asyncio.Task] = set()

    async def on_session_created(self, session_context) -> None:
        await self._building.acquire()
        # A free lock does not yield: sessions that arrived together would still be built in one turn.
        await asyncio.sleep(0)

    def release_turn(self) -> None:
        if self._building.locked():
            self._building.release()

    def build_later(self, doc: Document, pieces: list[Callable[[], None]]) -> None:
        task = asyncio.get_running_loop().create_task(self._build_pieces(doc.session_context, pieces))
        self._later.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._later.discard)

    async def _build_pieces(self, session_context, pieces: list[Callable[[], None]]) -> None:
        for piece in pieces:
            if session_context.destroyed:  # the tab closed meanwhile
                return
            async with self._building:
                await asyncio.sleep(0)  # as in on_session_created: a free lock does not yield
                try:
                    await session_context.with_locked_document(partial(_add_piece, piece=piece))
                except Exception:  # a piece that fails leaves a gap in one page, not a stopped queue
                    logger.exception("a piece of a page could not be built: %r", piece)

    async def on_session_destroyed(self, session_context) -> None:
        self._ended(session_context)
        # Bokeh discards the expired sessions one after another without giving the loop a turn (250 pages
        # held it for over a second): one page destroyed per turn.
        await asyncio.sleep(0)

    @property
    def sessions_open(self) -> int:
        return len(self._cleanups)

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
    # BokehJS sends the models a piece added back to the server in full, once, with the tab's next message
    # (it counts them as its own new models until then); Bokeh keeps the server's models and warns per model.
    warnings.filterwarnings("ignore", "reference already known", BokehUserWarning)
    lifecycle = SessionLifecycle()
    DEFERRED.sessions_open = lambda: lifecycle.sessions_open
    sessions = SessionsPerClient(feed.settings.dashboard_sessions_per_client)

    def make_document(doc: Document) -> None:
        try:
            release = sessions.admit(doc)  # first: a refused page costs nothing more
            try:
                live = build(doc, feed, engine, later=lifecycle.build_later)
            except BaseException:
                release()
                raise
        finally:
            lifecycle.release_turn()
        feed.register(live)
        lifecycle.on_end(doc, lambda: feed.unregister(live))
        lifecycle.on_end(doc, release)
        lifecycle.on_end(doc, lambda: release_view(live))

    return Application(FunctionHandler(make_document), lifecycle)


def _add_piece(doc: Document, piece: Callable[[], None]) -> None:
    # Each change of a model reference makes Bokeh walk the document's whole graph of models again (~10 ms
    # for a whole page): once per piece instead. The piece's changes went to the browser as they were made,
    # new models included; frozen, Bokeh notes those models as new only now and would send them again with
    # the next change that refers to them.
    with doc.models.freeze():
        piece()
    doc.models.flush_synced()


def add_pieces(doc: Document, pieces: list[Callable[[], None]], later: BuildLater | None) -> None:
    if later is None:
        for piece in pieces:
            _add_piece(doc, piece)
    else:
        later(doc, pieces)


def build(doc: Document, feed: LiveFeed, engine: Engine | None, *, later: BuildLater | None = None) -> LiveView:
    """The page's skeleton; the rest is handed to ``later`` once the browser has drawn it (a page load never
    drawn, a tab closed at once, costs no more than the skeleton). Without ``later``, the whole page now."""
    live = LiveView(doc, feed)
    # The history tab is built, and asks the database, only when somebody opens it: most sessions
    # only watch the live view, and building models is most of what a new session costs.
    holder = column(Div(text="loading…"), sizing_mode="stretch_width", name="history_holder")
    tabs = Tabs(
        tabs=[TabPanel(child=live.layout(), title="Live"), TabPanel(child=holder, title="History")],
        sizing_mode="stretch_width",
        name="tabs",
    )
    history: HistoryView | None = None

    def open_history(_attr, _old, new) -> None:
        nonlocal history
        if new == 1 and history is None:
            history = HistoryView(doc, engine, feed.settings)
            holder.children = [history.page]
            add_pieces(doc, history.pieces(), later)

    tabs.on_change("active", open_history)
    add_fleet_tab(doc, tabs, engine, feed.settings, lambda pieces: add_pieces(doc, pieces, later))
    doc.add_root(tabs)
    doc.title = "axiswatch"
    blink_in_browser(doc, tabs)
    if later is None:
        add_pieces(doc, live.pieces(), later)
    else:
        pieces = live.pieces()

        def drawn(_event) -> None:  # the browser has drawn the skeleton (a reconnecting tab says it again)
            if pieces:
                later(doc, pieces.copy())
                pieces.clear()

        doc.on_event(DocumentReady, drawn)
    return live
