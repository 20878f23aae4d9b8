"""The notifier service: two short loops on one database.

    follow:  alert messages -> record (one transaction: events merged, deliveries added) -> commit offsets
             every NOTIFIER_REMINDER_CHECK_S: reminders due -> deliveries added
    send:    per channel, its own loop: deliveries due -> claim -> in order: attempt (counted first) -> send
             -> outcome recorded

Offsets cover the recording, not the sending: a delivery once recorded is the database's to keep, so a slow
or dead receiver never holds the topic back, and a restart finds what was not sent yet where it was left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from common.errors import CommitFailed, SchemaError
from common.metrics import Health, Lag, count_by_topic, reason_class
from common.store.db import make_engine, safe_url
from common.wire.bus import Bus, Message, Subscription
from common.wire.schemas import Alert
from notifier import store
from notifier.channels import Notice, Permanent, Sender, sender_for
from notifier.config import Channel, ChannelFile, load_channels
from notifier.settings import NotifierSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
LEASE_MARGIN_S = 30.0  # a claim outlives its attempt's timeout by this much before another sender may take it
IDLE_WAIT_S = 1.0  # the sender looks for due deliveries (quiet hours ending) at least this often

MESSAGES_IN = Counter("axiswatch_notifier_messages_in_total", "Messages taken from the bus, by topic.", ["topic"])
SKIPPED = Counter(
    "axiswatch_notifier_skipped_total",
    "Alert messages that could not be read (consumer_db keeps them as rejected records), by reason class.",
    ["reason"],
)
RAISED = Counter(
    "axiswatch_notifier_raised_total", "Deliveries recorded, by channel and change kind.", ["channel", "change"]
)
DELIVERIES = Counter(
    "axiswatch_notifier_deliveries_total",
    "Delivery attempts by channel and outcome: sent, retried (failed, another attempt follows), failed (given up).",
    ["channel", "outcome"],
)
TOO_OLD = Counter(
    "axiswatch_notifier_too_old_total", "Changes recorded but not notified: older than NOTIFIER_MAX_AGE_S when read."
)
LAG = Gauge("axiswatch_notifier_lag_messages", "Messages on the notifier's partitions not fetched yet.")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Stopping(Exception):
    """Raised out of a wait between two attempts when the service stops."""


async def run(
    settings: NotifierSettings,
    *,
    bus: Bus,
    stop: asyncio.Event,
    engine: Engine | None = None,
    health: Health | None = None,
    config: ChannelFile | None = None,
) -> None:
    """``config``: the channels (tests); by default read from NOTIFIER_CONFIG."""
    health = health or Health()
    config = config or load_channels(settings.notifier_config)
    senders = {c.name: sender_for(c, settings.notifier_send_timeout_s) for c in config.channels}
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url, log_version=False)
    try:
        if not await _tables_ready(engine, settings, stop, health):
            return
        await bus.ensure_topics([settings.alerts_topic])
        subscription = await bus.subscribe([settings.alerts_topic], group_id=settings.notifier_group_id)
        logger.info(
            "notifier: %s -> %s (group %s), channels %s",
            settings.alerts_topic,
            safe_url(engine),
            settings.notifier_group_id,
            ", ".join(senders) or "none",
        )
        health.ready(True, "subscribed, database reachable")
        due = {c.name: asyncio.Event() for c in config.channels}  # set: deliveries were added, look now
        sending = [
            asyncio.create_task(_send_loop(engine, c, senders[c.name], settings, stop, due[c.name]), name=c.name)
            for c in config.channels
        ]
        try:
            await _follow(subscription, engine, config, settings, stop, health, list(due.values()))
        finally:
            health.ready(False, "stopping")
            stop.set()
            await asyncio.gather(*sending)
            await subscription.close()
    finally:
        if own_engine:
            engine.dispose()


async def _tables_ready(engine: Engine, settings: NotifierSettings, stop: asyncio.Event, health: Health) -> bool:
    """Waits for the notifier's tables: consumer_db's migrations make them (the notifier runs as the services'
    role, which may not change the schema)."""
    while not stop.is_set():
        health.beat()
        try:
            missing = await asyncio.to_thread(store.tables_missing, engine)
        except Exception as exc:  # noqa: BLE001 - the database is away: wait for it
            missing, why = ["?"], f"database not reachable: {type(exc).__name__}"
        else:
            why = f"waiting for consumer_db's migrations to make {', '.join(missing)}"
        if not missing:
            return True
        health.ready(False, why)
        logger.warning("notifier: %s", why)
        await _wait(stop, settings.notifier_db_retry_s)
    return False


async def _follow(
    subscription: Subscription,
    engine: Engine,
    config: ChannelFile,
    settings: NotifierSettings,
    stop: asyncio.Event,
    health: Health,
    due: list[asyncio.Event],
) -> None:
    lag, next_reminders = Lag(LAG), 0.0
    while not stop.is_set():
        health.beat()
        await lag.update(subscription)
        messages = await subscription.getmany(
            timeout_ms=settings.notifier_poll_ms, max_records=settings.notifier_batch_size
        )
        if messages:
            count_by_topic(MESSAGES_IN, messages)
            alerts, published = _alerts(messages)
            max_age = timedelta(seconds=settings.notifier_max_age_s)
            work = functools.partial(store.record, published=published, max_age=max_age)
            recorded = await _with_db(settings, stop, health, work, engine, alerts, config)
            if recorded is None:
                return  # stopping before the batch was recorded: its offsets stay uncommitted
            raised = recorded.raised
            _count_raised(raised)
            if recorded.too_old:
                TOO_OLD.inc(recorded.too_old)
                logger.info(
                    "notifier: %d changes older than NOTIFIER_MAX_AGE_S recorded, not notified", recorded.too_old
                )
            try:
                await subscription.commit(messages)
            except CommitFailed as exc:  # they come again; recording them again changes nothing
                logger.warning("notifier: offsets not committed (%s); the messages will be read again", exc)
            _wake(due, raised)
        if time.monotonic() >= next_reminders:
            next_reminders = time.monotonic() + settings.notifier_reminder_check_s
            raised = await _with_db(settings, stop, health, store.schedule_reminders, engine, config)
            if raised:
                _count_raised(raised)
                _wake(due, raised)


def _alerts(messages: list[Message]) -> tuple[list[Alert], list[datetime | None]]:
    """The readable alert messages and when the bus took each; the others are skipped with the reason
    (consumer_db, on the same topic, stores them as rejected records: one copy is enough)."""
    alerts, published = [], []
    for m in messages:
        try:
            alerts.append(Alert.from_bytes(m.value))
        except SchemaError as exc:
            SKIPPED.labels(reason_class(str(exc))).inc()
            logger.warning("notifier: skipped %s[%d]@%d: %r", m.topic, m.partition, m.offset, store.cut(str(exc)))
            continue
        published.append(None if m.timestamp_ms is None else datetime.fromtimestamp(m.timestamp_ms / 1000, UTC))
    return alerts, published


def _wake(due: list[asyncio.Event], raised: list[store.Raised]) -> None:
    if raised:
        for event in due:
            event.set()


def _count_raised(raised: list[store.Raised]) -> None:
    for r in raised:
        RAISED.labels(r.channel, r.change.split("-", 1)[0]).inc()


async def _with_db(
    settings: NotifierSettings, stop: asyncio.Event, health: Health, work: Callable[..., T], *args: object
) -> T | None:
    """``work(*args, now)`` in a thread, tried again while the database fails; None when the service stops first."""
    while not stop.is_set():
        try:
            result = await asyncio.to_thread(work, *args, utcnow())
        except Exception as exc:  # noqa: BLE001 - the database is away or refused: the loop waits and tries again
            health.ready(False, f"database: {type(exc).__name__}")
            logger.warning(
                "notifier: database call failed (%s); trying again", store.cut(f"{type(exc).__name__}: {exc}")
            )
            health.beat(waiting_s=settings.notifier_db_retry_s)
            await _wait(stop, settings.notifier_db_retry_s)
            continue
        health.ready(True, "subscribed, database reachable")
        return result
    return None


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _send_loop(
    engine: Engine,
    channel: Channel,
    sender: Sender,
    settings: NotifierSettings,
    stop: asyncio.Event,
    due: asyncio.Event,
) -> None:
    """One channel's sender: its own loop, so a receiver that is down (retries for minutes) holds back only
    its own channel."""
    while not stop.is_set():
        due.clear()
        try:
            claimed = await asyncio.to_thread(store.claim_due, engine, channel.name, utcnow(), _lease(settings, 0.0))
        except Exception as exc:  # noqa: BLE001 - the database is away: the follow loop says so; try again
            logger.warning("notifier: due deliveries not read (%s)", store.cut(f"{type(exc).__name__}: {exc}"))
            claimed = []
        if claimed:
            await _deliver_in_order(engine, channel, sender, claimed, settings, stop)
            continue
        try:
            await asyncio.wait_for(due.wait(), IDLE_WAIT_S)
        except TimeoutError:
            pass


def _lease(settings: NotifierSettings, wait_s: float) -> timedelta:
    return timedelta(seconds=settings.notifier_send_timeout_s + LEASE_MARGIN_S + wait_s)


async def _deliver_in_order(
    engine: Engine,
    channel: Channel,
    sender: Sender,
    rows: list[store.Claimed],
    settings: NotifierSettings,
    stop: asyncio.Event,
) -> None:
    """One channel's deliveries one after the other: an escalation never overtakes its opening."""
    for n, claimed in enumerate(rows):
        if stop.is_set():  # not started: free for the next start at once
            await asyncio.to_thread(store.release, engine, rows[n:], utcnow())
            return
        try:
            await _deliver(engine, channel, sender, claimed, settings, stop)
        except Stopping:
            await asyncio.to_thread(store.release, engine, rows[n:], utcnow())
            return
        except Exception as exc:  # noqa: BLE001 - recording failed: the claim runs out and the row goes again
            logger.warning(
                "notifier: delivery %d not recorded (%s)", claimed.id, store.cut(f"{type(exc).__name__}: {exc}")
            )


class Failed(Exception):
    """An attempt that failed, already recorded; ``permanent``: no other attempt can help."""

    def __init__(self, permanent: bool, hold: datetime | None) -> None:
        super().__init__("permanent" if permanent else "may pass later")
        self.permanent, self.hold = permanent, hold  # hold: the claim kept over the wait, the next token


async def _deliver(
    engine: Engine,
    channel: Channel,
    sender: Sender,
    claimed: store.Claimed,
    settings: NotifierSettings,
    stop: asyncio.Event,
) -> None:
    """Attempts until one passes, one fails for good, or the channel's attempts are spent (those made before a
    restart count); the wait between them doubles (tenacity), and a stop cuts it short."""
    if claimed.interrupted:
        logger.warning(
            "notifier: delivery %d (%s, %s) was being sent when its sender stopped: sending it again",
            claimed.id,
            claimed.channel,
            claimed.change,
        )
    notice = Notice(claimed.id, claimed.change, claimed.channel, claimed.alert, claimed.created_at)
    left = max(1, channel.retry.attempts - claimed.attempts)

    async def sleep(seconds: float) -> None:
        if await _stopped_within(stop, seconds):
            raise Stopping

    retrying = AsyncRetrying(
        stop=stop_after_attempt(left),
        wait=wait_exponential(multiplier=channel.retry.initial_s, max=channel.retry.max_s),
        retry=retry_if_exception(lambda exc: isinstance(exc, Failed) and not exc.permanent),
        sleep=sleep,
        reraise=True,
    )
    token = claimed.claim
    try:
        async for attempt in retrying:
            with attempt:
                begun = await asyncio.to_thread(
                    store.begin_attempt, engine, claimed, token, utcnow(), _lease(settings, 0.0)
                )
                if begun is None:
                    logger.info("notifier: delivery %d was taken over by another sender", claimed.id)
                    return
                number, token = begun
                last = attempt.retry_state.attempt_number >= left
                try:
                    await _attempt(engine, channel, sender, claimed, notice, number, last, settings)
                except Failed as failed:
                    token = failed.hold
                    raise
    except Failed:
        return


async def _attempt(
    engine: Engine,
    channel: Channel,
    sender: Sender,
    claimed: store.Claimed,
    notice: Notice,
    number: int,
    last: bool,
    settings: NotifierSettings,
) -> None:
    try:
        await asyncio.wait_for(sender.send(notice), settings.notifier_send_timeout_s)
    except Exception as exc:  # noqa: BLE001 - every failure of a send is recorded and judged
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        final = last or isinstance(exc, Permanent)
        outcome = "failed" if final else "retried"
        hold = None if final else utcnow() + _lease(settings, channel.retry.max_s)
        await asyncio.to_thread(store.end_attempt, engine, claimed, number, outcome, error, utcnow(), hold)
        DELIVERIES.labels(channel.name, outcome).inc()
        (logger.error if final else logger.warning)(
            "notifier: delivery %d to %s, attempt %d %s: %s",
            claimed.id,
            channel.name,
            number,
            outcome,
            store.cut(error),
        )
        raise Failed(isinstance(exc, Permanent), hold) from exc
    await asyncio.to_thread(store.end_attempt, engine, claimed, number, "sent", None, utcnow())
    DELIVERIES.labels(channel.name, "sent").inc()
    logger.info("notifier: delivery %d (%s) sent to %s", claimed.id, claimed.change, channel.name)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
