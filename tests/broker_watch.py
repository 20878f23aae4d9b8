"""A reader of one topic on a thread of its own: it sees what reaches the broker even while the test's
event loop is blocked (as a service's loop is while it computes)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer


class BrokerWatch:
    def __init__(self, servers: str, topic: str, match: Callable[[bytes], bool]) -> None:
        self.servers, self.topic, self.match = servers, topic, match
        self.found = threading.Event()
        self.error: BaseException | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._read(),), daemon=True)

    def __enter__(self) -> BrokerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self._thread.join(30)

    def wait(self, timeout: float = 20.0) -> bool:
        """Whether a matching record is on the broker, waiting at most ``timeout`` seconds (blocking)."""
        found = self.found.wait(timeout)
        if self.error is not None:
            raise RuntimeError(f"the watch on {self.topic} failed") from self.error
        return found

    async def _read(self) -> None:
        try:
            await self._read_until_found()
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread by wait()
            self.error = exc
            self.found.set()

    async def _read_until_found(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.servers, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            while not (self.found.is_set() or self._closing.is_set()):
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    if any(self.match(r.value) for r in records):
                        self.found.set()
        finally:
            await consumer.stop()
