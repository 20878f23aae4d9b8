"""The rest of a tick made and encoded ahead, while the paced producer waits for the tick's first row.

A tick is a burst (every robot's row due at once): made when due, its first rows would wait in their
Kafka batch for the last, on the latency's clock. Only one tick is made ahead (as the pacer counts them,
:class:`producer.pacing.Ticks`): rows held longer only age into the garbage collector's oldest generation.
The work starts halfway through the wait (the consumers are done with the previous tick by then), stops at
three quarters whatever happens (a slow feed never makes a tick late), and goes in slices of about a
millisecond so a stop is seen promptly. Figures: docs/benchmarks.md, "Measurements behind the code".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator

from common.wire.schemas import Reading
from producer.feed import Item
from producer.pacing import Clock, Ticks

SLICE_S = 0.001
SLICE_ROWS = 32  # also bounds a slice on a clock that does not move by itself (tests)


class ReadAhead:
    """Iterate ``(item, encoded item)``; :meth:`fill` makes the rest of a tick in advance."""

    def __init__(self, items: Iterable[Item], clock: Clock) -> None:
        self.clock = clock
        self._items: Iterator[Item] = iter(items)
        self._ready: deque[tuple[Item, bytes]] = deque()

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> tuple[Item, bytes]:
        if self._ready:
            return self._ready.popleft()
        item = next(self._items)
        return item, item.to_bytes()

    async def fill(self, first: Reading, until: float, stop: asyncio.Event) -> None:
        """Make the rows of the tick ``first`` opens (up to the first row of the next one) until the clock
        reads ``until``, the feed ends or ``stop`` is set."""
        ticks = Ticks()
        ticks.advance(first.robot_id)
        done = False
        while not (done or stop.is_set()) and self.clock.now() < until:
            await asyncio.sleep(0)
            done = self._make_slice(ticks, min(until, self.clock.now() + SLICE_S))

    def _make_slice(self, ticks: Ticks, until: float) -> bool:
        """Make rows until ``until``; whether the tick is complete (the next one's first row is made, or
        the feed ended)."""
        for _ in range(SLICE_ROWS):
            if self.clock.now() >= until:
                return False
            item = next(self._items, None)
            if item is None:
                return True
            self._ready.append((item, item.to_bytes()))
            if isinstance(item, Reading) and ticks.advance(item.robot_id):
                return True  # it opens the next tick: made, and enough
        return False
