"""What every service shares for monitoring: an HTTP endpoint with ``/metrics`` (Prometheus text format),
``/livez`` and ``/readyz``, the service's :class:`Health`, consumer lag, and the class of a dead letter.

The counters and histograms themselves are declared next to the code they measure, named
``axiswatch_<service>_..._total`` / ``..._seconds``. prometheus-client's own ``start_http_server`` serves
``/metrics`` only, so the same WSGI server is started here with a small router in front of its app.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

logger = logging.getLogger(__name__)

LIVE_WITHIN_S = 60.0  # a loop that has not turned for this long is stuck (its longest wait is a few seconds)
LAG_EVERY_S = 5.0  # the lag is asked for at most this often: on Kafka it costs a round trip per partition


class Health:
    """Liveness: the service's loop has turned within ``live_within_s`` (``beat()``, once per turn).
    Readiness: the service says it can do its work (connected to the bus, the database migrated and
    reachable): ``ready(True/False)``. Not ready is no reason to restart a service; not live is."""

    def __init__(self, live_within_s: float = LIVE_WITHIN_S) -> None:
        self.live_within_s = live_within_s
        self._last_beat = time.monotonic()
        self._waits_s = 0.0
        self._ready = False
        self._why = "starting"

    def beat(self, waiting_s: float = 0.0) -> None:
        """``waiting_s``: the loop is about to wait that long on purpose (the producer's pacing, a gap in a
        replayed export), and is not stuck meanwhile."""
        self._last_beat, self._waits_s = time.monotonic(), waiting_s

    def ready(self, ready: bool, why: str = "") -> None:
        self._ready, self._why = ready, why

    def is_live(self) -> tuple[bool, str]:
        idle = time.monotonic() - self._last_beat
        return idle < self.live_within_s + self._waits_s, f"loop last turned {idle:.1f} s ago"

    def is_ready(self) -> tuple[bool, str]:
        return self._ready, self._why or ("ready" if self._ready else "not ready")


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # a scrape every 15 s is not news
        pass


def health_app(health: Health):
    """The WSGI app: ``/livez`` and ``/readyz`` answer 200 or 503 with a short text, the rest is
    prometheus-client's exposition (``/metrics``)."""
    metrics = make_wsgi_app()
    checks = {"/livez": health.is_live, "/readyz": health.is_ready}

    def app(environ, start_response):
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics(environ, start_response)
        ok, text = check()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
        return [text.encode("utf-8") + b"\n"]

    return app


class MetricsServer:
    """The endpoint in a thread of its own (scrapes never wait on the service's event loop)."""

    def __init__(self, health: Health, port: int, address: str = "0.0.0.0") -> None:
        self.server = make_server(address, port, health_app(health), ThreadingWSGIServer, handler_class=_Quiet)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)
        self.thread.start()
        logger.info("metrics, liveness and readiness on http://%s:%d/metrics, /livez, /readyz", address, self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serving(health: Health, port: int | None, address: str = "0.0.0.0") -> Iterator[MetricsServer | None]:
    """The endpoint on ``port`` while the block runs; None or 0 turns it off. A port taken already is logged
    and the service runs without the endpoint: monitoring must not be the reason the data stops."""
    server = None
    if port:
        try:
            server = MetricsServer(health, port, address)
        except OSError as exc:
            logger.error("metrics endpoint not started on %s:%d: %s", address, port, exc)
    try:
        yield server
    finally:
        if server is not None:
            server.close()


def count_by_topic(counter: Counter, messages: Iterable) -> None:
    """One ``inc`` per topic of the batch: ``labels()`` costs about 1.5 us, too much to pay per message."""
    for topic, n in collections.Counter(m.topic for m in messages).items():
        counter.labels(topic).inc(n)


class Lag:
    """A consumer-lag gauge kept up to date from a subscription, at most every ``LAG_EVERY_S``."""

    def __init__(self, gauge: Gauge, every_s: float = LAG_EVERY_S) -> None:
        self.gauge, self.every_s, self._last = gauge, every_s, float("-inf")

    async def update(self, subscription) -> None:
        if time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        try:
            self.gauge.set(await subscription.lag())
        except Exception as exc:  # noqa: BLE001 - a gauge must never stop the loop it measures
            logger.debug("consumer lag unknown: %s", exc)


# The class of a dead letter's reason, for a label with few values: the reason itself carries data (robot ids,
# values) and would make a series per message. First match wins.
REASON_CLASSES = (
    ("not_json", re.compile(r"not JSON|expected a JSON object|has no value")),
    ("refused_by_database", re.compile(r"^refused by the database: ")),
    ("not_a_number", re.compile(r"is not a (finite )?number")),
    ("time_backwards", re.compile(r"time goes backwards")),
    ("too_many_robots", re.compile(r"MAX_ROBOTS")),
    ("message_key", re.compile(r"message key .* is not its robot id")),
    ("robot_id", re.compile(r"robot id")),
    ("time_out_of_range", re.compile(r"READING_EARLIEST|READING_MAX_FUTURE_S|ahead of")),
    ("current_out_of_range", re.compile(r"READING_MAX_ABS_AMPS|smallest current taken")),
    ("not_judged", re.compile(r"could not judge")),
    ("unreadable", re.compile(r"unreadable row")),
    ("schema", re.compile(r"^\w+: ")),
)


def reason_class(reason: str) -> str:
    return next((name for name, pattern in REASON_CLASSES if pattern.search(reason)), "other")
