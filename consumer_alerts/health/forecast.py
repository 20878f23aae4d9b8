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

Near the limit, compounding wear is forecast from a second filter. The filter's slope lags growth that keeps
speeding up (about 0.82x the true slope late in an exponential wear's life, whatever extension it is given:
docs/benchmarks.md, round 16), so such wear was forecast late. Exponential wear plus a constant is a pure
exponential, a straight line in ``log(value + log_offset)``: beside the filter, a two-state one (level and growth
rate r, the inverse of the e-folding time) runs on that log, with the same outlier gate, level shifts and
program changes as the filter. A line's growth rate does not lag a line. Where the filter says the wear
compounds near the limit (acceleration more than ``compounding_sd`` sd above 0, slope above 0, level at least
``compounding_from`` of the limit), each draw's crossing is ``log((limit + c) / (level + c)) / r`` with the
draw's level and an independent draw of r. Only there: on linear wear r lags from above (a line is concave in
the log), and far from the limit the flat hours before the wear's onset still hold r down, so used everywhere it
made linear wear early and exponential wear later at half its life (tuning seeds, round 16).
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
    # The growth filter on log(value + log_offset), used near the limit (module docstring). log_offset: exponential
    # wear plus this constant is a pure exponential; 0.05 lies within what the synthetic exponential shapes imply
    # at the limit 0.30 (0.009-0.086, docs/benchmarks.md round 16; chosen on tuning seeds 1-3 over 0.03).
    log_offset: float = 0.05
    growth_rate_noise: float = 3e-5  # sd of the growth rate's change per hour (per hour)
    initial_growth_rate_sd: float = 0.01  # per hour: an e-folding time of 4 days is 2.5 sd from no growth
    compounding_sd: float = 2.0  # the filter's acceleration must be this many sd above 0 ...
    compounding_from: float = 0.5  # ... and its level this share of the limit, for the growth filter's forecast
    x: np.ndarray | None = None
    P: np.ndarray | None = None
    t: float | None = None
    _outside: list[float] = field(default_factory=list)
    growth: np.ndarray | None = None  # [log level, growth rate per hour]; None in a state saved before it existed
    growth_P: np.ndarray | None = None

    def update(self, obs: HourValue) -> None:
        r = obs.stderr**2 + self.floor**2
        if self.x is None:
            accel = [self.initial_accel_sd**2] if self.accel_noise > 0 else []
            self.x = np.zeros(2 + len(accel))
            self.x[0] = obs.value
            self.P = np.diag([r, self.initial_slope_sd**2, *accel])
            self.t = obs.hour
            self._start_growth(obs)
            return
        dt = max(obs.hour - self.t, 0.0)
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
                self._update_growth(obs, dt, "shift")
            else:
                self._update_growth(obs, dt, "skip")
            return
        self._outside.clear()
        k = self.P[:, 0] / s
        self.x = self.x + k * innovation
        self.P = self.P - np.outer(k, self.P[0, :])
        self._update_growth(obs, dt, "take")

    def _log_value(self, obs: HourValue) -> tuple[float, float, float]:
        """The hour's value on the growth filter's scale: log(value + log_offset), its variance (the hour's,
        divided by the base squared), and the base. The base is held at half the offset or more, so that an hour
        below -log_offset (noise on a healthy axis) cannot take the log of 0 or less."""
        base = max(obs.value + self.log_offset, self.log_offset / 2)
        return math.log(base), (obs.stderr**2 + self.floor**2) / base**2, base

    def _start_growth(self, obs: HourValue) -> None:
        z, var, _ = self._log_value(obs)
        self.growth = np.array([z, 0.0])
        self.growth_P = np.diag([var, self.initial_growth_rate_sd**2])

    def _update_growth(self, obs: HourValue, dt: float, outcome: str) -> None:
        """The growth filter takes the hour the way the filter did (``outcome``): "take" it, "skip" it (outside
        the gate) or restart its level there ("shift"). Its level drifts as the filter's does, on the log scale."""
        if self.growth is None:  # a state saved before the growth filter: it starts here
            self._start_growth(obs)
            return
        z, var, base = self._log_value(obs)
        f = np.array([[1.0, dt], [0.0, 1.0]])
        q = self.growth_rate_noise**2 * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        q[0, 0] += (self.level_noise / base) ** 2 * dt
        self.growth = f @ self.growth
        self.growth_P = f @ self.growth_P @ f.T + q
        if obs.program_change:
            self.growth_P[0, 0] += (self.program_change_sd / base) ** 2
        if outcome == "shift":
            self.growth[0] = z
            self.growth_P[0, 0] += var
            self.growth_P[1, 1] += self.initial_growth_rate_sd**2
        elif outcome == "take":
            k = self.growth_P[:, 0] / (self.growth_P[0, 0] + var)
            self.growth = self.growth + k * (z - self.growth[0])
            self.growth_P = self.growth_P - np.outer(k, self.growth_P[0, :])

    def _compounds_near(self, limit: float) -> bool:
        """The filter's state says the wear compounds, near the limit: where the growth filter forecasts."""
        if self.growth is None or len(self.x) < 3:
            return False
        level, slope, accel = self.x
        return (
            accel > self.compounding_sd * math.sqrt(self.P[2, 2])
            and slope > 0
            and level >= self.compounding_from * limit
        )

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
        belief = self.interval_scale**2 * self.P
        belief[0, 0] += self.level_bias_sd**2 + self.carried * self.carry_sd**2
        draws = np.random.default_rng(0).multivariate_normal(self.x, belief, size=self.draws)
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
        if self._compounds_near(limit):
            # each draw's level grown at a growth rate drawn from the growth filter (independently: the two
            # filters' errors are not modelled together), widened as the filter's belief is
            rate_sd = self.interval_scale * math.sqrt(self.growth_P[1, 1])
            rate = np.random.default_rng(1).normal(self.growth[1], rate_sd, self.draws)
            c = self.log_offset
            with np.errstate(divide="ignore", invalid="ignore"):
                hours = np.where(rate > 0, np.log((limit + c) / np.maximum(level + c, 1e-6)) / rate, np.inf)
        hours = np.where(gap <= 0, 0.0, hours)
        crossing = self.t + np.maximum(hours, ahead)  # not before now: if it did cross, it is due now
        low, mid, high = np.sort(crossing)[[int(q * (len(crossing) - 1)) for q in (0.1, 0.5, 0.9)]]
        mean_level = self.x[0] + self.x[1] * ahead + (max(self.x[2], 0.0) * ahead**2 / 2 if len(self.x) > 2 else 0.0)
        horizon = now + MAX_HORIZON_H

        def capped(t: float) -> float:
            return float(t) if t <= horizon else math.inf

        return Forecast(now, float(mean_level), float(self.x[1] * 24), capped(mid), capped(low), capped(high))

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
