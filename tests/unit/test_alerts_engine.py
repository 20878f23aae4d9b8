"""The engine between readings and events: idle rows, repeats, stoppages, redeliveries, snapshots."""

import json
from datetime import timedelta

from common.wire.schemas import AlertState, Reading, Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.engine import DetectorEngine, EngineConfig, freshness
from consumer_alerts.engine_state import load_snapshot, snapshot
from consumer_alerts.training import TrainingOptions, train
from tests.alerts_fixtures import T0, cycle_readings

CONFIG = EngineConfig(
    detectors=("zscore", "residual", "stuck"),
    z_window=200,
    z_min_samples=50,
    z_test_samples=3,
    holdoff_s=60.0,
    holdoff_readings=0,
    stoppage_s=600.0,
    stuck_readings=10,
)


def run(engine, readings):
    return [a for r in readings for a in engine.process(r)]


def test_freshness_treats_repeats_as_stale_and_decides_idle_without_them():
    last = {}
    assert freshness(last, {1: 5.0, 2: 0.0, 9: None}) == ({1: True, 2: True}, False)
    assert freshness(last, {1: 5.0, 2: 0.0, 9: None}) == ({1: False, 2: True}, True)  # only a repeat: idle
    assert freshness(last, {1: 5.0, 2: 1.0}) == ({1: False, 2: True}, False)


def test_clean_cycles_raise_nothing_with_the_default_settings():
    assert run(DetectorEngine(EngineConfig()), cycle_readings(4000)) == []


def test_a_sensor_stuck_high_while_idle_is_a_stuck_alert_on_its_axis_only():
    engine = DetectorEngine(CONFIG)
    readings = cycle_readings(600)
    stuck = [
        r.model_copy(update={"currents": {**r.currents, 2: 33.3}}) if 300 <= i < 400 else r
        for i, r in enumerate(readings)
    ]
    alerts = run(engine, stuck)
    assert {(a.axis, a.detector, a.severity) for a in alerts} == {(2, "stuck", Severity.ALERT)}
    assert [a.state for a in alerts] == [AlertState.OPEN, AlertState.CLOSED]
    assert alerts[0].opened_at == readings[309].ts and alerts[0].peak_amps == 33.3
    # axis 1 was never fed the zeros of the idle rows the stuck axis made look busy
    z1 = engine.robots["r1"].axes[1].detectors[0]
    assert 0.0 not in z1.baseline.values


def test_an_axis_without_a_channel_gets_detectors_with_its_first_value_and_judges_as_any_axis():
    engine = DetectorEngine(CONFIG)
    readings = cycle_readings(600)
    # axis 3 reads "OK null" at first (an export's column for an axis the robot lacks), then sticks high
    late = [
        r.model_copy(update={"currents": {**r.currents, 3: None if i < 200 else (33.3 if 300 <= i < 400 else 0.0)}})
        for i, r in enumerate(readings)
    ]
    run(engine, late[:200])
    assert 3 not in engine.robots["r1"].axes and "3" not in snapshot(engine)["robots"]["r1"]["axes"]
    stuck = [a for a in run(engine, late[200:]) if a.detector == "stuck"]
    assert [(a.axis, a.state) for a in stuck] == [(3, AlertState.OPEN), (3, AlertState.CLOSED)]
    assert stuck[0].opened_at == readings[309].ts


def test_a_stoppage_closes_open_events_at_the_last_active_reading():
    engine = DetectorEngine(CONFIG)
    readings = cycle_readings(300)
    surge = [
        r.model_copy(update={"currents": {**r.currents, 1: 40.0 + i * 0.01}}) for i, r in enumerate(readings[-20:])
    ]
    opened = run(engine, readings[:-20] + surge)
    assert any(a.state is AlertState.OPEN and a.detector == "zscore" and a.axis == 1 for a in opened)
    last_active = max(r.ts for r in surge)
    after = Reading(robot_id="r1", ts=last_active + timedelta(hours=3), currents={1: 2.0, 2: 9.0})
    closed = engine.process(after)
    assert closed and all(a.state is AlertState.CLOSED and a.closed_at <= last_active for a in closed)
    assert engine.open_events() == []


def test_a_reading_not_newer_than_the_last_is_skipped():
    engine = DetectorEngine(CONFIG)
    readings = cycle_readings(100)
    run(engine, readings)
    before = json.dumps(snapshot(engine))
    assert run(engine, readings[50:]) == []
    assert json.dumps(snapshot(engine)) == before


def test_snapshot_round_trip_gives_the_same_events():
    model = train(cycle_readings(3000, seed=5), TrainingOptions(window=20, max_short=4), robot_id="r1")
    first = cycle_readings(1500, seed=6, start=T0 + timedelta(days=1))
    fault = cycle_readings(
        1500,
        seed=7,
        start=first[-1].ts + timedelta(seconds=2),
        fault=lambda i, a, v: v * 2 if a == 2 and 200 < i < 900 else v,
    )
    one = DetectorEngine(CONFIG, model)
    run(one, first)
    two = DetectorEngine(CONFIG, model)
    load_snapshot(two, json.loads(json.dumps(snapshot(one))))
    events = run(one, fault)
    assert events and events == run(two, fault)
    assert {a.detector for a in events} >= {"residual"}


def test_a_model_only_applies_to_its_own_robot():
    model = train(cycle_readings(3000, seed=5), TrainingOptions(window=20, max_short=4), robot_id="r1")
    engine = DetectorEngine(CONFIG, model)
    run(engine, cycle_readings(30, robot_id="r1") + cycle_readings(30, robot_id="r2"))
    names = lambda rid: [d.name for d in engine.robots[rid].axes[2].detectors]  # noqa: E731
    assert names("r1") == ["zscore", "residual", "stuck"] and names("r2") == ["zscore", "stuck"]


def test_scores_pass_half_only_on_the_reading_that_raises_and_drop_to_zero_on_idle_rows():
    engine = DetectorEngine(EngineConfig(detectors=("zscore",), z_window=200, z_min_samples=50, z_test_samples=3))
    readings = cycle_readings(300)
    run(engine, readings)
    after = readings[-1].ts
    scores, raised = [], []
    for k in (1, 2, 3, 4):
        alerts = engine.process(
            Reading(robot_id="r1", ts=after + timedelta(seconds=2 * k), currents={1: 60.0 + k, 2: 10.0})
        )
        scores.append(engine.scores("r1", 1))
        raised.append(any(a.state is AlertState.OPEN and a.axis == 1 for a in alerts))
    opened = raised.index(True)
    assert 0.5 < scores[opened] < 1.0 and all(s < 0.5 for i, s in enumerate(scores) if i != opened)
    assert engine.open_events() == [("r1", 1, "zscore")]  # still open: the later readings only continue it
    engine.process(Reading(robot_id="r1", ts=after + timedelta(seconds=10), currents={1: 0.0, 2: 0.0}))
    assert engine.scores("r1", 1) == 0.0 and engine.scores("r1", 7) is None


def test_a_value_clamped_far_above_normal_while_moving_raises_a_level_event_with_the_defaults():
    # The case: a constant ~13x the axis's level while the robot moves, idle rows still at 0 A.
    # Every busy reading repeats the last non-zero one exactly; the level detector still sees them.
    readings = cycle_readings(3600, fault=lambda i, a, v: 130.0 if a == 2 and i >= 3000 else v)
    alerts = run(DetectorEngine(EngineConfig()), readings)
    opened = [a for a in alerts if a.state is AlertState.OPEN]
    assert {(a.axis, a.detector) for a in opened} >= {(2, "level_high")}
    first = min(a.opened_at for a in opened if a.detector == "level_high")
    assert readings[3000].ts < first < readings[3100].ts
    assert all(a.opened_at >= readings[3000].ts for a in opened), "nothing before the fault"


def test_a_level_far_from_normal_on_exact_repeats_is_an_alert_not_an_error():
    # A robot that never pauses, one axis reading 130 A again and again: a stuck sensor reads the same, so
    # what the level detector raises on the repeats is a maintenance ALERT (the stuck rule raises its own).
    clamp = lambda i, a, v: 130.0 if a == 2 and i >= 3000 else v  # noqa: E731
    alerts = run(DetectorEngine(EngineConfig()), cycle_readings(3300, work=10_000, pause=0, fault=clamp))
    level = [a for a in alerts if a.detector == "level_high"]
    assert level and {a.severity for a in level} == {Severity.ALERT}
    assert "stuck" in {a.detector for a in alerts}


def test_a_current_that_drops_raises_a_level_low_event_whose_peak_is_the_lowest_value():
    readings = cycle_readings(3600, fault=lambda i, a, v: 0.4 + 0.01 * (i % 3) if a == 2 and i >= 3000 else v)
    alerts = run(DetectorEngine(EngineConfig()), readings)
    low = [a for a in alerts if a.detector == "level_low"]
    assert low and all(a.axis == 2 for a in low)
    assert min(a.peak_amps for a in low) <= 0.41


def test_a_registered_detector_is_built_and_raises_without_touching_the_engine(monkeypatch):
    from consumer_alerts.detectors import Finding
    from consumer_alerts.detectors.registry import AXIS_DETECTORS

    class Above:  # the smallest detector: fires while the value is above a fixed line
        name, kinds, takes_repeats = "above", ("above",), False

        def __init__(self, line):
            self.line, self.observed, self.normalized = line, False, 0.0

        def update(self, ts, value, *, idle=False):
            self.observed = value is not None and not idle
            hit = self.observed and value > self.line
            return Finding(Severity.ALERT, value, value, self.line) if hit else None

        def state(self):
            return {}

        def load(self, state):
            pass

    monkeypatch.setitem(AXIS_DETECTORS, "above", lambda ctx: Above(50.0) if ctx.axis == 1 else None)
    engine = DetectorEngine(EngineConfig(detectors=("above",)))
    readings = cycle_readings(100, fault=lambda i, a, v: 60.0 if a == 1 and i == 40 else v)
    alerts = run(engine, readings)
    assert [(a.axis, a.detector, a.state) for a in alerts][:1] == [(1, "above", AlertState.OPEN)]
    assert [d.name for d in engine.robots["r1"].axes[1].detectors] == ["above"]
    assert engine.robots["r1"].axes[2].detectors == []


def test_the_other_direction_on_an_axis_goes_on_in_its_open_event_until_both_are_quiet(monkeypatch):
    from consumer_alerts.detectors.registry import AXIS_DETECTORS

    class Band:  # fires high above the band, low below it: one detector, two kinds of event
        name, kinds, takes_repeats = "band", ("band_high", "band_low"), False

        def __init__(self):
            self.observed, self.normalized = False, 0.0

        def update(self, ts, value, *, idle=False):
            self.observed = value is not None and not idle
            if not self.observed or 0.1 <= value <= 50.0:
                return None
            high = value > 50.0
            severity = Severity.ERROR if value < 0.02 else Severity.ALERT
            return Finding(severity, value, 1.0, 50.0 if high else 0.1, self.kinds[0 if high else 1])

        def state(self):
            return {}

        def load(self, state):
            pass

    monkeypatch.setitem(AXIS_DETECTORS, "band", lambda ctx: Band() if ctx.axis == 1 else None)
    config = EngineConfig(detectors=("band",), holdoff_s=60.0, holdoff_readings=0, idle_rule=False)
    swing = {40: 60.0, 45: 0.01, 100: 0.05}  # high, then gone (an ERROR) inside its hold-off; low again after it closed
    readings = cycle_readings(200, work=1000, pause=0, fault=lambda i, a, v: swing.get(i, v) if a == 1 else v)
    alerts = run(DetectorEngine(config), readings)
    first = [a for a in alerts if a.opened_at == readings[40].ts]
    assert [(a.detector, a.state, a.severity) for a in first] == [
        ("band_high", AlertState.OPEN, Severity.ALERT),
        ("band_high", AlertState.OPEN, Severity.ERROR),  # the drop escalates the one event
        ("band_high", AlertState.CLOSED, Severity.ERROR),
    ]
    assert first[0].peak_amps == first[-1].peak_amps == 60.0  # its own direction's extreme
    assert first[-1].closed_at == readings[46].ts  # quiet once the drop was over, not the rise
    later = [(a.detector, a.opened_at) for a in alerts if a.opened_at != readings[40].ts]
    assert later and set(later) == {("band_low", readings[100].ts)}  # after the close, a new episode


def test_snapshot_round_trip_with_the_default_detectors_gives_the_same_events():
    first = cycle_readings(2500, seed=3)
    fault = cycle_readings(
        900, seed=4, start=first[-1].ts + timedelta(seconds=2), fault=lambda i, a, v: 130.0 if a == 2 and i > 300 else v
    )
    one = DetectorEngine(EngineConfig())
    run(one, first)
    two = DetectorEngine(EngineConfig())
    load_snapshot(two, json.loads(json.dumps(snapshot(one))))
    events = run(one, fault)
    assert events and events == run(two, fault)
    assert "level_high" in {a.detector for a in events}


def test_a_load_halved_through_the_engine_is_a_load_low_alert_and_a_load_gone_an_error():
    # The default detectors without a model (level, load, stuck, multivariate), a robot that works and pauses:
    # axis 2's current halved from reading 3000 on (each value still within what a cycle draws), or 90 % gone.
    # The cross-axis detector may see it too, filed under the same axis.
    def scaled(factor):
        return lambda i, axis, amps: amps * factor if axis == 2 and i >= 3000 else amps

    def opened(factor):
        alerts = run(DetectorEngine(EngineConfig()), cycle_readings(4500, seed=3, fault=scaled(factor)))
        return {(a.axis, a.detector, a.severity) for a in alerts}

    assert opened(1.0) == set()
    halved = opened(0.5)
    assert (2, "load_low", Severity.ALERT) in halved
    assert {axis for axis, _, _ in halved} == {2} and Severity.ERROR not in {severity for _, _, severity in halved}
    assert (2, "load_low", Severity.ERROR) in opened(0.1)


def test_a_ramp_is_an_error_once_its_recent_half_is_past_the_line_and_a_step_near_it_stays_an_alert():
    # The default detectors without a model. Axis 2's load ramps up over 200 rows from reading 3000 (about 123 busy
    # readings, the fault's end at its peak): the load window still holds the ramp's lower part at its end (~1.8x),
    # but its recent half is past twice normal by more than its noise, so the ramp to 2.8x is an ERROR. A step to
    # 1.7x held as long as the window and more stays an ALERT: its recent half is no farther than the window.
    def worst(fault):
        alerts = run(DetectorEngine(EngineConfig()), cycle_readings(4000, seed=3, fault=fault))
        assert alerts and {a.axis for a in alerts} == {2}
        return max((a.severity for a in alerts), key=[Severity.ALERT, Severity.ERROR].index)

    def ramp(top):
        return lambda i, axis, amps: (
            amps * (1 + (top - 1) * (i - 3000) / 200) if axis == 2 and 3000 <= i < 3200 else amps
        )

    assert worst(ramp(2.8)) is Severity.ERROR
    assert worst(lambda i, axis, amps: amps * 1.7 if axis == 2 and 3000 <= i < 3600 else amps) is Severity.ALERT


def test_a_rise_is_an_error_only_once_its_level_has_stayed_past_the_line_for_the_hold():
    # The default detectors without a model. Axis 2 draws 1.8x its load for 1,800 readings: the load window's level
    # swings around 1.8x with the work and touches 2x for a reading or a few on some seeds; a touch is no doubled
    # load, so the event stays an ALERT. At 2.3x the level stays past the line: an ERROR.
    def worst(factor, seed):
        fault = lambda i, a, v: v * factor if a == 2 and 3000 <= i < 4800 else v  # noqa: E731
        alerts = run(DetectorEngine(EngineConfig()), cycle_readings(5000, seed=seed, fault=fault))
        assert alerts and {a.axis for a in alerts} == {2}
        return max((a.severity for a in alerts), key=[Severity.ALERT, Severity.ERROR].index)

    assert [worst(1.8, seed) for seed in range(8)] == [Severity.ALERT] * 8
    assert worst(2.3, 0) is Severity.ERROR


def test_an_alert_open_long_before_a_gross_step_escalates_no_later_than_one_the_step_opens():
    # The default detectors without a model. Axis 2 draws 1.5x its load from reading 3000 (an ALERT opens) and 3x
    # from reading 3300 on. That open event is an ERROR no later than the event the same 3x opens on a clean axis (a
    # rise opens as an ALERT and escalates once its level has held past the line): an event open for minutes needs
    # no more evidence than a fresh one (docs/benchmarks.md section 5, "Why a gross ramp's open ALERT does not
    # become an ERROR").
    step = 3300

    def first_error(before_step):
        fault = lambda i, a, v: v * (before_step if i < step else 3.0) if a == 2 and i >= 3000 else v  # noqa: E731
        readings = cycle_readings(4200, seed=3, fault=fault)
        engine = DetectorEngine(EngineConfig())
        for i, reading in enumerate(readings):
            for alert in engine.process(reading):
                if alert.severity is Severity.ERROR:
                    assert alert.axis == 2
                    return i, alert.opened_at < readings[step].ts
        raise AssertionError("no ERROR")

    escalated, opened_before = first_error(1.5)
    fresh, fresh_opened_before = first_error(1.0)
    assert opened_before and not fresh_opened_before  # the first an ALERT open before the step, the second not
    assert step <= escalated <= fresh


def test_a_clamp_that_follows_the_robots_rests_is_sized_like_a_level_and_a_stuck_sensor_is_not():
    # 130 A is 13x axis 2's level. Read only while the robot moves (0 A while it rests, then exactly 130 A
    # again) it is the joint's current held at a limit: a gross rise, an ERROR. Read through the rests too it
    # is the sensor's value: the same level raised as a maintenance ALERT.
    def worst(through_rests):
        clamp = lambda i, a, v: 130.0 if a == 2 and i >= 3000 else v  # noqa: E731
        readings = cycle_readings(3600, fault=clamp)
        if through_rests:
            readings = [
                r.model_copy(update={"currents": {**r.currents, 2: 130.0}}) if i >= 3000 else r
                for i, r in enumerate(readings)
            ]
        alerts = run(DetectorEngine(EngineConfig()), readings)
        assert alerts and {a.axis for a in alerts} == {2}
        return max((a.severity for a in alerts), key=[Severity.ALERT, Severity.ERROR].index)

    assert worst(through_rests=False) is Severity.ERROR
    assert worst(through_rests=True) is Severity.ALERT


def test_a_clamp_shorter_than_the_load_window_is_sized_by_its_flat_value():
    # 25 A is 2.5x axis 2's level, read as a constant for 60 busy readings (half of `load`'s window of 120)
    # with the robot's rests in between: the window, still half full of live readings, reads ~1.6x, but a flat
    # current is its own level, so the clamp is the ERROR of a load more than doubled. 18 A (1.8x) is an
    # ALERT, and the same 25 A read through the rests too is the sensor's value: a maintenance ALERT.
    def worst(amps, through_rests=False):
        span = range(3000, 3000 + 60 * 26 // 16)
        readings = cycle_readings(3600, fault=lambda i, a, v: amps if a == 2 and i in span else v)
        if through_rests:
            readings = [
                r.model_copy(update={"currents": {**r.currents, 2: amps}}) if i in span else r
                for i, r in enumerate(readings)
            ]
        alerts = run(DetectorEngine(EngineConfig()), readings)
        assert alerts and {a.axis for a in alerts} == {2}
        return max((a.severity for a in alerts), key=[Severity.ALERT, Severity.ERROR].index)

    assert worst(25.0) is Severity.ERROR
    assert worst(18.0) is Severity.ALERT
    assert worst(25.0, through_rests=True) is Severity.ALERT


def test_every_detector_grades_a_change_of_level_by_its_size_against_normal():
    # The default set with a model: axis 2 drawing 1.5x its load is an ALERT whichever detector sees it (the
    # residual's short rule alone called a cycle's peak at +50 % an ERROR); 3x is an ERROR by the same rule
    # (its threshold: GROSS_HIGH). The cycle's peaks at +50 % pass SurgeC again and again: a heavier load's peaks,
    # not a spike, so no surge makes it an ERROR either.
    clean = cycle_readings(3000, seed=5)
    model = train(clean, TrainingOptions(), robot_id="r1")

    def raised(factor):
        engine = DetectorEngine(EngineConfig(), model)
        run(engine, clean)
        later = clean[-1].ts + timedelta(seconds=2)
        fault = lambda i, a, v: v * factor if a == 2 and i >= 300 else v  # noqa: E731
        return [a for a in run(engine, cycle_readings(1500, seed=6, start=later, fault=fault)) if a.axis == 2]

    moderate = raised(1.5)
    assert {"residual", "load_high"} <= {a.detector for a in moderate}
    assert all(a.severity is Severity.ALERT for a in moderate)
    gross = raised(3.0)
    assert {a.threshold for a in gross if a.severity is Severity.ERROR} >= {EngineConfig().gross_high}


def test_a_load_already_low_at_a_robots_first_reading_is_seen_with_a_model_and_not_without():
    # Axis 2 draws 40 % of its load from the robot's very first reading. Without a model `load` learns that as
    # normal; with one trained on clean work it judges the first windows against the model's level.
    model = train(cycle_readings(4000, seed=5), TrainingOptions(kind="density"), robot_id="r1")
    low = cycle_readings(900, seed=3, fault=lambda i, axis, amps: amps * 0.4 if axis == 2 else amps)
    assert not {a.detector for a in run(DetectorEngine(EngineConfig()), low) if a.detector.startswith("load")}
    seen = {(a.axis, a.detector) for a in run(DetectorEngine(EngineConfig(), model), low)}
    assert (2, "load_low") in seen and not any(axis == 1 and d.startswith("load") for axis, d in seen)
    clean = run(DetectorEngine(EngineConfig(), model), cycle_readings(900, seed=3))
    assert not [a for a in clean if a.detector.startswith("load")]


def test_each_axis_counts_its_open_events_through_opens_escalations_closes_and_stoppages():
    # The engine skips the lifecycles of an axis whose count says nothing is open: a count that drifted from
    # its lifecycles would leave an event unaged (never closed) or age nothing. A +150 % load on axis 2, then
    # a stoppage longer than STOPPAGE_RESET_S (it closes the open events at once), then the fault again.
    clean = cycle_readings(3000, seed=5)
    model = train(clean, TrainingOptions(), robot_id="r1")
    fault = lambda i, a, v: v * 2.5 if a == 2 and (300 <= i < 700 or 1000 <= i < 1200) else v  # noqa: E731
    feed = cycle_readings(1500, seed=6, start=clean[-1].ts + timedelta(seconds=2), fault=fault)
    feed = feed[:800] + [r.model_copy(update={"ts": r.ts + timedelta(hours=1)}) for r in feed[800:]]
    engine = DetectorEngine(EngineConfig(), model)
    states = set()
    for reading in feed:
        for alert in engine.process(reading):
            states.add(alert.state)
        for state in engine.robots["r1"].axes.values():
            assert state.opened.open == sum(life.event is not None for life in state.lifecycles)
    assert states == {AlertState.OPEN, AlertState.CLOSED}


LEVELS3 = {1: 2.0, 2: 10.0, 3: 5.0}


def _correlated_feed(n, *, stuck, rest):
    """Three axes that move together (a common work-cycle factor each scales), 16 busy rows of every 26; axis 2
    stuck at ``stuck[2]`` A over rows ``stuck[0]:stuck[1]``, read through the rests too (the sensor's value), and
    the robot resting over rows ``rest[0]:rest[1]``."""
    import random

    rng = random.Random(0)
    out = []
    for i in range(n):
        busy = i % 26 < 16 and not rest[0] <= i < rest[1]
        common = rng.lognormvariate(0, 0.5)
        currents = {a: round(lv * common * rng.lognormvariate(0, 0.1), 4) if busy else 0.0 for a, lv in LEVELS3.items()}
        if stuck[0] <= i < stuck[1]:
            currents[2] = stuck[2]
        out.append(Reading(robot_id="r1", ts=T0 + timedelta(seconds=2 * i), row=i + 2, currents=currents))
    return out


def test_a_cross_axis_event_raised_on_a_stuck_sensor_closes_when_the_sensor_reads_live_values_again():
    # Axis 2 stuck at 25 A (2.5x its level) for 400 rows, then the robot rests 500 s. The multivariate event the
    # repeats raise is filed under axis 2, a maintenance ALERT; its window is full of the stuck rows when the
    # sensor comes back, and the lifecycle counts quiet only on judged rows, so before it stayed open through the
    # rest and closed 586 s after the fault. Now it is quiet from the reading the stuck event goes quiet.
    readings = _correlated_feed(6500, stuck=(4000, 4400, 25.0), rest=(4400, 4650))
    events = {}
    engine = DetectorEngine(EngineConfig(detectors=("stuck", "multivariate")))
    for reading in readings:
        for alert in engine.process(reading):
            events[alert.event_id] = alert
    fault_start, fault_end = readings[4000].ts, readings[4400].ts
    cross = [a for a in events.values() if a.detector == "multivariate"]
    assert cross and all(a.axis == 2 and a.severity is Severity.ALERT for a in cross)
    assert all(fault_start <= a.opened_at < fault_end and a.state is AlertState.CLOSED for a in cross)
    assert max(a.closed_at for a in cross) <= fault_end + timedelta(seconds=4)  # within two readings of its end
    stuck = [a for a in events.values() if a.detector == "stuck"]
    assert [(a.axis, a.state) for a in stuck] == [(2, AlertState.CLOSED)]


class _BlamesAxisOne:
    """A robot detector that, from a given time on, finds every busy reading off and blames axis 1 (an ERROR)."""

    name = "blames_axis_one"
    kinds = ("blames_axis_one",)

    def __init__(self, ctx, since):
        self.since, self.observed, self.normalized = since, False, 0.0

    def update(self, ts, currents, *, idle=False):
        self.observed = not idle
        if idle or ts < self.since:
            return None
        return Finding(Severity.ERROR, float(currents[1]), 0.9, 0.8, axis=1)

    def state(self):
        return {}

    def load(self, state):
        pass


def test_a_robot_finding_opening_while_an_axis_reads_one_value_over_and_over_is_filed_under_that_axis(monkeypatch):
    # A cross-axis statistic may blame another axis than the one stuck (the demo's stuck sensors opened
    # `multivariate` ERRORs under other axes). Opening while axis 2 has read one value 10 readings or more in a
    # row, the finding is filed under axis 2, as a repeat's ALERT; with no flat axis it stays axis 1's ERROR.
    from consumer_alerts.detectors import registry

    readings = _correlated_feed(600, stuck=(300, 600, 25.0), rest=(0, 0))

    def opened(since_row):
        since = readings[since_row].ts.timestamp()
        monkeypatch.setitem(registry.ROBOT_DETECTORS, "blames_axis_one", lambda ctx: _BlamesAxisOne(ctx, since))
        engine = DetectorEngine(EngineConfig(detectors=("stuck", "blames_axis_one")))
        alerts = [a for r in readings for a in engine.process(r) if a.detector == "blames_axis_one"]
        return alerts[0].axis, alerts[0].severity

    assert opened(200) == (1, Severity.ERROR)  # before the stuck sensor: as the detector blamed it
    assert opened(340) == (2, Severity.ALERT)  # axis 2 read 25 A for 40 readings: its sensor explains it
