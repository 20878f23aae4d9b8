"""The regression-residual detector (the workshop's lab, made to hold up on real data).

Per active sample: ``residual = observed - expected`` (amps, from the axis's trained model). Two rules:

- ALERT: the long statistic (mean over the last ``window`` active samples of the model's per-sample
  score: the residual for a ``line`` model, the overload log-likelihood ratio for a ``density`` one)
  >= MinC, held for T_LONG seconds.
- ERROR: the residual >= MaxC on each of the last ``short`` active samples in a row (the lab's "holds
  for T_SHORT", counted in samples: T_SHORT is their duration at the usual sample spacing). The short
  statistic is therefore the lowest residual of those samples. The engine sizes this ERROR like any level: a
  heavier load's broad cycle peak passes it as a spike's plateau does, so it is also watched like a surge.
- A **surge**: one sample whose residual reaches SurgeC (``surge_c``, above anything training saw even scaled up). A
  severe spike may last one 2-second sample, but so may the peak of a cycle under a load 50-100 % heavier: one sample
  does not tell them apart. So a surge is an ERROR on its own only past ``gross_high`` times the highest current of
  training (``top``: no load short of a gross one reaches it); below that it is an ALERT (sized by the engine like any
  level) and becomes an ERROR once it is known to have been a **spike**: no surge again for ``SPIKE_QUIET`` active
  samples after it, no sustained overload (the long statistic stayed under MinC; while its window fills again, at a
  robot's first readings or after a stoppage, the mean of the samples since) and no flat value (``SPIKE_FLAT``
  repeats: a clamp or a stuck sensor, judged by the rule for flat values). The short rule's samples are remembered the
  same way: a plateau past MaxC that does not come back is a spike too. A surge does not enter the long window: it
  would keep the window over MinC, and an ALERT open, for a window's length after a spike of a few seconds.

ALERT's "held" counts time from the first active sample that met the rule; idle rows and ``None`` neither
feed the windows nor break a run. Only the positive side matters: less current than expected is not wear.

The long window remembers a fault for a window's length after it ends, so once raised the ALERT goes on only while
the window's **recent part** (its last ``1/RECENT_SHARE``) is at MinC too. Once ended, it comes back when the recent
part is at MinC again *and* the long statistic is no lower than when it ended: after a fault the long statistic
drains as the fault's samples leave the window (the tail is no new fault), while under a lasting change it stays
where it was, so its event comes back (a weak change that wanders may come back as a new event).

A **rest** (a gap between active samples longer than the recent part's span: ``recent_size`` of the feed's own
sampling intervals, learnt from the gaps) ends what "recent" means: the samples from before it would have left the
recent part had the robot worked. Once the robot works again, a raised ALERT has no verdict until the recent part
holds ``recent_size`` samples from after the rest (a burst too short to fill it carries over to the next one): those
readings are no evidence to its event either way (``observed`` is false), then the ALERT goes on or ends on them
alone. So a fault that ended before or during the rest is quiet on the first judged reading, and its event closes
as of the rest's start (the lifecycle's rule); one that goes on after the rest fires there and stays one event.
Judged on the pre-rest samples, the first reading after a rest fired on the fault's memory and kept its event open
through the next rest too (the demo: an overload closed 646 s after its end, 588 s of it at rest).

Without thresholds (``min_c``/``max_c`` None) the detector only computes the statistics: that is how
training learns them (``trace`` collects ``(ts, long, short)`` for every active sample).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from itertools import islice
from typing import Any

from common.wire.schemas import Severity
from consumer_alerts.detectors import ActiveSamples, Finding, Hold, squash
from consumer_alerts.detectors.load import FLAT_RUN
from consumer_alerts.detectors.scoring import SamplingInterval
from consumer_alerts.detectors.window import RollingWindow
from consumer_alerts.model import AxisModel

NAN = float("nan")
# A surge not followed by another for this many active samples was a spike: a heavier load's cycle peaks recur
# (tuning seeds: 18-66 samples apart at +43-91 %); the original benchmark's spikes are 1-14 samples of surge.
SPIKE_QUIET = 30
SPIKE_RUN_GAP = 3  # surges this few active samples apart are one spike (a spike's samples dip under SurgeC)
SPIKE_FLAT = FLAT_RUN  # repeats in a row after a surge: a flat value, not a spike (a clamp, a stuck sensor)
# The recent part the ALERT is judged on once raised: the last eighth of the long window (20 of 160 samples, about
# a work cycle and a half of the demo's feed). A quarter closed one overload and one drift of the demo late.
RECENT_SHARE = 8
NEVER = 1 << 30
# A broad move: an axis whose long statistic is this share of the way from its training median to MinC, either way
# (a program lowers some axes' load), has moved; a long-rule ALERT that would open while MOVED_AXES other axes have
# moved is one of a program's axes, not an event (a fault moves 1-3 axes; tuning seeds: docs/benchmarks.md); so is
# a ``load`` ALERT then (the engine's ``_moved_together``).
MOVED = 0.5
MOVED_AXES = 3
# An axis whose long statistic has just left where it has been lately is moving too: this share of the way, from
# its recent level (a running mean of ``moved``, half-life MOVING_HALFLIFE active samples: half an hour of a busy
# robot). An axis that sits off its training median for hours (3 of the real export's) counts as moved by MOVED
# at its own level, so only the change since counts; a program's weaker axes show here minutes before MOVED
# (docs/benchmarks.md section 5, branch ``onset14``).
MOVING = 0.25
MOVING_HALFLIFE = 900
MOVING_STEP = 1 - 0.5 ** (1 / MOVING_HALFLIFE)


class ResidualDetector(ActiveSamples):
    name = "residual"

    def __init__(
        self, model: AxisModel, *, stoppage_s: float = 600.0, gross_high: float = 2.0, trace: list | None = None
    ) -> None:
        self.model, self.stoppage_s, self.trace = model, stoppage_s, trace
        # No load short of a gross one draws this (None: a model without ``top``; every surge waits to be a spike).
        self.gross_surge = gross_high * model.top if model.top is not None else None
        self.long = RollingWindow(model.window, spread=False)  # its mean only
        self.short: deque[float] = deque(maxlen=model.short)
        self.last_ts: float | None = None
        self._alert = Hold()
        self.recent_size = max(1, model.window // RECENT_SHARE)
        # in the long statistic's current run over MinC: the ALERT has fired; it has ended, and the long statistic
        # when it ended (it comes back only once that statistic is no lower: a fault's tail drains the window)
        self.raised = self.ended = False
        self.ended_long = NAN
        self.observed, self.normalized = False, 0.0
        self.long_stat = self.short_stat = NAN
        self.spike: tuple[float, float, float] | None = None  # (value, residual, threshold): may be a spike
        self.since_surge = NEVER  # active samples since the last surge
        self.repeats = 0  # readings in a row that were no evidence while the robot worked (repeats)
        self.fresh = 0  # samples in the long window since the last stoppage
        self.interval = SamplingInterval()  # the feed's own time between active samples: what a rest is measured in
        self.refill = 0  # samples the recent part still takes in after a rest before a raised ALERT is judged again
        self.long_alert = False  # the last finding was the long rule's ALERT (not a surge's nor the short rule's)
        self.recent_moved = NAN  # the running mean of ``moved``: where the long statistic has been lately

    def update(self, ts: float, value: float | None, *, idle: bool = False) -> Finding | None:
        previous = self.last_ts
        if not self.admit(ts, value, idle):
            if value is None and not idle:  # the engine's repeats (or OK-nulls) while the robot works
                self.repeats += 1
                if self.repeats >= SPIKE_FLAT:
                    self.spike = None
            return None
        self.repeats = 0
        if previous is not None:
            self._after(ts - previous)
        model = self.model
        residual = value - model.expected(ts)
        self.long_alert = False
        surge = model.surge_c is not None and residual >= model.surge_c
        if not surge:  # a surge is judged by its own rule: in the window it would keep an ALERT open long after it
            self.long.push(model.alert_score(value, residual))
            self.fresh += 1
            if self.refill:
                self.refill -= 1
        self.short.append(residual)
        self.long_stat = self.long.mean if self.long.full else NAN
        if not surge and self.long_stat == self.long_stat:
            moved, recent = self.moved, self.recent_moved
            self.recent_moved = moved if recent != recent else recent + MOVING_STEP * (moved - recent)
        self.short_stat = min(self.short) if len(self.short) == model.short else NAN
        if self.trace is not None:
            self.trace.append((ts, self.long_stat, self.short_stat))
        if model.min_c is None or model.max_c is None:
            return None
        self.normalized = max(squash(self.long_stat, model.min_c), squash(self.short_stat, model.max_c))
        # NaN compares False: a window that is not full yet never fires.
        if self._alert.update(ts, self.long_stat >= model.min_c) >= model.t_long_s:
            if not self.raised:
                alert = self._raise()
            elif self.refill:  # after a rest, until the recent part holds only samples from after it: no verdict
                alert = self.observed = False
            else:
                alert = self._goes_on(model.min_c)
        else:
            alert = self.raised = False
        if surge:
            return self._surge(value, residual)
        if self.short_stat >= model.max_c:
            # a few samples in a row past MaxC: a spike's plateau, or a heavier load's broad peak; it is sized by
            # the engine like any level, and watched like a surge (a load's peaks recur, a spike's do not)
            peak = max(self.short)  # the plateau's highest sample
            self._heavy(peak + value - residual, peak, model.max_c)
            return Finding(Severity.ERROR, value, self.short_stat, model.max_c)
        self.since_surge += 1
        if self.spike is not None:
            if self._long_so_far() >= model.min_c:
                self.spike = None  # a sustained overload around it: a heavier load's peak, sized as a level
            elif self.since_surge >= SPIKE_QUIET:
                (peak, peak_residual, threshold), self.spike = self.spike, None
                return Finding(Severity.ERROR, peak, peak_residual, threshold, instant=True)
        if alert:
            self.long_alert = True
            return Finding(Severity.ALERT, value, self.long_stat, model.min_c)
        return None

    @property
    def moved(self) -> float:
        """How far the long statistic is from its training median, as a share of the way to MinC (negative: the
        axis draws less than it used to); 0 while unknown (a window not full, a model without ``long_median``)."""
        model, long_stat = self.model, self.long_stat
        if model.long_median is None or model.min_c is None or not model.min_c > model.long_median:
            return 0.0
        return (long_stat - model.long_median) / (model.min_c - model.long_median) if long_stat == long_stat else 0.0

    @property
    def moving(self) -> float:
        """How far ``moved`` is from where it has been lately (its running mean): 0 while unknown."""
        recent = self.recent_moved
        return self.moved - recent if recent == recent else 0.0

    def _after(self, gap: float) -> None:
        """Note the time since the last active sample: a gap longer than the recent part's span is a rest, after which
        the recent part is judged again once it holds ``recent_size`` samples from after it (a rest while it is still
        filling keeps the count: a burst of work too short to fill it must not put the verdict off for good)."""
        interval = self.interval
        if interval.seconds and gap > self.recent_size * interval.seconds and not self.refill:
            self.refill = self.recent_size
        interval.push(gap)

    def _long_so_far(self) -> float:
        """The long statistic, or while the window fills again (a robot's first readings, or since a stoppage) the
        mean of the samples since, once they are ``SPIKE_QUIET``: a load heavier from the first reading on surges at
        its cycle's peaks, and a window not full (or still holding the samples from before the stoppage) would not
        say it is a sustained overload."""
        fresh = min(self.fresh, len(self.long.values))
        if fresh >= self.long.size or fresh < SPIKE_QUIET:
            return self.long_stat
        return math.fsum(islice(reversed(self.long.values), fresh)) / fresh

    def _raise(self) -> bool:
        self.raised, self.ended = True, False
        return True

    def _goes_on(self, min_c: float) -> bool:
        """A raised ALERT while the long statistic holds: on while the recent part is at MinC; once ended, on again
        when the recent part is back at MinC and the long statistic has not drained since (a lasting change)."""
        recent = islice(reversed(self.long.values), self.recent_size)  # summed only while an ALERT's rule holds
        if math.fsum(recent) / self.recent_size < min_c:
            if not self.ended:
                self.ended, self.ended_long = True, self.long_stat
            return False
        if self.ended and self.long_stat < self.ended_long:
            return False  # the fault's tail: its samples leave the window
        self.ended = False
        return True

    def _surge(self, value: float, residual: float) -> Finding:
        """A surge: an ERROR past what any load short of a gross one draws; otherwise an ALERT (sized by the
        engine), remembered as a spike until the samples after it say otherwise."""
        if self.gross_surge is not None and value >= self.gross_surge:
            self.since_surge = 0
            return Finding(Severity.ERROR, value, residual, self.model.surge_c, instant=True)
        self._heavy(value, residual, self.model.surge_c)
        return Finding(Severity.ALERT, value, residual, self.model.surge_c)

    def _heavy(self, value: float, residual: float, threshold: float) -> None:
        """A sample a spike would make (a surge, or the short rule's run): remembered as a spike until another
        comes back within ``SPIKE_QUIET`` active samples (a heavier load's peaks recur)."""
        gap, self.since_surge = self.since_surge, 0
        if gap <= SPIKE_RUN_GAP:  # the same spike goes on: its highest sample is what it is remembered by
            if self.spike is not None and residual > self.spike[1]:
                self.spike = (value, residual, max(threshold, self.spike[2]))
        else:  # a first one, or one again after a pause: the pause was short, a cycle's peaks recur
            self.spike = (value, residual, threshold) if gap > SPIKE_QUIET else None

    def on_stoppage(self) -> None:
        self._alert = Hold()  # a run never spans a long stoppage (the windows keep their evidence)
        self.raised = self.ended = False
        self.short.clear()
        self.fresh = 0
        self.spike = None  # its events close at a stoppage: what was not confirmed stays the ALERT it was

    def state(self) -> dict[str, Any]:
        return {
            **self.long.state("long"),
            "short": list(self.short),
            "last_ts": self.last_ts,
            "alert_since": self._alert.since,  # how long the ALERT's condition has held: it must hold t_long_s
            "alert_raised": self.raised,
            "alert_ended_long": self.ended_long if self.ended else None,  # None: not ended (NaN is no JSON)
            # scalars (a list is a window of floats to the snapshot): a surge that may still be a spike
            "spike_value": self.spike[0] if self.spike else None,
            "spike_residual": self.spike[1] if self.spike else None,
            "spike_threshold": self.spike[2] if self.spike else None,
            "since_surge": self.since_surge,
            "repeats": self.repeats,
            "fresh": self.fresh,
            **self.interval.state(),
            "recent_refill": self.refill,
            "recent_moved": self.recent_moved if self.recent_moved == self.recent_moved else None,  # NaN is no JSON
        }

    def load(self, state: dict[str, Any]) -> None:
        self.long = RollingWindow.from_state(self.model.window, state, "long", spread=False)
        self.short = deque(state["short"], maxlen=self.model.short)
        self.last_ts = state["last_ts"]
        self._alert.since = state["alert_since"]
        self.raised = state.get("alert_raised", False)  # absent: an older snapshot
        ended_long = state.get("alert_ended_long")
        self.ended, self.ended_long = ended_long is not None, NAN if ended_long is None else ended_long
        value, residual = state.get("spike_value"), state.get("spike_residual")  # absent: an older snapshot
        threshold = state.get("spike_threshold") or self.model.surge_c  # absent: a surge's, from an older snapshot
        self.spike = (value, residual, threshold) if value is not None else None
        self.since_surge, self.repeats = state.get("since_surge", NEVER), state.get("repeats", 0)
        self.fresh = state.get("fresh", len(self.long.values))  # absent: an older snapshot, its window as it was
        # absent: an older snapshot; the interval is learnt again from the next gaps
        self.interval = SamplingInterval.from_state(state) if "gaps" in state else SamplingInterval()
        self.refill = state.get("recent_refill", 0)
        recent_moved = state.get("recent_moved")  # absent: an older snapshot; learnt again from the next samples
        self.recent_moved = NAN if recent_moved is None else recent_moved


def moved_together(others: Iterable[ResidualDetector]) -> bool:
    """At least MOVED_AXES of ``others`` (the robot's other axes' residual detectors) have moved (``moved``) or are
    moving (``moving``)."""
    return sum(1 for d in others if abs(d.moved) >= MOVED or abs(d.moving) >= MOVING) >= MOVED_AXES
