"""What is worth telling, to whom and when: pure functions of an event's states, a channel's rules and the clock.

held (what the notifier knew of the event) + the message -> merged state -> the changes it makes
change + channel rules (change asked for, severity, robot, axis) -> a delivery, due now or after quiet hours
open, unacknowledged event + remind_every_min -> reminder number n, due n intervals after the first notice
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from common.wire.schemas import Alert, AlertState, Severity
from notifier.config import Channel, QuietHours


def merge(held: Alert | None, newer: Alert) -> Alert:
    """The event with a newer message folded in (``Alert.merged_with``), except that a closed event stays
    closed: an event id is never reopened (a new opening gets a new id), so an open state after a close can
    only be an older message read again after a restart, and must not bring reminders back."""
    if held is None:
        return newer
    merged = held.merged_with(newer)
    if held.state == AlertState.CLOSED:
        merged = merged.model_copy(update={"state": AlertState.CLOSED, "closed_at": held.closed_at})
    return merged


def changes(held: Alert | None, merged: Alert, maintenance_detectors: list[str]) -> list[str]:
    """The changes from ``held`` to ``merged`` that may be notified. A first sight is an opening (or
    "maintenance due" for a maintenance detector) whatever its severity; escalate is ALERT -> ERROR; close is
    open -> closed. A peak that grows, or an acknowledgement, changes nothing worth a message."""
    found = []
    if held is None:
        found.append("maintenance_due" if merged.detector in maintenance_detectors else "open")
    elif held.severity != Severity.ERROR and merged.severity == Severity.ERROR:
        found.append("escalate")
    if merged.state == AlertState.CLOSED and (held is None or held.state == AlertState.OPEN):
        found.append("close")
    return found


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None when ``now`` is not in quiet hours. Local wall
    times, so a plant's night stays 22:00-06:00 across daylight-saving changes."""
    if quiet is None:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside = quiet.start <= clock < quiet.end
    else:  # across midnight
        inside = clock >= quiet.start or clock < quiet.end
    if not inside:
        return None
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(UTC)


def due_at(channel: Channel, now: datetime) -> datetime:
    """When a notice raised ``now`` may go out on ``channel``."""
    return quiet_until(channel.quiet_hours, now) or now


SEVERITY_RANK = {Severity.ALERT: 1, Severity.ERROR: 2}


def wants(channel: Channel, alert: Alert) -> bool:
    """The channel's filters: severity at least ``min_severity``, robot among ``robots`` (ids or glob
    patterns), axis among ``axes``; an empty list lets every one through."""
    if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[channel.min_severity]:
        return False
    if channel.robots and not any(fnmatch.fnmatchcase(alert.robot_id, pattern) for pattern in channel.robots):
        return False
    return not channel.axes or alert.axis in channel.axes


def wants_change(channel: Channel, change: str, alert: Alert) -> bool:
    return change in channel.changes and wants(channel, alert)


def reminder_number(channel: Channel, first_notice: datetime, now: datetime) -> int | None:
    """The reminder due ``now`` for an event first notified at ``first_notice``: n once n whole intervals have
    passed (n >= 1), None when none is due or the channel sends no reminders. Numbered from the first notice,
    so a notifier that was down for hours sends the current reminder once, not every one it missed; none is
    raised in quiet hours (they would all wait for the morning)."""
    if channel.remind_every_min is None or quiet_until(channel.quiet_hours, now) is not None:
        return None
    n = int((now - first_notice).total_seconds() // (channel.remind_every_min * 60))
    return n if n >= 1 else None
