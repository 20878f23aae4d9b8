"""The detector service: readings in, alert events out, offsets committed once the events are safe.

    restore state -> loop { readings -> engine -> alert events -> wait for the bus's ack
                            -> every SNAPSHOT_INTERVAL_S: snapshot, then commit }

The commit comes after the acknowledgement so a crash in between re-processes readings rather than
losing an event; the re-processed readings re-derive the same event ids, and events the alerts topic
already has are not sent again. Offsets are committed only together with a snapshot of the detectors, so
that after a crash the readings are replayed from the state the snapshot holds: with offsets committed
past it, the detectors would resume from a stale state and raise or close events an uninterrupted run
would not (tests/integration/test_faults_alerts_restart.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiokafka.errors import CommitFailedError, IllegalStateError

from common.bus import Bus, Message, Subscription
from common.errors import SchemaError
from common.schemas import Alert, Reading
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.engine_state import restore_events
from consumer_alerts.model import AlertModel
from consumer_alerts.recovery import already_sent, latest_alerts, read_snapshot, remember, write_snapshot
from consumer_alerts.settings import AlertsSettings

logger = logging.getLogger(__name__)


def build_engine(settings: AlertsSettings) -> DetectorEngine:
    model = AlertModel.load(settings.model_path) if settings.model_path else None
    if model is not None:
        logger.info("model %s: %s kind, robot %s, axes %s", settings.model_path, model.kind, model.robot_id,
                    ",".join(map(str, model.axes)))
    elif "residual" in settings.detectors:
        logger.info("no MODEL_PATH: the residual detector is off (train one with `python -m consumer_alerts train`)")
    return DetectorEngine(EngineConfig.from_settings(settings), model)


async def run(settings: AlertsSettings, *, bus: Bus, stop: asyncio.Event, engine: DetectorEngine | None = None) -> None:
    """Run until ``stop`` is set. ``engine`` is a :class:`DetectorEngine` to use (anything else, such as
    a database engine handed to every service alike, is ignored: this service needs no database)."""
    detectors = engine if isinstance(engine, DetectorEngine) else build_engine(settings)
    await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])
    sent = await restore(detectors, bus, settings)
    state_path = settings.state_path
    sub = await bus.subscribe([settings.readings_topic], group_id=settings.alerts_group_id)
    last_snapshot, done = time.monotonic(), []
    try:
        while not stop.is_set():
            messages = await sub.getmany(timeout_ms=settings.poll_timeout_ms, max_records=settings.max_batch)
            if messages:
                alerts = [a for a in process(detectors, messages) if not already_sent(a, sent)]
                await publish(bus, settings.alerts_topic, alerts)
                remember(sent, alerts)
                done += messages
            if done and (not state_path or time.monotonic() - last_snapshot >= settings.snapshot_interval_s):
                state_path = await checkpoint(detectors, sub, done, state_path)
                last_snapshot, done = time.monotonic(), []
        await checkpoint(detectors, sub, done, state_path)  # not after a failure: the last snapshot stands
    finally:
        await sub.close()
        logger.info("consumer_alerts stopped; %d event(s) open", len(detectors.open_events()))


async def checkpoint(detectors: DetectorEngine, sub: Subscription, done: list[Message],
                     state_path: Path | None) -> Path | None:
    """Snapshot, then commit the readings it reflects; returns the state path still in use (None once a
    snapshot could not be written: then every batch is committed, and a restart warms up again)."""
    if state_path and not write_snapshot(detectors, state_path):
        state_path = None
    if done:
        try:
            await sub.commit(done)
        except (CommitFailedError, IllegalStateError) as exc:  # a rebalance moved the partitions away
            logger.warning("offset commit failed (%s); the new owner re-reads those readings", exc)
    return state_path


async def restore(engine: DetectorEngine, bus: Bus, settings: AlertsSettings) -> dict[str, Alert]:
    """The detectors' state and open events from the snapshot, else the open events from the alerts topic;
    returns what was sent. A snapshot is the state at the committed offsets, and replaying the readings
    after them re-derives every later event; the topic then only says what need not be sent again."""
    from_snapshot = read_snapshot(engine, settings.state_path)
    sent = await latest_alerts(bus, settings.alerts_topic)
    restored = len(engine.open_events()) if from_snapshot else restore_events(engine, sent.values())
    logger.info("alerts topic read back: %d event(s), %d open one(s) taken over", len(sent), restored)
    return sent


def process(engine: DetectorEngine, messages: list[Message]) -> list[Alert]:
    out: list[Alert] = []
    for message in messages:
        try:
            reading = Reading.from_bytes(message.value)
        except SchemaError as exc:
            # consumer_db records bad readings in rejected_readings; here they only cannot be judged.
            logger.warning("%s/%d offset %d skipped: %s", message.topic, message.partition, message.offset, exc)
            continue
        out += engine.process(reading)
    return out


async def publish(bus: Bus, topic: str, alerts: list[Alert]) -> None:
    """Send every event keyed by robot id and wait until the bus has acknowledged them all."""
    pending = [await bus.send(topic, alert.robot_id, alert.to_bytes()) for alert in alerts]
    if pending:
        await asyncio.gather(*pending)
        for alert in alerts:
            logger.info("event %s %s: %s, peak %.2f A", alert.event_id, alert.state, alert.severity, alert.peak_amps or 0)
