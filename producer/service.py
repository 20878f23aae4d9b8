"""The producer's loop: rows from the feed, paced, to the readings topic; bad rows to the dead letters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Histogram
from sqlalchemy import Engine

from common.metrics import Health, reason_class
from common.wire.bus import Bus
from common.wire.schemas import DeadLetter, Reading
from producer.ahead import ReadAhead
from producer.faults import write_labels
from producer.feed import Feed, open_feed
from producer.pacing import Clock, MonotonicClock, Pacer, PacingOptions
from producer.report import ProducerReport
from producer.sender import Sender
from producer.settings import ProducerSettings

logger = logging.getLogger(__name__)

YIELD_EVERY = 256  # rows between two visits to the event loop at max speed (signals, other services)

ROWS_IN = Counter("axiswatch_producer_rows_in_total", "Rows (readings and bad rows) taken from the feed.")
MESSAGES_OUT = Counter("axiswatch_producer_messages_out_total", "Messages handed to the bus, by topic.", ["topic"])
DEAD_LETTERS = Counter(
    "axiswatch_producer_dead_letters_total", "Rows sent to the dead letters, by reason class.", ["reason"]
)
PUSH_SECONDS = Histogram(
    "axiswatch_producer_push_seconds", "Time to hand a tick's queued batches to the bus before the pacing wait."
)


def pacing_options(settings: ProducerSettings) -> PacingOptions:
    # A spread fleet's rows are due at their own time stamps (each robot at its phase), a slice's together.
    if settings.spread_robots and settings.csv_path is None and settings.replay_speed is None:
        return PacingOptions(settings.tick_seconds, 1.0, settings.max_speed, settings.catch_up, settings.spread_slice_s)
    return PacingOptions(settings.tick_seconds, settings.replay_speed, settings.max_speed, settings.catch_up)


async def run(
    settings: ProducerSettings,
    *,
    bus: Bus,
    stop: asyncio.Event,
    source: Iterator[Reading | DeadLetter] | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    progress: Callable[[int], None] | None = None,
    dry_run: bool = False,
    health: Health | None = None,
) -> ProducerReport:
    """Publish ``source`` (default: the feed the settings describe) until it ends or ``stop`` is set;
    flush and wait for the broker's confirmations (at most ``shutdown_timeout_s``) before returning.
    ``dry_run``: the bus writes the messages out instead of sending them; the report says so.
    ``health``: ready once the topics are there, beaten once per row."""
    health = health or Health()
    clock = clock or MonotonicClock()
    feed = None if source is not None else await asyncio.to_thread(open_feed, settings, engine=engine)
    items = source if feed is None else feed.items
    report = ProducerReport(source=feed.description if feed else "feed", dry_run=dry_run)
    pacing = pacing_options(settings)
    logger.info("producing %s to %s, pacing: %s", report.source, settings.readings_topic, pacing.describe())
    await bus.ensure_topics([settings.readings_topic, settings.dead_letter_topic])
    health.ready(True, "topics ready, producing")
    sender = Sender(bus, stop=stop, max_in_flight=settings.max_in_flight)
    pacer = Pacer(pacing, clock)
    started = clock.now()
    try:
        await _publish(items, settings, sender, pacer, report, stop, progress, health)
    finally:
        health.ready(False, "stopping")
        report.stopped = stop.is_set()
        await _finish(sender, settings, report)
        report.late_ticks, report.elapsed_s = pacer.late_ticks, clock.now() - started
        if feed is not None and feed.labels is not None and settings.labels_out is not None:
            await asyncio.to_thread(_write_labels, feed, settings, report)
    logger.info("%s", report.summary().replace("\n", "; "))
    return report


async def _publish(
    items, settings, sender: Sender, pacer: Pacer, report: ProducerReport, stop, progress, health: Health
) -> None:
    max_speed, clock = pacer.options.max_speed, pacer.clock
    ahead = ReadAhead(items, clock)
    readings_out, dead_letters_out = (
        MESSAGES_OUT.labels(t) for t in (settings.readings_topic, settings.dead_letter_topic)
    )
    for count, (item, value) in enumerate(ahead, 1):
        if stop.is_set():
            return
        ROWS_IN.inc()
        health.beat()
        if isinstance(item, DeadLetter):
            report.reject(item)
            DEAD_LETTERS.labels(reason_class(item.reason)).inc()
            await sender.send(settings.dead_letter_topic, item.robot_id or item.source, value)
            dead_letters_out.inc()
            continue
        delay = pacer.delay(item.robot_id, item.ts)
        if delay > 0:
            due = clock.now() + delay
            health.beat(delay)
            if delay >= sender.linger_s:  # a row due sooner joins the open batch (the sender's linger ships it)
                with PUSH_SECONDS.time():
                    await sender.push()  # what was queued goes out before the wait, not after it
            # The rest of the tick is made midway through the wait: not while the consumers are busy with
            # the tick just sent, and in good time for its own.
            await clock.sleep(delay / 2, stop)
            await ahead.fill(item, due - delay / 4, stop)
            await clock.sleep(max(due - clock.now(), 0.0), stop)
            if stop.is_set():
                return  # stopped while waiting: this row was not sent
        await sender.send(settings.readings_topic, item.robot_id, value)
        readings_out.inc()
        report.saw(item.ts)
        if progress is not None:
            progress(1)
        if max_speed and count % YIELD_EVERY == 0:
            await asyncio.sleep(0)


async def _finish(sender: Sender, settings: ProducerSettings, report: ProducerReport) -> None:
    """Flush and collect the confirmations; whatever the broker has not confirmed by the deadline is
    reported as NOT sent (never counted as sent)."""
    try:
        if not asyncio.current_task().cancelling():  # stopped by force (common.service): no more waiting
            async with asyncio.timeout(settings.shutdown_timeout_s):
                await sender.drain()
    except TimeoutError:
        logger.error(
            "the broker did not confirm %d messages within %.0f s", sender.unconfirmed, settings.shutdown_timeout_s
        )
    finally:
        if asyncio.current_task().cancelling():
            logger.error(
                "stopped by force: %d messages not confirmed by the broker, NOT counted as sent", sender.unconfirmed
            )
    report.readings_confirmed = sender.confirmed[settings.readings_topic]
    report.dead_letters_confirmed = sender.confirmed[settings.dead_letter_topic]
    report.unconfirmed = sender.unconfirmed


def _write_labels(feed: Feed, settings: ProducerSettings, report: ProducerReport) -> None:
    if report.last_ts is None:
        return
    labels = [lab for lab in feed.labels(report.last_ts) if lab.start <= report.last_ts]
    write_labels(labels, settings.labels_out)
    logger.info("wrote %d fault labels to %s", len(labels), settings.labels_out)
