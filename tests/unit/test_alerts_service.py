"""The service on the in-process bus: readings in, events out, and a restart that re-raises nothing."""

import asyncio
import gc
import time
import weakref
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from common.wire.bus import InProcessBus, Message
from common.wire.clock import SET_BACK_RUN
from common.wire.schemas import Alert, AlertState, HealthEvent, Reading, Severity
from consumer_alerts import service
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.recovery import already_sent, latest_alerts
from consumer_alerts.service import process_and_send, run
from consumer_alerts.settings import AlertsSettings
from tests.alerts_fixtures import cycle_readings

HANG_S = 120  # a ceiling against a hang only: speed is a benchmark's business (bench/)


def surge(i, axis, amps):
    return amps + 60.0 if axis == 1 and 600 <= i < 640 else amps


@pytest.fixture
def settings(tmp_path):
    return AlertsSettings(
        _env_file=None,
        bus="memory",
        readings_topic="readings",
        alerts_topic="alerts",
        state_path=tmp_path / "state.json",
        holdoff_s=30.0,
        holdoff_readings=0,
        z_window=200,
        z_min_samples=50,
        poll_timeout_ms=50,
        snapshot_interval_s=0.01,
        detectors=["zscore", "stuck"],
    )


async def publish(bus, readings):
    for r in readings:
        await bus.publish("readings", r.robot_id, r.to_bytes())


def alerts_on(bus) -> list[Alert]:
    return [Alert.from_bytes(m.value) for log in bus._log("alerts") for m in log]


async def run_until(settings, bus, done, *, engine=None, timeout=20.0):
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert done(), "condition not reached before the deadline"


async def test_readings_in_events_out_then_closed_and_committed(settings):
    bus = InProcessBus()
    readings = cycle_readings(900, fault=surge)
    await publish(bus, readings)
    await run_until(settings, bus, lambda: any(a.state is AlertState.CLOSED for a in alerts_on(bus)))
    events = alerts_on(bus)
    assert {(a.axis, a.detector) for a in events} == {(1, "zscore")}
    assert [a.state for a in events][0] is AlertState.OPEN and events[-1].event_id == events[0].event_id
    assert readings[600].ts <= events[0].opened_at <= readings[640].ts
    assert bus._committed[(settings.alerts_group_id, "readings", 0)] == 900
    assert [m.key for m in bus._log(settings.alerts_state_topic)[0]] == [b"r1"], "one checkpoint, at the stop"


@pytest.mark.parametrize("keep_state", [True, False])
async def test_a_restart_that_re_reads_readings_raises_no_event_twice(settings, keep_state):
    bus = InProcessBus()
    readings = cycle_readings(1200, fault=surge)
    await publish(bus, readings[:620])  # the event opens and is still open when the service stops
    await run_until(
        settings,
        bus,
        lambda: len(alerts_on(bus)) >= 1 and bus._committed[(settings.alerts_group_id, "readings", 0)] == 620,
    )
    first = alerts_on(bus)
    assert [a.state for a in first] == [AlertState.OPEN]
    # A crash after the events were sent but before the commit: the readings come again.
    bus._committed[(settings.alerts_group_id, "readings", 0)] = 0
    if not keep_state:
        del bus._logs[settings.alerts_state_topic]
    await publish(bus, readings[620:])
    await run_until(settings, bus, lambda: any(a.state is AlertState.CLOSED for a in alerts_on(bus)))
    events = alerts_on(bus)
    opens = [a for a in events if a.state is AlertState.OPEN and a.event_id == first[0].event_id]
    closes = [a for a in events if a.state is AlertState.CLOSED]
    assert len(closes) == 1 and closes[0].event_id == first[0].event_id
    assert len({a.event_id for a in events}) == 1
    assert len(opens) <= 2  # the first OPEN, plus at most one peak update; never a second event


async def test_a_clock_set_back_after_a_restart_is_judged_and_the_re_read_readings_are_not(settings, caplog):
    bus = InProcessBus()
    readings = cycle_readings(700, fault=surge)
    # an hour's stoppage after the tenth reading (its first reading's leap is gone); the surge's event opens, closes
    readings[10:] = [r.model_copy(update={"ts": r.ts + timedelta(hours=1)}) for r in readings[10:]]
    await publish(bus, readings)
    await run_until(
        settings,
        bus,
        lambda: len(alerts_on(bus)) >= 2 and bus._committed[(settings.alerts_group_id, "readings", 0)] == 700,
    )
    first = {a.event_id for a in alerts_on(bus)}
    # A crash before the commit: the readings come again, after them the robot's clock set back three days
    bus._committed[(settings.alerts_group_id, "readings", 0)] = 0
    back = cycle_readings(800, fault=surge, start=readings[0].ts - timedelta(days=3))
    await publish(bus, back)
    on_the_clock_set_back = (back[600].ts, readings[0].ts)

    def set_back_events() -> set[str]:
        start, end = on_the_clock_set_back
        return {a.event_id for a in alerts_on(bus) if start <= a.opened_at < end}

    await run_until(settings, bus, lambda: len(set_back_events()) >= 1)
    events = alerts_on(bus)
    assert len(set_back_events()) == 1, "the surge after the set back raises its event"
    assert {a.event_id for a in events} == first | set_back_events(), "nothing re-read raised twice"
    assert [a.state for a in events if a.event_id in first] == [AlertState.OPEN, AlertState.CLOSED]
    warned = [r.getMessage() for r in caplog.records if "clock went back" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("robot 'r1':")


async def test_the_health_pipeline_follows_a_clock_set_back_as_the_detectors_do(settings):
    """The cycle splitter is not given offsets: it follows the robot's clock back with the engine, which tells a
    clock set back from a redelivery by them. Before, it skipped every reading until the new clock passed the old
    newest (days here): no cycle, no indicator, no forecast for that robot meanwhile."""
    settings = settings.model_copy(update={"health": True})
    bus = InProcessBus()
    readings = cycle_readings(300)
    # an hour's stoppage after the tenth reading (its first reading's leap is gone), then the clock set back 3 days
    readings[10:] = [r.model_copy(update={"ts": r.ts + timedelta(hours=1)}) for r in readings[10:]]
    back = cycle_readings(300, start=readings[0].ts - timedelta(days=3))
    await publish(bus, readings + back)
    committed = (settings.alerts_group_id, "readings", 0)
    await run_until(settings, bus, lambda: bus._committed.get(committed) == 600)
    cycles = [e for m in bus._log(settings.health_topic)[0] if (e := HealthEvent.from_bytes(m.value)).kind == "cycle"]
    on_the_old_clock = [e for e in cycles if e.start >= readings[0].ts]
    on_the_clock_set_back = [e for e in cycles if e.start < readings[0].ts]
    assert len(on_the_old_clock) >= 8
    # the readings the detectors skip (the run's first nine) are skipped here too; from the tenth on, cycles again
    assert len(on_the_clock_set_back) >= len(on_the_old_clock) - 2
    assert min(e.start for e in on_the_clock_set_back) >= back[SET_BACK_RUN - 1].ts


async def test_an_engine_passed_in_is_used_and_anything_else_ignored(settings):
    bus = InProcessBus()
    await publish(bus, cycle_readings(700, fault=surge))
    mine = DetectorEngine(EngineConfig(z_window=200, z_min_samples=50, detectors=("zscore",)))
    await run_until(settings, bus, lambda: len(alerts_on(bus)) >= 1, engine=mine)
    assert mine.robots["r1"].last_ts is not None
    other = InProcessBus()
    await publish(other, cycle_readings(700, fault=surge))
    await run_until(settings, other, lambda: len(alerts_on(other)) >= 1, engine=object())


async def test_an_unreadable_reading_is_skipped_and_the_loop_goes_on(settings, caplog):
    bus = InProcessBus()
    await bus.publish("readings", "r1", b"not json")
    await publish(bus, cycle_readings(700, fault=surge))
    await run_until(settings, bus, lambda: len(alerts_on(bus)) >= 1)
    assert "skipped" in caplog.text and "not JSON" in caplog.text


async def test_stop_ends_the_service_with_nothing_to_read(settings):
    bus = InProcessBus()
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop))
    await asyncio.sleep(0.2)
    assert not task.done(), "it waits for readings until told to stop"
    stop.set()
    await asyncio.wait_for(task, HANG_S)  # a ceiling against a hang only: how soon it stops is not asserted
    assert task.exception() is None


async def test_read_back_keeps_the_newest_state_and_the_acknowledgement():
    bus = InProcessBus(partitions=3)
    at = datetime(2022, 10, 18, 8, 0, tzinfo=UTC)
    opened = Alert(
        event_id="r1:2:residual:x",
        robot_id="r1",
        axis=2,
        detector="residual",
        severity=Severity.ALERT,
        state=AlertState.OPEN,
        opened_at=at,
        peak_amps=12.0,
    )
    acked = opened.model_copy(update={"acknowledged_by": "ana", "acknowledged_at": at})
    escalated = opened.model_copy(update={"severity": Severity.ERROR, "peak_amps": 40.0})
    for alert in (opened, acked, escalated):
        await bus.publish("alerts", alert.robot_id, alert.to_bytes())
    await bus.publish("alerts", "r1", b"garbage")
    latest = await latest_alerts(bus, "alerts")
    assert list(latest) == ["r1:2:residual:x"]
    newest = latest["r1:2:residual:x"]
    assert newest.severity is Severity.ERROR and newest.acknowledged_by == "ana"
    assert already_sent(opened, latest), "its OPEN ALERT, re-derived after a restart, is behind the topic's ERROR"
    assert already_sent(escalated, latest) and not already_sent(
        escalated.model_copy(update={"peak_amps": 50.0}), latest
    )
    assert not already_sent(escalated.model_copy(update={"state": AlertState.CLOSED}), latest)


async def test_an_event_is_sent_before_the_rest_of_its_batch_is_processed(settings):
    bus, engine = InProcessBus(), DetectorEngine(EngineConfig(z_window=200, z_min_samples=50, detectors=("zscore",)))
    processed_when_sent: list[float | None] = []
    send = bus.send

    async def noting_send(topic, key, value, **where):
        processed_when_sent.append(engine.robots["r1"].last_ts)
        return await send(topic, key, value, **where)

    bus.send = noting_send
    readings = cycle_readings(700, fault=surge)
    await publish(bus, readings)
    settings = settings.model_copy(update={"max_batch": 700})  # the whole feed in one batch
    await run_until(settings, bus, lambda: len(alerts_on(bus)) >= 1, engine=engine)
    first = alerts_on(bus)[0]
    assert processed_when_sent[0] == first.opened_at.timestamp() < readings[-1].ts.timestamp()


class ScriptedEngine:
    """Judging a reading takes one step of a fake clock (1/1024 s: exact in binary); the rows listed open
    an event each."""

    STEP = 1 / 1024

    def __init__(self, opening_rows):
        self.now, self.judged, self.opening = 0.0, 0, set(opening_rows)
        self.robots = {}  # the service counts them (freeze_new_robots)

    def newest(self, robot_id):
        return None  # no robot's clock ever goes back here

    def process(self, reading, place=None, record_ts=None):
        self.now += self.STEP
        self.judged += 1
        if reading.row not in self.opening:
            return []
        return [
            Alert(
                event_id=f"r1:1:zscore:{reading.row}",
                robot_id="r1",
                axis=1,
                detector="zscore",
                severity=Severity.ALERT,
                state=AlertState.OPEN,
                opened_at=reading.ts,
            )
        ]


async def test_events_found_close_together_are_shipped_together_and_none_waits_long(monkeypatch):
    """Rows 1-20 of 40 open an event each, row 35 one more; shipments at most every 5 readings. Row 1's
    event is shipped at once; the next ones wait for company, at most 5 readings; the one after a quiet
    spell is shipped at once again: 6 shipments for 21 events, not 21."""
    engine = ScriptedEngine([*range(1, 21), 35])
    monkeypatch.setattr(service, "SHIP_EVERY_S", 5 * ScriptedEngine.STEP)
    monkeypatch.setattr(service, "time", SimpleNamespace(perf_counter=lambda: engine.now))
    bus = InProcessBus()
    shipments: list[tuple[int, int]] = []  # (readings judged, events sent) at each shipment

    async def let_out():
        shipments.append((engine.judged, len(alerts_on(bus))))

    monkeypatch.setattr(service, "let_out", let_out)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        Reading(robot_id="r1", ts=base + timedelta(seconds=2 * i), row=i, currents={1: 1.0}) for i in range(1, 41)
    ]
    messages = [Message("readings", 0, i, b"r1", r.to_bytes()) for i, r in enumerate(readings)]
    alerts = await process_and_send(engine, messages, bus, "alerts", {}, before=lambda robot, partition: None)
    assert [a.event_id for a in alerts] == [a.event_id for a in alerts_on(bus)]
    assert len(alerts) == 21
    assert shipments == [(1, 1), (6, 6), (11, 11), (16, 16), (21, 20), (35, 21)]


async def test_events_waiting_for_company_at_a_batchs_end_go_out_before_its_health_work(monkeypatch):
    """Rows 8 and 9 of 10 (each a robot of its own) open an event each; row 8's is shipped at once, row 9's
    waits for company. The batch's health pipeline comes after its detectors: row 9's event is shipped
    before that work, not after it (the last readings of a burst are the ones whose events wait longest)."""
    engine = ScriptedEngine([8, 9])
    monkeypatch.setattr(service, "SHIP_EVERY_S", 5 * ScriptedEngine.STEP)
    monkeypatch.setattr(service, "time", SimpleNamespace(perf_counter=lambda: engine.now))
    bus = InProcessBus()
    health_taken: list = []
    health = SimpleNamespace(process=lambda reading, **_: health_taken.append(reading.robot_id) or [])
    shipments: list[tuple[int, int, int]] = []  # (readings judged, events sent, readings' health taken)

    async def let_out():
        shipments.append((engine.judged, len(alerts_on(bus)), len(health_taken)))

    monkeypatch.setattr(service, "let_out", let_out)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        Message(
            "readings", 0, i, f"r{i}".encode(), Reading(robot_id=f"r{i}", ts=base, row=i, currents={1: 1.0}).to_bytes()
        )
        for i in range(1, 11)
    ]
    intake = service.Intake(health=health)
    alerts = await process_and_send(engine, messages, bus, "alerts", {}, before=lambda r, p: None, intake=intake)
    assert len(alerts) == 2 and len(health_taken) == 10
    assert shipments == [(8, 1, 0), (10, 2, 0)]


async def test_the_loop_turns_after_each_reading_until_the_last_event_sent_is_acknowledged(monkeypatch):
    """Row 1 of 40 opens an event; the bus acknowledges it only after 6 turns of the loop (a Kafka client reads
    the broker's answer on the loop, a step a turn, and sends the next request only after it). No shipment or
    turn is due in the batch (both made to do nothing): the acknowledgement still comes 6 readings later, not
    at the batch's end."""
    engine = ScriptedEngine([1])
    monkeypatch.setattr(service, "time", SimpleNamespace(perf_counter=lambda: engine.now))
    monkeypatch.setattr(service, "TURN_EVERY_S", 1000.0)

    async def let_out():
        pass

    monkeypatch.setattr(service, "let_out", let_out)
    acknowledged_at: list[int] = []  # readings judged when the event was acknowledged

    class AnsweringLater(InProcessBus):
        async def send(self, topic, key, value, **where):
            await self.publish(topic, key, value)
            done, loop = asyncio.get_running_loop().create_future(), asyncio.get_running_loop()

            def step(left: int) -> None:
                if left:
                    loop.call_soon(step, left - 1)
                else:
                    acknowledged_at.append(engine.judged)
                    done.set_result(None)

            loop.call_soon(step, 5)  # this callback, then 5 more: 6 turns
            return done

    base = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        Reading(robot_id="r1", ts=base + timedelta(seconds=2 * i), row=i, currents={1: 1.0}) for i in range(1, 41)
    ]
    messages = [Message("readings", 0, i, b"r1", r.to_bytes()) for i, r in enumerate(readings)]
    alerts = await process_and_send(engine, messages, AnsweringLater(), "alerts", {}, before=lambda r, p: None)
    assert len(alerts) == 1 and acknowledged_at == [7]


async def test_a_long_batch_without_events_still_gives_the_event_loop_its_turns(monkeypatch):
    """40 readings and no event, a turn due every 10 readings of judging: the bus client's heartbeats run on
    the same loop, so a batch judged in one go must not hold it for longer than that."""
    engine = ScriptedEngine([])
    monkeypatch.setattr(service, "TURN_EVERY_S", 10 * ScriptedEngine.STEP)
    monkeypatch.setattr(service, "time", SimpleNamespace(perf_counter=lambda: engine.now))
    turns: list[int] = []  # readings judged at each turn

    async def let_out():
        turns.append(engine.judged)

    monkeypatch.setattr(service, "let_out", let_out)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        Reading(robot_id="r1", ts=base + timedelta(seconds=2 * i), row=i, currents={1: 1.0}) for i in range(1, 41)
    ]
    messages = [Message("readings", 0, i, b"r1", r.to_bytes()) for i, r in enumerate(readings)]
    alerts = await process_and_send(
        engine, messages, InProcessBus(), "alerts", {}, before=lambda robot, partition: None
    )
    assert alerts == [] and turns == [10, 20, 30, 40]


async def test_state_that_cannot_be_read_for_partitions_handed_over_stops_the_service_before_judging(settings):
    """Judging them cold would raise or close events an uninterrupted run would not: stop, commit nothing."""
    bus = InProcessBus()
    await publish(bus, cycle_readings(50))
    read_to_end = bus.read_to_end

    async def broken(topic, partitions=None):
        if topic == settings.alerts_state_topic:
            raise OSError("state topic unreadable")
        return await read_to_end(topic, partitions)

    bus.read_to_end = broken
    with pytest.raises(OSError, match="unreadable"):
        await asyncio.wait_for(run(settings, bus=bus, stop=asyncio.Event()), 10)
    assert bus.uncommitted(settings.alerts_group_id, ["readings"]) == 50 and alerts_on(bus) == []


@pytest.fixture
def unfrozen():
    """gc.freeze is process-wide: give the test process its collector back afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def first_readings(robots: int) -> list[Message]:
    readings = [cycle_readings(1, robot_id=f"robot-{i:03d}", seed=i)[0] for i in range(robots)]
    return [Message("readings", 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(readings)]


def test_robots_made_are_frozen_out_of_the_collector_in_steps(unfrozen):
    engine, intake = DetectorEngine(EngineConfig(detectors=("zscore", "stuck"))), service.Intake()
    step = service.FREEZE_EVERY_ROBOTS
    list(service.events_per_reading(engine, first_readings(step - 1), intake=intake))
    assert gc.get_freeze_count() == 0 and intake.robots_frozen == 0, "fewer robots than a step: nothing frozen"
    list(service.events_per_reading(engine, first_readings(step + 1), intake=intake))
    assert intake.robots_frozen == step and gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    list(service.events_per_reading(engine, first_readings(step + 1), intake=intake))  # the same robots again
    assert gc.get_freeze_count() == frozen, "no new robot, no freeze"


def test_robots_dropped_after_a_freeze_are_freed_without_the_collector(unfrozen):
    """Frozen objects are never collected: a robot's state must be freed by its reference count alone, or
    every robot handed over on a rebalance would leak."""
    engine, intake = DetectorEngine(EngineConfig(detectors=("zscore", "stuck"))), service.Intake()
    list(service.events_per_reading(engine, first_readings(service.FREEZE_EVERY_ROBOTS), intake=intake))
    assert gc.get_freeze_count() > 0
    robot = engine.robots["robot-000"]
    alive = [weakref.ref(robot), *(weakref.ref(axis) for axis in robot.axes.values())]
    gc.disable()
    try:
        del robot
        engine.robots.clear()
        assert [ref() for ref in alive] == [None] * len(alive)
    finally:
        gc.enable()
    assert intake.robots_frozen == service.FREEZE_EVERY_ROBOTS
    assert service.freeze_new_robots(engine, intake.robots_frozen) == 0, "counted again from the robots left"
