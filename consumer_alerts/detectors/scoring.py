"""Learning, scoring and thresholding apart.

- A **scorer** (River's interface: ``score_one(x)`` then ``learn_one(x)``) turns one value into a score in
  [0, 1] where :data:`ALERT_SCORE` (0.5) means "as unlikely as an alert should be"; ``direction`` says
  whether the value it judged was above (+1) or below (-1) normal.
- :class:`ThresholdedDetector` wraps a scorer into the engine's :class:`~consumer_alerts.detectors.Detector`:
  it learns the feed's own sampling interval, applies the time rules in units of it (stoppage, hold) and maps
  the score to a severity per direction (``<name>_high`` and ``<name>_low`` events).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from common.wire.schemas import Severity
from consumer_alerts.detectors import Finding

ALERT_SCORE = 0.5  # the one alert level: ``score`` writes >= 0.5 exactly where the service raises an ALERT


class Scorer(Protocol):
    direction: int  # +1: the last value judged was above normal; -1: below

    def score_one(self, x: float) -> float: ...

    def learn_one(self, x: float) -> None: ...

    def on_stoppage(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def load(self, state: dict[str, Any]) -> None: ...


class SamplingInterval:
    """A feed's usual time between two readings: the median of the last ``size`` positive gaps."""

    __slots__ = ("gaps", "size", "seconds", "_since")

    def __init__(self, size: int = 15, gaps: list[float] | None = None) -> None:
        self.gaps: deque[float] = deque(gaps or (), maxlen=size)
        self.size = size
        self.seconds = 0.0
        self._since = 0
        if self.gaps:
            self._median()

    def push(self, gap: float) -> None:
        if gap <= 0:
            return
        gaps = self.gaps  # pushed for every robot and twice per active axis of every reading: locals, not lookups
        gaps.append(gap)
        since = self._since = self._since + 1
        # The median moves slowly: recomputed every few gaps while it settles, then once per window.
        if since >= self.size or len(gaps) < self.size:
            self._median()

    def _median(self) -> None:
        ordered = sorted(self.gaps)
        self.seconds = ordered[len(ordered) // 2]
        self._since = 0

    def state(self) -> dict[str, Any]:
        # flat, with names of its own: it is merged into a detector's state, whose lists are its windows
        return {
            "gaps": list(self.gaps),
            "gaps_size": self.gaps.maxlen,
            "interval_s": self.seconds,
            "since": self._since,
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> SamplingInterval:
        interval = cls(raw["gaps_size"], raw["gaps"])
        # as they were, not recomputed: the median moves once per window, and a restored detector must judge
        # the next reading with the interval an uninterrupted one has
        interval.seconds, interval._since = raw["interval_s"], raw["since"]
        return interval


class ThresholdedDetector:
    """A scorer as an engine detector, with the domain's time rules around it.

    - ``warmup_s``: the scorer learns but does not score for this much feed time from the first reading
      (besides its own warm-up in readings): an hour of a robot is more than its first few hundred readings.
    - ``hold_s``: the score must stay >= 0.5 over readings in a row that cover this much feed time, each
      reading covering one sampling interval (a pause in between covers nothing). A robot sampled every
      2 s needs several readings in a row (one sample of a work cycle means nothing, and it stays in the
      smoothing window for a few readings); a feed sampled every 5 minutes, one.
    - A gap without readings longer than ``stoppage_readings`` sampling intervals (and ``stoppage_s``) is a
      stoppage: the scorer forgets its short-term state, the hold starts over.
    - ERROR at ``error_high`` / ``error_low`` (a drop has severities of its own).
    """

    takes_repeats = True  # a value clamped or stuck far from normal is also an over- or under-load

    def __init__(
        self,
        name: str,
        scorer: Scorer,
        *,
        error_high: float,
        error_low: float,
        hold_s: float,
        warmup_s: float,
        stoppage_readings: float,
        stoppage_s: float,
    ) -> None:
        if not ALERT_SCORE <= error_high <= 1 or not ALERT_SCORE <= error_low <= 1:
            raise ValueError("ERROR levels must lie within [0.5, 1]")
        self.name, self.scorer = name, scorer
        self.kinds = (f"{name}_high", f"{name}_low")
        self.error_high, self.error_low, self.hold_s, self.warmup_s = error_high, error_low, hold_s, warmup_s
        self.first_ts: float | None = None
        self.stoppage_readings, self.stoppage_s = stoppage_readings, stoppage_s
        self.interval = SamplingInterval()
        self.last_ts: float | None = None
        self.run = 0  # readings in a row at or above the alert level
        self.observed, self.normalized = False, 0.0

    def update(self, ts: float, value: float | None, *, idle: bool = False) -> Finding | None:
        if value is None or (idle and value == 0):
            self.observed, self.normalized = False, 0.0
            return None
        self.observed = True
        scorer, last_ts = self.scorer, self.last_ts
        if last_ts is not None:
            gap = ts - last_ts
            # a stoppage: longer than stoppage_s and than stoppage_readings intervals (the second rarely asked)
            if gap > self.stoppage_s and gap > self.stoppage_readings * self.interval.seconds:
                scorer.on_stoppage()
                self.run = 0
            self.interval.push(gap)
        else:
            self.first_ts = ts
        self.last_ts = ts
        score = scorer.score_one(value)
        scorer.learn_one(value)
        if ts - self.first_ts < self.warmup_s:
            score = 0.0  # still learning what normal is
        self.normalized = score
        if score < ALERT_SCORE:
            self.run = 0
            return None
        self.run += 1
        if self.run * self.interval.seconds < self.hold_s:
            return None
        high = self.scorer.direction > 0
        error = self.error_high if high else self.error_low
        severity, threshold = (Severity.ERROR, error) if score >= error else (Severity.ALERT, ALERT_SCORE)
        return Finding(severity, value, score, threshold, self.kinds[0] if high else self.kinds[1])

    def on_stoppage(self) -> None:
        self.scorer.on_stoppage()
        self.run = 0

    def state(self) -> dict[str, Any]:
        return {
            **self.scorer.state(),
            **self.interval.state(),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "run": self.run,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.scorer.load(state)
        self.interval = SamplingInterval.from_state(state)
        self.first_ts, self.last_ts, self.run = state["first_ts"], state["last_ts"], int(state["run"])
