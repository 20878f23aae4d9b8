"""The fault generator: what each kind does, where, and the labels that say so."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from common.csvio.controller_csv import CsvOptions, read_export
from common.wire.schemas import Reading
from producer.faults import (
    WORKING_PEAK,
    FaultKind,
    FaultLabel,
    FaultSpec,
    busy_periods,
    default_faults,
    faulty_value,
    inject_faults,
    labels_for,
    read_labels,
    write_labels,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def feed(n: int = 20, robot: str = "r1", *, idle_every: int = 0):
    """Rows every 2 s: axis 2 reads 10 A (0 A on idle rows), axis 9 is OK null."""
    for i in range(n):
        idle = idle_every and i % idle_every == 0
        yield Reading.model_construct(
            robot_id=robot,
            ts=T0 + timedelta(seconds=2 * i),
            row=i,
            currents={1: 0.0 if idle else 2.0, 2: 0.0 if idle else 10.0, 9: None},
        )


def window(kind, *, start_s=10, duration_s=10, axis=2, magnitude=None, robot_id=None):
    return FaultSpec(FaultKind(kind), axis, T0 + timedelta(seconds=start_s), duration_s, magnitude, robot_id)


def axis2(readings):
    return [r.currents[2] for r in readings]


def test_overload_adds_its_magnitude_only_inside_the_window_while_working():
    out = list(inject_faults(feed(10, idle_every=3), [window("overload")]))  # window: rows 5..9
    assert axis2(out) == [0.0, 10.0, 10.0, 0.0, 10.0, 13.5, 0.0, 13.5, 13.5, 0.0]
    assert [r.currents[1] for r in out] == [r.currents[1] for r in feed(10, idle_every=3)], "other axes untouched"


def test_spike_goes_past_the_axis_peak_while_working():
    out = axis2(inject_faults(feed(8, idle_every=6), [window("spike", duration_s=6)]))  # rows 5..7; row 6 idle
    assert out[5] == out[7] == pytest.approx(10.0 + 1.5 * WORKING_PEAK[2]), "10 A + 1.5 x axis 2's working peak"
    assert out[6] == 0.0 and out[4] == 10.0, "an idle row and rows outside the window stay as they were"


def test_spike_is_at_least_150_percent_and_15_amps_above_the_value():
    big = FaultSpec(FaultKind.SPIKE, 2, T0, 10.0)
    assert faulty_value(big, 60.0, T0, True) == 150.0, "60 A + 150 % beats 1.5 x the peak"
    light = FaultSpec(FaultKind.SPIKE, 8, T0, 10.0)
    assert faulty_value(light, 2.0, T0, True) == 17.0, "2 A + 15 A beats 150 % and 1.5 x axis 8's peak"


def test_drift_grows_linearly_to_its_magnitude():
    out = axis2(inject_faults(feed(12), [window("drift", start_s=0, duration_s=20)]))
    assert out[:10] == pytest.approx([10.0 * (1 + 0.4 * i / 10) for i in range(10)])
    assert out[10:] == [10.0, 10.0]


def test_stuck_reads_constant_even_while_idle_and_dropout_reads_none():
    stuck = axis2(inject_faults(feed(10, idle_every=2), [window("stuck", magnitude=33.0)]))
    assert stuck[5:] == [33.0] * 5 and stuck[4] == 0.0
    default = axis2(inject_faults(feed(10), [window("stuck")]))
    assert default[5] == pytest.approx(26.35 * 1.3, abs=0.01), "axis 2's working p95 x 1.3"
    dropout = axis2(inject_faults(feed(10), [window("dropout")]))
    assert dropout == [10.0] * 5 + [None] * 5


def test_faults_touch_only_their_robot_or_every_robot_when_none():
    both = [r for pair in zip(feed(10, "a"), feed(10, "b"), strict=True) for r in pair]
    only_a = list(inject_faults(both, [window("dropout", robot_id="a")]))
    assert [r.currents[2] for r in only_a if r.robot_id == "b"] == [10.0] * 10
    assert [r.currents[2] for r in only_a if r.robot_id == "a"][5:] == [None] * 5
    every = list(inject_faults(both, [window("dropout")]))
    assert sum(r.currents[2] is None for r in every) == 10


def test_ok_null_axis_stays_null_and_no_axis_is_added():
    out = list(inject_faults(feed(10), [window("overload", axis=9), window("stuck", axis=7)]))
    assert all(r.currents[9] is None and 7 not in r.currents for r in out)


def test_injection_is_lazy():
    endless = (r for i in itertools.count() for r in feed(1) if i >= 0)
    assert len(list(itertools.islice(inject_faults(endless, [window("spike")]), 5))) == 5


def test_labels_carry_the_expected_severity_and_round_trip(tmp_path):
    specs = [window(kind, start_s=100 * i, robot_id="r1") for i, kind in enumerate(FaultKind)]
    labels = labels_for(specs)
    assert {lab.kind: lab.expected_severity for lab in labels} == {
        "overload": "ALERT",
        "spike": "ERROR",
        "drift": "ALERT",
        "stuck": "ALERT",
        "dropout": None,
    }
    assert labels[0] == FaultLabel("r1", 2, FaultKind.OVERLOAD, T0, T0 + timedelta(seconds=10), "ALERT")
    write_labels(labels, tmp_path / "labels.csv")
    assert read_labels(tmp_path / "labels.csv") == labels


def test_a_fault_for_every_robot_is_labelled_per_robot_when_the_robots_are_known():
    assert [lab.robot_id for lab in labels_for([window("spike")], robots=["a", "b"])] == ["a", "b"]
    assert [lab.robot_id for lab in labels_for([window("spike")])] == ["*"]


def test_default_faults_one_of_each_kind_spread_without_overlap():
    specs = default_faults(T0, 6 * 3600, list(range(1, 15)), seed=3)
    assert sorted(s.kind for s in specs) == sorted(FaultKind)
    assert all(T0 <= s.start and s.end <= T0 + timedelta(hours=6) for s in specs)
    assert all(a.end <= b.start for a, b in itertools.pairwise(specs))
    assert all(1 <= s.axis <= 8 for s in specs), "only axes with a load channel"
    assert default_faults(T0, 6 * 3600, list(range(1, 15)), seed=3) == specs
    assert default_faults(T0, 6 * 3600, list(range(1, 15)), seed=4) != specs
    durations = {s.kind: s.duration_s for s in specs}
    assert 600 <= durations[FaultKind.OVERLOAD] <= 1200 and 10 <= durations[FaultKind.SPIKE] <= 30


def test_default_faults_go_inside_working_periods():
    busy = [(T0 + timedelta(hours=h), T0 + timedelta(hours=h, minutes=40)) for h in range(0, 8, 2)]
    specs = default_faults(T0, 8 * 3600, [1, 2, 3], seed=1, busy=busy, robot_id="r1")
    for spec in specs:
        assert any(a <= spec.start and spec.end <= b for a, b in busy), spec
    assert {s.robot_id for s in specs} == {"r1"}


def test_busy_periods_merge_short_pauses_and_drop_long_stops():
    rows = [
        Reading.model_construct(robot_id="r", ts=T0 + timedelta(seconds=s), row=None, currents={1: v})
        for s, v in [(0, 1.0), (50, 0.0), (100, 2.0), (200, 1.0), (1000, 3.0), (1010, 0.0), (1150, 1.0), (1250, 1.0)]
    ]
    assert busy_periods(rows, max_gap_s=120, min_length_s=60) == [
        (T0, T0 + timedelta(seconds=200)),
        (T0 + timedelta(seconds=1150), T0 + timedelta(seconds=1250)),
    ]


def test_default_faults_on_the_real_export_meet_working_rows(real_export):
    options = CsvOptions("RMBR4-2", list(range(1, 15)))
    readings = list(read_export(real_export, options))
    span = (readings[-1].ts - readings[0].ts).total_seconds()
    specs = default_faults(readings[0].ts, span, options.axes, seed=7, busy=busy_periods(readings), robot_id="RMBR4-2")
    faulty = list(inject_faults(readings, specs))
    for spec in specs:
        inside = [(a, b) for a, b in zip(readings, faulty, strict=True) if spec.start <= a.ts < spec.end]
        working = [pair for pair in inside if not pair[0].is_idle]
        assert working, f"{spec.kind} window has no working row"
        changed = [a for a, b in inside if a.currents[spec.axis] != b.currents[spec.axis]]
        assert changed, f"{spec.kind} changed nothing"
