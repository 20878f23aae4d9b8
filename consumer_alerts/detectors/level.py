"""The level detector: how unusual is this value for this series, in both directions, calibrated.

One scorer (River's ``score_one`` / ``learn_one``) fuses three signs that a series left its normal
behaviour; its score is in [0, 1] and means the same in every series (0.5 = alert):

- **Deviation, calibrated.** The mean of the last ``short`` values against a slow exponentially weighted
  mean, in units of the slow spread, averaged over ``average`` readings. That statistic is then judged
  against its own history (the last ``history`` values): the Gaussian tail probability of the current one,
  as Numenta's anomaly likelihood does. A tail of ``alert_tail`` scores 0.5, its square 1.0. A series
  whose statistic always swings wide needs a wider swing to score: that is what makes one alert level fit
  every feed.
- **New extremes.** A value beyond the range seen so far by more than ``extreme_tolerance`` of that range
  scores 1. While an excursion lasts the range is held (so a clamped value keeps firing); it takes the
  excursion in when the value comes back, or after ``extreme_absorb`` readings (a new normal).
- **New sequences.** The smoothed value quantised to ``novelty_levels`` levels of the range; a sequence of
  ``novelty_order`` levels never seen before scores 1 (a pattern the series never showed, e.g. a daily
  cycle that stops), if the series showed no new sequence in the ``novelty_quiet`` readings before: one
  whose sequences keep being new (noise, a wandering level) is not surprised by one more.

Nothing scores during the first ``warmup`` readings (the series' probation), nor until the smoothing
windows are full again after a stoppage. The score never looks ahead: each reading is scored on what came
before it, then learnt.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from consumer_alerts.detectors.window import RollingWindow

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class LevelOptions:
    warmup: int
    short: int
    average: int
    history: int
    alpha: float
    alert_tail: float
    extreme_tolerance: float
    extreme_absorb: int
    novelty_levels: int
    novelty_order: int
    novelty_quiet: int


class LevelScorer:
    def __init__(self, options: LevelOptions) -> None:
        o = self.options = options
        if not 0 < o.alert_tail < 1:
            raise ValueError(f"alert_tail must lie within (0, 1), got {o.alert_tail}")
        self._per_decade = 1.0 / (-2.0 * math.log10(o.alert_tail))  # score per decade of tail probability
        self.short = RollingWindow(o.short, spread=False)  # their means only
        self.average = RollingWindow(o.average, spread=False)
        self.history = RollingWindow(o.history)
        self.count = 0
        self.mean = self.var = 0.0
        self.low = self.high = math.nan  # the range taken in
        self.out_low = self.out_high = math.nan  # an excursion beyond it, not taken in yet
        self.out_run = 0
        self.context: deque[int] = deque(maxlen=o.novelty_order)
        self.seen: set[int] = set()
        self.last_new = -options.novelty_quiet  # the reading that showed the last new sequence
        self.direction = 1
        self._stat = 0.0

    def score_one(self, x: float) -> float:
        o = self.options
        short, average = self.short, self.average
        short.push(x)
        smooth = short.mean
        mean = self.mean
        d = smooth - mean
        self.direction = 1 if d >= 0 else -1
        spread = math.sqrt(self.var)
        floor = 1e-9 + 1e-3 * abs(mean)
        average.push((d if d >= 0 else -d) / (spread if spread > floor else floor) if self.count >= 2 else 0.0)
        stat = self._stat = average.mean
        if len(average.values) < average.size:
            return 0.0  # just after a start or a stoppage: the windows are refilling
        score = 0.0
        history = self.history
        if len(history.values) >= o.warmup:
            mu = history.mean
            if stat > mu:  # at or below its usual value the statistic scores nothing
                sd = max(history.std, 0.03 * max(mu, 1e-3))
                tail = 0.5 * math.erfc((stat - mu) / (sd * SQRT2))
                score = min(-math.log10(tail) * self._per_decade, 1.0) if tail > 0 else 1.0
        low, high = self.low, self.high
        warm = self.count >= o.warmup
        if warm:
            tolerance = o.extreme_tolerance * (high - low)
            if x > high + tolerance:
                score, self.direction = 1.0, 1
            elif x < low - tolerance:
                score, self.direction = 1.0, -1
        if high > low:
            levels = o.novelty_levels
            level = int((smooth - low) / (high - low) * levels)
            context = self.context
            context.append(0 if level < 0 else levels if level > levels else level)
            if len(context) == context.maxlen:
                key = 0
                for lev in context:
                    key = key * (levels + 1) + lev
                if key not in self.seen:
                    self.seen.add(key)
                    if warm and self.count - self.last_new >= o.novelty_quiet:
                        score = 1.0
                    self.last_new = self.count  # in the warm-up too: it learns how often the series is new
        return score

    def learn_one(self, x: float) -> None:
        o = self.options
        if self.average.full:
            self.history.push(self._stat)
        if self.count == 0:
            self.mean, self.low, self.high = x, x, x
        else:
            d = x - self.mean
            self.mean += o.alpha * d
            self.var = (1.0 - o.alpha) * (self.var + o.alpha * d * d)
        self.count += 1
        tolerance = o.extreme_tolerance * (self.high - self.low)
        if self.low - tolerance <= x <= self.high + tolerance:
            self._take_excursion()
            self.low, self.high = min(self.low, x), max(self.high, x)
            return
        # Beyond the range: hold it while the excursion lasts, so that a clamped value keeps scoring.
        self.out_low = x if math.isnan(self.out_low) else min(self.out_low, x)
        self.out_high = x if math.isnan(self.out_high) else max(self.out_high, x)
        self.out_run += 1
        if self.out_run >= o.extreme_absorb:
            self._take_excursion()

    def _take_excursion(self) -> None:
        if self.out_run:
            self.low, self.high = min(self.low, self.out_low), max(self.high, self.out_high)
            self.out_low = self.out_high = math.nan
            self.out_run = 0

    def on_stoppage(self) -> None:
        # A restart is not the continuation of the last few readings: the smoothing windows refill first.
        self.short.clear()
        self.average.clear()
        self.context.clear()

    def state(self) -> dict[str, Any]:
        return {
            **self.short.state("short"),
            **self.average.state("average"),
            **self.history.state("history"),
            "context": list(self.context),
            "seen": sorted(self.seen),
            "last_new": self.last_new,
            "count": self.count,
            "mean": self.mean,
            "var": self.var,
            "range": [self.low, self.high, self.out_low, self.out_high],
            "out_run": self.out_run,
        }

    def load(self, state: dict[str, Any]) -> None:
        o = self.options
        self.short = RollingWindow.from_state(o.short, state, "short", spread=False)
        self.average = RollingWindow.from_state(o.average, state, "average", spread=False)
        self.history = RollingWindow.from_state(o.history, state, "history")
        self.context = deque((int(v) for v in state["context"]), maxlen=o.novelty_order)
        self.seen = {int(v) for v in state["seen"]}
        self.last_new = int(state.get("last_new", -o.novelty_quiet))  # absent in a snapshot from before the rule
        self.count, self.mean, self.var = int(state["count"]), state["mean"], state["var"]
        self.low, self.high, self.out_low, self.out_high = state["range"]
        self.out_run = int(state["out_run"])
