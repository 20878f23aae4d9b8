"""The service learns each robot's model itself, keeps it across a restart, and learns it again after a
lasting change of program (one INFO event), while a fault is not learnt away."""

import json
from dataclasses import replace
from datetime import timedelta

from common.wire.schemas import Alert, AlertState, Severity
from consumer_alerts.engine import MODEL_EVENT, DetectorEngine, EngineConfig
from consumer_alerts.engine_state import load_snapshot, snapshot
from consumer_alerts.model import AlertModel
from consumer_alerts.training import train
from dashboard.columns import alert_columns
from tests.alerts_fixtures import T0, cycle_readings

CONFIG = EngineConfig(detectors=("residual",), model_learn_readings=1000)
LEARN_ROWS = 1650  # 16 busy rows of every 26: 1000 active rows and some


def run(engine, readings):
    return [a for r in readings for a in engine.process(r)]


def feed(n, *, start_row=0, fault=None, seed=1):
    """``n`` rows of the fixture's work cycle following ``start_row`` rows from T0."""
    return cycle_readings(n, seed=seed, start=T0 + timedelta(seconds=2 * start_row), fault=fault)


def learner(engine):
    return engine.robots["r1"].learner


def test_a_robot_without_a_model_file_gets_one_after_its_warm_up_and_the_residual_detector_starts():
    engine = DetectorEngine(CONFIG)
    assert run(engine, feed(LEARN_ROWS)) == []  # learning: quiet, and no event announces the first model
    model = learner(engine).model
    assert model is not None and set(model.axes) == {1, 2} and model.robot_id == "r1"
    assert {d.name for d in engine.robots["r1"].axes[2].detectors} == {"residual"}
    assert run(engine, feed(2000, start_row=LEARN_ROWS, seed=2)) == []  # clean running after it: no event
    overload = feed(600, start_row=LEARN_ROWS + 2000, seed=3, fault=lambda i, a, v: v * 2.5 if a == 2 else v)
    raised = run(engine, overload)
    assert {(a.axis, a.detector) for a in raised} == {(2, "residual")}


def program_change(i, axis, amps):
    return amps * (1.6 if axis == 1 else 0.6)  # every axis's load changes, for good


def test_a_program_change_is_one_model_event_and_then_quiet_on_the_new_model():
    engine = DetectorEngine(CONFIG)
    run(engine, feed(LEARN_ROWS))
    old = learner(engine).model
    after = run(engine, feed(5000, start_row=LEARN_ROWS, seed=4, fault=program_change))
    model_events = [a for a in after if a.detector == MODEL_EVENT]
    assert [(a.state, a.severity, a.axis) for a in model_events] == [
        (AlertState.OPEN, Severity.INFO, 0),
        (AlertState.CLOSED, Severity.INFO, 0),
    ]
    new = learner(engine).model
    assert learner(engine).changes == 1 and new is not old
    # the new model is the new program's: axis 1 draws 1.6x, axis 2 0.6x what the old one was learned on
    assert abs(new.axes[1].mean / old.axes[1].mean - 1.6) < 0.16
    assert abs(new.axes[2].mean / old.axes[2].mean - 0.6) < 0.06
    assert engine.open_events() == []
    # Held against the old model, the same feed keeps the residual event of axis 1 open to the end.
    fixed = DetectorEngine(CONFIG)
    run(fixed, feed(LEARN_ROWS))
    fixed.robots["r1"].learner.relearn_s = 0  # as MODEL_RELEARN_S=0
    run(fixed, feed(5000, start_row=LEARN_ROWS, seed=4, fault=program_change))
    assert ("r1", 1, "residual") in fixed.open_events()


def test_a_twenty_minute_fault_on_every_axis_is_raised_and_not_learnt_away():
    config = replace(CONFIG, detectors=("level", "residual"))
    engine = DetectorEngine(config)
    run(engine, feed(LEARN_ROWS))
    model = learner(engine).model
    twenty_minutes = 600  # rows of 2 s
    fault = feed(twenty_minutes, start_row=LEARN_ROWS, seed=5, fault=lambda i, a, v: v * 1.6)
    back = feed(3000, start_row=LEARN_ROWS + twenty_minutes, seed=6)
    events = run(engine, fault + back)
    raised = {a.axis for a in events if a.state is AlertState.OPEN and a.opened_at < back[0].ts}
    assert raised == {1, 2}
    # Both axes moved: the residual ALERTs were held while the change was timed, and raised once it went
    # away, opened inside the fault.
    held = [a for a in events if a.axis == 1 and a.detector == "residual"]
    assert held[0].severity is Severity.ALERT and fault[0].ts <= held[0].opened_at < back[0].ts
    assert not [a for a in events if a.detector == MODEL_EVENT]
    assert learner(engine).model is model and learner(engine).changes == 0
    # Had it lasted (here: a program), the same change would have been learnt after MODEL_RELEARN_S.
    lasting = DetectorEngine(config)
    run(lasting, feed(LEARN_ROWS))
    events = run(lasting, feed(3000, start_row=LEARN_ROWS, seed=5, fault=lambda i, a, v: v * 1.6))
    assert [a.state for a in events if a.detector == MODEL_EVENT][:1] == [AlertState.OPEN]


def test_a_restart_keeps_the_learned_model_and_the_watch():
    one = DetectorEngine(CONFIG)
    run(one, feed(LEARN_ROWS) + feed(700, start_row=LEARN_ROWS, seed=7, fault=program_change))
    assert learner(one).recent  # a change being timed, and confirmed, when the snapshot is taken
    two = DetectorEngine(CONFIG)
    load_snapshot(two, json.loads(json.dumps(snapshot(one))))
    assert learner(two).model.to_json() == learner(one).model.to_json()
    rest = feed(4000, start_row=LEARN_ROWS + 700, seed=8, fault=program_change)
    events = run(one, rest)
    assert events and events == run(two, rest)
    assert learner(two).changes == 1


def test_a_model_file_is_watched_unless_fixed_and_an_old_file_is_not_watched():
    given = train(feed(3000, seed=9), robot_id="r1")
    assert all(m.mean and m.mean > 0 for m in given.axes.values())
    watched = DetectorEngine(EngineConfig(detectors=("residual",)), given)
    run(watched, feed(10))
    assert learner(watched).model is given and learner(watched).baseline
    fixed = DetectorEngine(EngineConfig(detectors=("residual",), model_relearn_s=0), given)
    run(fixed, feed(10))
    assert fixed.robots["r1"].learner is None
    body = json.loads(given.to_json())
    body["version"] = 2
    for axis in body["axes"].values():
        del axis["mean"]
    old = AlertModel.from_json(json.dumps(body))
    unwatched = DetectorEngine(EngineConfig(detectors=("residual",)), old)
    run(unwatched, feed(10))
    assert learner(unwatched).model is old and not learner(unwatched).baseline


def test_the_model_event_travels_merges_and_shows_as_info():
    engine = DetectorEngine(CONFIG)
    run(engine, feed(LEARN_ROWS))
    events = [
        a
        for a in run(engine, feed(5000, start_row=LEARN_ROWS, seed=4, fault=program_change))
        if a.detector == MODEL_EVENT
    ]
    opened, closed = (Alert.from_bytes(a.to_bytes()) for a in events)  # over the wire and back
    merged = opened.merged_with(closed)  # the rule consumer_db's upsert and the dashboard apply
    assert (merged.severity, merged.state, merged.opened_at) == (Severity.INFO, AlertState.CLOSED, opened.opened_at)
    colours = alert_columns([merged, closed.model_copy(update={"severity": Severity.ALERT})])["colour"]
    assert colours[0] != colours[1]  # shown apart from the alerts


def test_with_the_default_detectors_a_program_change_raises_no_load_event_but_a_load_drop_still_does():
    engine = DetectorEngine(replace(EngineConfig(), model_learn_readings=1000))
    assert "load" in engine.config.detectors
    run(engine, feed(LEARN_ROWS))
    after = run(engine, feed(5000, start_row=LEARN_ROWS, seed=4, fault=program_change))
    model_events = [(a.state, a.severity) for a in after if a.detector == MODEL_EVENT]
    assert model_events == [(AlertState.OPEN, Severity.INFO), (AlertState.CLOSED, Severity.INFO)]
    # Both axes' loads moved for good (1.6x, 0.6x, beyond the load band): held while the change was timed,
    # dropped once it was confirmed, and the new program's level learnt afresh.
    assert [a for a in after if a.detector.startswith("load")] == []
    assert learner(engine).changes == 1
    # On the new program a 20-minute drop of one axis's load is a fault, raised as before.
    twenty_minutes = 600  # rows of 2 s
    start = LEARN_ROWS + 5000
    drop = feed(
        twenty_minutes, start_row=start, seed=8, fault=lambda i, a, v: program_change(i, a, v) * (0.4 if a == 2 else 1)
    )
    raised = run(engine, drop)
    assert ("load_low", 2) in {(a.detector, a.axis) for a in raised if a.state is AlertState.OPEN}
    assert learner(engine).changes == 1


def test_held_alerts_of_two_axes_wait_out_a_dip_of_the_timing_and_are_raised_once_it_stays_away():
    # The 20-minute fault on both axes of the test above: its residual ALERTs are held while the change is
    # timed. When the timing goes away they wait a sixth of MODEL_RELEARN_S (a dip near the limit would
    # otherwise release a new program's ALERTs in bursts), then come out opened inside the fault. Axis 2's went
    # on in the residual event its ERROR had opened before the timing began: that event had them, none comes out
    # (raised again, they made a second event inside the first).
    engine = DetectorEngine(replace(CONFIG, detectors=("level", "residual")))
    run(engine, feed(LEARN_ROWS))
    fault = feed(600, start_row=LEARN_ROWS, seed=5, fault=lambda i, a, v: v * 1.6)
    back = feed(3000, start_row=LEARN_ROWS + 600, seed=6)
    went_away = released = None
    axis_two = set()
    for reading in fault + back:
        timed = learner(engine).pending
        held = any(state.held for state in engine.robots["r1"].axes.values())
        alerts = engine.process(reading)
        axis_two |= {a.event_id for a in alerts if a.axis == 2 and a.detector == "residual"}
        if timed and not learner(engine).pending and went_away is None:
            went_away = reading.ts
        if held and not any(state.held for state in engine.robots["r1"].axes.values()):
            released = (reading.ts, alerts)
    assert went_away is not None and released is not None
    when, alerts = released
    assert (when - went_away).total_seconds() >= 300  # a sixth of MODEL_RELEARN_S (30 min)
    assert {a.axis for a in alerts if a.detector == "residual"} == {1}
    assert all(fault[0].ts <= a.opened_at < back[0].ts for a in alerts if a.detector == "residual")
    assert len(axis_two) == 1


def test_a_held_alert_released_after_its_fault_ended_closes_as_of_its_last_firing_not_the_release():
    # The same fault: the residual ALERTs are released minutes after it ended. Each event is opened when it was
    # first held and, not firing again, closes as of the last reading its rule fired on while held: within a few
    # readings of the fault's end, not at the release (the demo's held load_high closed 1,322 s after its fault).
    engine = DetectorEngine(replace(CONFIG, detectors=("level", "residual")))
    run(engine, feed(LEARN_ROWS))
    fault = feed(600, start_row=LEARN_ROWS, seed=5, fault=lambda i, a, v: v * 1.6)
    back = feed(3000, start_row=LEARN_ROWS + 600, seed=6)
    released = None
    events = {}
    for reading in fault + back:
        held = any(state.held for state in engine.robots["r1"].axes.values())
        for alert in engine.process(reading):
            events[alert.event_id] = alert
        if held and released is None and not any(state.held for state in engine.robots["r1"].axes.values()):
            released = reading.ts
    residual = [a for a in events.values() if a.detector == "residual"]
    assert released is not None and (released - back[0].ts).total_seconds() > 300
    assert {a.axis for a in residual} == {1, 2}
    for alert in residual:
        assert alert.state is AlertState.CLOSED
        assert fault[0].ts <= alert.opened_at < back[0].ts
        assert alert.closed_at <= back[0].ts + timedelta(seconds=60)  # its rule's last firing: 30 readings at most


def test_a_change_timed_before_a_stoppage_must_go_on_for_the_rest_of_its_time_in_work_after_it():
    # Timed in feed time, a change seen before a long stoppage was confirmed on the first readings after it,
    # on a few readings of work: in fault runs of the broad benchmark, faults were turned into re-learns.
    engine = DetectorEngine(CONFIG)
    run(engine, feed(LEARN_ROWS))
    heavier = lambda i, a, v: v * 1.6  # noqa: E731
    before, rest_rows = feed(750, start_row=LEARN_ROWS, seed=5, fault=heavier), 3600  # rows of 2 s: 25 min, 2 h
    assert not [a for a in run(engine, before) if a.detector == MODEL_EVENT]
    timed = before[-1].ts.timestamp() - learner(engine).shifted_since
    assert 0 < timed < CONFIG.model_relearn_s  # being timed when the robot stopped
    after = feed(3000, start_row=LEARN_ROWS + 750 + rest_rows, seed=6, fault=heavier)  # the change stays
    assert engine.robots["r1"].held_since is not None  # the residual's ALERTs of the new program wait
    events = run(engine, after)
    opened = [a for a in events if a.detector == MODEL_EVENT and a.state is AlertState.OPEN]
    assert len(opened) == 1 and learner(engine).changes == 1  # a program that stays is still learnt
    worked = (opened[0].opened_at - after[0].ts).total_seconds()
    assert worked >= CONFIG.model_relearn_s - timed - 10  # the rest of its time, in work (the rest not counted)
    # What was held waited in work too: not raised by HOLD_AT_MOST on the first readings after the stoppage.
    assert not [a for a in events if a.detector == "residual" and a.state is AlertState.OPEN]


def test_a_re_learn_the_load_detectors_did_not_hold_has_the_moved_axes_judged_on_their_new_level():
    # A program that moves both axes by about a fifth: past MODEL_RELEARN_SHIFT, held by `load` on one axis at
    # most, so `load` did not see a program (``_load_moved``) and is not learnt again. Left on the old level, such
    # an axis sat at its band's edge for hours under the new program and alerted again and again (tuning seed
    # 28); the axes the change moved are judged against the new program's level from the re-learn on, at once.
    engine = DetectorEngine(replace(EngineConfig(), model_learn_readings=1000))
    run(engine, feed(LEARN_ROWS))
    mild = lambda i, a, v: v * (1.2 if a == 1 else 0.83)  # noqa: E731
    scorers = {a: next(d.scorer for d in engine.robots["r1"].axes[a].detectors if d.name == "load") for a in (1, 2)}
    relearnt = None
    for reading in feed(3000, start_row=LEARN_ROWS, seed=4, fault=mild):
        held = [k for state in engine.robots["r1"].axes.values() for k in state.held if k.startswith("load")]
        before = {a: s.total / len(s.logs) for a, s in scorers.items()}
        alerts = engine.process(reading)
        if any(a.detector == MODEL_EVENT for a in alerts) and relearnt is None:
            relearnt, was_held = {a: s.reference for a, s in scorers.items()}, held
            window_levels = before
    assert relearnt is not None and len(was_held) < 2 and learner(engine).moved == {1, 2}
    for axis, level in relearnt.items():
        assert abs(level - window_levels[axis]) < 0.02  # the new program's window
        assert scorers[axis].learnt  # and judged on at once
