"""The sink: readings, alerts and dead letters from the bus into the database, in batches.

    collect a batch (bounded by size and time) -> write it in one transaction -> commit the offsets

The next batch is collected and decoded while the previous one's transaction runs, and its own
transaction starts before that one ends (consumer_db.turns). Offsets are
committed only after the transaction commits, so a crash loses nothing: what was not committed is
delivered again, and the writes are idempotent, so nothing is stored twice. While the database is away
the loop holds at most two batches (no further polling), retrying with a growing wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine

from common.errors import CommitFailed
from common.metrics import Health, Lag, count_by_topic, reason_class
from common.store.db import make_engine, safe_url
from common.wire.bus import Bus, Message, Subscription
from common.wire.schemas import RobotRoster
from consumer_db.axislock import AxisLock, known_robots
from consumer_db.decode import Topics
from consumer_db.migrate import migrate
from consumer_db.partitions import maintain
from consumer_db.retry import retry
from consumer_db.settings import ConsumerDbSettings
from consumer_db.sink import REFUSED, Prepared, Sink, WriteReport
from consumer_db.turns import PreviousNotWritten, Turn

logger = logging.getLogger(__name__)

POLL_S = 0.2  # the longest the loop waits on the bus before it looks at the stop event again
REPORT_EVERY_S = 10.0

MESSAGES_IN = Counter("axiswatch_consumer_db_messages_in_total", "Messages taken from the bus, by topic.", ["topic"])
WRITTEN = Counter(
    "axiswatch_consumer_db_written_total",
    "What committed transactions stored: new readings rows, readings rows already there, alert events, "
    "rejected records (bad readings and dead letters), health rows (cycles, rollups, forecasts), maintenance "
    "log entries.",
    ["kind"],
)
DEAD_LETTERS = Counter(
    "axiswatch_consumer_db_dead_letters_total",
    "Rejected records stored from decoded batches (bad readings, the dead-letter topic, messages the database "
    "refused), by reason class.",
    ["reason"],
)
LAG = Gauge("axiswatch_consumer_db_lag_messages", "Messages on the sink's partitions not fetched yet.")
TRANSACTION_SECONDS = Histogram(
    "axiswatch_consumer_db_transaction_seconds", "Duration of one batch's transaction (a successful try)."
)
BATCH_SECONDS = Histogram(
    "axiswatch_consumer_db_batch_seconds",
    "From a batch decoded to its offsets committed (waiting for its turn and retries included).",
)


async def run(
    settings: ConsumerDbSettings,
    *,
    bus: Bus,
    stop: asyncio.Event,
    engine: Engine | None = None,
    health: Health | None = None,
) -> None:
    """``health``: ready once subscribed and while the database answers; beaten once per batch."""
    health = health or Health()
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url, log_version=False)
    try:
        backoff = {
            "initial_s": settings.sink_retry_initial_s,
            "max_s": settings.sink_retry_max_s,
            "recycle": engine.dispose,  # after any failure: fresh sessions, not pooled ones (consumer_db.retry)
            "health": health,
        }
        if settings.migrate_on_start and not await retry(
            lambda: migrate_as_owner(settings, engine), stop=stop, what="migrate", **backoff
        ):
            return
        topics = Topics(
            settings.readings_topic,
            settings.alerts_topic,
            settings.dead_letter_topic,
            settings.health_topic,
            settings.maintenance_topic,
        )
        lock = AxisLock(engine, settings.axes, refresh_s=settings.axes_refresh_s)
        policy = settings.reading_policy()
        known = await retry(lambda: known_robots(engine), stop=stop, what="reading the robots known", **backoff)
        if known is None:
            return
        roster = RobotRoster(policy, known, service="consumer_db")
        sink = Sink(engine, lock, topics, copy_min_rows=settings.sink_copy_min_rows, policy=policy, roster=roster)
        await bus.ensure_topics(topics.all())
        subscription = await bus.subscribe(topics.all(), group_id=settings.sink_group_id)
        logger.info(
            "consumer_db: %s -> %s (group %s)", ", ".join(topics.all()), safe_url(engine), settings.sink_group_id
        )
        health.ready(True, "subscribed, database reachable")
        # What start-up made (modules, the engine, the lock: some 100,000 objects that live as long as the
        # process) is set aside from the garbage collector, which otherwise went over all of it again and again
        # as the batches' readings came and went (in-process, decoding a batch: 12.2 µs a reading, frozen 10.0).
        # Start-up's own garbage is collected first, so that none of it is kept for good.
        gc.collect()
        gc.freeze()
        partitions = asyncio.create_task(_maintain_partitions(engine, settings, stop))
        try:
            await _consume(subscription, sink, settings, stop, backoff)
        finally:
            health.ready(False, "stopping")
            partitions.cancel()
            await subscription.close()
    finally:
        if own_engine:
            engine.dispose()


async def _maintain_partitions(engine: Engine, settings: ConsumerDbSettings, stop: asyncio.Event) -> None:
    """Days made ahead and the retention applied (consumer_db.partitions), now and every
    PARTITION_MAINTENANCE_S; a failure is logged and tried again next time, the stream goes on."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(
                maintain,
                engine,
                ahead_days=settings.partitions_ahead_days,
                retention_days=settings.raw_retention_days,
            )
        except Exception:
            logger.exception(
                "readings partitions: maintenance failed; next try in %.0f s", settings.partition_maintenance_s
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.partition_maintenance_s)


def migrate_as_owner(settings: ConsumerDbSettings, engine: Engine) -> str:
    """Migrations run as the schema's owner (MIGRATION_DATABASE_URL) when one is set; the sink then writes
    as the services' role, which may not change the schema."""
    if settings.migration_database_url is None:
        return migrate(engine)
    owner = make_engine(settings.migration_database_url, log_version=False)
    try:
        return migrate(owner)
    finally:
        owner.dispose()


async def _consume(
    subscription: Subscription, sink: Sink, settings: ConsumerDbSettings, stop: asyncio.Event, backoff: dict
) -> None:
    """Collects and decodes the next batch while the previous one's transaction runs, and starts the next
    transaction before the previous one ends (its rows are written meanwhile: consumer_db.turns). Commits,
    and the offset commits after them, still go one at a time and in order; at most two batches are in
    hand."""
    total, last_report = WriteReport(), time.monotonic()
    writing: Writing | None = None  # the previous batch: its transaction, then its offset commit
    lag, health = Lag(LAG), backoff["health"]
    try:
        while not stop.is_set():
            health.beat()
            await lag.update(subscription)
            prepared = await _next_prepared(subscription, sink, settings, stop, backoff)
            previous, writing = writing, None
            if prepared is not None:
                writing = Writing.start(subscription, sink, prepared, previous, stop, backoff)
            if previous is not None:
                done = await previous.task
                if done is None:
                    break
                total.add(done)
            if time.monotonic() - last_report >= REPORT_EVERY_S:
                _log_report(total)
                last_report = time.monotonic()
    finally:
        if writing is not None and asyncio.current_task().cancelling():
            # Stopped by force (common.service): no waiting for its offset commit, which the gone broker would
            # hold for ever. Stored or not, its messages are delivered again, and stored again as they were.
            writing.task.cancel()
        elif writing is not None:  # stopping: the batch under way is finished and committed, not dropped
            total.add(await writing.task or WriteReport())
        _log_report(total)


async def _next_prepared(
    subscription: Subscription, sink: Sink, settings: ConsumerDbSettings, stop: asyncio.Event, backoff: dict
) -> Prepared | None:
    messages = await next_batch(
        subscription, stop, max_size=settings.sink_batch_size, max_wait_s=settings.sink_batch_ms / 1000
    )
    if not messages:
        return None
    count_by_topic(MESSAGES_IN, messages)
    return await retry(lambda: sink.prepare(messages), stop=stop, what=f"decoding {len(messages)} messages", **backoff)


@dataclass
class Writing:
    """A batch being written: its transaction in its turn, then its offset commit after the previous one's."""

    task: asyncio.Task[WriteReport | None]
    turn: Turn

    @classmethod
    def start(
        cls,
        subscription: Subscription,
        sink: Sink,
        prepared: Prepared,
        previous: Writing | None,
        stop: asyncio.Event,
        backoff: dict,
    ) -> Writing:
        turn = Turn(previous.turn if previous is not None else None)
        after = previous.task if previous is not None else None
        return cls(asyncio.create_task(_write(subscription, sink, prepared, turn, after, stop, backoff)), turn)


async def _write(
    subscription: Subscription,
    sink: Sink,
    prepared: Prepared,
    turn: Turn,
    after: asyncio.Task | None,
    stop: asyncio.Event,
    backoff: dict,
) -> WriteReport | None:
    count, report, started = len(prepared.messages), None, time.perf_counter()
    try:
        report = await retry(
            lambda: _timed_store(sink, prepared, turn), stop=stop, what=f"write of {count} messages", **backoff
        )
    except PreviousNotWritten:
        pass
    finally:
        turn.end(committed=report is not None)
    if report is None:
        logger.warning("stopped before %d messages could be written; they will be delivered again", count)
        return None
    if after is not None:
        await asyncio.wait([after])  # offsets are committed in order, never past an uncommitted batch's
    await commit(subscription, prepared.messages)
    BATCH_SECONDS.observe(time.perf_counter() - started)
    _count_written(report, prepared)
    return report


def _timed_store(sink: Sink, prepared: Prepared, turn: Turn) -> WriteReport:
    with TRANSACTION_SECONDS.time():
        return sink.store(prepared, turn)


def _count_written(report: WriteReport, prepared: Prepared) -> None:
    WRITTEN.labels("readings_new").inc(report.rows_new)
    WRITTEN.labels("readings_seen").inc(report.rows_seen)
    WRITTEN.labels("alerts").inc(report.alerts)
    WRITTEN.labels("rejected").inc(report.rejected)
    WRITTEN.labels("health").inc(report.health_rows)
    WRITTEN.labels("maintenance").inc(report.maintenance)
    for row in prepared.batch.rejected:
        DEAD_LETTERS.labels(reason_class(row["reason"])).inc()
    DEAD_LETTERS.labels(reason_class(REFUSED)).inc(report.refused)


async def next_batch(
    subscription: Subscription, stop: asyncio.Event, *, max_size: int, max_wait_s: float
) -> list[Message]:
    """Messages until the batch is full or ``max_wait_s`` has passed since its first one; an empty list
    when nothing came within one poll, so the caller can look at ``stop``."""
    loop = asyncio.get_running_loop()
    messages: list[Message] = []
    deadline: float | None = None
    while len(messages) < max_size and not stop.is_set():
        wait = POLL_S if deadline is None else min(POLL_S, deadline - loop.time())
        if wait <= 0:
            break
        got = await subscription.getmany(timeout_ms=max(1, int(wait * 1000)), max_records=max_size - len(messages))
        if got:
            messages += got
            deadline = deadline if deadline is not None else loop.time() + max_wait_s
        elif deadline is None:
            break
    return messages


async def commit(subscription: Subscription, messages: list[Message]) -> None:
    try:
        await subscription.commit(messages)
    except CommitFailed as exc:
        # E.g. after a rebalance: the new owner gets these messages again, and
        # writing them again changes nothing, so going on is safe.
        logger.warning("offset commit failed (%s); the messages will be delivered again, harmlessly", exc)


def _log_report(total: WriteReport) -> None:
    if total.messages:
        logger.info(
            "written so far: %d messages, %d readings (%d rows new, %d already there), %d alert events, "
            "%d rejected (%d of them conflicts)",
            total.messages,
            total.readings,
            total.rows_new,
            total.rows_seen,
            total.alerts,
            total.rejected,
            total.conflicts,
        )
