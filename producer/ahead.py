"""Rows made and encoded ahead, while the paced producer waits for the next one's due time.

At the real rate a tick is a burst: every robot's row is due at the same instant. Making a synthetic row
and encoding it costs ~50 us, so a 200-robot tick made when it was due took 10-20 ms of a busy machine,
and its first rows waited in their Kafka batch (already stamped: on the latency's clock) for the last.
Made during the wait before it, the tick goes out in one go, and the work is done while the machine is
idle instead of when the consumers wake up to the tick.

The waiting is done in slices of about a millisecond with the event loop visited in between, so the
batches pushed just before the wait go on the wire at once and a stop is seen promptly.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator

from common.schemas import DeadLetter, Reading
from producer.pacing import Clock

Item = Reading | DeadLetter
SLICE_S = 0.001
SLICE_ROWS = 32  # also bounds a slice on a clock that does not move by itself (tests)


class ReadAhead:
    """Iterate ``(item, encoded item)``; :meth:`fill` prepares the next rows in advance."""

    def __init__(self, items: Iterable[Item], clock: Clock, *, most: int = 4096) -> None:
        self.clock, self.most = clock, most
        self._items: Iterator[Item] = iter(items)
        self._ready: deque[tuple[Item, bytes]] = deque()
        self._exhausted = False

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> tuple[Item, bytes]:
        if self._ready:
            return self._ready.popleft()
        item = next(self._items)
        return item, item.to_bytes()

    @property
    def ready(self) -> int:
        return len(self._ready)

    async def fill(self, until: float, stop: asyncio.Event) -> None:
        """Prepare rows until the clock reads ``until``, ``most`` rows are ready, the feed ends or ``stop``
        is set."""
        while not (self._exhausted or stop.is_set()) and len(self._ready) < self.most and self.clock.now() < until:
            await asyncio.sleep(0)
            self._prepare_slice(min(until, self.clock.now() + SLICE_S))

    def _prepare_slice(self, until: float) -> None:
        for _ in range(SLICE_ROWS):
            if len(self._ready) >= self.most or self.clock.now() >= until:
                return
            item = next(self._items, None)
            if item is None:
                self._exhausted = True
                return
            self._ready.append((item, item.to_bytes()))
