"""Trend of an axis's health indicator over days, and when it will cross the axis's limit.

Input: per cycle, the axis's deviation from its learned normal (:mod:`consumer_alerts.health.baseline`).
:class:`HourlyMedian` turns those into one value per hour (the median of the hour's cycles, with its
standard error from their spread): a cycle is noisy (±8 %), an hour of ~40 cycles is not, and a few odd
cycles cannot move a median. The trend takes each hour's value less :func:`common_mode`, what all the
robot's axes show in that hour: the learned normals' shared error (each program change moves every axis
of the robot by the same few %), the ambient day cycle; one joint's wear is what stands apart.

:class:`WearTrend` is a Kalman filter on those hourly values with a level, a slope and (with
``accel_noise`` > 0, the default) an acceleration, each allowed to drift (how far it may move in an hour), so
an accelerating wear bends the forecast forward instead of being averaged with weeks of slower growth (a
plain level + slope model was as late as the naive line on accelerating wear in the tuning runs). Why this
rather than Theil-Sen over a window: it keeps three numbers and a 3×3 matrix per robot and axis (no history
to hold in the stream), it steps over stoppages naturally (no value: the state is only predicted; wear goes on
with calendar time), and its covariance gives the forecast's uncertainty directly. Robustness: an hour
whose value lies more than ``gate`` standard deviations from the prediction is skipped; ``shift_after`` such
hours in a row on the same side are taken as a real level shift (sudden damage, a program whose normal is
off): the level restarts there, and the slope and acceleration keep their values but get back their initial
uncertainty, so the growth after the step is learned from what follows it.

The forecast: ``draws`` possible states from the filter's belief (covariance times ``interval_scale``, plus
``level_bias_sd`` on the level, and ``carry_sd`` more per carried-over normal: the learned normals' own
error beyond what the robot's axes share, which no amount of hourly data reduces and which each program
change adds to; 0.03 before the common mode was taken out), each extended to the limit with the acceleration
clipped at 0 (wear does not slow down by itself): a growing draw whose growth speeds up as an exponential,
level + slope·τ·(e^(h/τ) - 1) with τ = slope / acceleration (the e-folding time its state implies), the rest as
a line (a quadratic where a draw accelerates but its slope is not positive, or τ is under ``MIN_EFOLD_H``: a
healthy axis's noise, not compounding wear); the median of their crossing
times is the forecast, the 10th and 90th percentiles the 80 % interval. Why an exponential rather than the
quadratic of the filter's own state: growth that speeds up keeps speeding up (a quadratic holds its
acceleration fixed, so it forecast such wear a few days late at half its life; docs/benchmarks.md, round 11),
and where the acceleration is nil the two are the same line. ``interval_scale`` and ``level_bias_sd`` are
calibrated, not derived: the pair at which the 80 % interval held the true crossing nearest 80 % in each band
of life left (60-40, 40-17.5, 17.5-5 %) of the forecasts made at every 2.5 % of each worn axis's life on the
benchmark's tuning seeds (``bench.forecast_quality``: 72 axes, 1,656 forecasts; docs/benchmarks.md). The drifts
(``level_noise``, ``slope_noise``, ``accel_noise``) are for tracking only: compounded over weeks ahead they
would make every interval endless. The draws are the same for every call (seeded), so a
forecast is a function of the state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

HOUR_S = 3600.0
MAX_HORIZON_H = 120 * 24.0  # beyond ~4 months a forecast of a crossing says nothing: "not within"
ROBOT_MIN_AXES = 4  # axes with a value in the same hour needed to tell a robot's common mode
# The shortest e-folding time a draw's growth is extended with as an exponential: a slope near 0 with some
# acceleration implies an e-folding time near 0; wear growing e-fold in less than a day is not a trend of days, so
# such a draw keeps its quadratic (round 11 extended it with a day's e-folding time, which crossed within a week
# on unworn axes: docs/benchmarks.md, round 12).
MIN_EFOLD_H = 24.0


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


def common_mode(values: Sequence[float]) -> float:
    """What a robot's axes show together in one hour: the middle of the tightest half of their values (the
    shortest half: a worn axis stands apart and is left out, where it would pull a median), 0 with fewer than
    ``ROBOT_MIN_AXES`` values. What moves every axis of a robot at once is not one joint's wear: the ambient
    day cycle, and above all the learned normals' shared error (a program's normals are learned, or carried
    over, from the same cycles for every axis, so each program change adds a step common to them all)."""
    if len(values) < ROBOT_MIN_AXES:
        return 0.0
    v = np.sort(np.asarray(values, dtype=float))
    half = (len(v) + 1) // 2
    start = int(np.argmin(v[half - 1 :] - v[: len(v) - half + 1]))
    return float(np.median(v[start : start + half]))


def relative_series(series: dict[int, list[HourValue]]) -> dict[int, list[HourValue]]:
    """Each axis's hourly values less the robot's :func:`common_mode` of the same hour, over a robot's whole
    series (the stream does it hour by hour: ``HealthMonitor``)."""
    by_hour: dict[float, list[float]] = {}
    for values in series.values():
        for obs in values:
            by_hour.setdefault(obs.hour, []).append(obs.value)
    common = {hour: common_mode(values) for hour, values in by_hour.items()}
    return {
        axis: [dataclasses.replace(o, value=o.value - common[o.hour]) for o in values]
        for axis, values in series.items()
    }


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
class WearTrend:
    level_noise: float = 0.002  # sd of the level's own drift per hour (day cycles, unexplained moves)
    slope_noise: float = 0.0  # sd of the slope's change per hour (0: the acceleration state does that)
    floor: float = 0.005  # sd added to each hour's own standard error (what a median cannot average away)
    gate: float = 4.0
    shift_after: int = 6
    initial_slope_sd: float = 0.002  # per hour: 0.3 in a week is within 1 sd
    program_change_sd: float = 0.03  # how wrong a carried-over normal may make the level
    interval_scale: float = 1.2  # widens the belief: 80 % coverage over the tuning lives (docs/benchmarks.md)
    accel_noise: float = 1e-7  # > 0: a third state, the acceleration (sd of its change per hour)
    initial_accel_sd: float = 1e-5  # per hour²: 0.3 reached by acceleration alone in two weeks is ~1 sd
    draws: int = 500
    level_bias_sd: float = 0.02  # what the filter cannot see: the normals' own error beyond the robot's shared one
    carry_sd: float = 0.005  # ... and each carried-over normal adds its own (its step's excess sd, tuning seeds)
    carried: int = 0  # carried-over normals seen: the unseen error of the level is a random walk over them
    slope_memory_h: float = 48.0  # time constant of the slope's own moving average (the growth's e-folding time)
    compounding_level: float = 0.05  # below this level a growing slope is a healthy axis's wander, not wear
    slope_average: float | None = None  # the filter's slope, averaged over the last ~slope_memory_h hours
    x: np.ndarray | None = None
    P: np.ndarray | None = None
    t: float | None = None
    _outside: list[float] = field(default_factory=list)

    def update(self, obs: HourValue) -> None:
        before = self.t
        self._update(obs)
        # The slope's moving average, for the e-folding time the slope's own growth implies (forecast). A state
        # saved before this field reads None (the class default) and starts its average here.
        if before is None or self.slope_average is None:
            self.slope_average = float(self.x[1])
        else:
            weight = 1.0 - math.exp(-max(self.t - before, 0.0) / self.slope_memory_h)
            self.slope_average += weight * (float(self.x[1]) - self.slope_average)

    def _update(self, obs: HourValue) -> None:
        r = obs.stderr**2 + self.floor**2
        if self.x is None:
            accel = [self.initial_accel_sd**2] if self.accel_noise > 0 else []
            self.x = np.zeros(2 + len(accel))
            self.x[0] = obs.value
            self.P = np.diag([r, self.initial_slope_sd**2, *accel])
            self.t = obs.hour
            return
        self._predict(obs.hour)
        if obs.program_change:
            self.P[0, 0] += self.program_change_sd**2
            self.carried += 1
        innovation = obs.value - self.x[0]
        s = self.P[0, 0] + r
        if abs(innovation) > self.gate * math.sqrt(s):
            self._outside.append(innovation)
            if len(self._outside) >= self.shift_after and len({np.sign(v) for v in self._outside}) == 1:
                self.x[0] = obs.value
                self.P[0, 0] = r + self.P[0, 0]
                # sudden damage may change the wear's course too: its slope (and acceleration) are learned
                # again from what follows, not carried with the certainty of before the step
                self.P[1, 1] += self.initial_slope_sd**2
                if len(self.x) > 2:
                    self.P[2, 2] += self.initial_accel_sd**2
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
        ahead = now - self.t
        # Possible states, drawn from the filter's (widened) belief; wear does not slow down by itself, so a
        # drawn acceleration below 0 counts as 0. Each draw's crossing: of its exponential where it grows and
        # accelerates, else of its quadratic (a line without acceleration); the point forecast and the interval
        # are quantiles over the draws ("never" = inf, above every finite time).
        state, belief = self.x.copy(), self.interval_scale**2 * self.P
        belief[0, 0] += self.level_bias_sd**2 + self.carried * self.carry_sd**2
        if (k := self._acceleration_lag()) > 1.0:
            state[2] *= k
            belief[2, :] *= k
            belief[:, 2] *= k
        draws = np.random.default_rng(0).multivariate_normal(state, belief, size=self.draws)
        level, slope = draws[:, 0], draws[:, 1]
        accel = np.maximum(draws[:, 2], 0.0) if draws.shape[1] > 2 else np.zeros(len(draws))
        gap = limit - level
        with np.errstate(divide="ignore", invalid="ignore"):
            quadratic = (np.sqrt(np.maximum(slope * slope + 2 * accel * gap, 0.0)) - slope) / accel
            linear = np.where(slope > 0, gap / slope, np.inf)
            efold = slope / accel
            exponential = efold * np.log1p(gap / (slope * efold))
        # A draw whose growth would e-fold within MIN_EFOLD_H (a slope near 0 with some acceleration) is a healthy
        # axis's noise, not compounding wear: it keeps its quadratic, as a draw with a slope at or below 0 does.
        compounds = (slope > 0) & (efold >= MIN_EFOLD_H)
        hours = np.where(accel > 0, np.where(compounds, exponential, quadratic), linear)
        hours = np.where(gap <= 0, 0.0, hours)
        crossing = self.t + np.maximum(hours, ahead)  # not before now: if it did cross, it is due now
        low, mid, high = np.sort(crossing)[[int(q * (len(crossing) - 1)) for q in (0.1, 0.5, 0.9)]]
        mean_level = self.x[0] + self.x[1] * ahead + (max(self.x[2], 0.0) * ahead**2 / 2 if len(self.x) > 2 else 0.0)
        horizon = now + MAX_HORIZON_H

        def capped(t: float) -> float:
            return float(t) if t <= horizon else math.inf

        return Forecast(now, float(mean_level), float(self.x[1] * 24), capped(mid), capped(low), capped(high))

    def _acceleration_lag(self) -> float:
        """How many times the filter's acceleration is to be taken, where the slope's own growth says it lags.

        For growth that compounds (wear whose rate grows with it, the exponential) the filter's acceleration
        lags more than its slope (~0.4x against ~0.8x the true late in life: docs/benchmarks.md, rounds 5 and
        12), so the e-folding time slope / acceleration the forecast extends its draws with is about twice the
        true one, and the crossing late. The slope and its moving average over ``slope_memory_h`` hours grow
        with the same e-folding time tau whatever each one's lag (slope / average = 1 + memory / tau in steady
        state), so their ratio tells tau without the acceleration's lag. Where that tau is the shorter, the
        acceleration (and its spread) is scaled to it; never below ``MIN_EFOLD_H``. Only for an axis whose
        level is wear (``compounding_level``): on a healthy axis the slope's wander near 0 makes the ratio
        anything, and gave crossings within a week on unworn axes (tuning seeds)."""
        if len(self.x) < 3 or self.slope_average is None:
            return 1.0
        level, slope, accel = self.x
        average = self.slope_average
        if level < self.compounding_level or accel <= math.sqrt(self.P[2, 2]) or not slope > average > 0:
            return 1.0
        tau_growth = max(self.slope_memory_h / (slope / average - 1.0), MIN_EFOLD_H)
        return max(slope / accel / tau_growth, 1.0)

    def _predict(self, hour: float) -> None:
        dt = max(hour - self.t, 0.0)
        n = len(self.x)
        f = np.eye(n)
        f[0, 1] = dt
        if n == 3:
            f[0, 2], f[1, 2] = dt * dt / 2, dt
        q = np.zeros((n, n))
        q[0, 0] = self.level_noise**2 * dt
        q[:2, :2] += self.slope_noise**2 * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        if n == 3:
            q += self.accel_noise**2 * np.array(
                [[dt**5 / 20, dt**4 / 8, dt**3 / 6], [dt**4 / 8, dt**3 / 3, dt**2 / 2], [dt**3 / 6, dt**2 / 2, dt]]
            )
        self.x = f @ self.x
        self.P = f @ self.P @ f.T + q
        self.t = hour
