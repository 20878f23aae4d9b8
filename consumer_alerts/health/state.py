"""The health pipeline's state across restarts: one file, written after a batch's events were acknowledged.

Written after the acknowledgement, the file is never behind what the health topic and the alerts topic
already hold, and may be ahead of the committed offsets: the readings a restart re-reads are then older than
each robot's last one and the splitter ignores them. Without the file (or when it cannot be read) the
pipeline learns the normals again, which a replay from the readings topic's start makes exact.
Pickle, because the state is numpy arrays, deques and dataclasses of this package's own, written and read
by this service only (a file in its own state folder, never input from outside).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from pathlib import Path

from consumer_alerts.health.monitor import HealthMonitor

logger = logging.getLogger(__name__)
STATE_VERSION = 2  # 2: the trends take values relative to the robot's other axes (a state of 1 learns again)


def health_state_path(settings) -> Path | None:
    """Beside the detectors' snapshot (STATE_PATH): none without one."""
    return settings.state_path.with_suffix(".health.pkl") if settings.state_path is not None else None


def load(monitor: HealthMonitor, path: Path | None) -> bool:
    if path is None or not path.exists():
        return False
    try:
        version, robots = pickle.loads(path.read_bytes())
        if version != STATE_VERSION:
            raise ValueError(f"state version {version}, this build reads {STATE_VERSION}")
    except Exception as exc:  # noqa: BLE001 - an unreadable state only costs a new learning
        logger.warning("health state %s not used (%s); the normals are learned again", path, exc)
        return False
    monitor.robots = robots
    logger.info("health state restored from %s (%d robot(s))", path, len(robots))
    return True


class StateSaver:
    """Every ``interval_s``, the monitor's state: serialised between batches, written in a thread."""

    def __init__(self, monitor: HealthMonitor, path: Path | None, interval_s: float) -> None:
        self.monitor, self.path, self.interval_s = monitor, path, interval_s
        self.last = time.monotonic()

    async def after_batch(self, *, force: bool = False) -> None:
        if self.path is None or not (force or time.monotonic() - self.last >= self.interval_s):
            return
        self.last = time.monotonic()
        data = pickle.dumps((STATE_VERSION, self.monitor.robots), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            await asyncio.to_thread(write_bytes_atomically, self.path, data)
        except OSError as exc:
            logger.warning("health state %s cannot be written (%s); a restart will learn again", self.path, exc)
            self.path = None


def write_bytes_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
