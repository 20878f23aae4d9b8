"""The dashboard process's garbage collection: one collection after sessions close, not one per session.

Bokeh's ``Document.destroy`` runs a full ``gc.collect()`` for every session it discards (its models refer
back to their document). Each walks every live object of the process, ~5 ms per open session here, and
Bokeh discards expired sessions one after another on the event loop: 200 closed tabs held the loop for
6-13 s (no /health, no live feed meanwhile). Here those calls only ask for a collection; one runs on the
loop ``COLLECT_AFTER_S`` after the last ask, when the sessions are gone and the heap is small again, and
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

logger = logging.getLogger(__name__)
COLLECT_AFTER_S = 1.0
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

    def collect_now(self) -> None:
        self._timer = None
        started = time.perf_counter()
        found = gc.collect()
        if self._trim is not None:
            self._trim(0)
        self.collections += 1
        logger.debug("collected %d objects in %.0f ms", found, (time.perf_counter() - started) * 1000)


DEFERRED = DeferredCollect()


def defer_bokeh_collections() -> None:
    """Once per process, before sessions are discarded."""
    import bokeh.application.handlers.document_lifecycle as bokeh_lifecycle
    import bokeh.document.document as bokeh_document

    bokeh_document.gc = bokeh_lifecycle.gc = DEFERRED


def settle() -> None:
    """Once the server is up: what is imported and built by now lives as long as the process. Frozen out of
    the collector's sight, a full collection no longer walks it (unfrozen, those walks held a history
    Refresh up ~110 ms about once in 12, bench.query_scale)."""
    gc.collect()
    gc.freeze()
