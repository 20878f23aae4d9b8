"""The dashboard under many page loads: closed sessions are collected once, not once each on the event
loop, and one client cannot hold more than DASHBOARD_SESSIONS_PER_CLIENT sessions. (How long the loop
stalls and how much memory comes back are measured by bench.dashboard_sessions, not timed here.)"""

import asyncio
import contextlib
import gc
import time
import urllib.error
import urllib.request
import weakref
from functools import partial
from types import SimpleNamespace

import pytest
from bokeh.client import pull_session
from bokeh.core.property.wrappers import PropertyValueContainer
from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.model import Model
from bokeh.models import GlyphRenderer, Line

from common.wire.bus import InProcessBus
from dashboard.app import SessionLifecycle, build
from dashboard.feed import LiveFeed
from dashboard.memory import (
    _BOKEH_DOCUMENT_DESTROY,
    COLLECT_AFTER_S,
    DEFERRED,
    YOUNG_EVERY_S,
    defer_bokeh_collections,
    settle,
)
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, SessionClock, pump_until, reading, wait_for


def settings(**kw) -> DashboardSettings:
    return DashboardSettings(
        _env_file=None,
        bus="memory",
        dashboard_sign_in=False,
        **{"dashboard_push_ms": 20, "dashboard_session_expiry_ms": 300, **kw},
    )


def load_page(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def full_collections():
    """The full (generation 2) collections that start while the test runs."""
    started = []

    def note(phase, info):
        if phase == "start" and info["generation"] == 2:
            started.append(time.monotonic())

    gc.callbacks.append(note)
    yield started
    gc.callbacks.remove(note)


def test_closed_sessions_are_collected_once_not_once_each_on_the_event_loop(full_collections, monkeypatch):
    clock = SessionClock(monkeypatch)
    with ServerThread(settings(dashboard_session_expiry_ms=5000)) as server:
        server.publish_readings([reading(i) for i in range(20)])
        pages = 12
        assert [load_page(server.url) for _ in range(pages)] == [200] * pages
        assert server.feed.listener_count == pages
        collected_before = DEFERRED.collections
        full_collections.clear()
        clock.advance(5.1)
        wait_for(lambda: server.feed.listener_count == 0, timeout=30, what="the sessions to expire")
        wait_for(lambda: DEFERRED.collections > collected_before, timeout=COLLECT_AFTER_S + 10, what="a collection")
    # Bokeh asks for a full collection twice per discarded session (24 here): one ran per sweep of expired ones
    assert len(full_collections) <= 4, len(full_collections)  # one per expiry sweep (and the odd automatic one)


def test_a_client_over_its_session_limit_is_refused_until_its_sessions_expire(monkeypatch):
    clock = SessionClock(monkeypatch)
    with ServerThread(settings(dashboard_sessions_per_client=3, dashboard_session_expiry_ms=4000)) as server:
        assert [load_page(server.url) for _ in range(4)] == [200, 200, 200, 429]
        assert server.feed.listener_count == 3  # the refused page built nothing
        assert load_page(server.url + "health") == 200  # /health is not a session
        clock.advance(4.1)
        wait_for(lambda: server.feed.listener_count == 0, timeout=30, what="the sessions to expire")
        assert load_page(server.url) == 200


def test_no_limit_when_set_to_zero():
    with ServerThread(settings(dashboard_sessions_per_client=0)) as server:
        assert [load_page(server.url) for _ in range(25)] == [200] * 25


async def test_sessions_opened_together_are_built_one_per_turn_of_the_loop():
    """Each build holds the loop; between two, other callbacks (/health, the feed) get their turn."""
    lifecycle = SessionLifecycle()
    order = []

    async def session(n: int) -> None:
        await lifecycle.on_session_created(None)
        order.append(f"build {n}")  # make_document: builds, then gives the turn back
        lifecycle.release_turn()

    async def other_callbacks() -> None:
        for _ in range(20):
            order.append("loop")
            await asyncio.sleep(0)

    await asyncio.gather(*(session(n) for n in range(4)), other_callbacks())
    builds = [i for i, step in enumerate(order) if step.startswith("build")]
    assert len(builds) == 4 and all(b - a > 1 for a, b in zip(builds, builds[1:], strict=False)), order


class Receiver:
    """Stands in for the server session a document sends its changes to."""

    def _document_patched(self, event) -> None:
        pass


def discarded_page(destroy) -> tuple[int, list[int]]:
    """Build one page and discard it with ``destroy``: what only a full collection could free then, and how
    many models each list, dict or set the page's models held still points back at."""
    doc = Document()
    build(doc, LiveFeed(settings(), InProcessBus(), None), None)
    session = Receiver()
    doc.on_change_dispatch_to(session)
    containers = [
        weakref.ref(value)
        for model in doc.models
        for value in (*model._property_values.values(), *model._unstable_default_values.values())
        if isinstance(value, PropertyValueContainer)
    ]
    gc.collect()
    gc.disable()
    try:
        destroy(doc, session)
        del doc
        owners = [len(container()._owners) for container in containers if container() is not None]
        return gc.collect(), owners
    finally:
        gc.enable()


def test_a_discarded_page_leaves_few_reference_cycles_to_the_collector(monkeypatch):
    defer_bokeh_collections()
    import bokeh.document.document as bokeh_document

    monkeypatch.setattr(bokeh_document, "gc", SimpleNamespace(collect=lambda *_: 0))  # counted here instead
    tangled, tangled_owners = discarded_page(_BOKEH_DOCUMENT_DESTROY)
    untangled, untangled_owners = discarded_page(Document.destroy)
    assert sum(tangled_owners) > 100 and sum(untangled_owners) == 0, (tangled_owners, untangled_owners)
    assert untangled < tangled / 3, (untangled, tangled)


def test_a_page_builds_no_model_the_browser_can_do_without():
    """Building models is what a page costs: one editor and one plain-text formatter for all the table
    columns, and no non-selection or muted copy of any chart glyph (the browser derives those)."""
    doc = Document()
    build(doc, LiveFeed(settings(), InProcessBus(), None), None)
    kinds = [type(model).__name__ for model in doc.models]
    assert kinds.count("TableColumn") >= 10 and kinds.count("StringEditor") == kinds.count("StringFormatter") == 1
    renderers = doc.select({"type": GlyphRenderer})
    assert {r.name for r in renderers} >= {"alert_marks", "alert_marks_blinking"}
    assert all(r.nonselection_glyph == "auto" and r.muted_glyph == "auto" for r in renderers)


class FakeSessionContext:
    """What ``build_later`` asks of a session: is it gone, and run this with its document locked."""

    def __init__(self) -> None:
        self.destroyed = False

    async def with_locked_document(self, func) -> None:
        func(Document())


async def test_pieces_of_pages_opened_together_are_added_one_per_turn_and_stop_when_the_tab_closes():
    lifecycle = SessionLifecycle()
    order = []
    contexts = [FakeSessionContext() for _ in range(3)]

    def piece(n: int, k: int):
        def add() -> None:
            order.append(f"piece {n}.{k}")
            if (n, k) == (2, 0):
                contexts[2].destroyed = True  # the third tab closes after its first piece

        return add

    for n, context in enumerate(contexts):
        lifecycle.build_later(SimpleNamespace(session_context=context), [piece(n, k) for k in range(3)])

    for _ in range(200):  # the other callbacks of the loop (/health, the feed), until the pieces are done
        order.append("loop")
        await asyncio.sleep(0)
    pieces = [step for step in order if step.startswith("piece")]
    assert sorted(pieces) == sorted([f"piece {n}.{k}" for n in (0, 1) for k in range(3)] + ["piece 2.0"]), order
    at = [i for i, step in enumerate(order) if step.startswith("piece")]
    assert all(b - a > 1 for a, b in zip(at, at[1:], strict=False)), order  # the loop ran between two pieces


def test_a_page_load_sends_the_skeleton_and_the_rest_arrives_once_the_browser_has_drawn_it():
    with ServerThread(settings(window_rows=30)) as server:
        server.publish_readings([reading(i) for i in range(40)])
        wait_for(lambda: len(server.feed.window("RMBR4-2")) == 30, what="the feed to take the readings")
        session = pull_session(url=server.url)
        try:
            doc = session.document
            assert doc.get_model_by_name("status") is not None and doc.get_model_by_name("tabs") is not None
            assert doc.get_model_by_name("live_chart") is None
            time.sleep(1.0)
            [view] = list(server.feed._listeners)
            assert view.doc.get_model_by_name("live_chart") is None  # not drawn yet: nothing more is built
            server.publish_readings([reading(i) for i in range(40, 45)])
            wait_for(lambda: server.feed.window("RMBR4-2")[-1]["ts"] == reading(44).ts.timestamp() * 1000)
            assert len(view.source.data["ts"]) == 0  # and nothing is streamed to it
            session.document.callbacks.send_event(DocumentReady())  # what the browser says once it has drawn it
            pump_until(session, lambda: doc.get_model_by_name("alert_table"), what="the rest of the page")
            chart = doc.get_model_by_name("live_chart")
            lines = [r for r in chart.renderers if isinstance(r.glyph, Line)]
            assert len(lines) == len(server.feed.axes) == len(chart.legend[0].items)
            assert doc.get_model_by_name("live_source").data["ts"][-1] == reading(44).ts.timestamp() * 1000
            assert doc.get_model_by_name("latest_table") and doc.get_model_by_name("robot")
        finally:
            session.close()


async def test_expired_sessions_discarded_together_give_the_loop_a_turn_between_two():
    """Bokeh awaits each discarded session's hooks one after another, in one sweep."""
    lifecycle = SessionLifecycle()
    order = []
    contexts = [SimpleNamespace(id=f"s{n}", destroyed=True) for n in range(4)]
    for n, context in enumerate(contexts):
        lifecycle.on_end(SimpleNamespace(session_context=context), lambda n=n: order.append(f"cleanup {n}"))

    async def sweep() -> None:  # bokeh.server.contexts.ApplicationContext._cleanup_sessions, in short
        for context in contexts:
            await lifecycle.on_session_destroyed(context)

    async def other_callbacks() -> None:
        for _ in range(10):
            order.append("loop")
            await asyncio.sleep(0)

    await asyncio.gather(sweep(), other_callbacks())
    at = [i for i, step in enumerate(order) if step.startswith("cleanup")]
    assert len(at) == 4 and all(b - a > 1 for a, b in zip(at, at[1:], strict=False)), order


async def test_once_settled_the_young_generations_are_collected_on_a_timer_and_never_a_full_one_by_itself():
    """Python's own full collections start in whatever callback allocates; the server's loop runs them."""
    collections = []

    def note(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(note)
    try:
        settle()
        assert not gc.isenabled()
        collections.clear()
        garbage = [[] for _ in range(50_000)]  # far past the automatic threshold of the young generation
        del garbage
        await asyncio.sleep(3 * YOUNG_EVERY_S)
        assert 1 in collections and 2 not in collections, collections
    finally:
        gc.callbacks.remove(note)
        gc.enable()
        gc.unfreeze()


def models_alive() -> int:
    return sum(isinstance(o, Model) for o in gc.get_objects())


def test_page_loads_whose_sessions_expire_are_freed_without_a_collection(monkeypatch):
    """A page load's skeleton (the data sources its pieces would show are not in its document yet) goes by
    reference counting alone: frozen (once settled), nothing else would ever free it."""
    monkeypatch.setattr(DEFERRED, "collect_now", lambda: None)  # the deferred full collection: none here
    clock = SessionClock(monkeypatch)
    with ServerThread(settings(dashboard_session_expiry_ms=300)) as server:
        assert load_page(server.url) == 200  # what the first page imports and caches stays
        clock.advance(0.4)
        wait_for(lambda: server.feed.listener_count == 0, timeout=30, what="the first session to expire")
        gc.collect()
        gc.disable()
        try:
            before = models_alive()
            pages = 10
            assert [load_page(server.url) for _ in range(pages)] == [200] * pages
            assert models_alive() >= before + pages * 10
            clock.advance(0.4)
            wait_for(lambda: server.feed.listener_count == 0, timeout=30, what="the sessions to expire")
            # The sessions' clean-ups, one per turn of the loop: waited for, not slept. With no collection only
            # reference counting frees anything, so a page that needs a collection is never freed.
            with contextlib.suppress(AssertionError):  # the assertion below says how much is left
                wait_for(lambda: models_alive() - before < pages, timeout=30, step=0.2)
            left = models_alive() - before
        finally:
            gc.enable()
    assert left < pages, left  # not even one per page


def test_a_whole_page_destroyed_is_freed_without_a_collection(monkeypatch):
    """Its periodic callback (the view, which refers to every model) and its JavaScript event callback are
    what Bokeh's ``Document.destroy`` keeps."""
    defer_bokeh_collections()
    import bokeh.document.document as bokeh_document

    monkeypatch.setattr(bokeh_document, "gc", SimpleNamespace(collect=lambda *_: 0))
    feed = LiveFeed(settings(), InProcessBus(), None)
    gc.collect()
    gc.disable()
    try:
        doc = Document()
        view = build(doc, feed, None)
        session = Receiver()
        doc.on_change_dispatch_to(session)
        assert doc.session_callbacks  # the view's tick
        models = [weakref.ref(model) for model in doc.models]
        assert len(models) > 50
        doc.destroy(session)
        del doc, view
        alive = [type(ref()).__name__ for ref in models if ref() is not None]
    finally:
        gc.enable()
    assert alive == []


def test_after_sessions_are_discarded_a_full_collection_waits_until_none_is_open(monkeypatch, full_collections):
    """A full collection walks every open page; the young generations meanwhile, and memory is handed back to
    the system after either."""
    trims = []
    monkeypatch.setattr(DEFERRED, "_trim", trims.append)
    monkeypatch.setattr(DEFERRED, "sessions_open", lambda: 3)
    DEFERRED.collect_now()
    assert full_collections == [] and trims == [0]
    monkeypatch.setattr(DEFERRED, "sessions_open", lambda: 0)
    DEFERRED.collect_now()
    assert len(full_collections) == 1 and trims == [0, 0]


class Node:
    pass


def test_a_one_shot_callback_that_ran_lets_go_of_what_it_called_without_a_collection():
    """Bokeh's one-shot wrapper and its callback object refer to each other; the view a callback calls (and
    its page) would wait for a full collection."""
    defer_bokeh_collections()
    doc = Document()
    target = Node()
    target_ref = weakref.ref(target)
    callback = doc.add_next_tick_callback(partial(lambda node: None, target))
    del target
    gc.disable()
    try:
        callback.callback()  # what the server's loop does on the next tick
        del callback
        assert target_ref() is None
    finally:
        gc.enable()


def test_closed_tabs_are_freed_without_a_full_collection(monkeypatch):
    """A whole page, streamed to, then its tab closed: once its session expires nothing of it is left for a
    full collection (``DeferredCollect.collect_now`` does none here)."""
    monkeypatch.setattr(DEFERRED, "collect_now", lambda: None)
    with ServerThread(settings(dashboard_session_expiry_ms=300)) as server:
        server.publish_readings([reading(i) for i in range(20)])
        server.loop.call_soon_threadsafe(settle)  # the young generations on the server's loop, as in service.run
        try:
            sessions = [pull_session(url=server.url) for _ in range(3)]
            for session in sessions:
                session.document.callbacks.send_event(DocumentReady())
            for session in sessions:
                pump_until(session, lambda s=session: s.document.get_model_by_name("alert_table"), what="the page")
            server.publish_readings([reading(i) for i in range(20, 40)])  # streamed to the open pages
            time.sleep(1.5)
            server_models = [weakref.ref(m) for view in server.feed._listeners for m in view.doc.models]
            assert len(server_models) > 3 * 50
            for session in sessions:
                session.close()
            wait_for(lambda: server.feed.listener_count == 0, timeout=30, what="the sessions to expire")
            # The sessions' clean-ups, then the young generations on their timer: waited for, not slept. No
            # full collection runs, so what only a full one could free is never freed.
            with contextlib.suppress(AssertionError):  # the assertion below says what is left
                wait_for(lambda: all(ref() is None for ref in server_models), timeout=30)
            alive = [type(ref()).__name__ for ref in server_models if ref() is not None]
        finally:
            server.loop.call_soon_threadsafe(gc.enable)
            time.sleep(0.2)
            gc.unfreeze()
    assert alive == [], alive
