"""The health pipeline's state across restarts: one file, written every ``interval_s`` between batches.

Each robot's state is taken between two batches, after the events of its readings so far were acknowledged:
the file is never behind what the health topic and the alerts topic held when that robot was taken, and may be
ahead of the committed offsets: the readings a restart re-reads are then older than each robot's last one and
the splitter ignores them. Without the file (or when it cannot be read) the pipeline learns the normals again,
which a replay from the readings topic's start makes exact.

The robots are pickled one by one, a few milliseconds a turn of the loop (``SLICE_S``, as the detectors'
checkpoint is serialised): pickled in one go, the whole fleet's state held the loop 14 → 71 ms at 200 robots
after 12 minutes, growing with the state, and the readings of a burst behind it waited (docs/benchmarks.md
section 2). A thread would not help: pickling holds the GIL. The robots are independent, so a file whose
robots were taken a few turns apart restores each one as it was between two of its readings.

Pickle, because the state is numpy arrays, deques and dataclasses of this package's own, written and read
by this service only (a file in its own state folder, never input from outside).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from pathlib import Path

from consumer_alerts.health.monitor import HealthMonitor, RobotHealth

logger = logging.getLogger(__name__)
# 3: each robot pickled on its own (a dict robot id -> bytes); 2, the whole dict in one pickle, is still read.
# 2: the trends take values relative to the robot's other axes (a state of 1 learns again).
STATE_VERSION = 3
SLICE_S = 0.005  # pickling per turn of the loop; a reading waits at most about this long for it


def health_state_path(settings) -> Path | None:
    """Beside the detectors' snapshot (STATE_PATH): none without one."""
    return settings.state_path.with_suffix(".health.pkl") if settings.state_path is not None else None


def dumps(robots: dict[str, bytes]) -> bytes:
    """The file's content, from each robot's pickled state (:func:`pickle_robot`)."""
    return pickle.dumps((STATE_VERSION, robots), protocol=pickle.HIGHEST_PROTOCOL)


def pickle_robot(robot: RobotHealth) -> bytes:
    return pickle.dumps(robot, protocol=pickle.HIGHEST_PROTOCOL)


def load(monitor: HealthMonitor, path: Path | None) -> bool:
    if path is None or not path.exists():
        return False
    try:
        version, robots = pickle.loads(path.read_bytes())
        if version == STATE_VERSION:
            robots = {robot_id: pickle.loads(state) for robot_id, state in robots.items()}
        elif version != 2:
            raise ValueError(f"state version {version}, this build reads {STATE_VERSION} and 2")
    except Exception as exc:  # noqa: BLE001 - an unreadable state only costs a new learning
        logger.warning("health state %s not used (%s); the normals are learned again", path, exc)
        return False
    monitor.robots = robots
    logger.info("health state restored from %s (%d robot(s))", path, len(robots))
    return True


class StateSaver:
    """Every ``interval_s``, the monitor's state: started right after a batch, pickled robot by robot between
    batches, then written in a thread. Call :meth:`after_batch` on every turn of the loop, empty polls too."""

    def __init__(self, monitor: HealthMonitor, path: Path | None, interval_s: float) -> None:
        self.monitor, self.path, self.interval_s = monitor, path, interval_s
        self.last = time.monotonic()
        self.pending: list[str] = []  # robots still to pickle for the save under way
        self.parts: dict[str, bytes] = {}  # robots pickled for it
        self.saving = False

    @property
    def busy(self) -> bool:
        """A save is being pickled: the loop should not sleep on an empty poll."""
        return self.saving

    async def after_batch(self, *, after_readings: bool = True, force: bool = False) -> None:
        """``after_readings``: a batch was just judged (a due save starts only then, so that its slices have
        the gap before the next burst); ``force``: the whole state now (the service stops)."""
        if self.path is None:
            return
        if force or (not self.saving and after_readings and time.monotonic() - self.last >= self.interval_s):
            self.last, self.saving = time.monotonic(), True
            self.pending, self.parts = list(self.monitor.robots), {}
        if not self.saving:
            return
        deadline = time.perf_counter() + (float("inf") if force else SLICE_S)
        while self.pending:
            robot_id = self.pending.pop()
            robot = self.monitor.robots.get(robot_id)
            if robot is not None:
                self.parts[robot_id] = pickle_robot(robot)
            if time.perf_counter() >= deadline:
                break
        if self.pending:
            return
        data, self.parts, self.saving = dumps(self.parts), {}, False
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
