"""Surviving a restart or a move: what the alerts topic already holds.

The alerts topic is the truth about events: reading it back tells which were already sent (a re-processed
reading must not raise them again). The detectors' state, open events included, comes from the state topic
(consumer_alerts.checkpoint).
"""

from __future__ import annotations

import asyncio
import logging

from common.errors import SchemaError
from common.wire.bus import Bus, Message
from common.wire.schemas import Alert

logger = logging.getLogger(__name__)


async def read_to_end(bus: Bus, topic: str, *, timeout_s: float = 60.0) -> list[Message]:
    """Every message now on ``topic``, all partitions, from the beginning to the current end."""
    async with asyncio.timeout(timeout_s):
        return await bus.read_to_end(topic)


async def latest_alerts(bus: Bus, topic: str) -> dict[str, Alert]:
    """Every event on the alerts topic, its messages merged in order (``Alert.merged_with``)."""
    latest: dict[str, Alert] = {}
    unreadable = 0
    for message in await read_to_end(bus, topic):
        try:
            alert = Alert.from_bytes(message.value)
        except SchemaError as exc:
            unreadable += 1
            logger.debug("alerts topic offset %d: %s", message.offset, exc)
            continue
        held = latest.get(alert.event_id)
        latest[alert.event_id] = alert if held is None else held.merged_with(alert)
    if unreadable:
        logger.warning("alerts topic %s: %d unreadable message(s) skipped", topic, unreadable)
    return latest


def already_sent(alert: Alert, sent: dict[str, Alert]) -> bool:
    """True when the topic already has this change of the event, or a later one: re-derived after a restart
    or a move from a state older than the topic, an OPEN ALERT the topic holds as escalated to ERROR since
    adds nothing (merged in, it changes neither severity nor peak)."""
    known = sent.get(alert.event_id)
    if known is None:
        return False
    if known.state == "closed":
        return True
    if alert.state == "closed":
        return False
    merged = known.merged_with(alert)
    return (merged.severity, merged.peak_amps or 0) == (known.severity, known.peak_amps or 0)


def remember(sent: dict[str, Alert], alerts: list[Alert], *, limit: int = 50_000) -> None:
    """Note what was sent; past ``limit`` events, forget the closed ones (memory stays bounded)."""
    sent.update((a.event_id, a) for a in alerts)
    if len(sent) > limit:
        for key in [k for k, a in sent.items() if a.state == "closed"]:
            del sent[key]
