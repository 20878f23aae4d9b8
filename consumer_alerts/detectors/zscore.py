"""The z-score detector, done right: recent behaviour of the axis itself is the baseline.

- The baseline is a rolling window of the axis's recent *active* samples; idle rows and ``None`` never
  enter it, and neither does the sample under test.
- The sample under test is the mean of the last ``test_samples`` active samples (1 = the classic
  single-sample z). A mean of a few samples is what keeps the detector quiet on this data: a joint's
  current jumps from 4 A to 40 A within one cycle, so one high sample means nothing, a run of them does.
  ``z = (test mean - baseline mean) / (baseline std / sqrt(n))``, positive side only.
- After a stoppage longer than ``stoppage_s`` without active data the baseline starts over: a 3-hour
  pause is not recent behaviour. Until ``min_samples`` are in the baseline, the detector stays quiet.
"""

from __future__ import annotations

import math
from typing import Any

from common.wire.schemas import Severity
from consumer_alerts.detectors import ActiveSamples, Finding, Hold, squash
from consumer_alerts.detectors.window import RollingWindow


class ZScoreDetector(ActiveSamples):
    name = "zscore"

    def __init__(
        self,
        *,
        window: int = 500,
        test_samples: int = 8,
        threshold: float = 7.0,
        error_threshold: float = 10.0,
        min_samples: int = 100,
        stoppage_s: float = 600.0,
        hold_s: float = 0.0,
    ) -> None:
        if not 1 <= min_samples <= window:
            raise ValueError(f"min_samples must be within 1..window ({window}), got {min_samples}")
        if error_threshold < threshold:
            raise ValueError("the ERROR threshold must not be below the ALERT threshold")
        self.threshold, self.error_threshold = threshold, error_threshold
        self.min_samples, self.stoppage_s, self.hold_s = min_samples, stoppage_s, hold_s
        self.baseline = RollingWindow(window)
        self.test = RollingWindow(test_samples)
        self.last_ts: float | None = None
        self._alert, self._error = Hold(), Hold()
        self.observed, self.normalized, self.z = False, 0.0, 0.0

    def on_stoppage(self) -> None:
        self.baseline.clear()
        self.test.clear()
        self._alert, self._error = Hold(), Hold()

    def update(self, ts: float, value: float | None, *, idle: bool = False) -> Finding | None:
        if not self.admit(ts, value, idle):
            return None
        left_test = self.test.push(value)
        if left_test is not None:
            self.baseline.push(left_test)  # the sample under test joins the baseline only once it is past
        self.z = self._z()
        self.normalized = squash(self.z, self.threshold)
        if self._error.update(ts, self.z >= self.error_threshold) >= self.hold_s:
            return Finding(Severity.ERROR, value, self.z, self.error_threshold)
        if self._alert.update(ts, self.z >= self.threshold) >= self.hold_s:
            return Finding(Severity.ALERT, value, self.z, self.threshold)
        return None

    def _z(self) -> float:
        baseline, test = self.baseline, self.test
        if len(baseline.values) < self.min_samples or len(test.values) < test.size:
            return 0.0
        mean = baseline.mean
        # A floor on the spread: a flat baseline would turn any wiggle into an infinite z.
        std = max(baseline.std, 0.01 * abs(mean), 1e-9)
        return (test.mean - mean) / (std / math.sqrt(test.size))

    def state(self) -> dict[str, Any]:
        return {
            **self.baseline.state("baseline"),
            **self.test.state("test"),
            "last_ts": self.last_ts,
            "alert_since": self._alert.since,
            "error_since": self._error.since,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.baseline = RollingWindow.from_state(self.baseline.size, state, "baseline")
        self.test = RollingWindow.from_state(self.test.size, state, "test")
        self.last_ts = state["last_ts"]
        self._alert.since, self._error.since = state["alert_since"], state["error_since"]
