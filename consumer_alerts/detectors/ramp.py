"""How far a ramp has got: the level of the recent half of the load window, while the window's level still moves.

The one severity rule (:mod:`consumer_alerts.detectors.severity`) sizes a change by the log-mean of the axis's
last ``LOAD_WINDOW`` active readings. That is right for a step, but a **ramp** (wear, a slow leak of load) keeps
moving: the window reads the mean of the ramp's last stretch, about half way to where it has got, and a ramp that
ends at twice the normal load, or at a fifth of it, never reads gross. So, for an event **already open** on the
axis only (this never opens an event), the axis is also sized by the **recent half** of the window when the
window's readings trend the same way: the least-squares slope of the window's logs over their order is at least
``min_t`` of its own standard errors from flat (a t-statistic). A step sitting inside the window trends as well;
its recent half is then the step's own level, judged on half the readings (noisier: one reason this sizes open
events only, and why ``min_t`` is there).

O(window) per call, made only for a finding on an axis with an open event that the window does not already size
gross: never on clean data.
"""

from __future__ import annotations

import math


def ramp_ratio(load, min_t: float) -> float | None:
    """The recent half of ``load``'s window over the axis's normal level, when the window trends towards it by at
    least ``min_t`` standard errors of its slope; ``None`` when it does not, or nothing is known yet."""
    if min_t <= 0 or load is None or not load.full or not load.learnt:
        return None
    logs = list(load.logs)
    n = len(logs)
    if n < 8:
        return None
    recent_n = min(load.options.window // 2, n)
    mean = math.fsum(logs) / n
    centre = (n - 1) / 2
    sxx = n * (n * n - 1) / 12  # sum of (i - centre)^2 over 0..n-1
    slope = math.fsum((i - centre) * (v - mean) for i, v in enumerate(logs)) / sxx
    residual = math.fsum((v - mean - slope * (i - centre)) ** 2 for i, v in enumerate(logs))
    if residual <= 0:
        return None  # a flat window (a clamp, a stuck sensor): no trend to read
    t = slope / math.sqrt(residual / (n - 2) / sxx)
    recent = math.fsum(logs[-recent_n:]) / recent_n - (load.prior if load.on_prior else load.normal)
    if (recent > 0 and t >= min_t) or (recent < 0 and t <= -min_t):
        return math.exp(recent)
    return None
