"""A rolling window of numbers with its sum (and sum of squares, for its spread) kept up to date: O(1) per push."""

from __future__ import annotations

import math
from collections import deque


class RollingWindow:
    """The last ``size`` values pushed, with mean and standard deviation in O(1).

    Running sums drift with floating-point error over millions of pushes, so they are recomputed from
    the values once per ``size`` pushes (amortised O(1)).

    ``spread=False``: a window whose users read only its mean keeps no sum of squares (no ``std``). The
    detectors push several windows per axis on every reading, and that sum was a third of the work of the
    windows nobody asked the spread of; the sum, so the mean, is the same either way.
    """

    __slots__ = ("size", "spread", "values", "_sum", "_sumsq", "_pushes")

    def __init__(self, size: int, values: list[float] | None = None, *, spread: bool = True) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self.size = size
        self.spread = spread
        self.values: deque[float] = deque(values or (), maxlen=size)
        self._resum()

    def _resum(self) -> None:
        self._sum = math.fsum(self.values)
        # a list: once per window, faster than a generator
        self._sumsq = math.fsum([v * v for v in self.values]) if self.spread else 0.0
        self._pushes = 0

    def push(self, value: float) -> float | None:
        """Add ``value``; return the value that fell out of a full window, else ``None``."""
        values = self.values
        if len(values) == self.size:
            dropped = values[0]
            self._sum += value - dropped
            if self.spread:
                self._sumsq += value * value - dropped**2
        else:
            dropped = None
            self._sum += value
            if self.spread:
                self._sumsq += value * value
        values.append(value)
        self._pushes += 1
        if self._pushes >= self.size:
            self._resum()
        return dropped

    def clear(self) -> None:
        self.values.clear()
        self._resum()

    @property
    def full(self) -> bool:
        return len(self.values) == self.size

    def state(self, name: str) -> dict[str, list[float]]:
        """The window as a detector's state keys: its values, and its running sums as they are (sums taken
        afresh from the values differ in the last bits, and a restored detector must score the next reading
        exactly as an uninterrupted one). A window without its spread writes 0.0 for the sum of squares."""
        return {name: list(self.values), f"{name}_sums": [self._sum, self._sumsq, float(self._pushes)]}

    @classmethod
    def from_state(cls, size: int, state: dict, name: str, *, spread: bool = True) -> RollingWindow:
        window = cls(size, state[name], spread=spread)
        window._sum, sumsq, pushes = state[f"{name}_sums"]
        window._sumsq = sumsq if spread else 0.0
        window._pushes = int(pushes)
        return window

    @property
    def mean(self) -> float:
        return self._sum / len(self.values) if self.values else 0.0

    @property
    def std(self) -> float:
        if not self.spread:
            raise AttributeError("this window keeps no sum of squares (made with spread=False)")
        n = len(self.values)
        if n < 2:
            return 0.0
        return math.sqrt(max(self._sumsq - self._sum * self._sum / n, 0.0) / (n - 1))
