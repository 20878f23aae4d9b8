"""The lab's pictures, per axis: the fit over the data (``axisN.png``) and the residuals with the
MinC / MaxC lines (``residual-axisN.png``). Matplotlib with the Agg backend: no display needed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from common.wire.schemas import Reading  # noqa: E402
from consumer_alerts.detectors.residual import ResidualDetector  # noqa: E402
from consumer_alerts.model import AlertModel, AxisModel  # noqa: E402
from consumer_alerts.training import collect  # noqa: E402

logger = logging.getLogger(__name__)


def plot_model(model: AlertModel, readings: Iterable[Reading], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    per_axis, _ = collect(readings)
    span = [_when(model.training[k]) for k in ("start", "end")] if model.training.get("start") else None
    written: list[Path] = []
    for axis, axis_model in sorted(model.axes.items()):
        samples = per_axis.get(axis)
        if samples is None or not samples.amps:
            logger.warning("axis %d: no active samples in the file, nothing to plot", axis)
            continue
        ts, amps = np.asarray(samples.ts), np.asarray(samples.amps)
        written.append(_fit(axis_model, ts, amps, span, out_dir / f"axis{axis}.png"))
        written.append(_residuals(axis_model, ts, amps, span, out_dir / f"residual-axis{axis}.png"))
    return written


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _times(ts: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def _shade(ax, span) -> None:
    if span:
        ax.axvspan(span[0], span[1], color="tab:green", alpha=0.08, label="training span")


def _fit(m: AxisModel, ts: np.ndarray, amps: np.ndarray, span, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4.5))
    when = _times(ts)
    ax.scatter(when, amps, s=2, alpha=0.35, color="tab:blue", label="active samples")
    ax.plot(
        [when[0], when[-1]],
        [m.line.at(ts[0]), m.line.at(ts[-1])],
        color="tab:red",
        lw=2,
        label=f"line fit (R² = {m.line.r2:.3f}, {m.line.slope_per_h:+.3f} A/h)",
    )
    ax.axhline(m.median, color="black", ls="--", lw=1, label=f"median level {m.median:.2f} A")
    _shade(ax, span)
    ax.set(title=f"Axis {m.axis}: current of active samples and the expected-current fit", ylabel="current (A)")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def _residuals(m: AxisModel, ts: np.ndarray, amps: np.ndarray, span, path: Path) -> Path:
    trace: list[tuple[float, float, float]] = []
    detector = ResidualDetector(m, trace=trace)
    for t, a in zip(ts, amps, strict=True):
        detector.update(float(t), float(a))
    when = _times(ts)
    long_stat, short_stat = np.array([r[1] for r in trace]), np.array([r[2] for r in trace])
    residual = amps - np.array([m.expected(t) for t in ts])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    top.scatter(when, residual, s=2, alpha=0.25, color="grey", label="residual (observed − expected)")
    top.plot(
        when,
        short_stat,
        lw=0.5,
        alpha=0.7,
        color="tab:blue",
        label=f"short statistic (lowest residual of the last {m.short})",
    )
    top.axhline(m.max_c, color="tab:red", lw=1.5, label=f"MaxC = {m.max_c:.2f} A (ERROR, T_SHORT = {m.t_short_s:g} s)")
    if m.surge_c is not None:
        top.axhline(
            m.surge_c, color="darkred", lw=1, ls="--", label=f"SurgeC = {m.surge_c:.2f} A (ERROR on one sample)"
        )
    top.set(
        ylabel="amps", title=f"Axis {m.axis}: residuals and thresholds ({'density' if m.density else 'line'} model)"
    )
    unit = "log-likelihood ratio" if m.density else "amps"
    bottom.plot(when, long_stat, lw=0.8, color="tab:purple", label=f"long statistic (mean of {m.window}, {unit})")
    bottom.axhline(
        m.min_c, color="tab:orange", lw=1.5, label=f"MinC = {m.min_c:.3f} (ALERT, T_LONG = {m.t_long_s:g} s)"
    )
    bottom.set(ylabel=unit)
    for ax in (top, bottom):
        _shade(ax, span)
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
