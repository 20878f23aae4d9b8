"""The dashboard process's garbage collection: one collection after sessions close, not one per session.

Bokeh's ``Document.destroy`` runs a full ``gc.collect()`` for every session it discards (its models refer
back to their document). Each walks every live object of the process, ~5 ms per open session here, and
Bokeh discards expired sessions one after another on the event loop: 200 closed tabs held the loop for
6-13 s (no /health, no live feed meanwhile). Here those calls only ask for a collection; one runs on the
loop ``COLLECT_AFTER_S`` after the last ask (a full one only once no session is open, see ``collect_now``),
then hands freed memory back to the system (glibc keeps it otherwise, and the RSS never came down).
(Bokeh's lifecycle handler collects too after a document's own ``on_session_destroyed`` callbacks; the
dashboard registers none, see ``dashboard.app.SessionLifecycle``.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

from bokeh.core.property.wrappers import PropertyValueContainer
from bokeh.document import Document
from bokeh.document.callbacks import DocumentCallbackManager
from bokeh.model.util import collect_models

logger = logging.getLogger(__name__)
_BOKEH_DOCUMENT_DESTROY = Document.destroy
_BOKEH_REMOVE_SESSION_CALLBACK = DocumentCallbackManager.remove_session_callback
COLLECT_AFTER_S = 1.0
YOUNG_EVERY_S = 0.5  # the young generations, on a timer once settled (see settle)
FULL_EVERY_S = 300.0  # a full collection at least this often, sessions closing or not
# Python's own small-object allocator keeps an arena while one object in it lives, and the objects of 200
# sessions and of the feed interleave: after they closed the RSS stayed where it peaked. With the C library's
# allocator and malloc_trim below, it comes back (python -m dashboard starts with it unless PYTHONMALLOC is set).
ALLOCATOR = "malloc"


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: freed memory is returned as the allocator sees fit
        return None


class DeferredCollect:
    """Stands in for the ``gc`` module inside ``bokeh.document.document``: ``collect()`` asks for one
    collection on the loop later; everything else is the real module."""

    def __init__(self) -> None:
        self._timer = None
        self._trim = _malloc_trim()
        self.collections = 0
        self._last_full = time.monotonic()
        self.sessions_open: Callable[[], int] = lambda: 0  # set by the application (dashboard.app)

    def __getattr__(self, name: str):
        return getattr(gc, name)

    def collect(self, generation: int = 2) -> int:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a server loop: nothing to hold up
            return gc.collect(generation)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(COLLECT_AFTER_S, self.collect_now)
        return 0

    def collect_young(self) -> None:
        """Every YOUNG_EVERY_S on the loop, once the automatic collections are off (``settle``)."""
        gc.collect(1)
        if time.monotonic() - self._last_full > FULL_EVERY_S:
            self.collect_full()
        asyncio.get_running_loop().call_later(YOUNG_EVERY_S, self.collect_young)

    def collect_now(self) -> None:
        """After sessions were discarded. A full collection walks every object not frozen, open pages
        included (~5,000 objects each: 50 open pages held the loop 0.1-0.3 s), so it waits until no session
        is open; meanwhile the young generations, as every YOUNG_EVERY_S."""
        self._timer = None
        if self.sessions_open():
            gc.collect(1)
            self._give_back()
        else:
            self.collect_full()

    def collect_full(self) -> None:
        """What closed pages left in reference cycles. It never unfreezes the start-up objects (``settle``):
        walking those too (~190,000) held the loop 0.1-0.3 s, and they live as long as the process."""
        started = time.perf_counter()
        self._last_full = time.monotonic()
        found = gc.collect()
        self._give_back()
        logger.debug("collected %d objects in %.0f ms", found, (time.perf_counter() - started) * 1000)

    def _give_back(self) -> None:
        if self._trim is not None:
            self._trim(0)
        self.collections += 1


DEFERRED = DeferredCollect()


def untangle(model) -> None:
    """What ``Model.destroy`` leaves in reference cycles, broken. Each list, dict or set a model holds (its
    defaults too: ``tags``, ``js_property_callbacks``...) points back at the model, and its callbacks at the
    view that points at it: ~6,000 objects per discarded page that only a collection could free, and the
    collection after 50 closed pages held the loop for 0.5-1 s. Broken, most of them go when the session
    does, a few at a time, and the collection has a quarter of the objects left to find."""
    for value in (*model._property_values.values(), *model._unstable_default_values.values()):
        if isinstance(value, PropertyValueContainer):
            value._owners.clear()
    model._property_values.clear()
    model._unstable_default_values.clear()
    model._callbacks.clear()
    model._event_callbacks.clear()


def untangle_all(*roots) -> None:
    """``untangle`` the models ``roots`` refer to, them included: what a page made and never added to its
    document (a page load's skeleton: the data sources its pieces would have shown) is not in ``doc.models``."""
    for model in collect_models(*roots):  # all found first: untangling drops the references that lead to others
        untangle(model)


def release_view(view) -> None:
    """A session's view, when Bokeh discards the session: its models untangled and its attributes dropped.
    Bokeh's timer for the view's periodic ``tick`` stays in a reference cycle after the session ends, and
    through that bound method it kept the view, and so the whole page, until a full collection."""
    untangle_all(*view.models())
    vars(view).clear()


def _destroy_untangled(doc: Document, session) -> None:
    new_models = doc.models._new_models
    # Besides its graph, a document holds its config and the models of its JavaScript event callbacks.
    js_callbacks = [callback for callbacks in doc.callbacks._js_event_callbacks.values() for callback in callbacks]
    untangle_all(*doc.models, doc.config, *js_callbacks)
    _BOKEH_DOCUMENT_DESTROY(doc, session)
    # Bokeh's destroy keeps these: the models never sent (a page closed before it connected), and the periodic
    # callbacks, whose views refer to their document and models.
    for callback in doc.callbacks._session_callbacks:
        _forget(callback)
    doc.callbacks._session_callbacks.clear()
    new_models.clear()


def _forget(callback_obj) -> None:
    # Bokeh wraps a one-shot callback (next tick, timeout) in a closure that refers back to its callback
    # object: a cycle around the function it calls, e.g. a view's method, and so the view and its page. A
    # callback that waited over a young collection is in the oldest generation, and once run it kept its page
    # alive until a full collection (~90 callbacks and 5,000 objects per page in the burst).
    callback_obj._callback = None


def _remove_session_callback_acyclic(manager: DocumentCallbackManager, callback_obj) -> None:
    """``remove_session_callback``, which Bokeh calls as a one-shot callback runs, with the cycle broken."""
    _BOKEH_REMOVE_SESSION_CALLBACK(manager, callback_obj)
    _forget(callback_obj)


def defer_bokeh_collections() -> None:
    """Once per process, before sessions are discarded."""
    import bokeh.application.handlers.document_lifecycle as bokeh_lifecycle
    import bokeh.document.document as bokeh_document

    bokeh_document.gc = bokeh_lifecycle.gc = DEFERRED
    bokeh_document.Document.destroy = _destroy_untangled
    DocumentCallbackManager.remove_session_callback = _remove_session_callback_acyclic


def settle() -> None:
    """Once the server is up, on its loop: what is imported and built by now lives as long as the process.
    Frozen out of the collector's sight, a full collection no longer walks it (unfrozen, those walks held a
    history Refresh up ~110 ms about once in 12, bench.query_scale).

    Then the collector runs when the loop says: the young generations every YOUNG_EVERY_S, a full
    collection once sessions were discarded and none is open (``DeferredCollect``), and at least every
    FULL_EVERY_S. Python's own full collections start in whatever callback allocates when the heap has grown
    by a quarter, which it does all along while pages are built: each walked every live object, ~0.3 s with
    20-50 pages open, the longest holds left while many tabs opened."""
    gc.collect()
    gc.freeze()
    gc.disable()
    DEFERRED.collect_young()
