"""The API service: the web application on API_PORT and one short loop that keeps /livez and /readyz true.

request -> bearer token -> user -> handler -> database (read) / alerts topic (acknowledge) -> JSON
every CHECK_EVERY_S: the database answers? -> ready / not ready
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy import Engine, select

from api.app import make_app
from api.settings import ApiSettings
from common.metrics import Health
from common.store.db import make_engine, safe_url
from common.store.tables import api_users
from common.wire.bus import Bus

logger = logging.getLogger(__name__)
CHECK_EVERY_S = 5.0
MALFORMED_SHOWN = 200  # characters of aiohttp's account of a malformed request that are logged


class _MalformedRequestsInOneLine(logging.LoggerAdapter):
    """aiohttp's server logger, but a request its parser refuses (a request line or header past 8,190 bytes, bytes
    that are not HTTP) costs one line, escaped, instead of an ERROR with aiohttp's traceback: it is the client's
    garbage, answered 400, and anyone who can reach the port can send it. A handler's own error keeps its
    traceback."""

    def log(self, level: int, msg: object, *args: object, exc_info: object = None, **kwargs: object) -> None:
        if isinstance(exc_info, HttpProcessingError) and level >= logging.WARNING:  # not traffic aiohttp keeps quiet
            account = ascii(exc_info.message.strip())[:MALFORMED_SHOWN]
            remote = args[0] if args else "?"  # aiohttp's "Error handling request from %s", request.remote
            self.logger.info("refused a malformed request from %s: %s %s", remote, type(exc_info).__name__, account)
            return
        super().log(level, msg, *args, exc_info=exc_info, **kwargs)


async def run(
    settings: ApiSettings, *, bus: Bus, stop: asyncio.Event, engine: Engine | None = None, health: Health | None = None
) -> None:
    health = health or Health()
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url, log_version=False)
    runner = web.AppRunner(
        make_app(settings, engine, bus, health),
        access_log=None,
        logger=_MalformedRequestsInOneLine(logging.getLogger("aiohttp.server")),
    )
    await runner.setup()
    try:
        await bus.ensure_topics([settings.alerts_topic])
        await web.TCPSite(runner, settings.api_host, settings.api_port).start()
        logger.info("api: http://%s:%d/ on %s", settings.api_host, settings.api_port, safe_url(engine))
        while not stop.is_set():
            health.beat()
            health.ready(*await _database_answers(engine))
            try:
                await asyncio.wait_for(stop.wait(), CHECK_EVERY_S)
            except TimeoutError:
                pass
    finally:
        health.ready(False, "stopping")
        await runner.cleanup()
        if own_engine:
            engine.dispose()


async def _database_answers(engine: Engine) -> tuple[bool, str]:
    def ask() -> None:
        with engine.connect() as conn:
            conn.execute(select(api_users.c.id).limit(1))

    try:
        await asyncio.to_thread(ask)
    except Exception as exc:  # noqa: BLE001 - away, or not migrated yet: not ready, asked again shortly
        return False, f"database: {type(exc).__name__} (away, or consumer_db's migrations not run yet)"
    return True, "database answers, bus started"
