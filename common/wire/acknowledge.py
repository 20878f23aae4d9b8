"""The one way an acknowledgement enters the system, shared by the dashboard and the API: the event published
again on the alerts topic, acknowledged. consumer_db stores it and every live view shows it by the one merge
rule (``Alert.merged_with``), whoever acknowledged it."""

from __future__ import annotations

from datetime import datetime

from common.wire.bus import Bus
from common.wire.schemas import AckOutcome, Alert


async def publish_acknowledgement(
    bus: Bus,
    topic: str,
    alert: Alert,
    who: str,
    at: datetime,
    outcome: AckOutcome | None = None,
    note: str | None = None,
) -> Alert:
    """Publish ``alert`` acknowledged by ``who`` at ``at`` (keyed by robot, as the detectors publish it);
    returns the acknowledged event."""
    acked = alert.acknowledged(who, at, outcome, note)
    await bus.publish(topic, alert.robot_id, acked.to_bytes())
    return acked
