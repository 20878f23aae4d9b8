"""The shape every entry point shares: logging, a stop event set by SIGINT/SIGTERM, then the loop."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from common.defaults import STOP_TIMEOUT_S

if TYPE_CHECKING:
    from common.settings import CommonSettings

logger = logging.getLogger(__name__)


class RepeatFilter(logging.Filter):
    """Lets one copy of the same library message through per interval: during a broker outage aiokafka
    logs "Unable connect to node" about 2,000 times a second, which buries everything else."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), interval_s: float = 10.0) -> None:
        super().__init__()
        self.prefixes, self.interval_s = prefixes, interval_s
        self._last: dict[tuple[str, int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key, now = (record.name, record.levelno, str(record.msg)), time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.interval_s:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class OneLineFormatter(logging.Formatter):
    """A log record is one line whatever its arguments carry: control characters in the message (a robot id
    with a newline, a raw message) are escaped, so data can never forge a log line. The places that log
    data say so with %r as well; this is the net under them. A traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def _escaped(found: re.Match[str]) -> str:
    return found.group().encode("unicode_escape").decode("ascii")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped: data shown in a log, a mail subject or a stored error."""
    return CONTROL_CHARACTERS.sub(_escaped, text)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


FORCED_STOP = (
    "stopping by force: %s. Sends not confirmed by now are not counted as sent and nothing more is committed; "
    "a restart resumes from the last committed offsets"
)


def install_stop_handlers(stop: asyncio.Event, force: Callable[[str], None], stop_timeout_s: float) -> None:
    """The first SIGINT/SIGTERM sets the stop event (flushing and closing happen in the service's ``finally``);
    ``force`` is called ``stop_timeout_s`` later, or at the next signal."""
    loop = asyncio.get_running_loop()
    signalled: list[signal.Signals] = []  # not stop.is_set(): a service may set it itself (the demo, the notifier)

    def on_signal(sig: signal.Signals) -> None:
        if signalled:
            force(f"{sig.name} again")
            return
        signalled.append(sig)
        logger.info(
            "%s: stopping (by force if not stopped within %g s or at a second signal)", sig.name, stop_timeout_s
        )
        stop.set()
        loop.call_later(stop_timeout_s, force, f"not stopped within {stop_timeout_s:g} s of {sig.name}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


def run_service(run: Callable[[asyncio.Event], Awaitable[int | None]], settings: CommonSettings | None = None) -> int:
    """Run ``run(stop)`` until it returns or a signal asks it to stop; return its exit code. Stopped by force
    (after the settings' STOP_TIMEOUT_S; without settings, as for the demo, its default) the task is cancelled:
    its ``finally`` blocks run with their own bounded closes (common.wire.kafka.CLOSE_TIMEOUT_S), and the exit
    code is 1."""
    stop_timeout_s = STOP_TIMEOUT_S if settings is None else settings.stop_timeout_s

    async def _main() -> int:
        stop, task = asyncio.Event(), asyncio.current_task()
        forced: list[str] = []

        def force(why: str) -> None:
            if not task.done():
                if not forced:
                    logger.error(FORCED_STOP, why)
                forced.append(why)
                task.cancel()  # again at each further signal: it cuts the close it is waiting on short

        install_stop_handlers(stop, force, stop_timeout_s)
        try:
            return (await run(stop)) or 0
        except asyncio.CancelledError:
            if not forced:
                raise
            return 1

    try:
        return asyncio.run(_main())
    except KeyboardInterrupt:  # Ctrl+C before the loop's handlers are installed
        return 130
