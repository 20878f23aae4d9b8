"""The detector service: readings in, alert events out, offsets committed once the events are safe.

    subscribe (partitions handed over: their robots' state from the state topic, the alerts topic read back)
    -> loop { readings -> engine -> alert events -> wait for the bus's ack
              -> every SNAPSHOT_INTERVAL_S: the changed robots' state to the state topic, then commit }

(the checkpoint is taken between batches without holding them up: consumer_alerts/checkpoint.py; the health
state's save likewise: consumer_alerts/health/state.py)

Several instances share the readings topic's partitions in one consumer group. A robot's detectors'
state lives on the compacted state topic (ALERTS_STATE_TOPIC) and moves with its partition: the instance
giving a partition up writes its state and commits its offsets first, the one taking it restores that state
before judging its first reading. The commit comes after the acknowledgement so a crash in between
re-processes readings rather than losing an event; the re-processed readings re-derive the same event ids,
and events the alerts topic already has are not sent again. Offsets are committed only together with the
state they lead to, so that after a crash the readings are replayed from that state: with offsets committed
past it, the detectors would resume from a stale state and raise or close events an uninterrupted run would
not (tests/integration/test_faults_alerts_restart.py, test_alerts_scale_out.py).

The maintenance log's entries come in the same subscription (consumer_alerts.maintenance): a part replaced
restarts its axis between two readings, and its offset too is committed only with a checkpoint.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from common.errors import SchemaError
from common.metrics import Health, Lag, reason_class
from common.wire.bus import Bus, Message, let_out
from common.wire.schemas import (
    DEFAULT_POLICY,
    Alert,
    DeadLetter,
    ReadingPolicy,
    ReadingValues,
    RobotRoster,
    raw_excerpt,
)
from consumer_alerts.checkpoint import Checkpoints, PartitionOwnership
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.health.monitor import HealthConfig, HealthMonitor
from consumer_alerts.health.state import StateSaver, health_state_path, load
from consumer_alerts.maintenance import MaintenanceFollower
from consumer_alerts.model import AlertModel
from consumer_alerts.recovery import already_sent, latest_alerts, remember
from consumer_alerts.settings import AlertsSettings

logger = logging.getLogger(__name__)

MESSAGES_IN = Counter(
    "axiswatch_consumer_alerts_messages_in_total", "Messages taken from the bus: readings and maintenance entries."
)
MESSAGES_OUT = Counter(
    "axiswatch_consumer_alerts_messages_out_total", "Messages sent: alert events and dead letters, by topic.", ["topic"]
)
ALERT_EVENTS = Counter(
    "axiswatch_consumer_alerts_alert_events_total", "Alert events sent, by severity and state.", ["severity", "state"]
)
SKIPPED = Counter(
    "axiswatch_consumer_alerts_skipped_total",
    "Readings messages that could not be read, by reason class (consumer_db keeps them as rejected).",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "axiswatch_consumer_alerts_dead_letters_total", "Readings turned into dead letters, by reason class.", ["reason"]
)
LAG = Gauge("axiswatch_consumer_alerts_lag_messages", "Readings on the service's partitions not fetched yet.")
BATCH_SECONDS = Histogram(
    "axiswatch_consumer_alerts_batch_seconds", "From a batch polled to its events acknowledged by the bus."
)


def build_engine(settings: AlertsSettings) -> DetectorEngine:
    model = AlertModel.load(settings.model_path) if settings.model_path else None
    if model is not None:
        logger.info(
            "model %s: %s kind, robot %s, axes %s",
            settings.model_path,
            model.kind,
            model.robot_id,
            ",".join(map(str, model.axes)),
        )
    elif "residual" in settings.detectors:
        logger.info("no MODEL_PATH: the residual detector is off (train one with `python -m consumer_alerts train`)")
    return DetectorEngine(EngineConfig.from_settings(settings), model)


async def run(
    settings: AlertsSettings,
    *,
    bus: Bus,
    stop: asyncio.Event,
    engine: DetectorEngine | None = None,
    health: Health | None = None,
) -> None:
    """Run until ``stop`` is set. ``engine`` is a :class:`DetectorEngine` to use (anything else, such as
    a database engine handed to every service alike, is ignored: this service needs no database).
    ``health``: ready once the group's partitions for this instance are restored (``PartitionOwnership``), beaten
    once per poll."""
    health, lag = health or Health(), Lag(LAG)
    detectors = engine if isinstance(engine, DetectorEngine) else build_engine(settings)
    await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])
    await bus.ensure_topics([settings.dead_letter_topic, settings.maintenance_topic])
    await bus.ensure_topics([settings.alerts_state_topic], compacted=True)
    sent: dict[str, Alert] = {}
    policy = settings.reading_policy()
    intake = Intake(
        policy, RobotRoster(policy, detectors.robots, service="consumer_alerts"), settings.dead_letter_topic
    )
    # --- health pipeline (issue 22): its events on HEALTH_TOPIC, its maintenance_due alerts with the others
    saver = None
    if settings.health:
        await bus.ensure_topics([settings.health_topic])
        intake.health, intake.health_topic = HealthMonitor(HealthConfig.from_settings(settings)), settings.health_topic
        load(intake.health, health_state_path(settings))
        saver = StateSaver(intake.health, health_state_path(settings), settings.snapshot_interval_s)
    # --- end health pipeline
    # The maintenance log rides in the readings' subscription: its offsets too wait for the snapshot.
    intake.maintenance = MaintenanceFollower(settings.maintenance_topic, detectors, policy, intake.health)
    checkpoints = Checkpoints(
        detectors, bus, settings.alerts_state_topic, settings.readings_topic, settings.snapshot_interval_s
    )

    async def read_back_alerts(partitions: set[int]) -> None:
        """Partitions taken over: what is on the alerts topic now, another instance's events included, is
        what need not be sent again when their readings since the last commit are judged again."""
        sent.clear()
        sent.update(await latest_alerts(bus, settings.alerts_topic))
        logger.info("alerts topic read back: %d event(s)", len(sent))

    # A batch is judged under the lock, so a rebalance takes the state between two batches, never inside one.
    batch_lock = asyncio.Lock()
    ownership = PartitionOwnership(checkpoints, batch_lock, read_back_alerts, health)
    health.ready(False, f"waiting for consumer group {settings.alerts_group_id} to hand this instance its partitions")
    sub = checkpoints.sub = await bus.subscribe(
        [settings.readings_topic, settings.maintenance_topic], group_id=settings.alerts_group_id, on_rebalance=ownership
    )
    try:
        while not stop.is_set():
            health.beat()
            await lag.update(sub)
            # While a checkpoint or the health state's save is under way, its slices run between polls: do not
            # sleep on an empty one.
            busy = checkpoints.busy or (saver is not None and saver.busy)
            timeout_ms = 1 if busy else settings.poll_timeout_ms
            messages = await sub.getmany(timeout_ms=timeout_ms, max_records=settings.max_batch)
            ownership.check()
            async with batch_lock:
                messages = ownership.still_held(messages)  # a rebalance may have come between poll and lock
                if messages:
                    MESSAGES_IN.inc(len(messages))
                    alerts = await process_and_send(
                        detectors,
                        messages,
                        bus,
                        settings.alerts_topic,
                        sent,
                        before=checkpoints.before_reading,
                        intake=intake,
                    )
                    remember(sent, alerts)
                if saver is not None:
                    await saver.after_batch(after_readings=bool(messages))
                await checkpoints.after_batch(messages)
        async with batch_lock:
            await checkpoints.flush()  # not after a failure: the last checkpoint stands
        if saver is not None:
            await saver.after_batch(force=True)
    finally:
        health.ready(False, "stopping")
        checkpoints.cancel()
        await sub.close()
        logger.info("consumer_alerts stopped; %d event(s) open", len(detectors.open_events()))


@dataclass
class Intake:
    """What the detectors take from the readings topic: plausible readings (``policy``) of robots there is
    room for (``roster``). A refused robot, or a reading the engine fails on, goes to the dead letters."""

    policy: ReadingPolicy = DEFAULT_POLICY
    roster: RobotRoster = field(default_factory=lambda: RobotRoster(DEFAULT_POLICY, service="consumer_alerts"))
    dead_letter_topic: str | None = None  # None (offline, tests): dead letters are only logged
    health: HealthMonitor | None = None  # the health pipeline, when on: its alerts join the detectors'
    health_topic: str | None = None  # where its health events go (None: they stay in its outbox)
    maintenance: MaintenanceFollower | None = None  # the maintenance log, when followed (part replaced: restart)
    robots_frozen: int = 0  # the engine's robot count at the last gc.freeze (freeze_new_robots)


# Robots made (first readings, or state restored) between two freezes at most. Each robot is ~500 objects the
# collector tracks: at 1,000 robots made cold, its full collections rescanned them all ever more often, and
# held the loop up to 4 s (docs/benchmarks.md, 2b). Frozen, they are never scanned again; they hold no
# reference cycles, so a robot dropped later is still freed by its reference count.
FREEZE_EVERY_ROBOTS = 50


def freeze_new_robots(engine: DetectorEngine, frozen: int) -> int:
    """Move every object alive to the collector's permanent generation once ``FREEZE_EVERY_ROBOTS`` robots
    were made since ``frozen`` robots were; returns the count to pass next time."""
    robots = len(engine.robots)
    if robots >= frozen + FREEZE_EVERY_ROBOTS:
        gc.freeze()
        return robots
    return min(frozen, robots)  # robots dropped (handed over): count the next ones from here


SHIP_EVERY_S = 0.010  # judging between two shipments of events at most: how long an event may wait for company
# Judging between two turns of the event loop at most, events or not: the Kafka client's heartbeats run on
# this loop, and a batch judged in one go at 1,000 robots on a busy machine outlasted the group's session
# timeout (10 s): the broker dropped the member, and the rebalance's full checkpoint held the loop again.
TURN_EVERY_S = 0.100


async def process_and_send(
    engine: DetectorEngine,
    messages: list[Message],
    bus: Bus,
    topic: str,
    sent: dict[str, Alert],
    *,
    before: Callable[[str, int], None],
    intake: Intake | None = None,
) -> list[Alert]:
    """Process the batch, shipping its events while it is judged, then wait until the bus has acknowledged
    them all. An event goes out at once (``let_out``) when nothing was shipped in the last ``SHIP_EVERY_S``
    of judging, else it waits that long at most for company: a produce request per event of a faulty tick
    held every later event of the tick up (docs/benchmarks.md, "Shipping events in company"). Without
    events, the loop still gets its turns every ``TURN_EVERY_S``.

    While the last event sent is not acknowledged, the loop also gets one turn after each reading: the Kafka
    client keeps one produce request in flight per broker and reads the broker's answer on this loop, so the
    events shipped after it went out only once a turn came for that answer, up to ``TURN_EVERY_S`` later
    (docs/consumer_alerts.md, "Latency of an event")."""
    started = time.perf_counter()
    alerts: list[Alert] = []
    pending: list[asyncio.Future] = []
    last_event: asyncio.Future | None = None  # the last alert event sent, until the bus acknowledges it
    shipped_at, unshipped = float("-inf"), False  # nothing shipped yet: the first event goes at once
    turned_at = started
    intake = intake or Intake()
    for events in events_per_reading(engine, messages, before=before, intake=intake):
        if events is SHIP:
            if unshipped:
                await let_out()
                shipped_at = turned_at = time.perf_counter()
                unshipped = False
            continue
        if isinstance(events, DeadLetter):
            DEAD_LETTERS.labels(reason_class(events.reason)).inc()
            if intake.dead_letter_topic is not None:
                pending.append(await _send(bus, intake.dead_letter_topic, events.robot_id, events.to_bytes()))
        else:
            found = [a for a in events if not already_sent(a, sent)]
            if found:
                pending += [await _send(bus, topic, a.robot_id, a.to_bytes()) for a in found]
                alerts += found
                unshipped, last_event = True, pending[-1]
        now = time.perf_counter()
        if (unshipped and now - shipped_at >= SHIP_EVERY_S) or now - turned_at >= TURN_EVERY_S:
            await let_out()
            turned_at = time.perf_counter()
            if unshipped:
                shipped_at, unshipped = turned_at, False
        elif last_event is not None and not last_event.done():
            await asyncio.sleep(0)  # one turn: the answer to the request in flight is read a step at a time
    if intake.health is not None and intake.health_topic is not None:
        for event in intake.health.take_events():
            pending.append(await _send(bus, intake.health_topic, event.robot_id, event.to_bytes()))
    if pending:
        await asyncio.gather(*pending)
        for alert in alerts:
            ALERT_EVENTS.labels(alert.severity, alert.state).inc()
            logger.info(
                "event %r %s: %s, peak %.2f A", alert.event_id, alert.state, alert.severity, alert.peak_amps or 0
            )
    BATCH_SECONDS.observe(time.perf_counter() - started)
    return alerts


async def _send(bus: Bus, topic: str, key: str, value: bytes) -> asyncio.Future:
    MESSAGES_OUT.labels(topic).inc()
    return await bus.send(topic, key, value)


def process(engine: DetectorEngine, messages: list[Message]) -> list[Alert]:
    return [a for events in events_per_reading(engine, messages) if isinstance(events, list) for a in events]


class Ship:
    """Yielded by :func:`events_per_reading` ahead of a long piece of work (a model fit, the batch's health):
    ship the events waiting for company."""


SHIP = Ship()


def fits_model(engine: DetectorEngine, robot_id: str) -> bool:
    """The robot's next active reading fits its model (~0.2-0.3 s of CPU, once per robot and program)."""
    robot = engine.robots.get(robot_id)
    return robot is not None and robot.learner is not None and robot.learner.fits_next


def events_per_reading(
    engine: DetectorEngine,
    messages: list[Message],
    *,
    before: Callable[[str, int], None] = lambda robot_id, partition: None,
    intake: Intake | None = None,
) -> Iterator[list[Alert] | DeadLetter | Ship]:
    """The events of each reading, or the dead letter of a reading that cannot be judged;
    ``before(robot_id, partition)`` is called ahead of each reading.

    A reading that may fit its robot's model (:func:`fits_model`), and the robot's later readings of the batch,
    are judged after the rest of the batch, :data:`SHIP` first: judged in its place, the fit held up every later
    reading of the burst (docs/benchmarks.md section 2). The health pipeline takes the batch's readings after the
    detectors (:class:`HealthAfter`). Each robot's readings keep their order and robots are judged apart, so no
    decision changes. A maintenance entry judges the readings put off before it is taken."""
    intake = intake or Intake()
    put_off: list[tuple[Message, ReadingValues]] = []
    put_off_robots: set[str] = set()
    health = HealthAfter(intake.health)
    for message in messages:
        if intake.maintenance is not None and message.topic == intake.maintenance.topic:
            yield from _judge_put_off(engine, put_off, before, intake, health)
            put_off_robots.clear()
            yield from health.after_detectors()
            yield intake.maintenance.take(message, lambda robot_id, p=message.partition: before(robot_id, p))
            continue
        try:
            reading = intake.policy.read_message_values(message)
        except SchemaError as exc:
            # consumer_db records bad readings in rejected_readings; here they only cannot be judged.
            SKIPPED.labels(reason_class(str(exc))).inc()
            logger.warning("%s/%d offset %d skipped: %s", message.topic, message.partition, message.offset, exc)
            continue
        refused = intake.roster.admit(reading.robot_id)
        if refused:
            logger.warning("%s/%d offset %d: %s", message.topic, message.partition, message.offset, refused)
            yield dead_letter(message, refused, reading.robot_id)
            continue
        if reading.robot_id in put_off_robots or fits_model(engine, reading.robot_id):
            put_off.append((message, reading))
            put_off_robots.add(reading.robot_id)
            continue
        yield from _judge_in_turn(engine, message, reading, before, intake, health)
    yield from _judge_put_off(engine, put_off, before, intake, health)
    yield from health.after_detectors()


def _judge_put_off(
    engine: DetectorEngine,
    put_off: list[tuple[Message, ReadingValues]],
    before: Callable[[str, int], None],
    intake: Intake,
    health: HealthAfter,
) -> Iterator[list[Alert] | DeadLetter | Ship]:
    if put_off:
        yield SHIP
    for message, reading in put_off:
        yield from _judge_in_turn(engine, message, reading, before, intake, health)
    put_off.clear()


def _judge_in_turn(
    engine: DetectorEngine,
    message: Message,
    reading: ReadingValues,
    before: Callable[[str, int], None],
    intake: Intake,
    health: HealthAfter,
) -> Iterator[list[Alert] | DeadLetter]:
    """The reading's detector events; its health comes with the batch's (a robot's earlier reading's first)."""
    yield from health.before(reading.robot_id)
    newest = engine.newest(reading.robot_id)
    events = judge(engine, message, reading, before, intake)
    if not isinstance(events, DeadLetter):
        # the engine followed the robot's clock back (told by a run of readings and their Kafka offsets, which the
        # health pipeline does not keep): its cycle splitter follows it too
        health.add(reading, clock_went_back=newest is not None and engine.newest(reading.robot_id) < newest)
    yield events


class HealthAfter:
    """The health pipeline's share of a batch, taken after the detectors have judged the batch: its events (a
    ``maintenance_due`` forecast, days ahead) can wait milliseconds, the detectors' cannot, and judged in turn
    with them it held up every later robot's detectors (~6 % of a reading's CPU, more when many robots' work
    cycles close on one tick). Each robot's alert events keep their order: a robot's own readings' health is
    taken before its next reading is judged, and all of it before a maintenance entry (which restarts health)."""

    def __init__(self, monitor: HealthMonitor | None) -> None:
        self.monitor = monitor
        self.readings: list[tuple[ReadingValues, bool]] = []  # with whether the robot's clock went back at it
        self.robots: set[str] = set()

    def add(self, reading: ReadingValues, *, clock_went_back: bool = False) -> None:
        if self.monitor is not None:
            self.readings.append((reading, clock_went_back))
            self.robots.add(reading.robot_id)

    def before(self, robot_id: str) -> Iterator[list[Alert]]:
        if robot_id in self.robots:
            yield from self.flush()

    def after_detectors(self) -> Iterator[list[Alert] | Ship]:
        """The health of the readings judged so far, :data:`SHIP` first: the detectors' events still waiting
        for company go out before this work, not after it (the last readings of a burst are the ones whose
        events wait longest already)."""
        if self.readings:
            yield SHIP
        yield from self.flush()

    def flush(self) -> Iterator[list[Alert]]:
        readings, self.readings = self.readings, []
        self.robots.clear()
        for reading, clock_went_back in readings:
            events = health_alerts(self.monitor, reading, clock_went_back)
            if events:
                yield events


def judge(
    engine: DetectorEngine,
    message: Message,
    reading: ReadingValues,
    before: Callable[[str, int], None],
    intake: Intake,
) -> list[Alert] | DeadLetter:
    """The reading's detectors' events, or its dead letter."""
    before(reading.robot_id, message.partition)
    try:
        # its place tells a redelivery (before what the robot's state reflects) from a clock set back, its record's
        # time an outage from a clock leaping ahead
        record_ts = message.timestamp_ms / 1000 if message.timestamp_ms is not None else None
        events = engine.process(reading, (message.partition, message.offset), record_ts)
    except Exception as exc:  # one reading must never stop the detectors for every robot
        logger.exception(
            "%s/%d offset %d (robot %r) could not be judged",
            message.topic,
            message.partition,
            message.offset,
            reading.robot_id,
        )
        return dead_letter(
            message, f"consumer_alerts could not judge it: {type(exc).__name__}: {exc}", reading.robot_id
        )
    intake.robots_frozen = freeze_new_robots(engine, intake.robots_frozen)
    return events


def health_alerts(monitor: HealthMonitor, reading, clock_went_back: bool = False) -> list:
    """The health pipeline's alert events for the reading; a failure there costs its health, not its alerts."""
    try:
        return monitor.process(reading, clock_went_back=clock_went_back)
    except Exception:  # noqa: BLE001 - the detectors' events of the reading must still go out
        logger.exception("health of robot %r: reading at %s skipped", reading.robot_id, reading.ts)
        return []


def dead_letter(message: Message, reason: str, robot_id: str | None) -> DeadLetter:
    return DeadLetter(
        source=f"{message.topic}/{message.partition} (consumer_alerts)",
        line=message.offset,
        raw=raw_excerpt(message.value.decode("utf-8", "replace")),
        reason=reason,
        robot_id=robot_id,
    )
