"""The regression-residual detector (the workshop's lab, made to hold up on real data).

Per active sample: ``residual = observed - expected`` (amps, from the axis's trained model). Two rules:

- ALERT: the long statistic (mean over the last ``window`` active samples of the model's per-sample
  score: the residual for a ``line`` model, the overload log-likelihood ratio for a ``density`` one)
  >= MinC, held for T_LONG seconds.
- ERROR: the residual >= MaxC on each of the last ``short`` active samples in a row (the lab's "holds
  for T_SHORT", counted in samples: T_SHORT is their duration at the usual sample spacing). The short
  statistic is therefore the lowest residual of those samples. A single sample whose residual reaches
  SurgeC (``surge_c``, above anything training saw even scaled up) is an ERROR on its own: a severe spike
  may last one 2-second sample. It does not enter the long window: judged by its own rule, it would also keep
  the window over MinC, and an ALERT open, for a window's length after a spike of a few seconds.

ALERT's "held" counts time from the first active sample that met the rule; idle rows and ``None`` neither
feed the windows nor break a run. Only the positive side matters: less current than expected is not wear.
Without thresholds (``min_c``/``max_c`` None) the detector only computes the statistics: that is how
training learns them (``trace`` collects ``(ts, long, short)`` for every active sample).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from common.wire.schemas import Severity
from consumer_alerts.detectors import ActiveSamples, Finding, Hold, squash
from consumer_alerts.detectors.window import RollingWindow
from consumer_alerts.model import AxisModel

NAN = float("nan")


class ResidualDetector(ActiveSamples):
    name = "residual"

    def __init__(self, model: AxisModel, *, stoppage_s: float = 600.0, trace: list | None = None) -> None:
        self.model, self.stoppage_s, self.trace = model, stoppage_s, trace
        self.long = RollingWindow(model.window)
        self.short: deque[float] = deque(maxlen=model.short)
        self.last_ts: float | None = None
        self._alert = Hold()
        self.observed, self.normalized = False, 0.0
        self.long_stat = self.short_stat = NAN

    def update(self, ts: float, value: float | None, *, idle: bool = False) -> Finding | None:
        if not self.admit(ts, value, idle):
            return None
        model = self.model
        residual = value - model.expected(ts)
        surge = model.surge_c is not None and residual >= model.surge_c
        if not surge:  # a surge is judged by its own rule: in the window it would keep an ALERT open long after it
            self.long.push(model.alert_score(value, residual))
        self.short.append(residual)
        self.long_stat = self.long.mean if self.long.full else NAN
        self.short_stat = min(self.short) if len(self.short) == model.short else NAN
        if self.trace is not None:
            self.trace.append((ts, self.long_stat, self.short_stat))
        if model.min_c is None or model.max_c is None:
            return None
        self.normalized = max(squash(self.long_stat, model.min_c), squash(self.short_stat, model.max_c))
        # NaN compares False: a window that is not full yet never fires.
        alert = self._alert.update(ts, self.long_stat >= model.min_c) >= model.t_long_s
        if surge:  # first: a surge's severity is its own
            return Finding(Severity.ERROR, value, residual, model.surge_c, instant=True)
        if self.short_stat >= model.max_c:
            return Finding(Severity.ERROR, value, self.short_stat, model.max_c)
        if alert:
            return Finding(Severity.ALERT, value, self.long_stat, model.min_c)
        return None

    def on_stoppage(self) -> None:
        self._alert = Hold()  # a run never spans a long stoppage (the windows keep their evidence)
        self.short.clear()

    def state(self) -> dict[str, Any]:
        return {
            **self.long.state("long"),
            "short": list(self.short),
            "last_ts": self.last_ts,
            "alert_since": self._alert.since,  # how long the ALERT's condition has held: it must hold t_long_s
        }

    def load(self, state: dict[str, Any]) -> None:
        self.long = RollingWindow.from_state(self.model.window, state, "long")
        self.short = deque(state["short"], maxlen=self.model.short)
        self.last_ts = state["last_ts"]
        self._alert.since = state["alert_since"]
