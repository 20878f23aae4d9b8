"""The dashboard's test and benchmark helpers: a fake fleet, and the server running in a thread of its own
(so a synchronous client, a Bokeh ``pull_session`` or Playwright, can drive it from the test thread)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import bokeh.server.session as bokeh_session
from bokeh.client import pull_session
from bokeh.events import DocumentReady

from common.wire.bus import Bus, InProcessBus
from common.wire.schemas import Alert, AlertState, Reading, Severity
from dashboard.server import feed_of, make_server, stop_server
from dashboard.settings import DashboardSettings

T0 = datetime(2022, 10, 17, 12, 0, tzinfo=UTC)
# The ceiling of a wait for a condition, not a measure of anything: what is waited for usually comes within
# a second, but the rest of a page costs ~0.6 s of CPU, which a two-core machine at load 25 stretched past 20 s.
PATIENCE_S = 120.0


def reading(
    i: int, *, robot: str = "RMBR4-2", axes: int = 14, live_axes: int = 8, t0: datetime = T0, tick_s: float = 2.0
) -> Reading:
    """Row ``i`` of a robot: axes 1..live_axes carry a smooth current, the rest are "OK null"."""
    currents = {
        a: (round(3 + 2.5 * a * (1 + math.sin(i / 7 + a)), 3) if a <= live_axes else None) for a in range(1, axes + 1)
    }
    return Reading(robot_id=robot, ts=t0 + timedelta(seconds=i * tick_s), row=i, currents=currents)


def alert(
    event_id: str,
    *,
    robot: str = "RMBR4-2",
    axis: int = 2,
    at: datetime = T0,
    severity=Severity.ERROR,
    state=AlertState.OPEN,
    peak: float = 42.0,
) -> Alert:
    return Alert(
        event_id=event_id,
        robot_id=robot,
        axis=axis,
        detector="zscore",
        severity=severity,
        state=state,
        opened_at=at,
        closed_at=None if state == AlertState.OPEN else at + timedelta(seconds=30),
        peak_amps=peak,
        threshold=30.0,
        score=5.1,
    )


def pump_until(session, predicate, timeout: float = PATIENCE_S, what: str = "condition") -> None:
    """Run a Bokeh client session's loop, applying the server's patches, until ``predicate()`` holds. (The
    client applies patches only in this loop; a round-trip request skips the patches that arrive meanwhile.)
    The server sends a status patch every second, so each turn of the loop ends within about a second."""
    deadline = time.monotonic() + timeout
    session._connection._loop_until(lambda: predicate() or time.monotonic() > deadline)
    assert predicate(), f"timed out after {timeout:.0f} s waiting for {what}"


def open_page(url: str, timeout: float = PATIENCE_S):
    """A session opened as a browser tab opens it: the page's skeleton pulled, then "drawn" (the event the
    browser sends once it has drawn the page), then pumped until the rest has arrived (the alert table
    comes last). Close it with ``.close()``."""
    session = pull_session(url=url)
    session.document.callbacks.send_event(DocumentReady())
    pump_until(session, lambda: session.document.get_model_by_name("alert_table"), timeout, "the whole page")
    return session


def wait_for(predicate: Callable[[], object], timeout: float = PATIENCE_S, what: str = "condition", step: float = 0.02):
    """Poll ``predicate`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


class SessionClock:
    """The clock Bokeh ages unused sessions by (milliseconds), standing still until ``advance``: page loads
    then expire nothing however slow the machine is, and the sessions expire together at the server's next
    sweep once the clock is moved past their lifetime, as on a quick machine. (A test that loads pages on
    the real clock is a race between the loads and the expiry, which a loaded machine loses.)"""

    def __init__(self, monkeypatch) -> None:
        self.now_ms = bokeh_session.current_time()
        monkeypatch.setattr(bokeh_session, "current_time", lambda: self.now_ms)

    def advance(self, seconds: float) -> None:
        self.now_ms += seconds * 1000


class ServerThread:
    """``make_server`` on an asyncio loop in a background thread, with the bus the settings ask for."""

    def __init__(
        self,
        settings: DashboardSettings,
        *,
        bus: Callable[[], Bus] = InProcessBus,
        engine=None,
        alongside: Callable | None = None,
    ) -> None:
        """``alongside(bus, stop)``: another service to run on the same loop and bus (e.g. consumer_db)."""
        self.settings, self._make_bus, self.engine, self._alongside = settings, bus, engine, alongside
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dashboard-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(PATIENCE_S):
            raise TimeoutError(f"the dashboard server did not start within {PATIENCE_S:.0f} s")
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            self.bus = self._make_bus()
            await self.bus.start()
            await self.bus.ensure_topics([self.settings.readings_topic, self.settings.alerts_topic])
            self.server = make_server(self.settings, bus=self.bus, engine=self.engine, port=0)
            self.server.start()
            self.feed = feed_of(self.server)
            other = asyncio.create_task(self._alongside(self.bus, self._stop)) if self._alongside else None
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            if other is not None:
                await other
            await stop_server(self.server)
            await self.bus.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/"

    def call(self, coro, timeout: float = 30):
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def publish(self, topic: str, message: Reading | Alert) -> None:
        self.call(self.bus.publish(topic, message.robot_id, message.to_bytes()))

    def publish_readings(self, readings: list[Reading]) -> None:
        async def send() -> None:
            for r in readings:
                await self.bus.send(self.settings.readings_topic, r.robot_id, r.to_bytes())
            await self.bus.flush()

        self.call(send())
