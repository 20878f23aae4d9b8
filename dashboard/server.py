"""The Bokeh server on the current asyncio loop, with the shared feed and a ``/health`` endpoint."""

from __future__ import annotations

import json
import logging
import socket
from weakref import WeakKeyDictionary

from bokeh.document import Document
from bokeh.server.server import Server
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from common.wire.bus import Bus
from dashboard.app import application, build
from dashboard.auth import auth_provider
from dashboard.bokeh_defaults import cache_bokeh_defaults
from dashboard.feed import LiveFeed
from dashboard.memory import defer_bokeh_collections, untangle_all
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)
_FEEDS: WeakKeyDictionary[Server, LiveFeed] = WeakKeyDictionary()


class HealthHandler(RequestHandler):
    """JSON for docker-compose's health check and for people: is the feed live, how far behind, how fresh."""

    def initialize(self, feed: LiveFeed) -> None:
        self.feed = feed

    def get(self) -> None:
        s = self.feed.status
        self.set_header("Content-Type", "application/json")
        self.write(
            json.dumps(
                {
                    "connected": self.feed.connected(),
                    "lag": s.lag,
                    "newest_reading": s.newest_ts.isoformat() if s.newest_ts else None,
                    "readings_per_s": round(self.feed.readings_per_s(), 2),
                    "sessions": self.feed.listener_count,
                    "skipped": s.rejected,
                    "error": s.error,
                }
            )
        )


class MetricsHandler(RequestHandler):
    """Prometheus' text format, on the dashboard's own port (no second server)."""

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest())


class CheckHandler(RequestHandler):
    """``/livez`` and ``/readyz``: 200 or 503 with a short text (common.metrics.Health)."""

    def initialize(self, check) -> None:
        self.check = check

    def get(self) -> None:
        ok, text = self.check()
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.write(text + "\n")


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def make_server(settings: DashboardSettings, *, bus: Bus, engine: Engine | None, port: int | None = None) -> Server:
    """Build the server on the running loop and start its one feed task; ``port=0`` picks a free port.
    Call ``server.start()`` to serve and :func:`stop_server` to stop."""
    port = settings.dashboard_port if port is None else port
    port = port or free_port(settings.dashboard_address)
    defer_bokeh_collections()
    cache_bokeh_defaults()
    feed = LiveFeed(settings, bus, engine)
    server = Server(
        {"/": application(feed, engine)},
        io_loop=IOLoop.current(),
        address=settings.dashboard_address,
        port=port,
        allow_websocket_origin=settings.websocket_origins(port),
        extra_patterns=[
            ("/health", HealthHandler, {"feed": feed}),
            ("/metrics", MetricsHandler),
            ("/livez", CheckHandler, {"check": feed.health.is_live}),
            ("/readyz", CheckHandler, {"check": feed.health.is_ready}),
        ],
        unused_session_lifetime_milliseconds=settings.dashboard_session_expiry_ms,
        check_unused_sessions_milliseconds=max(1000, settings.dashboard_session_expiry_ms // 2),
        auth_provider=auth_provider(settings, engine),
    )
    _FEEDS[server] = feed
    warm_up(feed)
    feed.start()
    logger.info("dashboard at http://%s:%d/ (feed group %s)", settings.dashboard_address, port, feed.group_id)
    return server


def warm_up(feed: LiveFeed) -> None:
    """One whole page built and dropped before the first session: what a first page imports and caches
    (Bokeh's model classes and their defaults, ~30,000 objects) then is among the start-up objects that
    ``dashboard.memory.settle`` freezes, not in the heap every full collection walks after sessions close."""
    doc = Document()
    live = build(doc, feed, None)
    untangle_all(*doc.models, *live.models(), doc.config)


def feed_of(server: Server) -> LiveFeed:
    return _FEEDS[server]


async def stop_server(server: Server) -> None:
    """Stop the feed (closing its consumer), then the sessions and the listening socket."""
    await feed_of(server).stop()
    server.stop()
    server.unlisten()
