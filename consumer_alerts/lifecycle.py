"""The alert lifecycle of one robot/axis/detector: open, escalate ALERT->ERROR, close after a hold-off.

One event at a time per key (no storms): while an event is open, more findings only update it. The
event closes once the rule has been quiet for ``holdoff_s`` - counted from the first *observed* quiet
reading (an idle row says nothing about the joint, so it never starts the count, but time goes on while
the robot idles after that), or from the start of a rest right after the rule's last finding when the
first judged reading after the rest is quiet (an overload that stops because the robot stops). A rest
alone closes nothing: a fault still there at the next work keeps its event. ``closed_at`` is when the
condition cleared, so the duration is how long the trouble lasted, not how long the hold-off was.

Every change publishes the whole event again under the same deterministic ``event_id`` (robot, axis,
detector, opened_at): on open, on escalation, when the peak grows by more than ``PEAK_STEP``, on close.
A restart that re-runs the same readings therefore re-derives the same ids instead of raising new events.

**One event per axis and detector per episode** (:func:`lifecycle_for`): a detector that raises several kinds
(``level_high`` / ``level_low``) keeps one lifecycle per kind, but a finding of one kind while another kind of
the same detector has an event open on the same axis goes on in that event: a level that swings high and then
low is one episode, not two alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.wire.schemas import Alert, AlertState, Severity, iso_utc
from consumer_alerts.detectors import Finding

PEAK_STEP = 1.10  # republish when the peak grows by more than 10 %: informative, but no message storm


def event_id(robot_id: str, axis: int, detector: str, opened_at: datetime) -> str:
    return f"{robot_id}:{axis}:{detector}:{iso_utc(opened_at)}"


@dataclass
class OpenEvent:
    opened_at: datetime
    severity: Severity
    peak: float
    published_peak: float
    threshold: float
    score: float
    clear_since: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    axis: int | None = None  # the axis the event is filed under when not the lifecycle's (a robot-level one)
    on_repeat: bool = False  # a robot-level event that fired on an axis reading a repeat: never an ERROR
    # An event raised from a held ALERT (the engine's ``_release``): the last reading its rule fired on while held.
    # If it closes without firing again, the condition cleared then, not at the release: its ``closed_at``.
    fired_until: datetime | None = None
    # The robot went to rest right after its rule last fired: the first idle row. A rest is no evidence either
    # way, so it closes nothing itself; but if the next judged row is quiet, the quiet began here.
    rest_since: datetime | None = None


def lifecycle_for(lives: tuple[Lifecycle, ...], kind: str, axis: int | None) -> Lifecycle | None:
    """The lifecycle that takes a detector's finding of ``kind`` on ``axis`` (None: the lifecycles' own axis):
    the kind's own, unless it has no event open and another kind of the detector has one open on that axis
    (the other direction of one episode). That event keeps its kind, its id and its direction's peak; the
    finding keeps it open and may escalate it, as one of its own kind would (docs/consumer_alerts.md)."""
    own = next((life for life in lives if life.detector == kind), None)
    if own is None or own.event is not None:
        return own
    at = own.axis if axis is None else axis
    return next((life for life in lives if life.event is not None and life.filed_under() == at), own)


class OpenCount:
    """How many events are open among a group of lifecycles (an axis's): the engine asks it for every axis of
    every reading, and counting as events open and close is cheaper than looking at each lifecycle."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = 0


class Lifecycle:
    def __init__(
        self,
        robot_id: str,
        axis: int,
        detector: str,
        *,
        holdoff_s: float = 300.0,
        low: bool = False,
        count: OpenCount | None = None,
    ) -> None:
        self.robot_id, self.axis, self.detector, self.holdoff_s = robot_id, axis, detector, holdoff_s
        self.low = low  # an event of too little current: its peak is the lowest value while firing
        self.count = count  # the group's count of open events, kept by every change of ``event``
        self._event: OpenEvent | None = None

    @property
    def event(self) -> OpenEvent | None:
        return self._event

    @event.setter
    def event(self, event: OpenEvent | None) -> None:
        if self.count is not None:
            self.count.open += (event is not None) - (self._event is not None)
        self._event = event

    def __setstate__(self, state: dict) -> None:
        # a lifecycle pickled before the count (the health pipeline's state file) kept its event as ``event``
        if "event" in state:
            state["_event"] = state.pop("event")
        state.setdefault("count", None)
        self.__dict__.update(state)

    def filed_under(self) -> int:
        """The axis the open event is filed under (a robot-level event: the axis its finding blamed)."""
        return self.axis if self.event is None or self.event.axis is None else self.event.axis

    def step(self, ts: datetime, finding: Finding | None, observed: bool, resting: bool = False) -> Alert | None:
        """Feed one reading's outcome; return the event to publish when it changed. ``resting``: the robot is
        at rest (an idle row), which counts towards the hold-off once the next judged row is quiet."""
        event = self.event
        if event is not None and ts < event.opened_at:
            return None  # re-read after a restart: older than the event, says nothing about it
        if finding is not None:
            if event is None:
                self.event = OpenEvent(
                    ts,
                    finding.severity,
                    finding.value,
                    finding.value,
                    finding.threshold,
                    finding.score,
                    axis=finding.axis,
                )
                return self._alert(AlertState.OPEN)
            return self._fired(event, finding)
        if event is None:
            return None
        if event.clear_since is None:
            if observed:
                event.clear_since = ts if event.rest_since is None else event.rest_since
            elif resting and event.rest_since is None:
                event.rest_since = ts
        if event.clear_since is not None and (ts - event.clear_since).total_seconds() >= self.holdoff_s:
            return self.close(event.clear_since if event.fired_until is None else event.fired_until)
        return None

    def _fired(self, event: OpenEvent, finding: Finding) -> Alert | None:
        event.clear_since = event.fired_until = event.rest_since = None
        changed = False
        if finding.severity is Severity.ERROR and event.severity is Severity.ALERT:
            event.severity, event.threshold, event.score = Severity.ERROR, finding.threshold, finding.score
            changed = True
        elif finding.severity is event.severity:
            event.score = max(event.score, finding.score)
        if self.low:
            if finding.value < event.peak:
                event.peak = finding.value
                changed = changed or event.peak * PEAK_STEP < event.published_peak
        elif finding.value > event.peak:
            event.peak = finding.value
            changed = changed or event.peak > event.published_peak * PEAK_STEP
        return self._alert(AlertState.OPEN) if changed else None

    def back_from_ahead(self, at: datetime, newest: datetime) -> Alert | None:
        """The robot's clock came back from a leap ahead to ``at``; ``newest`` was its last reading from ahead.
        An event opened from ahead closes as of that last reading (its times are the wrong clock's, and every
        reading back would be "older than the event" for up to a day: it could neither close nor fire); if the
        fault is still there, its detector opens it again on the corrected clock. An event opened before keeps
        going, its quiet counted again from the corrected clock (a quiet spell begun ahead would never end)."""
        event = self.event
        if event is None:
            return None
        if event.opened_at > at:
            return self.close(newest)
        if event.clear_since is not None and event.clear_since > at:
            event.clear_since = None
        if event.rest_since is not None and event.rest_since > at:
            event.rest_since = None
        if event.fired_until is not None and event.fired_until > at:
            event.fired_until = None
        return None

    def close(self, at: datetime) -> Alert | None:
        """Close the open event (if any) as of ``at``; return its final state."""
        if self.event is None:
            return None
        alert = self._alert(AlertState.CLOSED, closed_at=max(at, self.event.opened_at))
        self.event = None
        return alert

    def _alert(self, state: AlertState, closed_at: datetime | None = None) -> Alert:
        event = self.event
        event.published_peak = event.peak
        axis = self.axis if event.axis is None else event.axis
        return Alert(
            event_id=event_id(self.robot_id, axis, self.detector, event.opened_at),
            robot_id=self.robot_id,
            axis=axis,
            detector=self.detector,
            severity=event.severity,
            state=state,
            opened_at=event.opened_at,
            closed_at=closed_at,
            peak_amps=round(event.peak, 5),
            threshold=round(event.threshold, 5),
            score=round(event.score, 5),
            acknowledged_by=event.acknowledged_by,
            acknowledged_at=event.acknowledged_at,
        )

    def restore(self, alert: Alert) -> None:
        """Take over an event that is open on the alerts topic (after a restart): same id, same state."""
        self.event = OpenEvent(
            alert.opened_at,
            alert.severity,
            alert.peak_amps or 0.0,
            alert.peak_amps or 0.0,
            alert.threshold or 0.0,
            alert.score or 0.0,
            acknowledged_by=alert.acknowledged_by,
            acknowledged_at=alert.acknowledged_at,
            axis=alert.axis if alert.axis != self.axis else None,
        )
