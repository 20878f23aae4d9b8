"""Work cycles: split where the idle spells are; indicators equal the hand-computed values; OK-null axes."""

import itertools
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from consumer_alerts.health.baseline import AxisBaseline
from consumer_alerts.health.cycles import CycleSplitter, cycle_indicators
from producer.synthetic import SyntheticRobot
from producer.wear import RobotWear
from producer.wear_offline import offline_cycles


def feed(splitter, rows, t0=0.0, tick=2.0):
    """rows: list of {axis: value}; returns the cycles that came out, the flushed one last."""
    out = []
    for i, currents in enumerate(rows):
        out += splitter.push(t0 + i * tick, currents)
    return out


def idle(n):
    return [{1: 0.0, 2: 0.0, 9: None}] * n


def moving(*values):
    return [{1: v, 2: 2 * v, 9: None} for v in values]


def test_cycles_are_split_where_the_idle_spells_are():
    rows = idle(3) + moving(1, 2, 3) + idle(4) + moving(5, 5) + idle(2)
    cycles = feed(CycleSplitter("r"), rows)
    assert [(c.start, c.end) for c in cycles] == [(6.0, 12.0), (20.0, 24.0)]
    assert not any(c.cut or c.cold for c in cycles)


def test_an_idle_reading_shorter_than_an_idle_spell_stays_inside_the_cycle_as_zero():
    rows = moving(4, 4) + idle(1) + moving(4) + idle(2)
    (cycle,) = feed(CycleSplitter("r", min_idle_samples=2), rows)
    assert (cycle.start, cycle.end) == (0.0, 8.0)
    assert cycle.axes[1].energy_as == pytest.approx(4 * 2 + 4 * 2 + 0 * 2 + 4 * 2)
    assert cycle.axes[1].peak == 4


def test_indicators_of_a_known_cycle_equal_the_hand_computed_values():
    # Readings at 0, 2, 5 s (uneven spacing), the cycle ends at 6 s: holds of 2, 3 and 1 s.
    got = cycle_indicators([0.0, 2.0, 5.0], {1: [3.0, 1.0, 4.0], 2: [None, 2.0, None], 9: [None, None, None]}, 6.0)
    one = got[1]
    assert one.energy_as == pytest.approx(3 * 2 + 1 * 3 + 4 * 1)  # 13 A·s
    assert one.energy_a2s == pytest.approx(9 * 2 + 1 * 3 + 16 * 1)  # 37 A²·s
    assert one.peak == 4.0
    assert one.covered_s == 6.0
    assert one.rms == pytest.approx(math.sqrt(37 / 6))
    # An OK-null reading is neither 0 A nor time: axis 2 reported for 3 s only, at 2 A.
    assert (got[2].energy_as, got[2].covered_s, got[2].rms) == pytest.approx((6.0, 3.0, 2.0))
    assert 9 not in got  # None all along: no indicators at all


def test_a_gap_in_the_feed_cuts_the_cycle_and_a_long_stop_makes_the_next_cycles_cold():
    s = CycleSplitter("r", max_gap_s=30.0, long_stop_s=3600.0, warm_up_s=600.0)
    first = feed(s, moving(1, 1, 1))
    assert first == []
    after_gap = feed(s, moving(2, 2) + idle(2), t0=4 * 3600.0)  # four hours without a reading
    cut, cold = after_gap
    assert cut.cut and (cut.start, cut.end) == (0.0, 6.0)
    assert cold.cold and not cold.cut
    later = feed(s, moving(3) + idle(2), t0=4 * 3600.0 + 700)
    assert not later[0].cold  # the warm-up is over


def test_rows_with_every_axis_null_and_rows_out_of_order_are_ignored():
    s = CycleSplitter("r")
    assert s.push(0.0, {1: 2.0}) == []
    assert s.push(2.0, {1: None, 9: None}) == []  # says nothing: not even that time went by
    assert s.push(3.0, {1: 2.0}) == []
    assert s.push(2.5, {1: 0.0}) == []  # back in time
    s.push(4.0, {1: 0.0})
    (cycle,) = s.push(6.0, {1: 0.0})
    assert (cycle.start, cycle.end) == (0.0, 4.0)
    assert cycle.axes[1].energy_as == pytest.approx(2.0 * 3 + 2.0 * 1)


def test_a_robot_that_never_rests_gets_cycles_of_at_most_max_cycle_s():
    cycles = feed(CycleSplitter("r", max_cycle_s=60.0), moving(*([1.0] * 100)))
    assert cycles and all(c.cut and c.duration <= 62.0 for c in cycles)


def test_the_stream_splitter_finds_the_offline_generators_cycles_in_the_live_feed():
    wear = RobotWear("robot-001", seed=3, stoppages=[(3000.0, 9000.0)])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    live = SyntheticRobot("robot-001", seed=3, tick_seconds=2.0, start=start, axes=range(1, 15), wear=wear)
    s = CycleSplitter("robot-001", min_idle_samples=1)
    streamed, k = [], 0.0
    for r in itertools.islice(live, 7200):
        k = (r.ts - start).total_seconds()
        streamed += s.push(k, r.currents)
    assert k > 14000
    offline = list(offline_cycles("robot-001", seed=3, days=k / 86400, wear=wear, axes=range(1, 15)))
    assert len(streamed) > 100 and abs(len(streamed) - len(offline)) <= 1
    for got, want in zip(streamed, offline, strict=False):
        assert got.start == pytest.approx(want.times[0], abs=0.2)  # the live feed's time stamps are jittered
        assert got.axes[2].peak == want.currents[:, 1].max()
    assert any(c.cold for c in streamed) and not streamed[0].cold


def cycle_of(rms_by_axis, shape, start=0.0):
    """A synthetic cycle whose axes have the given RMS and whose summed profile has the given shape."""
    n = len(shape)
    rows = [{a: r * shape[i] / np.sqrt(np.mean(np.square(shape))) for a, r in rms_by_axis.items()} for i in range(n)]
    return CycleSplitter("r").whole_cycle(
        np.arange(n) * 2.0 + start,
        np.array([[row[a] for a in rms_by_axis] for row in rows]),
        list(rms_by_axis),
        start + 2.0 * n,
    )


def test_deviation_is_zero_on_the_learned_normal_and_the_relative_excess_after():
    baseline = AxisBaseline(learn_cycles=5)
    shape = np.array([1, 3, 5, 2, 4, 6, 1, 2], float)
    for _ in range(5):
        assert baseline.deviations(cycle_of({1: 2.0, 2: 10.0}, shape)) == {}
    assert baseline.deviations(cycle_of({1: 2.0, 2: 10.0}, shape)) == pytest.approx({1: 0.0, 2: 0.0})
    assert baseline.deviations(cycle_of({1: 2.0, 2: 13.0}, shape)) == pytest.approx({1: 0.0, 2: 0.3})


def test_a_new_program_learned_during_wear_continues_the_axis_health_line():
    baseline = AxisBaseline(learn_cycles=5, recent_cycles=5)
    old, new = np.array([1, 3, 5, 2, 4, 6, 1, 2], float), np.array([6, 1, 1, 5, 1, 1, 6, 1], float)
    for _ in range(5):
        baseline.deviations(cycle_of({2: 10.0}, old))
    for _ in range(5):  # the joint has worn by 20 % when the program changes
        assert baseline.deviations(cycle_of({2: 12.0}, old)) == pytest.approx({2: 0.2})
    for _ in range(5):  # a program never seen: learned, not judged, and not mixed up with the old one
        assert baseline.deviations(cycle_of({2: 30.0}, new)) == {}
    assert len(baseline.programs) == 2
    assert baseline.deviations(cycle_of({2: 30.0}, new)) == pytest.approx({2: 0.2})
    assert baseline.deviations(cycle_of({2: 33.0}, new)) == pytest.approx({2: 0.32})


def test_a_program_learned_after_a_stoppage_carries_the_wear_of_the_days_stopped():
    baseline = AxisBaseline(learn_cycles=20, recent_cycles=50)
    old, new = np.array([1, 3, 5, 2, 4, 6, 1, 2], float), np.array([6, 1, 1, 5, 1, 1, 6, 1], float)
    per_hour = 0.1 / 24  # the joint wears 0.1 a day, stoppage or not
    for k in range(48 * 10):  # two days, a cycle every 6 minutes
        t = k * 360.0
        baseline.deviations(cycle_of({2: 10.0 * (1 + per_hour * t / 3600)}, old, start=t))
    restart = 3 * 86400.0  # a day stopped, and a new program after it
    for k in range(21):
        t = restart + k * 360.0
        got = baseline.deviations(cycle_of({2: 30.0 * (1 + per_hour * t / 3600)}, new, start=t))
    assert got[2] == pytest.approx(0.3 + per_hour * 2, abs=0.02)  # not 0.2: the day stopped is not lost


def test_a_rare_program_learned_over_days_of_wear_gets_its_healthy_normal():
    baseline = AxisBaseline(learn_cycles=20, recent_cycles=20)
    common, rare = np.array([1, 3, 5, 2, 4, 6, 1, 2], float), np.array([6, 1, 1, 5, 1, 1, 6, 1], float)
    per_hour = 0.1 / 24
    for k in range(20):  # the common program's normal, healthy
        baseline.deviations(cycle_of({2: 10.0}, common, start=k * 360.0))
    for k in range(20, 421):  # 40 hours of wear; every 20th cycle is the rare program: its 20 span the 40 hours
        t = k * 360.0
        wear = 1 + per_hour * (t - 20 * 360.0) / 3600
        program, healthy = (rare, 30.0) if k % 20 == 0 else (common, 10.0)
        got = baseline.deviations(cycle_of({2: healthy * wear}, program, start=t))
    assert program is rare and got[2] == pytest.approx(wear - 1, abs=0.02)  # one level for all: 0.25


def test_flush_cuts_the_cycle_in_progress_at_its_last_reading_plus_one_spacing():
    s = CycleSplitter("r")
    assert feed(s, moving(1, 2, 3)) == []
    (cycle,) = s.flush()
    assert cycle.cut and (cycle.start, cycle.end) == (0.0, 6.0)
    assert cycle.axes[2].energy_as == pytest.approx(2 * (1 + 2 + 3) * 2.0)
    assert s.flush() == []


def test_new_programs_are_learned_when_the_list_of_programs_is_full():
    # A robot that has run as many programs as the baseline keeps, then changes product: two new programs,
    # in turn. The oldest programs must make room; the new ones must not push each other out while learning.
    baseline = AxisBaseline(learn_cycles=5, max_programs=4)
    shapes = [np.random.default_rng(seed).uniform(1, 6, 12) for seed in range(6)]
    t = 0.0
    for shape in shapes[:4]:  # four programs learned, one product after the other
        for _ in range(8):
            baseline.deviations(cycle_of({2: 10.0}, shape, start=t))
            t += 60.0
    for k in range(12):
        baseline.deviations(cycle_of({2: 10.0}, shapes[4 + k % 2], start=t + 60.0 * k))
    worn = [baseline.deviations(cycle_of({2: 11.0}, shapes[4 + k], start=t + 60.0 * (12 + k))) for k in (0, 1)]
    assert worn == [pytest.approx({2: 0.1}), pytest.approx({2: 0.1})]
    assert len(baseline.programs) == 4
