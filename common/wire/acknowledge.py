"""The one way an acknowledgement enters the system, shared by the dashboard and the API: the event published
again on the alerts topic, acknowledged. consumer_db stores it and every live view shows it by the one merge
rule (``Alert.merged_with``), whoever acknowledged it.

An acknowledgement whose outcome is "part replaced" is also an entry of the maintenance log (published on the
maintenance topic, after the acknowledgement), so that consumer_alerts restarts the axis's baseline and trend
whichever way it was acknowledged. The maintenance log's own entries go out through ``publish_maintenance``."""

from __future__ import annotations

from datetime import datetime

from common.wire.bus import Bus
from common.wire.schemas import AckOutcome, Alert, MaintenanceAction, MaintenanceEntry


async def publish_acknowledgement(
    bus: Bus,
    topic: str,
    alert: Alert,
    who: str,
    at: datetime,
    outcome: AckOutcome | None = None,
    note: str | None = None,
    *,
    maintenance_topic: str,
) -> Alert:
    """Publish ``alert`` acknowledged by ``who`` at ``at`` (keyed by robot, as the detectors publish it);
    returns the acknowledged event. With ``outcome`` part_replaced, the maintenance entry goes to
    ``maintenance_topic`` too."""
    acked = alert.acknowledged(who, at, outcome, note)
    await bus.publish(topic, alert.robot_id, acked.to_bytes())
    if outcome is AckOutcome.PART_REPLACED and alert.axis >= 1:
        entry = MaintenanceEntry.new(
            alert.robot_id, alert.axis, MaintenanceAction.PART_REPLACED, who, at, note, alert.event_id
        )
        await publish_maintenance(bus, maintenance_topic, entry)
    return acked


async def publish_maintenance(bus: Bus, topic: str, entry: MaintenanceEntry) -> MaintenanceEntry:
    """Publish one maintenance log entry, keyed by robot like the readings it concerns."""
    await bus.publish(topic, entry.robot_id, entry.to_bytes())
    return entry
