"""A ramp is graded by the level it reaches, not by the load window's mean that lags it (detectors/ramp.py)."""

import math
import random
from dataclasses import replace

from common.wire.schemas import Severity
from consumer_alerts.detectors.load import LoadOptions, LoadScorer
from consumer_alerts.detectors.ramp import ramp_ratio
from consumer_alerts.engine import DetectorEngine, EngineConfig
from tests.alerts_fixtures import cycle_readings

OPTIONS = LoadOptions(
    window=120, warmup=600, alpha=0.0005, sigmas=5.0, min_ratio=0.75, gross_high=2.0, gross_low=0.2, absorb=1800
)
RANK = [Severity.INFO, Severity.ALERT, Severity.ERROR]


def scorer_after(values):
    """A load scorer that has learnt a normal level of 10 A, then read ``values``."""
    rng = random.Random(1)
    load = LoadScorer(OPTIONS)
    for x in [10 * rng.lognormvariate(0, 0.3) for _ in range(900)] + list(values):
        load.score_one(x)
        load.learn_one(x)
    return load


def test_the_recent_half_sizes_a_window_that_trends_and_nothing_sizes_a_steady_one():
    rng = random.Random(2)
    noise = [rng.lognormvariate(0, 0.3) for _ in range(120)]
    rising = scorer_after(10 * (1 + 1.5 * i / 119) * n for i, n in enumerate(noise))  # 1x to 2.5x
    falling = scorer_after(10 * (1 - 0.9 * i / 119) * n for i, n in enumerate(noise))  # 1x to 0.1x
    steady = scorer_after(18 * n for n in noise)  # a level: 1.8x the whole window

    up, down = ramp_ratio(rising, 2.0), ramp_ratio(falling, 2.0)
    assert up is not None and up > rising.ratio and up >= 2.0  # the window's mean lags: under 2x
    assert rising.ratio < 2.0
    assert down is not None and down < falling.ratio and down <= 0.35
    assert ramp_ratio(steady, 2.0) is None
    assert ramp_ratio(rising, 0.0) is None  # off


def ramp_on_axis_2(end_factor, rows=300, start=3000):
    def fault(i, axis, amps):
        if axis == 2 and start <= i < start + rows:
            return amps * (1 + (end_factor - 1) * (i - start) / rows)
        return amps

    return cycle_readings(start + rows + 300, seed=3, fault=fault)


def events(readings, **config):
    engine = DetectorEngine(replace(EngineConfig(), **config))
    alerts = [a for r in readings for a in engine.process(r)]
    worst = {}
    for a in alerts:
        if RANK.index(a.severity) > RANK.index(worst.get(a.event_id, Severity.INFO)):
            worst[a.event_id] = a.severity
    return {(a.event_id, a.axis, a.opened_at) for a in alerts}, worst


def test_a_ramp_that_ends_at_more_than_twice_its_load_is_an_error_by_the_level_it_reaches():
    # Axis 2 ramps from its normal load to 2.4x over 300 rows (~185 busy readings), then is normal again: the
    # load window reads under 2x at the ramp's end, its recent half over it.
    readings = ramp_on_axis_2(2.4)
    opened, worst = events(readings)
    opened_without, worst_without = events(readings, ramp_trend_t=0.0)
    assert opened == opened_without  # the rule opens no event: it only sizes one already open
    assert {axis for _, axis, _ in opened} == {2}
    assert Severity.ERROR in worst.values()
    assert Severity.ERROR not in worst_without.values()


def test_a_ramp_to_less_than_twice_its_load_and_an_alert_sized_step_stay_alerts():
    gentle = ramp_on_axis_2(1.6)
    step = cycle_readings(3700, seed=3, fault=lambda i, a, v: v * 1.7 if a == 2 and 3000 <= i < 3400 else v)
    for readings in (gentle, step):
        opened, worst = events(readings)
        assert opened and set(worst.values()) == {Severity.ALERT}


def test_a_program_change_raises_no_event_more_and_no_error():
    # Every axis draws 1.4x (or 0.6x) for good from reading 3000: a new program. The events are those without
    # the ramp rule, to the reading, and none is graded an ERROR (the change is not gross).
    for factor in (1.4, 0.6):
        readings = cycle_readings(9000, seed=3, fault=lambda i, a, v, f=factor: v * f if i >= 3000 else v)
        opened, worst = events(readings)
        assert (opened, worst) == events(readings, ramp_trend_t=0.0)
        assert Severity.ERROR not in worst.values()


def test_a_flat_window_has_no_trend_to_read():
    load = scorer_after([20.0] * 120)  # a clamp or a stuck sensor: every log the same
    assert math.isclose(load.ratio, 2.0, rel_tol=0.2)
    assert ramp_ratio(load, 2.0) is None
