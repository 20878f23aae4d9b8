"""``run``: serve the dashboard until ``stop`` is set, on the bus (and database) the caller passes in."""

from __future__ import annotations

import asyncio
import gc
import logging

from sqlalchemy import Engine

from common.wire.bus import Bus
from dashboard.server import make_server, stop_server
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)


async def run(settings: DashboardSettings, *, bus: Bus, stop: asyncio.Event, engine: Engine | None = None) -> None:
    await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])
    server = make_server(settings, bus=bus, engine=engine)
    server.start()
    # What is imported and built by now lives as long as the process: frozen out of the collector's sight,
    # a full collection no longer walks it. Unfrozen, those walks held a history Refresh up ~110 ms about
    # once in 12 (bench.query_scale).
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
    finally:
        logger.info("dashboard stopping")
        await stop_server(server)
