"""The broader fault generator: what each kind does to the readings, and where the plan puts the windows."""

from datetime import timedelta

import pytest

from bench._alerts_broad import bucket, smallest_caught
from producer.broad_faults import (
    REPORT_SEEDS,
    TUNING_SEEDS,
    AxisProfile,
    BroadFault,
    BroadKind,
    catalogue,
    inject,
    plan_runs,
    profiles,
    survey,
)
from producer.fault_plan import busy_periods
from tests.alerts_fixtures import T0, cycle_readings

PROFILE = {1: AxisProfile(normal=2.0, step=0.0001), 2: AxisProfile(normal=10.0, step=0.0001)}
START, DURATION = T0 + timedelta(seconds=200), 300.0  # readings 100..249 (one every 2 s)


def apply(fault, n=400, seed=1):
    clean = cycle_readings(n, seed=seed)
    return clean, list(inject(clean, [fault], PROFILE))


def inside(reading, fault):
    return fault.start <= reading.ts < fault.end


@pytest.mark.parametrize("size", [0.3, -0.5, -0.95, 2.0])
def test_level_scales_the_working_current_of_its_axis_only_inside_its_window(size):
    fault = BroadFault(BroadKind.LEVEL, (2,), START, DURATION, size)
    clean, faulty = apply(fault)
    for c, f in zip(clean, faulty, strict=True):
        assert f.currents[1] == c.currents[1] and f.currents[9] is None
        if inside(c, fault) and not c.is_idle:
            assert f.currents[2] == pytest.approx(c.currents[2] * max(1 + size, 0.03), abs=1e-4)
            assert f.currents[2] > 0  # a drop leaves friction current: a moving joint never reads 0
        else:
            assert f.currents[2] == c.currents[2]


@pytest.mark.parametrize("kind", [BroadKind.LEVEL, BroadKind.RAMP, BroadKind.MULTI])
@pytest.mark.parametrize("size", [1.2, -0.9])
def test_a_joint_at_rest_while_others_work_still_reads_0_under_a_change_of_load(kind, size):
    # axis 2 reads 0 A in some working rows (the joint does not move); 0 times any load is 0, not the sensor's step
    resting = {i for i in range(100, 250) if i % 7 == 0}
    clean = cycle_readings(400, seed=5, fault=lambda i, axis, amps: 0.0 if axis == 2 and i in resting else amps)
    fault = BroadFault(kind, (2,), START, DURATION, size)
    faulty = list(inject(clean, [fault], {2: AxisProfile(normal=10.0, step=0.25)}))
    at_rest = [f.currents[2] for c, f in zip(clean, faulty, strict=True) if inside(c, fault) and c.currents[2] == 0]
    moving = [f.currents[2] for c, f in zip(clean, faulty, strict=True) if inside(c, fault) and c.currents[2]]
    assert at_rest and all(v == 0 for v in at_rest)
    assert moving and all(v > 0 for v in moving)  # a moving joint keeps at least the sensor's step (friction)
    program = BroadFault(BroadKind.PROGRAM, (2,), START, 10.0, 0.0, shares={2: 1.4})
    changed = list(inject(clean, [program], {2: AxisProfile(normal=10.0, step=0.25)}))
    assert all(f.currents[2] == 0 for c, f in zip(clean, changed, strict=True) if c.currents[2] == 0)


def test_ramp_grows_from_nothing_to_its_size():
    fault = BroadFault(BroadKind.RAMP, (2,), START, DURATION, -0.6)
    clean, faulty = apply(fault)
    for c, f in zip(clean, faulty, strict=True):
        if inside(c, fault) and c.currents[2]:
            progress = (c.ts - fault.start).total_seconds() / DURATION
            assert f.currents[2] == pytest.approx(c.currents[2] * (1 - 0.6 * progress), abs=1e-3)


def test_spike_adds_its_size_times_the_normal_level_while_working():
    fault = BroadFault(BroadKind.SPIKE, (1,), START, 20.0, 3.0)
    clean, faulty = apply(fault)
    changed = [(c, f) for c, f in zip(clean, faulty, strict=True) if c.currents[1] != f.currents[1]]
    assert changed and all(f.currents[1] == pytest.approx(c.currents[1] + 6.0, abs=1e-3) for c, f in changed)


@pytest.mark.parametrize("through_idle", [False, True])
def test_clamp_holds_a_multiple_of_the_normal_level_while_moving(through_idle):
    fault = BroadFault(BroadKind.CLAMP, (2,), START, DURATION, 13.0, through_idle=through_idle)
    clean, faulty = apply(fault)
    window = [(c, f) for c, f in zip(clean, faulty, strict=True) if inside(c, fault)]
    assert all(f.currents[2] == pytest.approx(130.0) for c, f in window if not c.is_idle)
    idle = [f.currents[2] for c, f in window if c.is_idle]
    assert idle and all(v == (130.0 if through_idle else 0.0) for v in idle)


@pytest.mark.parametrize("through_idle", [False, True])
def test_stuck_freezes_the_last_value_read_before_the_window(through_idle):
    fault = BroadFault(BroadKind.STUCK, (1,), START, DURATION, 0.0, through_idle=through_idle)
    clean, faulty = apply(fault)
    before = [c.currents[1] for c in clean if c.ts < fault.start and c.currents[1]][-1]
    window = [(c, f) for c, f in zip(clean, faulty, strict=True) if inside(c, fault)]
    assert {f.currents[1] for c, f in window if not c.is_idle} == {before}
    assert {f.currents[1] for c, f in window if c.is_idle} == ({before} if through_idle else {0.0})


def test_multi_changes_every_named_axis_and_a_program_change_lasts():
    multi = BroadFault(BroadKind.MULTI, (1, 2), START, DURATION, 0.5)
    clean, faulty = apply(multi)
    busy = [(c, f) for c, f in zip(clean, faulty, strict=True) if inside(c, multi) and not c.is_idle]
    assert all(f.currents[a] == pytest.approx(1.5 * c.currents[a], abs=1e-3) for c, f in busy for a in (1, 2))
    program = BroadFault(BroadKind.PROGRAM, (1, 2), START, 10.0, 0.0, shares={1: 0.7, 2: 1.4})
    clean, faulty = apply(program)
    late = [(c, f) for c, f in zip(clean, faulty, strict=True) if c.ts > program.end and not c.is_idle]
    assert late and all(f.currents[2] == pytest.approx(1.4 * c.currents[2], abs=1e-3) for c, f in late)
    assert program.expected_severity is None


def test_values_are_snapped_to_the_axis_step():
    fault = BroadFault(BroadKind.LEVEL, (2,), START, DURATION, 0.37)
    clean = cycle_readings(400, seed=2)
    faulty = list(inject(clean, [fault], {2: AxisProfile(normal=10.0, step=0.25)}))
    changed = [f.currents[2] for c, f in zip(clean, faulty, strict=True) if c.currents[2] != f.currents[2]]
    assert changed and all(abs(v / 0.25 - round(v / 0.25)) < 1e-6 for v in changed)


def test_profiles_are_the_median_and_smallest_working_reading():
    readings = cycle_readings(2000, seed=3)
    values = sorted(r.currents[2] for r in readings if r.currents[2])
    got = profiles(readings)
    assert set(got) == {1, 2} and got[2] == AxisProfile(normal=values[len(values) // 2], step=values[0])


@pytest.mark.parametrize(
    "kind, size, severity",
    [
        (BroadKind.LEVEL, 0.3, "ALERT"),
        (BroadKind.LEVEL, 1.0, "ERROR"),
        (BroadKind.LEVEL, -0.5, "ALERT"),
        (BroadKind.LEVEL, -0.85, "ERROR"),
        (BroadKind.SPIKE, 1.0, "ALERT"),
        (BroadKind.SPIKE, 4.0, "ERROR"),
        (BroadKind.CLAMP, 13.0, "ERROR"),
        (BroadKind.CLAMP, 0.4, "ALERT"),
        (BroadKind.STUCK, 0.0, "ALERT"),
    ],
)
def test_expected_severity_follows_the_size(kind, size, severity):
    assert BroadFault(kind, (1,), START, DURATION, size).expected_severity == severity


def test_a_flat_value_read_through_the_rests_is_a_sensor_fault_whatever_its_size():
    # the same 13x constant: a load while it reads 0 A at rest, a sensor stuck high when it does not
    assert BroadFault(BroadKind.CLAMP, (1,), START, DURATION, 13.0, through_idle=True).expected_severity == "ALERT"
    assert BroadFault(BroadKind.CLAMP, (1,), START, DURATION, 13.0).expected_severity == "ERROR"


def test_the_catalogue_spans_both_directions_and_the_seed_sets_are_disjoint():
    assert not set(TUNING_SEEDS) & set(REPORT_SEEDS)
    drawn = [entry for seed in TUNING_SEEDS for entry in catalogue(seed, range(1, 9))]
    assert catalogue(5, range(1, 9)) == catalogue(5, range(1, 9)) != catalogue(6, range(1, 9))
    levels = [size for kind, _, size, _, _ in drawn if kind is BroadKind.LEVEL]
    assert min(levels) < -0.5 and max(levels) > 1.0 and any(abs(s) < 0.2 for s in levels)
    assert {idle for kind, _, _, _, idle in drawn if kind is BroadKind.CLAMP} == {False, True}
    assert all(len(axes) >= 2 for kind, axes, *_ in drawn if kind is BroadKind.MULTI)


def test_the_plan_places_every_fault_once_apart_and_ends_with_a_program_change():
    def with_stoppages(i, axis, amps):
        return 0.0 if 3000 <= i < 3400 or 6000 <= i < 6400 else amps  # two 800-s stoppages

    readings = cycle_readings(9000, seed=4, fault=with_stoppages, pause=4)
    recording = survey(readings, busy_periods(readings), stoppage_s=600)
    assert len(recording.after_stoppages) == 2
    runs = plan_runs(7, recording, [1, 2], gap_s=600)
    *fault_runs, last = runs
    assert [f.kind for f in last] == [BroadKind.PROGRAM]
    placed = sorted((f.kind, f.axes, f.size) for run in fault_runs for f in run)
    assert placed == sorted((k, a, s) for k, a, s, _, _ in catalogue(7, [1, 2]))
    for run in fault_runs:
        for a, b in zip(run, run[1:], strict=False):
            assert (b.start - a.end).total_seconds() >= 600
        assert all(recording.start <= f.start and f.end <= recording.end for f in run)
    placements = {f.placement for run in fault_runs for f in run}
    assert placements == {"warmup", "after_stoppage", "working"}
    assert all(f.start >= recording.first_working for run in fault_runs for f in run if f.placement == "warmup")


def test_size_report_helpers():
    assert [bucket(d) for d in (0.05, 0.3, 0.99, 2.0, 13.0)] == ["0-0.1", "0.3-0.5", "0.5-1", "1-3", ">=3"]
    faults = [
        {"axes": "2", "kind": "level", "direction": "down", "deviation": d, "caught": c, "changed_readings": 5}
        for d, c in ((0.1, False), (0.2, True), (0.35, False), (0.5, True), (0.9, True))
    ]
    (row,) = smallest_caught(faults)
    assert (row["smallest_caught"], row["all_caught_from"], row["largest_missed"]) == (0.2, 0.5, 0.35)
