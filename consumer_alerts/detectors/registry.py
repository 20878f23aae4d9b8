"""Which detectors exist: a name and a factory each. A new detector is one module and one line here.

An **axis** detector is made per robot and axis (:class:`AxisContext`); its factory may return ``None``
when it does not apply (``residual`` without a model for that robot). A **robot** detector sees a whole
reading at once (``update(ts, currents, idle=...)``, the same :class:`~consumer_alerts.detectors.Finding`
back) and raises its events through the robot's lifecycle (axis 0), filed under the axis a finding blames
(``Finding.axis``): :data:`ROBOT_DETECTORS` is where a cross-axis detector registers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from consumer_alerts.detectors import Detector, Finding
from consumer_alerts.detectors.cycles import CycleDriftDetector
from consumer_alerts.detectors.level import LevelOptions, LevelScorer
from consumer_alerts.detectors.load import GROSS_SCORE, LoadOptions, LoadScorer
from consumer_alerts.detectors.multivariate import MultivariateDetector, MultivariateRobotDetector
from consumer_alerts.detectors.residual import ResidualDetector
from consumer_alerts.detectors.scoring import ThresholdedDetector
from consumer_alerts.detectors.stuck import StuckDetector
from consumer_alerts.detectors.zscore import ZScoreDetector

if TYPE_CHECKING:
    from consumer_alerts.engine import EngineConfig
    from consumer_alerts.model import AxisModel


@dataclass(frozen=True)
class AxisContext:
    robot_id: str
    axis: int
    config: EngineConfig
    model: AxisModel | None  # the trained model of this axis, when one applies to this robot


@dataclass(frozen=True)
class RobotContext:
    robot_id: str
    config: EngineConfig


class RobotDetector(Protocol):
    name: str
    kinds: tuple[str, ...]
    observed: bool
    normalized: float

    def update(self, ts: float, currents: Mapping[int, float | None], *, idle: bool = False) -> Finding | None: ...

    def state(self) -> dict[str, Any]: ...

    def load(self, state: dict[str, Any]) -> None: ...


def _zscore(ctx: AxisContext) -> Detector:
    c = ctx.config
    return ZScoreDetector(
        window=c.z_window,
        test_samples=c.z_test_samples,
        threshold=c.z_threshold,
        error_threshold=c.z_error_threshold,
        min_samples=c.z_min_samples,
        stoppage_s=c.stoppage_s,
        hold_s=c.z_hold_s,
    )


def _residual(ctx: AxisContext) -> Detector | None:
    if ctx.model is None:
        return None
    return ResidualDetector(ctx.model, stoppage_s=ctx.config.stoppage_s, gross_high=ctx.config.gross_high)


def _stuck(ctx: AxisContext) -> Detector:
    run = 2 * ctx.model.stuck_run if ctx.model is not None else 0
    return StuckDetector(readings=max(ctx.config.stuck_readings, run))


def _level(ctx: AxisContext) -> Detector:
    c = ctx.config
    options = LevelOptions(
        warmup=c.level_warmup,
        short=c.level_short,
        average=c.level_average,
        history=c.level_history,
        alpha=c.level_alpha,
        alert_tail=c.level_alert_tail,
        extreme_tolerance=c.level_extreme_tolerance,
        extreme_absorb=c.level_extreme_absorb,
        novelty_levels=c.level_novelty_levels,
        novelty_order=c.level_novelty_order,
        novelty_quiet=c.level_novelty_quiet,
    )
    return ThresholdedDetector(
        "level",
        LevelScorer(options),
        error_high=c.level_error_score,
        error_low=c.level_low_error_score,
        hold_s=c.level_hold_s,
        warmup_s=c.level_warmup_s,
        stoppage_readings=c.stoppage_readings,
        stoppage_s=c.stoppage_s,
    )


def _load(ctx: AxisContext) -> Detector:
    c = ctx.config
    options = LoadOptions(
        window=c.load_window,
        warmup=c.load_warmup,
        alpha=c.load_alpha,
        sigmas=c.load_sigmas,
        min_ratio=c.load_min_ratio,
        gross_high=c.gross_high,
        gross_low=c.gross_low,
        absorb=c.load_absorb,
    )
    return ThresholdedDetector(
        "load",
        LoadScorer(options, prior=ctx.model.log_mean if ctx.model is not None else None),
        error_high=GROSS_SCORE,
        error_low=GROSS_SCORE,
        hold_s=c.load_hold_s,
        warmup_s=0.0,
        stoppage_readings=c.stoppage_readings,
        stoppage_s=c.stoppage_s,
    )


def _multivariate(ctx: RobotContext) -> RobotDetector:
    c = ctx.config
    detector = MultivariateDetector(
        halflife_rows=c.multivariate_halflife_rows,
        alpha=c.multivariate_alpha,
        window=c.multivariate_window,
        stride=c.multivariate_stride,
    )
    return MultivariateRobotDetector(detector)


AXIS_DETECTORS: dict[str, Callable[[AxisContext], Detector | None]] = {
    "level": _level,
    "load": _load,
    "zscore": _zscore,
    "residual": _residual,
    "stuck": _stuck,
}
ROBOT_DETECTORS: dict[str, Callable[[RobotContext], RobotDetector]] = {
    "multivariate": _multivariate,
    "cycle": lambda ctx: CycleDriftDetector.from_config(ctx.config),
}


def known() -> tuple[str, ...]:
    return (*AXIS_DETECTORS, *ROBOT_DETECTORS)
