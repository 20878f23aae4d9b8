"""The detectors: pure, synchronous objects with O(1) work per reading.

Every detector follows :class:`Detector`: ``update(ts, value, idle=...)`` takes one reading of one axis
(``ts`` in epoch seconds, ``value`` in amps or ``None`` for "OK null") and returns a :class:`Finding` while
its rule fires, else ``None``. After each call ``observed`` says whether the value was evidence at all
(an idle row or a ``None`` is not): the lifecycle only counts observed quiet readings towards closing an
event. ``normalized`` is the last score mapped to [0, 1] (for ``score``); ``state()`` / ``load()`` make
the detector survive a restart. ``kinds`` names the events a detector raises (one lifecycle each: the
``level`` detector raises ``level_high`` and ``level_low``); ``takes_repeats`` says whether a value that
repeats the axis's previous one exactly reaches it.

A detector is one module plus one line in :mod:`consumer_alerts.detectors.registry`. The newer ones split
learning, scoring and thresholding (:mod:`consumer_alerts.detectors.scoring`): a River-style scorer
(``score_one`` then ``learn_one``) and a wrapper that maps its score to severities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from common.wire.schemas import Severity


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule firing on one reading: how bad, on what value, by how much."""

    severity: Severity
    value: float  # the axis's current, amps
    score: float  # the detector's statistic (z, residual, run length ...)
    threshold: float  # the threshold that statistic crossed for this severity
    kind: str | None = None  # the event it belongs to when a detector raises several kinds (None: its name)
    axis: int | None = None  # the axis a robot-level finding blames: its event is filed under it (None: its own)
    instant: bool = False  # about one sample (a surge): its severity is its own, not the axis's level's


class Detector(Protocol):
    name: str
    kinds: tuple[str, ...]
    takes_repeats: bool
    observed: bool
    normalized: float

    def update(self, ts: float, value: float | None, *, idle: bool = False) -> Finding | None: ...

    def state(self) -> dict[str, Any]: ...

    def load(self, state: dict[str, Any]) -> None: ...


def squash(score: float, threshold: float) -> float:
    """A score in [0, 1]: 0 at or below 0, 0.5 at the threshold, towards 1 far above it."""
    if not score > 0 or threshold <= 0:  # also NaN: a window that is not full yet
        return 0.0
    return score / (score + threshold)


class ActiveSamples:
    """What the statistical detectors share: only active, non-``None`` samples count, and a gap without
    any longer than ``stoppage_s`` calls :meth:`on_stoppage`."""

    stoppage_s: float
    last_ts: float | None
    observed: bool
    normalized: float
    takes_repeats = False  # a repeat carries no news about the current: kept out of the baselines

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.name,)

    def admit(self, ts: float, value: float | None, idle: bool) -> bool:
        self.observed = False
        if value is None or idle:
            self.normalized = 0.0
            return False
        if self.last_ts is not None and ts - self.last_ts > self.stoppage_s:
            self.on_stoppage()
        self.last_ts, self.observed = ts, True
        return True

    def on_stoppage(self) -> None: ...


class Hold:
    """How long a condition has held: since the first reading that met it, reset by one that does not."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def update(self, ts: float, met: bool) -> float:
        """Seconds the condition has held at ``ts`` (0.0 on the first reading that meets it; -1 if not met)."""
        if not met:
            self.since = None
            return -1.0
        if self.since is None:
            self.since = ts
        return ts - self.since
