"""The shape every entry point shares: logging, a stop event set by SIGINT/SIGTERM, then the loop."""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))


def install_stop_handlers(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM only set the stop event; flushing and closing happen in the service's ``finally``."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def run_service(run: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    """Run ``run(stop)`` until it returns or a signal asks it to stop; return its exit code."""

    async def _main() -> int:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        return (await run(stop)) or 0

    try:
        return asyncio.run(_main())
    except KeyboardInterrupt:  # a second Ctrl+C during shutdown
        return 130
