"""Send without waiting for each confirmation, count what the broker confirmed, retry what it refused.

A row counts as sent only when the bus confirmed it (Kafka: ``acks=all``). While the broker is away,
the Kafka client retries on its own until its request timeout; what still fails comes back here, is logged
once per outage, and is sent again with a bounded backoff, oldest first and each part only after the
previous one is confirmed, before anything new. So nothing the report calls "sent" is lost, nothing
unsent is forgotten, and a key's order holds across an outage. When the service is stopping, the
backoff does not wait: :meth:`Sender.drain` gets the last word, within the caller's deadline.

Messages are packed into the bus's per-partition batches (``bus.batches()``: on Kafka real batches,
:class:`common.wire.kafka.KafkaBatches`; in process one message each). At most one batch per partition is
unconfirmed at a time (the Kafka client sends them one at a time anyway), so a refused batch is never
overtaken by a later one of the same partition.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, deque

from common.wire.bus import Bus, Pending, Unit, let_out

logger = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        bus: Bus,
        *,
        stop: asyncio.Event | None = None,
        max_in_flight: int = 20_000,
        first_retry_s: float = 0.5,
        max_retry_s: float = 30.0,
        linger_s: float = 0.02,
    ) -> None:
        self.bus, self.stop, self.max_in_flight = bus, stop or asyncio.Event(), max_in_flight
        self.first_retry_s, self.max_retry_s, self.linger_s = first_retry_s, max_retry_s, linger_s
        self.confirmed: Counter[str] = Counter()  # per topic
        self.failed_attempts = 0
        self._seq = itertools.count()
        self._batches = bus.batches()
        self._in_flight: deque[Unit] = deque()
        self._in_flight_messages = 0
        self._last_shipped: dict[tuple[str, int], Unit] = {}
        self._retry: list[Pending] = []
        self._backoff = first_retry_s

    @property
    def unconfirmed(self) -> int:
        return self._in_flight_messages + len(self._retry) + self._batches.pending

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if self._retry:
            await self._resend()
        pending = Pending(next(self._seq), topic, key, value)
        for unit in await self._batches.add(pending):
            await self._ship(unit)
        if time.monotonic() - self._batches.opened_at > self.linger_s:
            await self.push()
        while self._in_flight and self._in_flight[0].future.done():
            self._settle(self._in_flight.popleft())
        while self._in_flight_messages > self.max_in_flight:
            await self._settle_oldest()

    async def push(self) -> None:
        """Send the batches being filled now (before the producer waits, and at the end)."""
        if self._batches.pending:
            for unit in self._batches.take_all():
                await self._ship(unit)
            await let_out()  # before the producer goes on making the next rows

    async def drain(self) -> None:
        """Wait until everything is confirmed, retrying as needed; bound it with ``asyncio.timeout``."""
        await self.push()
        while self._in_flight or self._retry:
            if self._retry:
                await self._resend(waiting_allowed=True)
            await self.bus.flush()
            while self._in_flight:
                await self._settle_oldest()

    async def _ship(self, unit: Unit) -> None:
        slot = (unit.messages[0].topic, unit.partition)
        previous = self._last_shipped.get(slot)
        # One batch per partition in flight; a unit without a partition is one message, which the bus's own
        # send keeps in order, so it need not wait for the one before.
        if previous is not None and not previous.future.done() and unit.partition is not None:
            await asyncio.wait([previous.future])
        if previous is not None and previous.future.done() and _refusal(previous.future) is not None:
            self._failed(unit.messages, _refusal(previous.future))  # it must not overtake the refused batch
            return
        try:
            unit.future = await self._batches.ship(unit)
        except asyncio.CancelledError:
            self._retry.extend(unit.messages)
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal means "not sent yet", never "lost"
            self._failed(unit.messages, exc)
            return
        self._last_shipped[slot] = unit
        self._track(unit)

    def _track(self, unit: Unit) -> None:
        self._in_flight.append(unit)
        self._in_flight_messages += len(unit.messages)

    async def _settle_oldest(self) -> None:
        unit = self._in_flight[0]
        if not unit.future.done():
            await asyncio.wait([unit.future])
        self._settle(self._in_flight.popleft())

    def _settle(self, unit: Unit) -> None:
        self._in_flight_messages -= len(unit.messages)
        refusal = _refusal(unit.future)
        if refusal is not None:
            self._failed(unit.messages, refusal)
        else:
            self.confirmed[unit.messages[0].topic] += len(unit.messages)

    def _failed(self, messages: list[Pending], exc: BaseException) -> None:
        if not self._retry:
            logger.warning(
                "broker did not confirm %d messages to %s (%s: %s); keeping them to retry",
                len(messages),
                messages[0].topic,
                type(exc).__name__,
                exc,
            )
        self.failed_attempts += 1
        self._retry.extend(messages)

    async def _resend(self, *, waiting_allowed: bool = False) -> None:
        while self._retry:
            if not waiting_allowed and await self._stopped_within(self._backoff):
                return  # stopping: drain() retries, within its deadline
            if waiting_allowed:
                await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self.max_retry_s)
            while self._in_flight:  # their refusals join the queue, in order
                await self._settle_oldest()
            # Not sent yet, but newer than the refused ones: after them.
            self._retry.extend(self._batches.take_back())
            queue = sorted(self._retry, key=lambda p: p.seq)
            self._retry.clear()
            self._last_shipped.clear()
            logger.info("re-sending %d unconfirmed messages", len(queue))
            if await self._send_in_order(queue):
                logger.warning("broker confirms again: %d messages re-sent", len(queue))
                self._backoff = self.first_retry_s

    async def _send_in_order(self, messages: list[Pending]) -> bool:
        """Each part only once the one before it is confirmed; at the first refusal the rest waits."""
        units = await self._batches.group(messages)
        for index, unit in enumerate(units):
            try:
                unit.future = await self._batches.ship(unit)
                await asyncio.shield(unit.future)
            except asyncio.CancelledError:
                self._retry.extend(m for u in units[index:] for m in u.messages)
                raise
            except Exception as exc:  # noqa: BLE001 - as in _ship
                self._failed([m for u in units[index:] for m in u.messages], exc)
                return False
            self.confirmed[unit.messages[0].topic] += len(unit.messages)
        return True

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _refusal(future: asyncio.Future) -> BaseException | None:
    if future.cancelled():
        return asyncio.CancelledError("the send was cancelled")
    return future.exception()
