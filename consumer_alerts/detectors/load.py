"""The load detector: is the axis drawing a different share of current than it normally does, over a work cycle?

A joint's current swings from near 0 to its peak within every cycle, so one reading (or a few) says little
about its load: a load halved stays inside the range the axis draws anyway. What a lost load, a broken belt
or an overload changes is the level over several cycles. So the statistic is the **log-mean of the last
``window`` active readings** (non-zero, repeats included: a clamp is a load too), i.e. the geometric mean of
the current in a window of work; a change of load by a factor ``r`` moves it by ``ln r`` whatever the shape
of the cycle. Against it:

- the **normal level**: the mean log current, learnt from the feed itself (a plain mean over the first
  ``warmup`` active readings, then weighted by ``alpha``), frozen while the window is in the outer half of its
  band or beyond (a fault does not become normal, nor widens the band), re-learnt from the window once a change
  has lasted ``absorb`` active readings (a new program: one event, then quiet);
- before it has learnt that (``warmup``), the **model's level** when the axis has a model (``prior``: the mean
  log current of its training): the feed is judged from a window half full (:data:`PRIOR_FILL`), so a load
  already gone at the first reading is seen before the fault is over. The spread on this axis is not known
  yet, so the band is wide then: a third of the log distance to the farther gross ratio, either way
  (``gross_low`` 0.2: 0.58x to 1.71x), but a drop is scored on a narrower band below (:data:`PRIOR_DROP_BAND`,
  0.64x); what the axis learns is gated on the wide band;
- the **spread of the statistic on this axis's own data**: the exponentially weighted deviation of the
  window's log-mean from the normal level. The band is ``sigmas`` of that spread, and never narrower than
  ``min_ratio`` either way: an axis whose window mean swings a lot on clean data needs a larger change. Until
  ``warmup`` active readings are learnt the spread is not known, so the band in force is the wide one of the
  model's level (with or without a model): the spread is learnt only from windows in the inner half of the
  band, and a band as narrow as ``min_ratio`` there would keep out the ordinary swing of a noisy axis, so the
  spread, and the band after warm-up, would come out too small (a fresh start, or the re-learn after a program
  change, then alerts on the new program's ordinary swings).

A flat run (``FLAT_RUN`` identical readings or more, other than the sensor's least value) is judged by its value
too, not only by the window it is a part of: a clamp's value is the joint's level, and a clamp of a few dozen readings
moves a window of 120 by a fraction of its size (a stuck sensor reads the same: the engine raises it as an ALERT).
A flat run (a stuck sensor, a clamp) leaves the window once live readings are back: its values were no
load, and an event it raised closes with the fault instead of a window later. A run of the axis's least value
broken within :data:`FLOOR_RUN` readings is no flat run: a gross drop on a coarsely quantised axis reads its
least step that way, between the cycle's peaks (the load below what the sensor resolves).

The score (River's ``score_one`` / ``learn_one``) is 0.5 at the band's edge and rises linearly in log ratio
to 0.8 (:data:`GROSS_SCORE`, the ERROR level of the thresholding wrapper) at the gross ratios
``gross_high`` / ``gross_low`` (load doubled, 80 % of it gone), so the severity is how far the load is from
normal, consistently up and down. ``ratio`` is the last window's level over normal.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from consumer_alerts.detectors.scoring import ALERT_SCORE

GROSS_SCORE = 0.8  # the score at a gross ratio: the ERROR level the registry gives the thresholding wrapper
# A run of this many identical readings is a flat sensor (a live one shows a dozen at most, on a nearly unloaded
# axis): until a whole window of readings has come since, the window's level is no proof of the load, so its
# score stays below the ERROR level (a stuck sensor reads the same as a clamp; the engine's rule for repeats).
FLAT_RUN, FLAT_CAP = 10, 0.75
# Windows in the outer half of the band teach nothing (the start of a fault must not widen the band it crosses).
LEARN_LIMIT = 0.5 * ALERT_SCORE
# A flat run this long is no live sensor's (a nearly unloaded axis snapped to its step repeats a dozen readings):
# once it ends, its values leave the window.
FORGET_RUN = 3 * FLAT_RUN
# A run of the sensor's least value broken sooner than this was a load below its resolution (a gross drop on axis
# 8 of the real export, 0.02 A steps under a 0.1 A normal, reads runs of up to ~46 between peaks), not a flat run.
FLOOR_RUN = 2 * FORGET_RUN
# Judged against the model's level, a window half full already tells a load gone from the first reading: a
# light axis fills its window in more than ten minutes of work, longer than many faults last. The prior's band
# is wide enough for the noisier half window.
PRIOR_FILL = 0.5
# Judged against the model's level, the band's half-width below it for the score, in log ratio (0.64x; the wide
# band above): with the wide band (0.58x) a load ramping away at a robot's first work sat just inside it (0.59-0.62x
# of the model's level at its lowest, broad tuning seeds 1 and 3). What the axis learns is still gated on the wide
# band: the model's level may sit above the feed's own (axis 8 of the real export: 0.18 in log), and gated on the
# narrower band its warm-up windows taught nothing and it learnt another normal (branch `drops12`).
PRIOR_DROP_BAND = 0.45
# Once out of its band, a window stays out until its score falls below this: a window at the edge crosses it back
# and forth as single readings enter and leave, and each crossing started the hold (``LOAD_HOLD_S``) over.
OUT_UNTIL = 0.9 * ALERT_SCORE


@dataclass(frozen=True)
class LoadOptions:
    window: int
    warmup: int
    alpha: float
    sigmas: float
    min_ratio: float
    gross_high: float
    gross_low: float
    absorb: int


class LoadScorer:
    def __init__(self, options: LoadOptions, prior: float | None = None) -> None:
        o = self.options = options
        self.prior = prior  # the normal log level from the axis's model, judged against until warm-up ends
        if not 0 < o.gross_low < o.min_ratio < 1 < o.gross_high:
            raise ValueError("load ratios must satisfy 0 < gross_low < min_ratio < 1 < gross_high")
        self._floor = -math.log(o.min_ratio)  # the band's narrowest half-width, in log ratio
        self._gross_high, self._gross_low = math.log(o.gross_high), -math.log(o.gross_low)
        self._prior_band = max(max(self._gross_high, self._gross_low) / 3, self._floor)
        self._prior_drop_band = max(min(self._prior_band, PRIOR_DROP_BAND), self._floor)
        self._window = o.window
        self._prior_fill = max(int(o.window * PRIOR_FILL), 1)
        self.logs: deque[float] = deque(maxlen=o.window)
        self.total = 0.0
        self._pushes = 0
        self.count = 0  # active readings learnt
        self.windows = 0  # full windows learnt (for the spread)
        self.normal = 0.0  # the normal log level
        self.spread2 = 0.0  # mean square deviation of the window's log-mean from normal, on normal data
        self.out_run = 0  # active readings in a row out of the band
        self.direction = 1
        self._score = 0.0
        self._learn_score = 0.0  # the score on the wide band while judged against the model's level: gates learning
        self._out = False  # the last window scored was out of the band (OUT_UNTIL)
        self._deviation = 0.0
        self._own_deviation = 0.0  # the window's level against the feed's own normal: what the spread is learnt from
        self._band = self._prior_band  # the spread is not known yet
        self._last, self._run, self._since_flat = 0.0, 0, o.window
        self._since_before_run = o.window
        self.least = math.inf  # the least value read: the sensor's resolution, on a coarsely quantised axis

    def score_one(self, x: float) -> float:
        if x <= 0:
            return self._score  # an axis at rest within a working row: no news about its load
        if x == self._last:
            self._run += 1
        else:
            if self._run >= FLAT_RUN and self._floor_run():
                self._since_flat = self._since_before_run + self._run  # it was the load: never flat
            elif self._run >= FORGET_RUN:
                self._forget_flat_run()
            self._last, self._run, self._since_before_run = x, 1, self._since_flat
        if x < self.least:
            self.least = x
        self._since_flat = 0 if self._run >= FLAT_RUN else self._since_flat + 1
        logs = self.logs
        log_x = math.log(x)
        size = self._window
        evicts = len(logs) == size  # the oldest value leaves as this one enters
        if evicts:
            self.total += log_x - logs[0]
        else:
            self.total += log_x
        logs.append(log_x)
        self._pushes += 1
        if self._pushes >= size:  # a running sum drifts: recomputed once per window (amortised O(1))
            self.total, self._pushes = math.fsum(logs), 0
        if not self.full:
            self._deviation = self._own_deviation = self._score = self._learn_score = 0.0
            self._out = False
            return 0.0
        mean = self.total / len(logs)
        own = self._own_deviation = mean - self.normal
        if self.on_prior:
            d, band = mean - self.prior, self._prior_band
        else:
            d, band = own, self._band
        self._deviation = d
        if self._run >= FLAT_RUN and x > self.least:  # a flat run: its value is its level (the module's docstring)
            flat = log_x - self.reference
            if abs(flat) >= band and abs(flat) > abs(d):
                d = flat  # scored (not sized: ``ratio`` stays the window's)
        self.direction = 1 if d >= 0 else -1
        self._score = self._learn_score = self._banded(d, band)
        if d < 0 and self.on_prior:
            self._score = self._banded(d, self._prior_drop_band)
        if self._score > FLAT_CAP and self._since_flat < self._window:
            self._score = FLAT_CAP
        if self._out and OUT_UNTIL <= self._score < ALERT_SCORE:
            self._score = ALERT_SCORE  # still out: the edge's own jitter does not break the hold
        self._out = self._score >= ALERT_SCORE
        # While it learns what normal is it scores nothing without a prior, but a window out of the band is kept
        # out already.
        return self._score if self.learnt else 0.0

    def _banded(self, d: float, band: float) -> float:
        """The score of a log deviation ``d`` against a band's half-width: 0.5 at its edge, 0.8 at the gross ratio."""
        size = abs(d)
        if size < band:
            return 0.5 * size / band
        span = (self._gross_high if d >= 0 else self._gross_low) - band
        return min(ALERT_SCORE + (GROSS_SCORE - ALERT_SCORE) * (size - band) / span, 1.0) if span > 0 else 1.0

    def _floor_run(self) -> bool:
        """The run just ended read the least value this axis's sensor has read, and was broken within FLOOR_RUN
        readings, once the normal level is known (the model's, or the feed's after warm-up): a load below what
        the sensor resolves, not a frozen sensor. A gross drop on a coarsely quantised axis reads the least step
        for dozens of readings in a row between the cycle's peaks; a stuck sensor or a clamp there reads it
        without a break (flat until it ends, as any flat run)."""
        return self._last <= self.least and self._run < FLOOR_RUN and self.learnt

    def _forget_flat_run(self) -> None:
        """A flat run has just ended: its values were a sensor's or a clamp's, not the load the joint draws now,
        so they leave the window (the window refills from live readings, and an event the run raised closes
        once the fault is over rather than a window later)."""
        logs = self.logs
        for _ in range(min(self._run, len(logs))):
            logs.pop()
        self.total, self._pushes = math.fsum(logs), 0

    @property
    def full(self) -> bool:
        """Its window judges the load: full, or filled enough while judged against the model's level."""
        filled = len(self.logs)
        return filled == self._window or (filled >= self._prior_fill and self.on_prior)

    @property
    def on_prior(self) -> bool:
        """Judged against the model's level: there is one, and the feed's own is not learnt yet."""
        return self.prior is not None and self.count < self.options.warmup

    @property
    def reference(self) -> float:
        """The log level the window is judged against: the model's while ``on_prior``, else the feed's own."""
        return self.prior if self.on_prior else self.normal

    @property
    def flat_recently(self) -> bool:
        """A flat run is still in the window: its level is no proof of the load (a stuck sensor reads the same)."""
        return self._since_flat < self._window

    @property
    def flat_now(self) -> bool:
        """The last value judged is part of a flat run."""
        return self._run >= FLAT_RUN

    @property
    def learnt(self) -> bool:
        """It knows the axis's normal level (from the feed, or from the model until then)."""
        return self.count >= self.options.warmup or self.prior is not None

    @property
    def edge(self) -> float:
        """The band's half-width in force, as a ratio of loads (the last window is judged out beyond it)."""
        return math.exp(self._prior_band if self.on_prior else self._band)

    @property
    def ratio(self) -> float:
        """The last window's level over the normal level."""
        return math.exp(self._deviation)

    def learn_one(self, x: float) -> None:
        if x <= 0:
            return
        o = self.options
        # The outer half of the (wide) band and beyond: frozen, unless it lasts (a new normal).
        if self._learn_score >= LEARN_LIMIT:
            self.out_run += 1
            if self.out_run >= o.absorb:
                if self.count < o.warmup:
                    self.prior = None  # the model's level is not this feed's any more: learnt from the feed
                else:
                    self.normal += self._deviation
                self.out_run = 0
            if self.on_prior:
                self._learn_spread()  # out against the model's level, not necessarily against the feed's own
            return
        self.out_run = 0
        self.count += 1
        self.normal += max(o.alpha, 1.0 / self.count) * (math.log(x) - self.normal)  # a plain mean at first
        self._learn_spread()

    def _learn_spread(self) -> None:
        """The spread learns from a full window in the inner half of the band in force, measured against the feed's
        own normal even while it is judged against the model's level: the spread is this axis's swing, and a
        model's level off by a fifth (axis 8 of the real export, trained on other days) would otherwise widen the
        band for thousands of readings, or, gated by it, keep one side of the swing out."""
        d = self._own_deviation
        if len(self.logs) == self.logs.maxlen and abs(d) < LEARN_LIMIT / ALERT_SCORE * self._band:
            self.windows += 1
            self.spread2 += max(self.options.alpha, 1.0 / self.windows) * (d * d - self.spread2)
            self._band = self._learnt_band()

    def _learnt_band(self) -> float:
        """The band's half-width from the spread learnt, once warm-up has learnt enough of it; the wide band before."""
        if self.count < self.options.warmup:
            return self._prior_band
        return max(self.options.sigmas * math.sqrt(self.spread2), self._floor)

    def restart(self) -> None:
        """The robot's program changed (its model is learned again, ``engine.py``): the level is learnt again,
        from the window's level now on (the change has lasted ``MODEL_RELEARN_S`` of work, so the window holds the
        new program), and judged once ``warmup`` readings are learnt; the spread is kept. It is the axis's own
        swing of the window's level, in log ratio, learnt over hours: a program scales the level, not that swing.
        Learnt again from the new program's first minutes it came out at the band's floor (axis 8 of the real
        export: 0.29 in log after a re-learn, 0.45 over the same hours clean), and the new program's ordinary
        swings alerted an hour or two later (docs/benchmarks.md section 5)."""
        level = self._window_level()
        self.prior, self.out_run = None, 0
        self.count, self.normal = (len(self.logs), level) if level is not None else (0, 0.0)
        self._band = self._learnt_band()
        self._clear_score()

    def relevel(self) -> None:
        """The robot's program changed, though the load detectors did not see it as one (``engine.py``): the
        level it judges against becomes the window's (the change has lasted ``MODEL_RELEARN_S`` of work, so the
        window holds the new program), and it judges on at once with the spread it learnt. Unlike
        :meth:`restart` it does not learn the level again over a warm-up: a re-learn it did not see may be a
        fault's taken for a program, and a drop after it must still be seen."""
        level = self._window_level()
        if level is None:
            return
        if self.on_prior:
            self.prior = level
        else:
            self.normal = level
        self.out_run = 0
        self._clear_score()

    def _window_level(self) -> float | None:
        """The window's level, the mean of its logs (None while it is empty): the new program's after a re-learn."""
        return self.total / len(self.logs) if self.logs else None

    def _clear_score(self) -> None:
        """The last score was against the old level: an axis at rest in a working row repeats it (``score_one``),
        and repeated after a re-learn it opened a `load` event on the re-learn's own reading (tuning seed 13)."""
        self._deviation = self._own_deviation = self._score = self._learn_score = 0.0
        self._out = False

    def on_stoppage(self) -> None:
        # The window keeps the last work before the pause: the load of a program does not change with a pause.
        self.out_run = 0
        # Unless the window was out of its band: the stoppage closed its events, and what it held was a fault's (or a
        # new program's) work from before the rest, which would open them again at the next work, for a fault long
        # over. It refills from the work after the rest; a level still out is seen again then.
        if self._out:
            self.logs.clear()
            self.total, self._pushes, self._score, self._out = 0.0, 0, 0.0, False

    def state(self) -> dict[str, Any]:
        return {
            "logs": list(self.logs),
            "total": [self.total, self._pushes],
            "count": self.count,
            "windows": self.windows,
            "normal": self.normal,
            "spread2": self.spread2,
            "out_run": self.out_run,
            "flat": [self._last, self._run, self._since_flat],
            "prior": self.prior,
            "floor": [self.least if self.least < math.inf else 0.0, self._since_before_run],
            "out": self._out,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.logs = deque(state["logs"], maxlen=self.options.window)
        self.total, self._pushes = state["total"][0], int(state["total"][1])
        self.count, self.windows, self.normal = int(state["count"]), int(state["windows"]), state["normal"]
        self.spread2, self.out_run = state["spread2"], int(state["out_run"])
        last, run, since = state["flat"]
        self._last, self._run, self._since_flat = last, int(run), int(since)
        self._band = self._learnt_band()
        self.prior = state.get("prior", self.prior)  # absent in a snapshot from before the model's level
        # absent in a snapshot from before the floor rule: learnt again from the feed
        least, since = state.get("floor", (0.0, self.options.window))
        self.least, self._since_before_run = least or math.inf, int(since)
        self._out = bool(state.get("out", False))  # absent in a snapshot from before the rule: judged afresh
