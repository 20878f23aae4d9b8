"""The one Kafka consumer of a dashboard process, and the window every session starts from.

A single task reads the readings and alerts topics, keeps the last ``window_rows`` chart rows per robot
(so a tab opened late starts full), the latest value per axis, the last minute of readings and the newest
state of each alert event, and hands every batch to the registered listeners (one per browser session;
they move it into their document with ``add_next_tick_callback``). The dashboard only watches: it never
commits offsets, and each process has its own consumer group so every replica sees every partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import datetime
from typing import Protocol

import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine

from common.errors import SchemaError
from common.metrics import Health, count_by_topic, reason_class
from common.store import queries
from common.wire.acknowledge import publish_acknowledgement
from common.wire.bus import Bus, Message, Subscription
from common.wire.schemas import AckOutcome, Alert, Reading
from dashboard.columns import chart_row, row_keys, table_columns, to_columns
from dashboard.settings import DashboardSettings
from dashboard.window import FeedStatus, RobotWindow, RowRing, Taken

logger = logging.getLogger(__name__)


class Listener(Protocol):
    def deliver(self, rows: dict[str, list[dict[str, float]]], alerts: list[Alert]) -> None:
        """Called on the server loop with the new chart rows per robot and the alert events that changed
        (or left the feed's ``dashboard_alert_rows``)."""


MESSAGES_IN = Counter("axiswatch_dashboard_messages_in_total", "Messages taken from the bus, by topic.", ["topic"])
SKIPPED = Counter("axiswatch_dashboard_skipped_total", "Messages that could not be shown, by reason class.", ["reason"])
SESSIONS = Gauge("axiswatch_dashboard_sessions", "Browser sessions receiving the live feed.")
LAG = Gauge("axiswatch_dashboard_lag_messages", "Messages on the feed's partitions not fetched yet.")
INGEST_SECONDS = Histogram(
    "axiswatch_dashboard_ingest_seconds", "Time to fold one batch into the window and hand it to the sessions."
)


class LiveFeed:
    def __init__(self, settings: DashboardSettings, bus: Bus, engine: Engine | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.engine = engine
        self._open_loaded = engine is None  # the open events are taken from the database once, at start
        self.axes = list(settings.axes)
        self.row_keys = row_keys(self.axes)
        self.policy = settings.reading_policy()  # the pipeline's rule for sane readings, built once
        self.group_id = f"{settings.dashboard_group_id}-{uuid.uuid4().hex[:8]}"
        self.robots: dict[str, RobotWindow] = {}
        self.alerts: dict[str, Alert] = {}
        self.status = FeedStatus()
        self.health = Health()  # ready while subscribed without error; beaten once per poll
        self._table: tuple[list[Alert], dict] | None = None  # the events newest first, and the table's columns
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    # -- sessions ------------------------------------------------------------------------------------
    def register(self, listener: Listener) -> None:
        self._listeners.add(listener)
        SESSIONS.set(len(self._listeners))

    def unregister(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        SESSIONS.set(len(self._listeners))

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def window(self, robot_id: str) -> list[dict[str, float]]:
        robot = self.robots.get(robot_id)
        return robot.rows.rows() if robot else []

    def window_columns(self, robot_id: str, keys: list[str], rows: int) -> dict[str, np.ndarray]:
        """The newest ``rows`` of the window as the chart's columns (copies: a tab may keep them)."""
        robot = self.robots.get(robot_id)
        return robot.rows.columns(keys, rows) if robot else to_columns([], keys)

    def alert_table(self) -> tuple[list[Alert], dict]:
        """The events newest first, and the alert table's columns: made once per change, for every tab
        (a tab only replaces its table's data with them, never changes them in place)."""
        if self._table is None:
            alerts = sorted(self.alerts.values(), key=lambda a: a.opened_at, reverse=True)
            self._table = alerts, table_columns(alerts)
        return self._table

    def default_robot(self) -> str:
        return self.settings.robot_id if self.settings.robot_id in self.robots or not self.robots else min(self.robots)

    def connected(self, now: float | None = None) -> bool:
        """Live means: subscribed, no client error, and a message within ``dashboard_stale_seconds``."""
        s = self.status
        now = time.monotonic() if now is None else now
        fresh = s.last_message is not None and now - s.last_message < self.settings.dashboard_stale_seconds
        return s.subscribed and s.error is None and fresh

    def readings_per_s(self, now: float | None = None, span: float = 10.0) -> float:
        now = time.monotonic() if now is None else now
        return sum(1 for t in self.status.arrivals if now - t <= span) / span

    # -- the consumer task ---------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dashboard-feed")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 1.0
        topics = [self.settings.readings_topic, self.settings.alerts_topic]
        while not self._stop.is_set():
            self.health.beat()
            try:
                sub = await self.bus.subscribe(topics, group_id=self.group_id, from_beginning=False)
            except Exception as exc:  # noqa: BLE001 - any client failure: say so on the page, retry
                self._failed(f"cannot subscribe: {exc}")
            else:
                self.status.subscribed, self.status.error, delay = True, None, 1.0
                self.health.ready(True, "subscribed")
                if not self._open_loaded:  # after subscribing: what the topic says from then on is newer
                    asyncio.get_running_loop().create_task(self._load_open_events(), name="dashboard-open-events")
                try:
                    await self._consume(sub)
                except Exception as exc:  # noqa: BLE001
                    self._failed(f"consumer failed: {exc}")
                finally:
                    self.status.subscribed = False
                    self.health.ready(False, self.status.error or "not subscribed")
                    with contextlib.suppress(Exception):
                        await sub.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 30.0)

    def _failed(self, reason: str) -> None:
        logger.warning("dashboard feed: %r (retrying)", reason)
        self.status.error = reason
        self.health.ready(False, reason)

    async def _consume(self, sub: Subscription) -> None:
        next_lag = 0.0
        while not self._stop.is_set():
            self.health.beat()
            messages = await sub.getmany(timeout_ms=self.settings.dashboard_push_ms, max_records=5000)
            if messages:
                with INGEST_SECONDS.time():
                    self.ingest(messages)
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + 2.0
                with contextlib.suppress(Exception):
                    self.status.lag = await asyncio.wait_for(sub.lag(), 2.0)
                    LAG.set(self.status.lag)

    def ingest(self, messages: list[Message]) -> None:
        """Fold a batch into the window and hand it to every session (public for tests and the benchmark)."""
        rows: dict[str, list[dict[str, float]]] = {}
        changed: dict[str, Alert] = {}
        now = time.monotonic()
        count_by_topic(MESSAGES_IN, messages)
        for m in messages:
            # One message that cannot be shown is skipped, whatever the reason: the feed keeps its place
            # in the topics (a failure out of here would resubscribe at their end, losing what came between).
            try:
                if m.topic == self.settings.alerts_topic:
                    alert = self._merge_alert(Alert.from_bytes(m.value))
                    changed[alert.event_id] = alert
                else:
                    reading = self.policy.read_message(m)
                    row = self._add_reading(reading, m.timestamp_ms / 1000 if m.timestamp_ms is not None else None)
                    if row is not None:
                        rows.setdefault(reading.robot_id, []).append(row)
                    self.status.arrivals.append(now)
            except Exception as exc:  # noqa: BLE001 - a bad message must not stop the feed
                self.status.rejected += 1
                reason = str(exc) if isinstance(exc, SchemaError) else f"{type(exc).__name__}: {exc}"
                SKIPPED.labels(reason_class(reason)).inc()
                logger.warning("dashboard feed: skipped %s[%d]@%d: %r", m.topic, m.partition, m.offset, reason)
        self.status.last_message = now
        self._changed(changed, rows)

    def _changed(self, changed: dict[str, Alert], rows: dict[str, list[dict[str, float]]]) -> None:
        changed |= {a.event_id: a for a in self._trim_alerts()}  # gone from the table: a change too
        if changed:
            self._table = None
        if rows or changed:
            for listener in list(self._listeners):
                listener.deliver(rows, list(changed.values()))

    def _add_reading(self, reading: Reading, record_ts: float | None) -> dict[str, float] | None:
        """The reading's chart row, None if it is not part of its robot's live view (far behind its newest).
        ``record_ts``: the time of its Kafka record (``RobotWindow.add``)."""
        row = chart_row(reading, self.axes)  # before any change: a reading that fails here leaves no trace
        robot = self.robots.get(reading.robot_id)
        if robot is None:
            rows = RowRing(self.row_keys, self.settings.window_rows)
            robot = self.robots[reading.robot_id] = RobotWindow(rows, clock_back_s=self.settings.stoppage_reset_s)
        taken = robot.add(reading, row, record_ts)
        if taken is Taken.BEHIND:
            return None
        if taken is Taken.WENT_BACK:  # its clock came back from ahead: so does the feed's newest, if it was that
            self.status.newest_ts = max(w.newest for w in self.robots.values() if w.newest is not None)
        if self.status.newest_ts is None or reading.ts > self.status.newest_ts:
            self.status.newest_ts = reading.ts
        return row

    async def _load_open_events(self) -> None:
        """The events still open in the database: the topic is read from its end, so without them the table
        is empty after a restart. An event the topic has spoken of since keeps the topic's (newer) state."""
        try:
            rows = await asyncio.to_thread(self._query_open_events)
        except Exception as exc:  # noqa: BLE001 - the live view does without; tried again at the next subscribe
            logger.warning("dashboard feed: open events not loaded: %r", f"{type(exc).__name__}: {exc}")
            return
        self._open_loaded = True
        loaded: dict[str, Alert] = {}
        for row in reversed(rows):  # oldest first: the feed's order is least recently changed first
            try:
                alert = Alert.model_validate({k: v for k, v in row.items() if k in Alert.model_fields})
            except Exception as exc:  # noqa: BLE001 - one bad row is skipped like a bad message
                logger.warning("dashboard feed: open event skipped: %r", str(exc))
                continue
            if alert.event_id not in self.alerts:
                loaded[alert.event_id] = alert
        if loaded:
            self.alerts = loaded | self.alerts
            self._changed(loaded, {})

    def _query_open_events(self) -> list[dict]:
        with self.engine.connect() as conn:
            return queries.open_alerts(conn, limit=self.settings.dashboard_alert_rows)

    def _merge_alert(self, alert: Alert) -> Alert:
        """The event as consumer_db stores it (``Alert.merged_with``), moved to the end: changed last."""
        known = self.alerts.pop(alert.event_id, None)
        alert = alert if known is None else known.merged_with(alert)
        self.alerts[alert.event_id] = alert
        return alert

    def _trim_alerts(self) -> list[Alert]:
        """Drop the events changed longest ago beyond ``dashboard_alert_rows``; returns them."""
        extra = len(self.alerts) - self.settings.dashboard_alert_rows
        return [self.alerts.pop(event_id) for event_id in list(self.alerts)[: max(extra, 0)]]

    async def acknowledge(
        self, event_id: str, who: str, at: datetime, outcome: AckOutcome | None = None, note: str | None = None
    ) -> Alert:
        """Publish the event again with who acknowledged it, when, what they found; consumer_db persists it."""
        alert = self.alerts[event_id]
        return await publish_acknowledgement(
            self.bus, self.settings.alerts_topic, alert, who, at, outcome, note,
            maintenance_topic=self.settings.maintenance_topic,  # "part replaced" is a maintenance entry too
        )  # fmt: skip
