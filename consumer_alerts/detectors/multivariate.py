"""Cross-axis detector: EW Hotelling T² and PCA-SPE (Q) over a robot's active axes.

The axes of a robot move together in a work cycle, so a fault often shows as a broken relation between
them (one axis drawing current the others do not explain) while every channel stays within its own range.
A per-axis detector cannot see that; T² (distance inside the learned correlation structure) and SPE
(distance off the principal subspace) can.

River-style and pure: ``learn_one(x)`` updates, ``score_one(x)`` reads (never learns), both on
``x = {axis: amps or None}``. Rows are scored against what was learned from earlier rows only, so
``score_one`` then ``learn_one`` per reading never looks ahead. Per reading the work is O(p²) (one
matrix-vector product with the cached inverse, one rank-1 update); the O(p³) eigendecomposition runs
every ``refresh_rows`` learned rows.

Domain rules kept here because they define what a row *is* for this model:
- the model's axes are the non-``None`` ("OK null" left out) axes of the first row it learns; a later
  row that lacks one of them says nothing and is skipped (extra axes are ignored);
- an idle row (every model axis exactly 0) neither learns nor scores: standstill is not a relation.

Score: each statistic becomes a tail probability from its limit (F for T² while the effective sample
is small, Box's g·χ²_h for SPE from the dropped eigenvalues), the two are combined with a Šidák-corrected
minimum, and ``-log10 p`` is squashed so that ``alpha`` (the ALERT false-alarm rate per row) maps to 0.5.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

import numpy as np
from scipy import special

from common.wire.schemas import Severity
from consumer_alerts.detectors import Finding, squash

# scipy.special.fdtrc / chdtrc are the survival functions behind scipy.stats.f.sf / chi2.sf, without the
# per-call argument checking of scipy.stats (tens of microseconds, paid on every reading otherwise).
_F_SF = special.fdtrc
_CHI2_SF = special.chdtrc
_TINY_P = 1e-300  # the floor of a tail probability, so -log10 stays finite


class MultivariateDetector:
    """EW mean/covariance of the active axes; per row T², SPE, a [0, 1] score and per-axis contributions."""

    name = "multivariate"

    def __init__(
        self,
        *,
        halflife_rows: float = 2000.0,
        alpha: float = 1e-6,
        warmup_per_axis: int = 60,
        min_warmup: int = 50,
        variance_kept: float = 0.9,
        refresh_rows: int = 50,
        shrinkage: float = 0.02,
        min_std: float = 1e-3,
        gate_rows: int | None = None,
        log_scale: bool = True,
        window: int = 30,
        stride: int = 1,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be within (0, 1), got {alpha}")
        # ``update`` judges and learns every ``stride``-th complete row only (the window mean moves little
        # from one row to the next); every count below stays in rows, whatever the stride.
        self.stride = max(1, stride)
        self.lam = 1 - 0.5 ** (self.stride / halflife_rows)  # EW weight of the newest learned vector
        self.alpha = alpha
        # 60 rows per axis are two windows of 30: overlapping windows share rows, so the first covariance judged
        # rests on 2 windows per axis (T²'s F limit then has n - p = p). At 40 (1.3 windows) the SPE limit, which
        # takes the dropped eigenvalues as known, was so unsure that a small fault in the warm-up, long over,
        # made the healthy work after it alarm (docs/consumer_alerts.md, "Warm-up").
        self.warmup_per_axis, self.min_warmup = warmup_per_axis, min_warmup
        self.variance_kept, self.refresh_rows = variance_kept, max(1, refresh_rows // self.stride)
        self.shrinkage, self.min_std = shrinkage, min_std
        # Gating: rows above the limit do not teach the model, but only for this many in a row; a change
        # that lasts longer is the new normal (a new program), and the model must follow it.
        self.gate_rows = (gate_rows if gate_rows is not None else int(halflife_rows / 2)) // self.stride
        self.log_scale = log_scale  # currents are heavy-tailed magnitudes: compare them on a log1p scale
        # The mean of the last ``window`` active rows is what is modelled: one row is a point of a work
        # cycle, a short window is the load the cycle put on each axis, where axes relate more steadily.
        self.window = max(1, window)
        # Pure Python on the per-row path: numpy's call overhead on a vector of a dozen axes costs more than
        # the arithmetic (bench/results/alerts_quality.md, CPU per reading).
        self.recent: deque[list[float]] = deque(maxlen=self.window - 1)
        self._rows = 0  # complete rows seen by ``update``
        self.axes: tuple[int, ...] = ()
        self.count = 0  # rows learned
        self.gated = 0  # rows in a row above the limit
        self.mean = np.zeros(0)
        self.cov = np.zeros((0, 0))
        # What the last row judged blames: the per-axis parts of the statistic that decided, as (vector, scale):
        # parts = vector² / scale (scale None: vector²). Turned into shares only when asked (``contributions``):
        # only a row that fires needs them, and most rows judged do not.
        self._blame: tuple[np.ndarray, np.ndarray | None] | None = None
        self._since_refresh = 0
        self._cache: tuple[tuple, float, tuple[np.ndarray, np.ndarray | None]] | None = None
        self._basis: _Basis | None = None

    # -- public interface -------------------------------------------------------------------------------

    @property
    def warmup(self) -> int:
        """Learned vectors needed before scoring (the rows it takes, over the stride)."""
        return -(-max(self.min_warmup, self.warmup_per_axis * len(self.axes)) // self.stride)

    @property
    def ready(self) -> bool:
        return bool(self.axes) and self.count >= self.warmup

    @property
    def contributions(self) -> dict[int, float]:
        """Each axis's share of the statistic that decided on the last row judged (empty: none was judged)."""
        if self._blame is None:
            return {}
        vector, scale = self._blame
        parts = vector * vector if scale is None else vector * vector / scale
        total = float(parts.sum())
        return {a: float(v) / total for a, v in zip(self.axes, parts, strict=True)} if total > 0 else {}

    def learn_one(self, x: dict[int, float | None]) -> None:
        if not self.axes:
            axes = tuple(sorted(a for a, v in x.items() if v is not None))
            if not axes or all(x[a] == 0 for a in axes):
                return
            self._start(axes)
        row = self._row(x)
        if row is None:
            return
        feature = self._feature(row)
        self._remember(row)
        if feature is not None:
            self._learn(feature)

    def update(self, x: dict[int, float | None]) -> float | None:
        """``score_one`` then ``learn_one`` in one pass, on every ``stride``-th complete row only: the score
        of a row judged, ``None`` for a row only remembered (idle, incomplete, or between two judged)."""
        if not self.axes:
            self.learn_one(x)
            return None
        row = self._row(x)
        if row is None:
            return None
        self._rows += 1
        if self._rows % self.stride:
            if self.window > 1:
                self.recent.append(row)  # _remember, inlined: this is most rows
            return None
        feature = self._feature(row)
        self._remember(row)
        self._blame = None
        if feature is None:
            return None
        if not self.ready:
            self._learn(feature)
            return 0.0
        score, self._blame = self._scored(feature)
        self._learn(feature, score)
        return score

    def _learn(self, feature: np.ndarray, score: float | None = None) -> None:
        """Learn the vector, unless it is above the limit (gated; ``score``: its score, when already known)."""
        if self.ready:
            if score is None:
                score, _ = self._scored(feature)
            if score < 0.5:
                self.gated = 0
            else:
                self.gated += 1
                if self.gated <= self.gate_rows:
                    return
        self._update(feature)

    def score_one(self, x: dict[int, float | None]) -> float:
        """The row's anomaly score in [0, 1] (0.5 = the ALERT limit); 0 while warming up, idle or incomplete.
        Leaves the per-axis share of the statistic that decided in ``contributions``."""
        self._blame = None
        row = self._row(x) if self.ready else None
        feature = self._feature(row) if row is not None else None
        if feature is None:
            return 0.0
        score, self._blame = self._scored(feature)
        return score

    def state(self) -> dict[str, Any]:
        return {
            "axes": list(self.axes),
            "count": self.count,
            "gated": self.gated,
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "recent": [list(r) for r in self.recent],
            "rows": self._rows,
            "basis": None
            if self._basis is None
            else [self._basis.count, self._basis.cov.tolist(), self._since_refresh],
        }

    def load(self, state: dict[str, Any]) -> None:
        self._start(tuple(int(a) for a in state["axes"]))
        self.count, self.gated = int(state["count"]), int(state["gated"])
        if self.axes:
            self.mean = np.asarray(state["mean"], dtype=float).reshape(len(self.axes))
            self.cov = np.asarray(state["cov"], dtype=float).reshape(len(self.axes), len(self.axes))
            for row in state.get("recent", []):
                if len(row) != len(self.axes):
                    raise ValueError(f"a remembered row has {len(row)} values for {len(self.axes)} axes")
                self._remember([float(v) for v in row])
            self._rows = int(state.get("rows", 0))
        if state.get("basis"):  # the decomposition in use, so a restored detector scores as it would have
            count, cov, self._since_refresh = state["basis"]
            self._basis = self._decompose(np.asarray(cov, dtype=float).reshape(self.cov.shape), int(count))

    # -- the model ----------------------------------------------------------------------------------------

    def _start(self, axes: tuple[int, ...]) -> None:
        p = len(axes)
        self.axes, self.count, self.gated = axes, 0, 0
        self.mean, self.cov = np.zeros(p), np.zeros((p, p))
        self._basis, self._cache = None, None
        self.recent.clear()
        self._rows = 0

    def _feature(self, row: list[float]) -> np.ndarray | None:
        """The modelled vector for this row: the mean of it and the ``window - 1`` active rows before it."""
        if self.window == 1:
            return np.asarray(row)
        if len(self.recent) < self.window - 1:
            return None
        # summed when judged (every ``stride`` rows), not kept as a running sum updated on every row
        return np.add([sum(column) for column in zip(*self.recent, strict=True)], row) / self.window

    def _remember(self, row: list[float]) -> None:
        if self.window > 1:
            self.recent.append(row)

    def _row(self, x: dict[int, float | None]) -> list[float] | None:
        values = list(map(x.get, self.axes))
        if not values or None in values or not any(values):
            return None
        if not self.log_scale:
            return [float(v) for v in values]
        if min(values) >= 0:
            return list(map(math.log1p, values))
        return [math.copysign(math.log1p(abs(v)), v) for v in values]

    def _update(self, row: np.ndarray) -> None:
        # Plain running moments until the EW weight takes over, so warm-up estimates are the sample ones.
        self.count += 1
        lam = max(self.lam, 1.0 / self.count)
        d = row - self.mean
        self.mean += lam * d
        self.cov = (1 - lam) * (self.cov + lam * np.outer(d, d))
        self._since_refresh += 1
        if self._basis is not None and self._since_refresh >= self.refresh_rows:
            self._basis = None
        self._cache = None

    def _scored(self, row: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray | None]]:
        key = tuple(row)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        if self._basis is None:
            self._since_refresh = 0
            self._basis = self._decompose(self.cov.copy(), self.count)
        basis = self._basis
        z = (row - self.mean) / basis.std
        w = basis.inverse @ z
        t2 = float(z @ w)
        residual = z - basis.loadings @ (basis.loadings.T @ z)
        spe = float(residual @ residual)
        p_t2 = float(_F_SF(basis.p, basis.dfd, t2 / basis.t2_scale)) if basis.dfd > 0 else 1.0
        p_spe = float(_CHI2_SF(basis.spe_h, spe / basis.spe_g)) if basis.spe_g > 0 else 1.0
        p_min = max(min(p_t2, p_spe), _TINY_P)
        p = -math.expm1(2 * math.log1p(-p_min)) if p_min < 1 else 1.0  # Šidák over the two statistics
        score = squash(-math.log10(max(p, _TINY_P)), -math.log10(self.alpha))
        # Blame: for T², how much it falls without axis j, (S⁻¹d)ⱼ² / (S⁻¹)ⱼⱼ - the part of axis j the other
        # axes do not explain (dⱼ(S⁻¹d)ⱼ spreads a single axis's excess over the axes correlated with it).
        blame = (w, basis.inverse_diagonal) if p_t2 <= p_spe else (residual, None)
        self._cache = (key, score, blame)
        return score, blame

    def _decompose(self, cov: np.ndarray, count: int) -> _Basis:
        p = len(self.axes)
        std = np.maximum(np.sqrt(np.maximum(np.diag(cov), 0.0)), self.min_std)
        corr = cov / np.outer(std, std)
        corr[np.diag_indices(p)] = 1.0  # also for a constant axis: a change of min_std there counts as 1 sd
        # Shrink towards the identity: duplicated or quantised axes would make the matrix singular.
        corr = (1 - self.shrinkage) * corr + self.shrinkage * np.eye(p)
        values, vectors = np.linalg.eigh(corr)
        values, vectors = values[::-1].clip(min=1e-12), vectors[:, ::-1]
        kept = int(np.searchsorted(np.cumsum(values) / values.sum(), self.variance_kept) + 1)
        kept = min(kept, p - 1) if p > 1 else 1
        dropped = values[kept:]
        theta1, theta2 = float(dropped.sum()), float((dropped**2).sum())
        # Effective sample size of the EW estimate; overlapping windows share rows, so count whole windows.
        inverse = vectors @ np.diag(1 / values) @ vectors.T
        n = min(count, (2 - self.lam) / self.lam) * min(self.stride, self.window) / self.window
        dfd = n - p
        return _Basis(
            p=p,
            count=count,
            cov=cov,
            std=std,
            inverse=inverse,
            inverse_diagonal=np.diag(inverse).copy(),
            loadings=vectors[:, :kept],
            # T² of a new point: p(n+1)(n-1)/(n(n-p)) · F(p, n-p)
            t2_scale=p * (n + 1) * (n - 1) / (n * dfd) if dfd > 0 else 1.0,
            dfd=dfd,
            # Box: SPE ≈ g·χ²_h with g = θ2/θ1, h = θ1²/θ2 over the dropped eigenvalues
            spe_g=theta2 / theta1 if theta1 > 0 else 0.0,
            spe_h=theta1**2 / theta2 if theta2 > 0 else 1.0,
        )


class _Basis:
    """What the scoring needs from the covariance, recomputed every ``refresh_rows`` learned rows."""

    __slots__ = (
        "p",
        "count",
        "cov",
        "std",
        "inverse",
        "inverse_diagonal",
        "loadings",
        "t2_scale",
        "dfd",
        "spe_g",
        "spe_h",
    )

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)


class MultivariateRobotDetector:
    """The detector as a robot detector of the engine (registry's ``ROBOT_DETECTORS``): per reading, score
    against what was learned before, then learn. One event at a time per robot, filed under the axis that
    explains most of the statistic on the row that opened it (``suspect``; its ``value`` is that axis's
    current). Its findings are ALERTs that the engine sizes (``sized_by_axis``) by the one severity rule on
    that axis's level, as the per-axis detectors' are: the statistic says *that* the axes' relation broke, not
    how gross the change is (a score of 0.8, its ERROR before, came with loads 1.5 times normal)."""

    name = "multivariate"
    kinds = ("multivariate",)
    sized_by_axis = True

    def __init__(self, detector: MultivariateDetector) -> None:
        self.detector = detector
        self.observed = False
        self.normalized = 0.0
        self.suspect: int | None = None
        self.shares: dict[int, float] = {}  # each axis's share of the statistic on the last row that fired

    def update(self, ts: float, currents, *, idle: bool = False) -> Finding | None:
        score = self.detector.update(currents) if not idle else None
        # The detector skips idle and incomplete rows, and the rows between two it judges: only a judged row
        # is evidence ("observed"), so the lifecycle neither fires nor counts quiet time on the others.
        self.observed = score is not None
        if score is None:
            return None
        self.normalized = score
        if score < 0.5:
            return None
        shares = self.shares = self.detector.contributions
        self.suspect = max(shares, key=shares.get)
        return Finding(Severity.ALERT, float(currents[self.suspect]), score, 0.5, axis=self.suspect)

    def forget_flat(self) -> None:
        """A stuck sensor whose repeats raised this detector's event reads live values again: the window, full
        of its flat rows, is forgotten (the engine's rule for such events), and refills from live rows before
        the next row is judged."""
        self.detector.recent.clear()

    def state(self) -> dict[str, Any]:
        # The engine's snapshot stores each list of a state as one flat float64 window; this state nests
        # (a matrix, the recent rows), so it travels as one JSON text (floats round-trip exactly).
        return {"json": json.dumps(self.detector.state())}

    def load(self, state: dict[str, Any]) -> None:
        self.detector.load(json.loads(state["json"]))
