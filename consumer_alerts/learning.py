"""Each robot's model learned by the service itself, and learned again when its load changes for good.

Without a model file (or for a robot the file is not for) the robot's active readings are collected with
the engine's rule (fresh, non-``None`` values of active rows, as ``train`` collects them) until
``model_learn_readings`` active rows; the model is then fitted exactly as ``train`` fits it
(:func:`consumer_alerts.training.fit`) and the residual detector starts.

A model in use, learned or from a file, is watched for a **lasting, broad change**: per axis, an exponentially
weighted mean of its active current (half-life :data:`SHIFT_HALFLIFE_ROWS` active readings) against the mean the
model was learned on. The robot has changed when at least ``model_relearn_axes`` of the model's axes (and two) are
off by ``model_relearn_shift`` or more (in log ratio, either way) and have stayed so for ``model_relearn_s`` of
feed time while the robot works (a stoppage does not count: :meth:`ModelLearner.stopped`), the last third of that
time showing it on its own (a running mean remembers a fault for a while after it ends). That tells a new program
from a fault: a fault is one axis, or a few, for minutes; a new program moves most of the robot's axes and stays.
The model is then dropped and learned again from the next ``model_learn_readings`` active rows (the residual
detector is off meanwhile); the engine announces it as one event of its own (``model``, INFO), open from the change
until the new model is in use.
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime
from typing import Any

from consumer_alerts.model import AlertModel
from consumer_alerts.training import Samples, TrainingOptions, fit

# Active readings after which a reading's weight in an axis's running mean halves. 150 (a few minutes of a
# busy robot): with 75 the clean real export's own swings were taken for a program twice, with 300 a change
# showed ~20 min later (tuning seeds, docs/benchmarks.md section 5).
SHIFT_HALFLIFE_ROWS = 150
# A model learned from the stream saw hours of one robot, not a chosen span: its ALERT limit sits further out
# than ``train``'s (margin 0.25). On the real export a model learned from the first 4000 active readings raised
# 7 residual events over the rest with 0.25, none with 1.0 (docs/consumer_alerts.md).
LEARNED_MARGIN = 1.0
WATCH_EVERY = 3
# The share of MODEL_RELEARN_S after which the confirming means start: a fault shorter than this share of it
# (20 of 30 min) has ended before they start, whenever the running means noticed it.
CONFIRM_FROM = 2 / 3  # active readings per update of the watch: a slow mean needs no more, and it costs CPU per row
LEARNED, CHANGED = "learned", "changed"


class ModelLearner:
    """One robot's model: learned from its first active readings (or given), watched, learned again."""

    def __init__(
        self,
        robot_id: str,
        *,
        readings: int,
        relearn_s: float,
        relearn_shift: float,
        relearn_axes: float,
        model: AlertModel | None = None,
        options: TrainingOptions | None = None,
    ) -> None:
        self.robot_id, self.readings, self.relearn_s = robot_id, readings, relearn_s
        self.relearn_shift, self.relearn_axes = relearn_shift, relearn_axes
        self.options = options or TrainingOptions(margin=LEARNED_MARGIN)
        self.lam = 1 - 0.5 ** (WATCH_EVERY / SHIFT_HALFLIFE_ROWS)
        self.model: AlertModel | None = None
        self.model_json: str | None = None  # a learned model as the snapshot keeps it (None: given, or none yet)
        self.level: dict[int, float] = {}  # running mean of active current, per watched axis
        self.baseline: dict[int, float] = {}  # the model's mean, per watched axis
        self.shifted_since: float | None = None  # when the running means started to show a broad change
        self.recent: dict[int, float] = {}  # sums and counts of the last third of that time, per axis
        self.recent_n: dict[int, int] = {}
        self.share = 0.0  # of the watched axes off by ``relearn_shift`` or more, at the last watch
        self.moved: frozenset[int] = frozenset()  # the axes the last confirmed change moved (its last third's means)
        self._skip = 0
        self.changes = 0  # re-learns so far
        self._start_collecting()
        if model is not None:
            self._use(model)

    @property
    def pending(self) -> bool:
        """A broad change is being timed: the model may be the old program's."""
        return self.shifted_since is not None

    @property
    def collecting(self) -> bool:
        return self.model is None

    @property
    def fits_next(self) -> bool:
        """The next active row completes the learning: observing it fits the model (~0.2-0.3 s of CPU)."""
        return self.model is None and self.span["active_rows"] + 1 >= self.readings

    def observe(self, ts: float, when: datetime, currents: dict[int, float | None], fresh: dict[int, bool]) -> str:
        """One active row (idle rows are not evidence). Returns :data:`LEARNED` when a model has just been
        fitted, :data:`CHANGED` when the model in use has just been dropped for a lasting change, else ''."""
        if self.model is None:
            return self._collect(ts, when, currents, fresh)
        return self._watch(ts, currents, fresh)

    def stopped(self, seconds: float) -> None:
        """The robot rested ``seconds`` (a stoppage): a change being timed must last while the robot works
        (counted in feed time, one seen before a long stoppage was confirmed on the first readings after it)."""
        if self.shifted_since is not None:
            self.shifted_since += seconds

    # -- learning -------------------------------------------------------------------------------------------

    def _start_collecting(self) -> None:
        self.samples: dict[int, Samples] = {}
        self.span: dict[str, Any] = {"rows": 0, "active_rows": 0, "start": None, "end": None}

    def _collect(self, ts: float, when: datetime, currents, fresh) -> str:
        span = self.span
        span["start"] = span["start"] or when
        span["end"] = when
        span["rows"] += 1
        span["active_rows"] += 1
        for axis, value in currents.items():
            if value is not None and fresh.get(axis):
                samples = self.samples.get(axis) or self.samples.setdefault(axis, Samples(array("d"), array("d")))
                samples.ts.append(ts)
                samples.amps.append(value)
        if span["active_rows"] < self.readings:
            return ""
        needed = self.options.window + self.options.max_short
        per_axis = {a: s for a, s in self.samples.items() if len(s.amps) >= needed and max(s.amps) > 0}
        self._start_collecting()
        if not per_axis:
            return ""  # no axis worked enough: collect again
        model = fit(per_axis, span, self.options, robot_id=self.robot_id, source="learned by the service")
        self._use(model)
        self.model_json = model.to_json()
        return LEARNED

    def _use(self, model: AlertModel) -> None:
        self.model = model
        self.baseline = {a: m.mean for a, m in model.axes.items() if m.mean is not None and m.mean > 0}
        self.level = dict(self.baseline)
        self._reset_watch()

    # -- watching -------------------------------------------------------------------------------------------

    def _watch(self, ts: float, currents, fresh) -> str:
        if not self.baseline or self.relearn_s <= 0:
            return ""
        self._skip += 1
        if self._skip < WATCH_EVERY:
            return ""
        self._skip = 0
        lam, level = self.lam, self.level
        confirming = self.shifted_since is not None and ts - self.shifted_since >= self.relearn_s * CONFIRM_FROM
        for axis in self.baseline:
            value = currents.get(axis)
            if value is not None and fresh.get(axis):
                level[axis] += lam * (value - level[axis])
                if confirming:
                    self.recent[axis] = self.recent.get(axis, 0.0) + value
                    self.recent_n[axis] = self.recent_n.get(axis, 0) + 1
        self.share = self._share(level)
        if not self._broad(self.share):
            self._reset_watch()
            return ""
        if self.shifted_since is None:
            self.shifted_since = ts
        if ts - self.shifted_since < self.relearn_s:
            return ""
        # The running mean remembers a past fault for a while after it ends; the last third of the time held
        # must show the change on its own (its plain mean), or it was a fault that has gone.
        recent = {a: self.recent[a] / n for a, n in self.recent_n.items() if n}
        confirmed = self._broad(self._share(recent))
        self._reset_watch()
        if not confirmed:
            return ""
        self.moved = frozenset(a for a in self.baseline if self._off(recent.get(a), self.baseline[a]))
        self.model, self.model_json, self.baseline, self.level = None, None, {}, {}
        self.changes += 1
        return CHANGED

    def _broad(self, share: float) -> bool:
        """At least ``relearn_axes`` of the watched axes, and two of them: one axis alone is a fault's size."""
        return share >= self.relearn_axes and share * len(self.baseline) >= 2 - 1e-9

    def _share(self, means: dict[int, float]) -> float:
        """The share of the watched axes whose ``means`` are off the model's by ``relearn_shift`` or more."""
        off = sum(1 for axis, base in self.baseline.items() if self._off(means.get(axis), base))
        return off / len(self.baseline)

    def _off(self, mean: float | None, base: float) -> bool:
        """A mean off the model's ``base`` by ``relearn_shift`` or more (log ratio, either way)."""
        return mean is not None and (mean <= 0 or abs(math.log(mean / base)) >= self.relearn_shift)

    def _reset_watch(self) -> None:
        self.shifted_since = None
        self.recent: dict[int, float] = {}
        self.recent_n: dict[int, int] = {}

    # -- across a restart -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The learned model and the watch; not the samples of a learning in progress (a restart then
        starts collecting again: they would make every snapshot heavy for a few hours' saving)."""
        return {
            "model": self.model_json,
            "learning": self.model is None,
            "level": {str(a): v for a, v in self.level.items()},
            "shifted_since": self.shifted_since,
            "recent": {str(a): [v, self.recent_n[a]] for a, v in self.recent.items()},
            "changes": self.changes,
            "skip": self._skip,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.changes = int(state.get("changes", 0))
        if state.get("model"):
            self._use(AlertModel.from_json(state["model"], source="snapshot"))
            self.model_json = state["model"]
        elif state.get("learning"):
            self.model, self.baseline, self.level = None, {}, {}
            self._start_collecting()
        if self.model is not None:
            self.level.update({int(a): float(v) for a, v in state.get("level", {}).items() if int(a) in self.baseline})
            self.shifted_since = state.get("shifted_since")
            for axis, (total, n) in state.get("recent", {}).items():
                self.recent[int(axis)], self.recent_n[int(axis)] = float(total), int(n)
            self._skip = int(state.get("skip", 0))
