"""Pacing on an injected clock: no sleeping in these tests, and no drift over a long run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from common.wire.bus import InProcessBus
from common.wire.schemas import Reading
from producer.pacing import ManualClock, MonotonicClock, Pacer, PacingOptions
from producer.service import run
from producer.settings import ProducerSettings

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def pace(pacer: Pacer, rows: list[tuple[str, float]], work: dict[int, float] | None = None) -> list[float]:
    """Send ``rows`` (robot, feed second) through the pacer, sleeping its delay as the service does;
    ``work`` adds processing time after row i. Returns the clock reading at which each row went out."""
    sent = []
    for i, (robot, second) in enumerate(rows):
        if (delay := pacer.delay(robot, at(second))) > 0:
            await pacer.clock.sleep(delay)
        sent.append(pacer.clock.now())
        pacer.clock.advance((work or {}).get(i, 0.0))
    return sent


async def test_one_row_every_tick():
    clock = ManualClock(start=0.0)
    sent = await pace(Pacer(PacingOptions(tick_seconds=2.0), clock), [("r", i * 1.9) for i in range(5)])
    assert sent == [0.0, 2.0, 4.0, 6.0, 8.0]


async def test_processing_time_and_sleep_overshoot_do_not_accumulate():
    class Oversleeping(ManualClock):
        async def sleep(self, seconds, stop=None):
            await super().sleep(seconds + 0.013)  # every sleep comes back a bit late

    clock = Oversleeping(start=0.0)
    sent = await pace(
        Pacer(PacingOptions(tick_seconds=2.0), clock),
        [("r", i) for i in range(1000)],
        work={i: 0.3 for i in range(1000)},
    )
    assert sent[-1] == pytest.approx(999 * 2.0 + 0.013, abs=1e-6), "drift would add 999 x 0.013 s"
    assert all(s < 1.71 for s in clock.sleeps[1:])


async def test_a_late_tick_is_not_made_up_by_bursting():
    clock = ManualClock(start=0.0)
    pacer = Pacer(PacingOptions(tick_seconds=2.0), clock)
    sent = await pace(pacer, [("r", i) for i in range(6)], work={2: 7.0})  # a 7 s stall after row 2
    assert sent == [0.0, 2.0, 4.0, 11.0, 13.0, 15.0]
    assert (pacer.late_ticks, pacer.lost_s) == (1, pytest.approx(5.0))


async def test_catch_up_bursts_when_asked():
    clock = ManualClock(start=0.0)
    sent = await pace(
        Pacer(PacingOptions(tick_seconds=2.0, catch_up=True), clock), [("r", i) for i in range(7)], work={2: 7.0}
    )
    assert sent == [0.0, 2.0, 4.0, 11.0, 11.0, 11.0, 12.0], "rows due at 6, 8, 10 all go at 11"


async def test_speed_replays_the_feeds_own_time_faster():
    clock = ManualClock(start=0.0)
    seconds = [0.0, 1.9, 3.8, 406.3]  # the export's 402 s gap
    sent = await pace(Pacer(PacingOptions(speed=10.0), clock), [("r", s) for s in seconds])
    assert sent == pytest.approx([0.0, 0.19, 0.38, 40.63])


async def test_rows_of_one_slice_go_out_together_at_its_start():
    clock = ManualClock(start=0.0)
    seconds = [0.0, 0.04, 0.09, 0.1, 0.17, 0.35, 2.0, 2.05]
    rows = [(f"r{i}", s) for i, s in enumerate(seconds[:6])] + [("r0", 2.0), ("r1", 2.05)]
    sent = await pace(Pacer(PacingOptions(speed=1.0, slice_s=0.1), clock), rows)
    assert sent == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.1, 0.3, 2.0, 2.0])


async def test_max_speed_never_sleeps():
    clock = ManualClock(start=0.0)
    sent = await pace(Pacer(PacingOptions(max_speed=True), clock), [("r", i * 60.0) for i in range(100)])
    assert set(sent) == {0.0} and clock.sleeps == []


async def test_a_fleet_tick_is_one_row_per_robot():
    clock = ManualClock(start=0.0)
    rows = [(robot, tick * 2.0) for tick in range(3) for robot in ("a", "b", "c")]
    sent = await pace(Pacer(PacingOptions(tick_seconds=2.0), clock), rows)
    assert sent == [0.0] * 3 + [2.0] * 3 + [4.0] * 3


def test_speed_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(PacingOptions(speed=0.0), ManualClock())


def readings(n: int) -> list[Reading]:
    return [Reading(robot_id="r", ts=at(2 * i), row=i + 2, currents={1: float(i)}) for i in range(n)]


async def test_service_paces_with_the_injected_clock():
    bus, clock = InProcessBus(), ManualClock(start=0.0)
    settings = ProducerSettings(_env_file=None, bus="memory", tick_seconds=2.0)
    report = await run(settings, bus=bus, stop=asyncio.Event(), source=iter(readings(50)), clock=clock)
    assert report.readings_confirmed == 50
    assert clock.now() == pytest.approx(49 * 2.0) and report.elapsed_s == pytest.approx(98.0)
    assert bus.end_offsets(settings.readings_topic) == [50]


async def test_stop_interrupts_a_long_wait_promptly():
    bus, stop = InProcessBus(), asyncio.Event()
    settings = ProducerSettings(_env_file=None, bus="memory", tick_seconds=3600.0)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    async with asyncio.timeout(10):  # a guard only: without the stop this would wait an hour
        report = await run(settings, bus=bus, stop=stop, source=iter(readings(3)), clock=MonotonicClock())
    assert report.stopped and report.readings_confirmed == 1


class RecordingBus(InProcessBus):
    """Notes the clock's reading when each message arrives."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock, self.sent_at = clock, []

    async def send(self, topic, key, value):
        self.sent_at.append(self.clock.now())
        return await super().send(topic, key, value)


async def test_a_tick_is_made_during_the_wait_before_it():
    clock, pulled_after_sleeps = ManualClock(start=0.0), []
    fleet = [
        Reading(robot_id=f"r{k}", ts=at(2 * t), row=t + 2, currents={1: float(t)}) for t in range(3) for k in range(4)
    ]

    def source():
        for reading in fleet:
            pulled_after_sleeps.append(len(clock.sleeps))
            yield reading

    bus = RecordingBus(clock)
    settings = ProducerSettings(_env_file=None, bus="memory", tick_seconds=2.0)
    await run(settings, bus=bus, stop=asyncio.Event(), source=source(), clock=clock)
    assert clock.sleeps == [1.0, 1.0, 1.0, 1.0]  # each wait in two halves
    assert bus.sent_at == [0.0] * 4 + [2.0] * 4 + [4.0] * 4
    # ticks 1 and 2 were made midway through the wait before each (tick 2's first row ends tick 1's
    # making), not when due, and no further ahead
    assert pulled_after_sleeps == [0] * 4 + [0] + [1] * 3 + [1] + [3] * 3
    assert [Reading.from_bytes(m.value) for p in bus._log(settings.readings_topic) for m in p] == fleet


async def test_a_slow_feed_is_read_ahead_only_within_the_wait():
    clock = ManualClock(start=0.0)

    def slow_source():  # each row takes 0.3 s to make
        for reading in readings(8):
            clock.advance(0.3)
            yield reading

    bus = RecordingBus(clock)
    settings = ProducerSettings(_env_file=None, bus="memory", tick_seconds=2.0)
    report = await run(settings, bus=bus, stop=asyncio.Event(), source=slow_source(), clock=clock)
    assert report.readings_confirmed == 8 and report.late_ticks == 0
    assert bus.sent_at == pytest.approx([0.3 + 2.0 * i for i in range(8)])
