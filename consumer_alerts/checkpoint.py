"""Snapshot, then commit, without holding up the readings.

Serialising a big fleet's windows takes a noticeable fraction of a second (docs/benchmarks.md): in one go
inside the loop, every reading arriving meanwhile would wait that long. So a snapshot is taken robot by
robot between batches, as of the moment it started (copy-on-write: a robot still pending is serialised
before a reading for it is processed). The file is written in a thread, then the offsets of the readings
it reflects are committed: the service's rule "offsets only together with a snapshot of the detectors".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge, Histogram

from common.errors import CommitFailed
from common.wire.bus import Message, Subscription
from consumer_alerts import engine_state
from consumer_alerts.engine import DetectorEngine

logger = logging.getLogger(__name__)

SLICE_S = 0.005  # serialising work per turn of the loop; a reading waits at most about this long for it


class Snapshot:
    """A snapshot being taken: the engine's state at its start, serialised robot by robot."""

    def __init__(self, engine: DetectorEngine, messages: list[Message]) -> None:
        self.engine, self.messages = engine, messages  # the readings it reflects
        self.pending = dict.fromkeys(engine.robots)  # robots known at the start, in order
        self.parts: dict[str, str] = {}

    def before_reading(self, robot_id: str) -> None:
        """Copy-on-write: serialise the robot now if it is still pending, before the reading changes it."""
        if robot_id in self.pending:
            self._serialise(robot_id)

    def advance(self, budget_s: float = SLICE_S) -> bool:
        """Serialise pending robots for about ``budget_s``; True once every robot is done."""
        deadline = time.perf_counter() + budget_s
        while self.pending and time.perf_counter() < deadline:
            self._serialise(next(iter(self.pending)))
        return not self.pending

    def text(self) -> str:
        robots = ", ".join(f"{json.dumps(rid)}: {part}" for rid, part in self.parts.items())
        return f'{{"version": {engine_state.SNAPSHOT_VERSION}, "robots": {{{robots}}}}}'

    def _serialise(self, robot_id: str) -> None:
        del self.pending[robot_id]
        self.parts[robot_id] = json.dumps(engine_state.robot_snapshot(self.engine.robots[robot_id]))


SNAPSHOT_SECONDS = Histogram(
    "axiswatch_consumer_alerts_snapshot_write_seconds", "Time to join and write one snapshot file (in a thread)."
)
LAST_SNAPSHOT = Gauge(
    "axiswatch_consumer_alerts_last_snapshot_timestamp_seconds", "Unix time of the last snapshot written."
)


class Checkpoints:
    """Every ``interval_s``: a snapshot (taken as above), then the commit of the readings it reflects.
    Without a state path, or once a snapshot could not be written, every batch is committed at once
    (a restart then warms up again)."""

    def __init__(self, engine: DetectorEngine, sub: Subscription, path: Path | None, interval_s: float) -> None:
        self.engine, self.sub, self.path, self.interval_s = engine, sub, path, interval_s
        self.done: list[Message] = []  # processed, not yet in a snapshot
        self.taking: Snapshot | None = None
        self.saving: asyncio.Task | None = None
        self.last = time.monotonic()

    @property
    def busy(self) -> bool:
        """A snapshot is being serialised: the loop should not sleep on an empty poll."""
        return self.taking is not None

    def before_reading(self, robot_id: str) -> None:
        if self.taking is not None:
            self.taking.before_reading(robot_id)

    async def after_batch(self, messages: list[Message]) -> None:
        self.done += messages
        if self.path is None:
            await self._commit(self.take_done())
        elif self.taking is not None:
            if self.taking.advance():
                self.saving, self.taking = asyncio.create_task(self._save(self.taking)), None
        elif self.done and time.monotonic() - self.last >= self.interval_s and not self._still_saving():
            self.taking, self.last = Snapshot(self.engine, self.take_done()), time.monotonic()

    async def close(self) -> None:
        """On a clean stop: one complete snapshot of everything processed, then its commit."""
        if self.saving is not None:
            await self.saving
        if self.taking is not None:  # the new snapshot covers its readings too
            self.done, self.taking = self.taking.messages + self.done, None
        if self.path is None:
            await self._commit(self.take_done())
            return
        snapshot = Snapshot(self.engine, self.take_done())
        snapshot.advance(float("inf"))
        await self._save(snapshot)

    def cancel(self) -> None:
        if self.saving is not None:
            self.saving.cancel()

    def take_done(self) -> list[Message]:
        done, self.done = self.done, []
        return done

    def _still_saving(self) -> bool:
        if self.saving is None or not self.saving.done():
            return self.saving is not None
        self.saving.result()  # an error _save does not handle stops the service, as it did inline
        return False

    async def _save(self, snapshot: Snapshot) -> None:
        try:
            with SNAPSHOT_SECONDS.time():
                await asyncio.to_thread(write_atomically, self.path, snapshot.text)
            LAST_SNAPSHOT.set_to_current_time()
        except OSError as exc:
            logger.warning(
                "snapshot %s cannot be written (%s); snapshots are off, a restart will warm up again", self.path, exc
            )
            self.path = None
        await self._commit(snapshot.messages)

    async def _commit(self, messages: list[Message]) -> None:
        if not messages:
            return
        try:
            await self.sub.commit(messages)
        except CommitFailed as exc:  # e.g. a rebalance moved the partitions away
            logger.warning("offset commit failed (%s); the new owner re-reads those readings", exc)


def write_atomically(path: Path, text: Callable[[], str]) -> None:
    """Write ``text()`` to ``path`` through a temporary file (in a thread: the join is done there too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text(), encoding="utf-8")
    tmp.replace(path)  # atomic: a crash mid-write leaves the previous snapshot
