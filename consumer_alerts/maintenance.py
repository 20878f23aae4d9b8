"""The maintenance log as the detectors follow it: a part replaced on a joint restarts what they learnt of it.

The maintenance topic is read in the same subscription as the readings (both keyed by robot id), so an
entry's offset is committed like a reading's: only with the snapshot that holds its effect. An entry
``part_replaced`` drops the axis's detectors (they learn the new part from its next readings, as on first
sight) and restarts its health baseline and trend (:meth:`HealthMonitor.restart`); the events open on it
close. Every other action is only recorded (consumer_db). An entry that cannot be read is skipped here:
consumer_db keeps it in the dead letters with its reason, as it does a bad reading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from common.errors import SchemaError
from common.metrics import reason_class
from common.wire.bus import Message
from common.wire.schemas import Alert, MaintenanceAction, MaintenanceEntry, ReadingPolicy
from consumer_alerts.engine import DetectorEngine
from consumer_alerts.health.monitor import HealthMonitor

logger = logging.getLogger(__name__)

RESTARTS = Counter(
    "axiswatch_consumer_alerts_axis_restarts_total", "Axes whose baselines restarted for a part replaced."
)
ENTRIES_SKIPPED = Counter(
    "axiswatch_consumer_alerts_maintenance_skipped_total",
    "Maintenance entries that could not be read, by reason class (consumer_db keeps them as dead letters).",
    ["reason"],
)


@dataclass
class MaintenanceFollower:
    topic: str
    engine: DetectorEngine
    policy: ReadingPolicy
    health: HealthMonitor | None = None

    def take(self, message: Message, before: Callable[[str], None]) -> list[Alert]:
        """The events the entry closes; ``before(robot_id)`` is called ahead of any change to the robot."""
        try:
            entry = MaintenanceEntry.from_bytes(message.value)
            refused = self.policy.robot_problem(entry.robot_id)
            if refused:
                raise SchemaError(f"MaintenanceEntry: {refused}")
        except SchemaError as exc:
            ENTRIES_SKIPPED.labels(reason_class(str(exc))).inc()
            logger.warning("%s/%d offset %d skipped: %s", message.topic, message.partition, message.offset, exc)
            return []
        if entry.action is not MaintenanceAction.PART_REPLACED:
            return []
        before(entry.robot_id)
        return self.part_replaced(entry)

    def part_replaced(self, entry: MaintenanceEntry) -> list[Alert]:
        robot = self.engine.robots.get(entry.robot_id)
        if robot is None and (self.health is None or entry.robot_id not in self.health.robots):
            return []  # a robot these detectors never saw has nothing to forget (and gets no state for it)
        # From that moment, in the feed's time: the robot's last reading if the entry is newer (the stream lags
        # a little behind the people at the joint; a replay of old readings runs far behind).
        last = datetime.fromtimestamp(robot.last_ts, UTC) if robot is not None and robot.last_ts else entry.at
        at = min(entry.at, last)
        alerts = self.engine.restart_axis(entry.robot_id, entry.axis, at)
        if self.health is not None and entry.robot_id in self.health.robots:
            due = self.health.restart(entry.robot_id, entry.axis, at)
            alerts += [due] if due is not None else []
        RESTARTS.inc()
        logger.info(
            "robot %r axis %d: part replaced (entry %r); its baselines and trend start again",
            entry.robot_id,
            entry.axis,
            entry.entry_id,
        )
        return alerts
