"""``run``: serve the dashboard until ``stop`` is set, on the bus (and database) the caller passes in."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

from common.wire.bus import Bus
from dashboard import memory
from dashboard.server import make_server, stop_server
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)


async def run(settings: DashboardSettings, *, bus: Bus, stop: asyncio.Event, engine: Engine | None = None) -> None:
    await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])
    server = make_server(settings, bus=bus, engine=engine)
    server.start()
    memory.settle()
    try:
        await stop.wait()
    finally:
        logger.info("dashboard stopping")
        await stop_server(server)
