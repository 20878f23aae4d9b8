"""The regression model of "expected current", per axis, and its versioned JSON file.

Two kinds, both learnt from the active samples of a training span (see ``training.py``):

- ``line`` - the workshop's lab: current ~ time, least squares. The residual ``observed - expected``
  (amps) is what both rules watch.
- ``density`` - the axis's usual distribution of active current, a kernel density of ``log(amps + c)``.
  On this robot a straight line over time explains nothing (R^2 ~ 0: the current is a repeating work
  cycle sampled every 2 s, so it looks like noise around a level), so "expected" is a distribution, not a
  value. Each sample scores the log-likelihood ratio "this axis draws ``scale_up`` times its usual
  current" vs "usual"; the windowed mean of that score is the sustained-overload statistic. The ERROR
  rule still uses amps above the median level.

Both kinds keep the same rule shape: ALERT when the long statistic >= MinC holds T_LONG seconds; ERROR
when the residual >= MaxC holds for ``short`` active samples in a row (T_SHORT is their usual duration), or
when a single sample's residual reaches SurgeC (a surge past anything the axis drew in training, scaled up).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.defaults import MAX_AXIS
from consumer_alerts.errors import ModelFileError

FORMAT = "axiswatch.consumer_alerts.model"
# 2: with ``surge_c``; a version-1 file still loads, without the single-sample surge rule.
# 3: with ``mean``; an older file still loads, but the service cannot tell when its robots' load has moved
#    away from it (no re-learning, docs/consumer_alerts.md "Learning the model").
# 4: with ``log_mean``; an older file still loads, but the load detector learns each axis's level from the feed
#    before it judges it (docs/consumer_alerts.md "load").
# 5: with ``top``; an older file still loads, but every surge short of a confirmed spike is an ALERT first.
# 6: with ``long_median``; an older file still loads, but its residual ALERTs open even while most of the robot's
#    axes have moved together (docs/consumer_alerts.md "A broad move").
VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
LLR_CAP = 3.0  # one sample can move the windowed score by at most this much: bounded influence
LLR_MEMO = 8192  # scores of distinct currents remembered per axis, at most (~0.5 MB)
Kind = Literal["line", "density"]


@dataclass
class Line:
    t0: float  # epoch seconds the time axis starts at
    intercept: float  # amps at t0
    slope_per_h: float  # amps per hour
    r2: float

    def at(self, ts: float) -> float:
        return self.intercept + self.slope_per_h * (ts - self.t0) / 3600.0


@dataclass
class Density:
    """log g(z) on a uniform grid of z = log(amps + offset); linear interpolation between points."""

    offset: float
    z0: float
    dz: float
    log_pdf: list[float]
    scale_up: float

    def _log_g(self, z: float) -> float:
        lp = self.log_pdf
        i = (z - self.z0) / self.dz
        if i <= 0:
            return lp[0]
        if i >= len(lp) - 1:
            return lp[-1]
        j = int(i)
        return lp[j] + (lp[j + 1] - lp[j]) * (i - j)

    def __post_init__(self) -> None:
        # Not a field (a cache, not the model): the export's currents sit on a sensor grid of a few thousand
        # values per axis, so most samples repeat one already scored; two logs and two lookups each otherwise.
        self._memo: dict[float, float] = {}

    def llr(self, amps: float) -> float:
        """log f(amps / m) - log m - log f(amps), f the density of amps; clipped to +-LLR_CAP."""
        score = self._memo.get(amps)
        if score is None:
            score = self._llr(amps)
            if len(self._memo) < LLR_MEMO:
                self._memo[amps] = score
        return score

    def _llr(self, amps: float) -> float:
        if amps <= 0:
            return 0.0  # a zero stays a zero under any scaling: no evidence either way
        a, b = amps + self.offset, amps / self.scale_up + self.offset
        la, lb = math.log(a), math.log(b)
        score = self._log_g(lb) - lb - math.log(self.scale_up) - self._log_g(la) + la
        return min(max(score, -LLR_CAP), LLR_CAP)


@dataclass
class AxisModel:
    axis: int
    samples: int  # active samples the axis was trained on
    line: Line
    median: float  # robust level of active current, amps
    mad: float
    window: int  # active samples in the long (ALERT) statistic
    short: int  # active samples in a row the ERROR rule needs
    density: Density | None = None
    min_c: float | None = None  # ALERT threshold of the long statistic (amps, or LLR for density)
    max_c: float | None = None  # ERROR threshold of the residual, amps
    surge_c: float | None = None  # ERROR threshold of a single sample's residual, amps (None: no such rule)
    t_long_s: float = 60.0
    t_short_s: float = 0.0  # informative: ``short`` samples at the training data's usual spacing
    threshold_source: str = "percentile"  # or "median+MAD" when there were few samples
    stuck_run: int = 1  # longest run of identical non-zero readings seen in training
    mean: float | None = None  # mean active current in training, amps: what a lasting change is measured against
    log_mean: float | None = None  # mean log of the active current in training: the load detector's normal level
    top: float | None = None  # the highest active current of training, amps: twice it is no cycle's peak of a load
    # the median of the long statistic in training: with MinC, the statistic's scale (how far a window has moved)
    long_median: float | None = None

    def expected(self, ts: float) -> float:
        return self.median if self.density is not None else self.line.at(ts)

    def alert_score(self, amps: float, residual: float) -> float:
        return self.density.llr(amps) if self.density is not None else residual


@dataclass
class AlertModel:
    kind: Kind
    robot_id: str | None
    axes: dict[int, AxisModel]
    training: dict[str, Any] = field(default_factory=dict)  # source, start, end, rows, active rows
    options: dict[str, Any] = field(default_factory=dict)  # the training options used

    def to_json(self) -> str:
        body = {"format": FORMAT, "version": VERSION, **asdict(self)}
        body["axes"] = {str(a): asdict(m) for a, m in sorted(self.axes.items())}
        return json.dumps(body, indent=1)

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a model

    @classmethod
    def from_json(cls, text: str, *, source: str = "model") -> AlertModel:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{source}: not JSON ({exc})") from exc
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ModelFileError(f"{source}: not a consumer_alerts model file (format {FORMAT!r} expected)")
        if body.get("version") not in READABLE_VERSIONS:
            raise ModelFileError(
                f"{source}: model version {body.get('version')!r} is not supported "
                f"(this build reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        try:
            axes = {int(a): _axis(m) for a, m in body["axes"].items()}
            if any(a != m.axis for a, m in axes.items()):
                raise ValueError("an axis's key is not its axis number")
            return cls(
                kind=body["kind"],
                robot_id=body["robot_id"],
                axes=axes,
                training=body.get("training", {}),
                options=body.get("options", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{source}: malformed model ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def load(cls, path: Path) -> AlertModel:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
        return cls.from_json(text, source=str(path))


def _axis(raw: dict[str, Any]) -> AxisModel:
    raw = dict(raw)
    raw["line"] = Line(**raw["line"])
    raw["density"] = Density(**raw["density"]) if raw.get("density") else None
    model = AxisModel(**raw)
    _check_shape(model)
    return model


COUNTS = ("axis", "samples", "window", "short", "stuck_run")
NUMBERS = (
    *("median", "mad", "min_c", "max_c", "surge_c", "t_long_s", "t_short_s"),
    *("mean", "log_mean", "top", "long_median"),
)


def _check_shape(model: AxisModel) -> None:
    """A file of the right format whose values are of the wrong type (a hand edit, another tool): refused when it
    is read, not at the robot's first reading, where a window of "40" or 1e300 stopped replay with a TypeError."""
    for name in COUNTS:
        value = getattr(model, name)
        if type(value) is not int or value < (0 if name == "samples" else 1):
            raise ValueError(f"{name} {value!r} is not a whole number of 1 or more")
    if model.axis > MAX_AXIS:
        raise ValueError(f"axis {model.axis}: axes are numbered 1 to {MAX_AXIS}")
    numbers = [(name, getattr(model, name)) for name in NUMBERS]
    numbers += [(f"line.{k}", v) for k, v in asdict(model.line).items()]
    if model.density is not None:
        numbers += [(f"density.{k}", getattr(model.density, k)) for k in ("offset", "z0", "dz", "scale_up")]
        numbers += [("density.log_pdf", v) for v in model.density.log_pdf] or [("density.log_pdf", None)]
    for name, value in numbers:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"axis {model.axis}: {name} {value!r} is not a number")
