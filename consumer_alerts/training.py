"""Training: fit each axis's expected-current model on a span of readings, then learn its thresholds.

1. Collect the active samples of every axis with the engine's own rule (``engine.freshness``): idle
   rows, ``None`` and repeated values are left out, as they are when detecting.
2. Fit the lab's line (current ~ time, with R^2), the robust level (median, MAD) and, for the
   ``density`` kind, the kernel density of log current.
3. ALERT: run the residual detector without thresholds over the same samples: this gives the training
   distribution of its long statistic. MinC is an upper percentile of it (pushed a ``margin`` further
   from the median), or median + k*MAD when there are few samples. T_LONG starts from its default and is
   raised above the longest time the statistic stayed at or above MinC in training, so nothing seen in
   normal running would have fired.
4. ERROR is for a severe surge, not for a heavier load: MaxC is learnt from the residuals the training
   data would have had if the axis drew ``error_scale`` (default 1.4) times its current, so a sustained
   overload of up to +40 % stays an ALERT. T_SHORT starts at one sample and is lengthened, one sample at a
   time, until the MaxC needed at that length is no more than ``surge_amps`` (default 15 A): on a heavy
   axis that swings between 0 and 50 A in normal running, only a surge that holds a few samples stands
   out; on a light one a single sample does. SurgeC is the one-sample threshold on the same scaled
   residuals (their top one): a single sample past anything the axis drew in training, even 1.4x scaled, is
   an ERROR on its own, whatever T_SHORT the axis needs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from common.wire.schemas import Reading, iso_utc
from consumer_alerts.detectors.residual import ResidualDetector
from consumer_alerts.engine import freshness
from consumer_alerts.errors import TrainingError
from consumer_alerts.model import AlertModel, AxisModel, Density, Kind, Line

logger = logging.getLogger(__name__)
MAD_TO_SD = 1.4826


MAX_ERROR_SCALE = 10.0  # ten times an axis's current: far past any overload an ERROR is for


@dataclass(frozen=True)
class TrainingOptions:
    kind: Kind = "density"
    window: int = 160  # active samples in the long (ALERT) statistic
    alert_quantile: float = 0.999
    margin: float = 0.25  # MinC sits this fraction further from the median than the quantile
    # T_LONG before refinement. 30 s: on the benchmark the weakest drift held MinC 40 s before it ended, and
    # the first event on clean data came at 20 s (docs/consumer_alerts.md).
    t_long_s: float = 30.0
    max_hold_factor: float = 10.0  # refinement never raises T_LONG above default*factor (+ 60 s)
    error_quantile: float = 1.0  # of the scaled training residuals: the top one
    error_scale: float = 1.4  # MaxC is learnt on the training data scaled by this: overloads stay ALERTs
    surge_amps: float = 15.0  # the size of surge an ERROR is for: T_SHORT grows until MaxC <= this
    max_short: int = 8  # T_SHORT never needs more samples than this
    min_samples: int = 500  # fewer statistics than this: median + mad_k * MAD instead of a percentile
    mad_k: float = 8.0
    scale_up: float = 1.3  # density kind: the rise in current the score is tuned to ("+30 %")
    bandwidth: float = 0.15  # density kind: kernel width in log(amps)
    grid_points: int = 256

    def __post_init__(self) -> None:
        # `train --surge-amps inf` wrote a model whose ERROR never fires (MaxC inf), --error-scale 1e300 one past
        # any current, --error-scale 0 one learnt from zeros; nan was ignored or said "no statistic".
        if not (math.isfinite(self.surge_amps) and self.surge_amps > 0):
            raise ValueError(f"--surge-amps must be a number of amps above 0, got {self.surge_amps}")
        if not 1 <= self.error_scale <= MAX_ERROR_SCALE:
            raise ValueError(f"--error-scale must be from 1 to {MAX_ERROR_SCALE:g}, got {self.error_scale}")


@dataclass
class Samples:
    ts: list[float]
    amps: list[float]
    stuck_run: int = 1


def collect(readings: Iterable[Reading]) -> tuple[dict[int, Samples], dict]:
    """Active, fresh samples per axis, plus the span (start, end, rows, active rows). Several robots'
    readings pool into one model (each robot's repeats and idle rows judged on its own)."""
    per_axis: dict[int, Samples] = {}
    last: dict[str, dict[int, float]] = {}
    runs: dict[tuple[str, int], int] = {}
    span = {"rows": 0, "active_rows": 0, "start": None, "end": None}
    for reading in readings:
        fresh, idle = freshness(last.setdefault(reading.robot_id, {}), reading.currents)
        ts = reading.ts.timestamp()
        span["rows"] += 1
        span["start"] = span["start"] or reading.ts
        span["end"] = reading.ts
        span["active_rows"] += not idle
        for axis, value in reading.currents.items():
            samples = per_axis.setdefault(axis, Samples([], []))
            key = (reading.robot_id, axis)
            runs[key] = (runs.get(key, 0) + 1) if value and not fresh.get(axis) else 1
            samples.stuck_run = max(samples.stuck_run, runs[key])
            if value is not None and not idle and fresh[axis]:
                samples.ts.append(ts)
                samples.amps.append(value)
    return per_axis, span


def train(
    readings: Iterable[Reading],
    options: TrainingOptions | None = None,
    *,
    robot_id: str | None = None,
    source: str = "",
) -> AlertModel:
    options = options or TrainingOptions()
    per_axis, span = collect(readings)
    return fit(per_axis, span, options, robot_id=robot_id, source=source)


def fit(
    per_axis: dict[int, Samples], span: dict, options: TrainingOptions, *, robot_id: str | None, source: str = ""
) -> AlertModel:
    """The model of the axes with enough samples; ``span`` as :func:`collect` returns it. Also what the
    service's own learning (consumer_alerts/learning.py) fits on the samples it collected."""
    if span["rows"] == 0:
        raise TrainingError(f"no readings to train on{' in ' + source if source else ''}")
    needed = options.window + options.max_short
    axes = {a: fit_axis(a, s, options) for a, s in sorted(per_axis.items()) if len(s.amps) >= needed}
    if not axes:
        raise TrainingError(f"no axis has {needed} active samples to train on ({span['active_rows']} active rows)")
    for axis in sorted(a for a in set(per_axis) - set(axes) if per_axis[a].amps):
        logger.warning(
            "axis %d: %d active samples, too few to train; its residual detector stays off",
            axis,
            len(per_axis[axis].amps),
        )
    training = {
        "source": source,
        "start": iso_utc(span["start"]),
        "end": iso_utc(span["end"]),
        "rows": span["rows"],
        "active_rows": span["active_rows"],
        "trained_at": iso_utc(datetime.now(UTC)),
    }
    return AlertModel(kind=options.kind, robot_id=robot_id, axes=axes, training=training, options=asdict(options))


def fit_axis(axis: int, samples: Samples, o: TrainingOptions) -> AxisModel:
    ts, amps = np.asarray(samples.ts), np.asarray(samples.amps)
    median = float(np.median(amps))
    model = AxisModel(
        axis=axis,
        samples=len(amps),
        line=fit_line(ts, amps),
        median=median,
        mad=float(np.median(np.abs(amps - median))),
        window=o.window,
        short=1,
        density=fit_density(amps, o) if o.kind == "density" else None,
        stuck_run=samples.stuck_run,
        mean=float(amps.mean()),
        log_mean=float(np.log(amps[amps > 0]).mean()) if (amps > 0).any() else None,
        top=float(amps.max()),
    )
    trace: list[tuple[float, float, float]] = []
    detector = ResidualDetector(model, trace=trace)
    for t, a in zip(samples.ts, samples.amps, strict=True):
        detector.update(t, a)
    t_arr, long_arr = np.asarray([r[0] for r in trace]), np.asarray([r[1] for r in trace])
    model.min_c, source_a = threshold(long_arr, o.alert_quantile, o.margin, o)
    model.long_median = round(float(np.median(long_arr[np.isfinite(long_arr)])), 6)
    model.t_long_s = hold_time(t_arr, long_arr, model.min_c, o.t_long_s, o)
    expected = np.asarray([model.expected(t) for t in samples.ts])
    scaled = o.error_scale * amps - expected
    model.max_c, model.short, source_e = error_rule(scaled, o)
    model.surge_c = max(threshold(scaled, o.error_quantile, 0.0, o)[0], model.max_c)
    spacing = float(np.median(np.diff(ts))) if ts.size > 1 else 2.0
    model.t_short_s = round((model.short - 1) * spacing, 1)
    model.threshold_source = source_a if source_a == source_e else f"{source_a}/{source_e}"
    logger.info(
        "axis %d: n=%d R2=%.3f MinC=%.3f T_LONG=%.0fs MaxC=%.2f A over %d sample(s) (T_SHORT~%.0fs) SurgeC=%.2f A (%s)",
        axis,
        model.samples,
        model.line.r2,
        model.min_c,
        model.t_long_s,
        model.max_c,
        model.short,
        model.t_short_s,
        model.surge_c,
        model.threshold_source,
    )
    return model


def error_rule(scaled_residuals: np.ndarray, o: TrainingOptions) -> tuple[float, int, str]:
    """(MaxC, samples in a row, source): the shortest run whose threshold is at most ``surge_amps``.
    MaxC never goes below half a surge: on a light axis the scaled data would allow a threshold of a few
    amps, but an ERROR is for a surge, and the room above keeps long overloads from reaching it."""
    for short in range(1, o.max_short + 1):
        lows = np.lib.stride_tricks.sliding_window_view(scaled_residuals, short).min(axis=1)
        max_c, source = threshold(lows, o.error_quantile, 0.0, o)
        if max_c <= o.surge_amps:
            break
    return max(max_c, o.surge_amps / 2), short, source


def fit_line(ts: np.ndarray, amps: np.ndarray) -> Line:
    t0 = float(ts[0])
    hours = (ts - t0) / 3600.0
    slope, intercept = np.polyfit(hours, amps, 1) if np.ptp(hours) > 0 else (0.0, float(amps.mean()))
    fitted = intercept + slope * hours
    total = float(np.sum((amps - amps.mean()) ** 2))
    r2 = 1.0 - float(np.sum((amps - fitted) ** 2)) / total if total > 0 else 0.0
    return Line(t0=t0, intercept=float(intercept), slope_per_h=float(slope), r2=round(r2, 6))


def fit_density(amps: np.ndarray, o: TrainingOptions) -> Density:
    positive = amps[amps > 0]
    if positive.size == 0:
        positive = np.array([1.0])
    # The offset keeps log() finite at 0 A and keeps the kernel wider than the sensor's digital step.
    offset = max(0.05 * float(np.median(positive)), 2.0 * float(positive.min()))
    z = np.log(positive + offset)
    grid = np.linspace(np.log(offset) - 0.5, np.log(3.0 * positive.max() + offset), o.grid_points)
    sample = z[:: max(1, z.size // 5000)]
    weights = np.exp(-0.5 * ((grid[:, None] - sample[None, :]) / o.bandwidth) ** 2).sum(axis=1)
    pdf = weights / (weights.sum() * (grid[1] - grid[0]))
    log_pdf = np.log(np.maximum(pdf, 1e-30))
    return Density(
        offset=round(offset, 6),
        z0=float(grid[0]),
        dz=float(grid[1] - grid[0]),
        log_pdf=[round(float(v), 5) for v in log_pdf],
        scale_up=o.scale_up,
    )


def threshold(stats: np.ndarray, quantile: float, margin: float, o: TrainingOptions) -> tuple[float, str]:
    """An upper percentile pushed ``margin`` further out; median + k*MAD when there are few samples."""
    values = stats[np.isfinite(stats)]
    if values.size == 0:
        raise TrainingError("no statistic to learn a threshold from")
    median = float(np.median(values))
    if values.size < o.min_samples:
        mad = float(np.median(np.abs(values - median))) * MAD_TO_SD
        return round(median + o.mad_k * max(mad, 1e-9), 6), "median+MAD"
    top = float(np.quantile(values, quantile))
    return round(top + margin * (top - median), 6), "percentile"


def hold_time(ts: np.ndarray, stats: np.ndarray, limit: float, default: float, o: TrainingOptions) -> float:
    """The default, raised just above the longest time the statistic stayed >= ``limit`` in training."""
    longest, since = 0.0, None
    for t, met in zip(ts, stats >= limit, strict=True):
        if met:
            since = t if since is None else since
            longest = max(longest, t - since)
        else:
            since = None
    if longest == 0.0 and not (stats >= limit).any():
        return default
    step = float(np.median(np.diff(ts))) if ts.size > 1 else 2.0
    return round(min(max(default, longest + step), default * o.max_hold_factor + 60.0), 1)
