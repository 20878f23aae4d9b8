"""How severe a change of an axis's level is: one rule for every detector that sees one.

An ERROR is for a **gross** change of the load: the axis drawing at least ``high`` times its normal level
(the load doubled) or at most ``low`` times (80 % of it gone: the joint has lost its load); anything less is
an ALERT, whichever detector noticed it first. Detectors decide *that* an axis is off (each with its own
evidence: a calibrated deviation, the load over a few cycles, the model's residual); how far off it is, is
measured in one place, by :func:`level_ratio`: the geometric mean of the axis's last window of active
readings (the ``load`` detector's statistic) over its normal level, or the level the window's recent half has
reached, less one standard error, when that is farther from normal (a ramp: :func:`recent_reach`). Before
``load`` has learnt that normal, the median of the axis's model stands in for it; without either, a detector's
own severity stands. A rise or a drop is an ERROR once that level has held past its line over ``LOAD_HOLD_S``
(the engine's ``_held_gross``): the level swings around a fault's own as the work goes on, and one touch is no
doubled or lost load.

Two findings keep their own severity (``Finding.instant``): the residual's ERROR for a **spike**, which one
sample or a few cannot show in a window's level (a surge past twice the highest current of training, or one
past SurgeC, or a plateau past MaxC, that did not come back: a heavier load's cycle peaks recur, so until then
it is sized here like any level), and the stuck-sensor rule (never an ERROR; a clamp's finding is sized).

A **clamp** (a flat value that reads 0 A while the robot rests and comes back exactly: the joint's current held
at a limit) is measured by its value, :func:`flat_ratio`: a flat current is its own level, and a clamp shorter
than a window would otherwise never show its size there (the window still holds the live readings before it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from common.wire.schemas import Severity


@dataclass(frozen=True)
class GrossChange:
    high: float  # ratio to normal at or above which a rise is an ERROR
    low: float  # ratio at or below which a drop is an ERROR

    def __post_init__(self) -> None:
        if not 0 < self.low < 1 < self.high:
            raise ValueError("gross ratios must satisfy 0 < low < 1 < high")

    def severity(self, ratio: float) -> Severity:
        return Severity.ERROR if ratio >= self.high or ratio <= self.low else Severity.ALERT


def level_ratio(load, model_median: float | None) -> float | None:
    """The axis's level over its normal level, from its load scorer (``None``: not known yet): the window's, or
    the level its recent half has reached when that is farther from normal (:func:`recent_reach`)."""
    if load is None or not load.full:
        return None
    if load.learnt:
        normal = load.reference
        window = load.ratio
    elif model_median is not None and model_median > 0:
        normal = math.log(model_median)
        window = math.exp(load.total / len(load.logs) - normal)
    else:
        return None
    if load.flat_recently:
        return window  # a flat run's values are no live load (the engine's rules for flat values apply)
    reached = recent_reach(load.logs, normal, rise=window >= 1)
    if reached is not None and (reached > window if window >= 1 else reached < window):
        return reached
    return window


def recent_reach(logs, normal: float, *, rise: bool) -> float | None:
    """How far the recent half of the window's log currents has got, as a ratio to normal, less one standard
    error of its mean (toward normal): a level it has reached beyond its own noise (``None``: too few values).

    The window lags a ramp: at a ramp's end (its peak) the window's older half still holds the ramp's lower part
    (a ramp to 2.2x read 1.5x in the window; docs/benchmarks.md section 5). The recent half alone spreads √2 times
    as much as the window, so it counts only with a standard error to spare: a step near the line (a +90 % load)
    does not pass it by its noise alone, as it would with the recent half's plain mean."""
    n = len(logs) // 2
    if n < 2:
        return None
    recent = list(itertools.islice(logs, len(logs) - n, None))
    mean = math.fsum(recent) / n
    error = math.sqrt(math.fsum((v - mean) ** 2 for v in recent) / (n - 1) / n)
    return math.exp(mean - normal - error if rise else mean - normal + error)


def flat_ratio(load, value: float, model_median: float | None) -> float | None:
    """A flat value over the axis's normal level: what a window full of it reads (``None``: not known yet)."""
    if value <= 0:
        return None
    if load is not None and load.learnt:
        return math.exp(math.log(value) - load.reference)
    if model_median is not None and model_median > 0:
        return value / model_median
    return None
