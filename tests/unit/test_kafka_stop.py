"""Stopping with no broker answering: aiokafka's stop() can retry forever (aio-libs/aiokafka#659), so a
service's shutdown waits for it a bounded time, says so, and goes on."""

import asyncio
import logging

from common.settings import CommonSettings
from common.wire import kafka
from common.wire.kafka import KafkaBus, KafkaSubscription


class NeverStops:
    def __init__(self) -> None:
        self.cancelled = False

    async def stop(self) -> None:
        try:
            await asyncio.Event().wait()  # a coordinator that is never found
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class StopsAtOnce:
    stopped = False

    async def stop(self) -> None:
        self.stopped = True


async def test_a_consumer_that_never_stops_is_left_after_the_timeout(monkeypatch, caplog):
    monkeypatch.setattr(kafka, "CLOSE_TIMEOUT_S", 0.2)
    consumer = NeverStops()
    with caplog.at_level(logging.WARNING, logger="common.wire.kafka"):
        await asyncio.wait_for(KafkaSubscription(consumer).close(), 5)
    assert consumer.cancelled
    assert (
        "Kafka consumer did not stop within 0.2 s, still waiting for its group's coordinator to take its leaving; "
        "left as it is"
    ) in caplog.text


async def test_a_producer_that_never_stops_is_left_after_the_timeout(monkeypatch, caplog):
    monkeypatch.setattr(kafka, "CLOSE_TIMEOUT_S", 0.2)
    bus = KafkaBus(CommonSettings(_env_file=None))
    bus._producer = NeverStops()
    with caplog.at_level(logging.WARNING, logger="common.wire.kafka"):
        await asyncio.wait_for(bus.stop(), 5)
    assert bus._producer is None
    said = "Kafka producer did not stop within 0.2 s, still waiting for Kafka to confirm the sends it held"
    assert said in caplog.text


async def test_a_client_that_stops_is_simply_stopped(caplog):
    consumer = StopsAtOnce()
    with caplog.at_level(logging.WARNING, logger="common.wire.kafka"):
        await KafkaSubscription(consumer).close()
    assert consumer.stopped and caplog.text == ""


class StopsWithItsOwnTaskCancelled:
    """aiokafka's consumer, stopped in the middle of a commit: its stop() re-raises a fetch's cancellation."""

    async def stop(self) -> None:
        fetch = asyncio.ensure_future(asyncio.sleep(10))
        fetch.cancel()
        await fetch


async def test_a_client_whose_stop_raises_its_own_cancellation_is_stopped_and_the_caller_goes_on(caplog):
    with caplog.at_level(logging.WARNING, logger="common.wire.kafka"):
        await KafkaSubscription(StopsWithItsOwnTaskCancelled()).close()
    assert "Kafka consumer stopped with its own task cancelled" in caplog.text


async def test_a_close_cancelled_from_outside_is_cut_short(monkeypatch):
    monkeypatch.setattr(kafka, "CLOSE_TIMEOUT_S", 30.0)
    consumer = NeverStops()
    closing = asyncio.create_task(KafkaSubscription(consumer).close())
    await asyncio.sleep(0.05)
    closing.cancel()
    await asyncio.wait([closing], timeout=5)
    assert closing.cancelled() and consumer.cancelled
