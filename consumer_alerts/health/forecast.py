"""Trend of an axis's health indicator over days, and when it will cross the axis's limit.

Input: per cycle, the axis's deviation from its learned normal (:mod:`consumer_alerts.health.baseline`).
:class:`HourlyMedian` turns those into one value per hour (the median of the hour's cycles, with its
standard error from their spread): a cycle is noisy (±8 %), an hour of ~40 cycles is not, and a few odd
cycles cannot move a median.

:class:`LocalLinearTrend` is a local linear trend Kalman filter on those hourly values: a level and a slope
per hour, both allowed to drift (``level_noise``, ``slope_noise``: how far they may move in an hour), so an
accelerating wear bends the slope upwards instead of being averaged with weeks of slower growth. Why this
rather than Theil-Sen over a window: it keeps two numbers and a 2×2 matrix per robot and axis (no history to
hold in the stream), it steps over stoppages naturally (no value: the state is only predicted; wear goes on
with calendar time), and its covariance gives the forecast's uncertainty directly. Robustness: an hour
whose value lies more than ``gate`` standard deviations from the prediction is skipped; ``shift_after`` such
hours in a row on the same side are taken as a real level shift (sudden damage, a program whose normal is
off), and the level restarts there with its slope kept.

The forecast: the level ``h`` hours ahead is Normal(level + slope·h, var(h)), var(h) from the state's
covariance (times ``interval_scale``) and the level's drift to come (not the slope's: a random walk of the
slope compounded over weeks would make every interval endless). The crossing's p-quantile is the first ``h`` where
P(level > limit) reaches p: the point forecast is p = 0.5, the 80 % interval p = 0.1 to 0.9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

HOUR_S = 3600.0
MAX_HORIZON_H = 120 * 24.0  # beyond ~4 months a forecast of a crossing says nothing: "not within"
_Z = NormalDist()


@dataclass(frozen=True)
class HourValue:
    hour: float  # hours since the epoch, middle of the hour
    value: float  # median deviation of the hour's cycles
    stderr: float
    cycles: int
    program_change: bool = False  # a new program's normal was carried over in this hour


@dataclass
class HourlyMedian:
    """Per-cycle values in, one value per hour out (only hours with at least ``min_cycles`` cycles)."""

    min_cycles: int = 10
    _hour: int | None = None
    _values: list[float] = field(default_factory=list)
    _program_change: bool = False

    def push(self, ts: float, value: float | None, *, program_change: bool = False) -> HourValue | None:
        """``value`` None: no deviation in this cycle, but maybe a program change to pass on."""
        hour = int(ts // HOUR_S)
        done = None
        if self._hour is not None and hour != self._hour:
            done = self.flush()
        self._hour = hour
        if value is not None:
            self._values.append(value)
        self._program_change |= program_change
        return done

    def flush(self) -> HourValue | None:
        values, hour = np.asarray(self._values), self._hour
        self._values = []
        if hour is None or len(values) < self.min_cycles:
            return None  # a program change stays pending for the next hour with values
        median = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - median)))
        change, self._program_change = self._program_change, False
        return HourValue(hour + 0.5, median, 1.2533 * spread / math.sqrt(len(values)), len(values), change)


@dataclass(frozen=True)
class Forecast:
    now: float  # hours since the epoch
    level: float
    slope_per_day: float
    crossing: float  # hours since the epoch; inf when not within MAX_HORIZON_H
    low: float  # 80 % interval of the crossing
    high: float

    def hours_left(self) -> float:
        return max(self.crossing - self.now, 0.0)


@dataclass
class LocalLinearTrend:
    level_noise: float = 0.002  # sd of the level's own drift per hour (day cycles, unexplained moves)
    slope_noise: float = 2e-5  # sd of the slope's change per hour (accelerating wear)
    floor: float = 0.004  # sd added to each hour's own standard error (what a median cannot average away)
    gate: float = 4.0
    shift_after: int = 6
    initial_slope_sd: float = 0.002  # per hour: 0.3 in a week is within 1 sd
    program_change_sd: float = 0.03  # how wrong a carried-over normal may make the level
    interval_scale: float = 1.0  # widens the forecast's spread to what the tuning runs showed
    x: np.ndarray | None = None
    P: np.ndarray | None = None
    t: float | None = None
    _outside: list[float] = field(default_factory=list)

    def update(self, obs: HourValue) -> None:
        r = obs.stderr**2 + self.floor**2
        if self.x is None:
            self.x = np.array([obs.value, 0.0])
            self.P = np.diag([r, self.initial_slope_sd**2])
            self.t = obs.hour
            return
        self._predict(obs.hour)
        if obs.program_change:
            self.P[0, 0] += self.program_change_sd**2
        innovation = obs.value - self.x[0]
        s = self.P[0, 0] + r
        if abs(innovation) > self.gate * math.sqrt(s):
            self._outside.append(innovation)
            if len(self._outside) >= self.shift_after and len({np.sign(v) for v in self._outside}) == 1:
                self.x[0] = obs.value
                self.P[0, 0] = r + self.P[0, 0]
                self._outside.clear()
            return
        self._outside.clear()
        k = self.P[:, 0] / s
        self.x = self.x + k * innovation
        self.P = self.P - np.outer(k, self.P[0, :])

    def forecast(self, limit: float, now: float | None = None) -> Forecast | None:
        """When the level crosses ``limit``, seen from ``now`` (hours; default the last update)."""
        if self.x is None:
            return None
        now = self.t if now is None else now
        level, slope = self.x
        h = np.arange(0.0, MAX_HORIZON_H, 1.0) + (now - self.t)
        mean = level + slope * h
        # The slope's own random walk is for tracking; compounded over weeks ahead it would swamp every
        # forecast. Ahead, the uncertainty is the state's, scaled by interval_scale, plus the level's drift.
        var = self.interval_scale**2 * (self.P[0, 0] + 2 * h * self.P[0, 1] + h * h * self.P[1, 1])
        var = var + self.level_noise**2 * h
        score = (mean - limit) / np.sqrt(var)  # P(level > limit) = Phi(score)

        def first(p: float) -> float:
            hit = np.flatnonzero(score >= _Z.inv_cdf(p))
            return float(self.t + h[hit[0]]) if hit.size else math.inf

        return Forecast(
            now, float(level + slope * (now - self.t)), float(slope * 24), first(0.5), first(0.1), first(0.9)
        )

    def _predict(self, hour: float) -> None:
        dt = max(hour - self.t, 0.0)
        f = np.array([[1.0, dt], [0.0, 1.0]])
        q = np.array(
            [
                [self.level_noise**2 * dt + self.slope_noise**2 * dt**3 / 3, self.slope_noise**2 * dt**2 / 2],
                [self.slope_noise**2 * dt**2 / 2, self.slope_noise**2 * dt],
            ]
        )
        self.x = f @ self.x
        self.P = f @ self.P @ f.T + q
        self.t = hour
